"""The learned injection/jailbreak classifier, as the gateway runs it.

A logistic regression over the binary features of ``guard.features``, L2-normalized: a
window's score is ``sigmoid(bias + sum of its features' weights / sqrt(number of features))``,
a text's score the highest of its windows'. Without the normalization a long text scored high
for its length alone (each common word adds a little), and long benign system prompts were
flagged.
Serving needs no ML library: the weights are a dict, and a 1,000-token prompt costs one
normalization pass and about 2,000 dict lookups. The model ships in the package
(``guard/models/injection.json``) with its SHA-256 pinned here; ``ironhold guard train``
rebuilds it, byte for byte, from the public training set.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ironhold.core.errors import ArtifactIntegrityError
from ironhold.guard.features import FEATURE_VERSION, MIN_TOKENS, bigrams, features, tokens, windows
from ironhold.guard.normalize import Normalized

__all__ = ["BUNDLED_MODEL", "BUNDLED_SHA256", "InjectionModel"]

BUNDLED_MODEL = Path(__file__).parent / "models" / "injection.json"
#: The digest of the shipped model; a model file that does not match is refused.
_ZEROS = itertools.repeat(0.0)
BUNDLED_SHA256 = "d9025218685c0f2af84d444a4a3e88835ffa961c2b4322551fc786fc7e925aca"


@dataclass(slots=True)
class InjectionModel:
    weights: dict[str, float]
    bias: float
    #: The score at and above which a text counts as an attack (chosen at training).
    threshold: float
    sha256: str
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None, sha256: str | None = None) -> InjectionModel:
        """Load a model file, checking its digest (the bundled model's by default)."""
        path = path or BUNDLED_MODEL
        data = path.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        expected = sha256 if sha256 is not None else (
            BUNDLED_SHA256 if path == BUNDLED_MODEL else None)
        if expected is not None and actual != expected:
            raise ArtifactIntegrityError(
                f"guard model {path} has SHA-256 {actual}, expected {expected}; "
                "rebuild it with `ironhold guard train` or reinstall Ironhold")
        doc = orjson.loads(data)
        if doc.get("format") != "ironhold-guard-injection":
            raise ArtifactIntegrityError(f"{path} is not an Ironhold guard model")
        if doc.get("feature_version") != FEATURE_VERSION:
            raise ArtifactIntegrityError(
                f"guard model {path} was trained on feature version {doc.get('feature_version')}, "
                f"this Ironhold computes version {FEATURE_VERSION}; retrain it")
        return cls(weights=doc["weights"], bias=float(doc["bias"]),
                   threshold=float(doc["threshold"]), sha256=actual,
                   meta=doc.get("training", {}))

    def score_window(self, toks: list[str], signals: frozenset[str],
                     pairs: list[str] | None = None) -> float:
        feats = features(toks, signals, pairs)
        z = self.bias + sum(map(self.weights.get, feats, _ZEROS)) / math.sqrt(len(feats))
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def score(self, norm: Normalized) -> float:
        """The score of a normalized text's highest-scoring window."""
        toks = tokens(norm.text)
        if len(toks) < MIN_TOKENS:
            return 0.0
        pairs = bigrams(toks)
        return max(self.score_window(window, norm.signals,
                                     pairs[start:start + len(window) - 1])
                   for start, window in windows(toks))
