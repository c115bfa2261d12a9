"""`ironhold guard train` rebuilds the shipped classifier byte for byte from the public data."""

from __future__ import annotations

from pathlib import Path

from ironhold.guard.classifier import BUNDLED_SHA256, InjectionModel
from ironhold.guard.train import train

GUARD_DATA = Path(__file__).parents[2] / "data" / "guard"
DATA = [GUARD_DATA / "train.jsonl", GUARD_DATA / "extra" / "prompt_templates.jsonl"]


def test_training_reproduces_the_shipped_model(tmp_path: Path) -> None:
    result = train(DATA, tmp_path / "injection.json")
    assert result.sha256 == BUNDLED_SHA256
    model = InjectionModel.load(result.path, sha256=result.sha256)
    assert model.meta["cv"]["fpr"] <= 0.0101
    assert model.meta["cv"]["recall"] >= 0.9
