"""`ironhold guard train` rebuilds the shipped classifier from the public data: byte for byte on
the CPU it was trained on, and to the last rounded digit on others (floating-point sums in BLAS
differ between instruction sets: an AVX-512 machine moved 5 of its weights by 1e-5)."""

from __future__ import annotations

import json
from pathlib import Path

from ironhold.guard.classifier import BUNDLED_MODEL, BUNDLED_SHA256, InjectionModel
from ironhold.guard.train import DEFAULT_DATA, train

DATA = [Path(__file__).parents[2] / p for p in DEFAULT_DATA]


def test_training_reproduces_the_shipped_model(tmp_path: Path) -> None:
    result = train(DATA, tmp_path / "injection.json")
    if result.sha256 != BUNDLED_SHA256:
        trained = json.loads(result.path.read_text())
        shipped = json.loads(Path(BUNDLED_MODEL).read_text())
        assert {k: v for k, v in trained.items() if k != "weights"} == \
            {k: v for k, v in shipped.items() if k != "weights"}
        assert trained["weights"].keys() == shipped["weights"].keys()
        drift = max(abs(w - shipped["weights"][t]) for t, w in trained["weights"].items())
        assert drift <= 5e-5, f"weights moved by up to {drift}"
    model = InjectionModel.load(result.path, sha256=result.sha256)
    assert model.meta["cv"]["fpr"] <= 0.0101
    assert model.meta["cv"]["recall"] >= 0.87
    assert model.meta["cv"]["hard_fpr"] <= 0.0201
