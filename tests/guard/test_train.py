"""`ironhold guard train` rebuilds the shipped classifier byte for byte from the public data."""

from __future__ import annotations

from pathlib import Path

from ironhold.guard.classifier import BUNDLED_SHA256, InjectionModel
from ironhold.guard.train import DEFAULT_DATA, train

DATA = [Path(__file__).parents[2] / p for p in DEFAULT_DATA]


def test_training_reproduces_the_shipped_model(tmp_path: Path) -> None:
    result = train(DATA, tmp_path / "injection.json")
    assert result.sha256 == BUNDLED_SHA256
    model = InjectionModel.load(result.path, sha256=result.sha256)
    assert model.meta["cv"]["fpr"] <= 0.0101
    assert model.meta["cv"]["recall"] >= 0.87
    assert model.meta["cv"]["hard_fpr"] <= 0.0201
