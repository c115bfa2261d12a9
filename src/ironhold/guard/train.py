"""Train the injection/jailbreak classifier reproducibly from a labelled JSONL file.

Needs scikit-learn (``pip install 'ironhold[train]'``); the gateway itself does not. Features come
from ``guard.features``, the same function the gateway scores with. The decision threshold is
chosen on 5-fold out-of-fold scores (rules included, as the gateway combines them) for a target
false-positive rate on benign lines; then the model is fitted on every line. Same data, same
library versions: same bytes out.
"""

from __future__ import annotations

import hashlib
import math
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ironhold.guard.features import FEATURE_VERSION, MIN_TOKENS, features, tokens
from ironhold.guard.normalize import normalize
from ironhold.guard.rules import strongest_rule

__all__ = ["DEFAULT_DATA", "TrainResult", "load_labelled", "train"]

#: What ``ironhold guard train`` reads by default, relative to the repository: the public
#: training set, then the extra hard negatives and attacks built by
#: ``scripts/guard-extra-data.py`` (see ``data/guard/extra/README.md``).
DEFAULT_DATA = ("data/guard/train.jsonl", "data/guard/extra/prompt_templates.jsonl",
                "data/guard/extra/judge_prompts.jsonl", "data/guard/extra/attacks.jsonl")

#: Regularisation (inverse strength) of the logistic regression. Of 10, 30 and 100, 30 had the
#: best recall with whole sources held out (5 folds grouped by repository); plain 5-fold recall
#: keeps rising with C as the model leans on each source's quirks.
C = 30.0
SEED = 20250101


@dataclass(frozen=True)
class TrainResult:
    path: Path
    sha256: str
    n: int
    attacks: int
    features: int
    threshold: float
    cv_recall: float
    cv_fpr: float


def load_labelled(path: Path) -> tuple[list[str], list[bool], list[dict[str, Any]]]:
    """``text`` and ``label`` (attack/benign) of each line; raises ValueError naming a bad line."""
    texts: list[str] = []
    labels: list[bool] = []
    rows: list[dict[str, Any]] = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc})") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise ValueError(f"{path}:{number}: needs a string field 'text'")
            label = row.get("label")
            if label not in ("attack", "benign"):
                raise ValueError(f"{path}:{number}: 'label' must be 'attack' or 'benign', "
                                 f"not {label!r}")
            texts.append(row["text"])
            labels.append(label == "attack")
            rows.append(row)
    if not texts:
        raise ValueError(f"{path}: no labelled lines")
    return texts, labels, rows


def train(data: Path | Sequence[Path], out: Path, *, target_fpr: float = 0.01,
          target_hard_fpr: float = 0.02,
          progress: Callable[[str], None] = lambda _: None) -> TrainResult:
    import numpy as np
    import sklearn
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    files = [data] if isinstance(data, Path) else list(data)
    texts: list[str] = []
    labels: list[bool] = []
    kinds: list[str] = []
    for path in files:
        more_texts, more_labels, rows = load_labelled(path)
        texts += more_texts
        labels += more_labels
        kinds += [str(row.get("kind", "")) for row in rows]
    y = np.array(labels)
    hard = np.array([k == "benign_hard" for k in kinds])
    if y.all() or not y.any():
        raise ValueError(f"{', '.join(map(str, files))}: needs both attack and benign lines")
    progress(f"featurizing {len(texts)} lines")
    feats = []
    short = []
    rule_scores = []
    for text in texts:
        norm = normalize(text)
        toks = tokens(norm.text)
        feats.append(sorted(features(toks, norm.signals)))
        short.append(len(toks) < MIN_TOKENS)
        rule = strongest_rule(norm.text)
        rule_scores.append(rule.score if rule is not None else 0.0)
    rules = np.array(rule_scores)

    def fit(rows: list[list[str]], target: Any) -> tuple[Any, Any]:
        vec = CountVectorizer(analyzer=_identity, binary=True, min_df=2)
        x = _scaled(vec.fit_transform(rows), rows)
        model = LogisticRegression(C=C, max_iter=5000, class_weight="balanced")
        model.fit(x, target)
        return vec, model

    oof = np.zeros(len(texts))
    folds = StratifiedKFold(5, shuffle=True, random_state=SEED)
    for i, (tr, te) in enumerate(folds.split(np.zeros(len(y)), y), 1):
        progress(f"cross-validation fold {i}/5")
        vec, model = fit([feats[j] for j in tr], y[tr])
        rows_te = [feats[j] for j in te]
        z = model.decision_function(_scaled(vec.transform(rows_te), rows_te))
        oof[te] = 1.0 / (1.0 + np.exp(-z))
    oof[np.array(short)] = 0.0  # as the gateway scores them: rules only
    combined = np.maximum(oof, rules)
    # The smallest threshold that keeps the false-positive rate at its target on all benign
    # lines, and on the hard negatives alone (benign text about instructions, rules, secrets).
    threshold = max(_threshold_for(combined[~y], target_fpr),
                    _threshold_for(combined[hard], target_hard_fpr) if hard.any() else 0.0)
    threshold = round(min(max(threshold, 0.05), 0.99), 4)
    cv_hard_fpr = float(np.mean(combined[hard] >= threshold)) if hard.any() else 0.0
    cv_recall = float(np.mean(combined[y] >= threshold))
    cv_fpr = float(np.mean(combined[~y] >= threshold))

    progress("fitting on every line")
    vec, model = fit(feats, y)
    names = vec.get_feature_names_out()
    coef = model.coef_[0]
    weights = {str(n): round(float(w), 5) for n, w in zip(names, coef, strict=True)
               if abs(w) >= 5e-4}
    doc = {
        "format": "ironhold-guard-injection",
        "feature_version": FEATURE_VERSION,
        "bias": round(float(model.intercept_[0]), 5),
        "threshold": threshold,
        "training": {
            "data": [{"file": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
                     for p in files],
            "lines": len(texts), "attacks": int(y.sum()),
            "model": "logistic regression on L2-normalized binary features, L2, "
                     "class-balanced", "C": C,
            "cv": {"folds": 5, "seed": SEED, "target_fpr": target_fpr,
                   "target_hard_fpr": target_hard_fpr, "hard_fpr": round(cv_hard_fpr, 4),
                   "recall": round(cv_recall, 4), "fpr": round(cv_fpr, 4)},
            "scikit_learn": sklearn.__version__, "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "weights": dict(sorted(weights.items())),
    }
    blob = orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(blob)
    return TrainResult(out, hashlib.sha256(blob).hexdigest(), len(texts), int(y.sum()),
                       len(weights), threshold, cv_recall, cv_fpr)


def _scaled(x: Any, rows: list[list[str]]) -> Any:
    """Each row divided by the square root of its number of features (unknown ones included),
    as the gateway scores: binary features, L2-normalized."""
    import numpy as np
    import scipy.sparse

    scale = 1.0 / np.sqrt(np.array([max(1, len(r)) for r in rows], dtype=np.float64))
    return scipy.sparse.diags(scale) @ x.astype(np.float64)


def _threshold_for(scores: Any, fpr: float) -> float:
    ordered = sorted(float(x) for x in scores)
    k = math.floor(fpr * len(ordered))
    return ordered[len(ordered) - k - 1] + 1e-6 if k < len(ordered) else 0.5


def _identity(doc: list[str]) -> list[str]:
    return doc
