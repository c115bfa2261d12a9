"""Embedding drift: the MMD permutation test on known samples, and end to end with the real
local model (SmolLM2 under llama.cpp, embedding) judging what a gateway's prompts mean."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from ironhold.telemetry.embedding_drift import mmd_test
from tests.helpers import wait_until
from tests.servers import GatewayServer, SimulatorServer


def test_mmd_tells_a_shifted_sample_from_the_same_one() -> None:
    rng = np.random.default_rng(1)
    same_p, shifted_p = [], []
    for _ in range(10):
        reference = rng.normal(0, 1, (120, 16))
        same_p.append(mmd_test(reference, rng.normal(0, 1, (60, 16)), 200, rng).p_value)
        moved = rng.normal(0, 1, (60, 16))
        moved[:, :4] += 0.8  # a shift in a quarter of the dimensions
        shifted_p.append(mmd_test(reference, moved, 200, rng).p_value)
    assert max(shifted_p) < 0.01, shifted_p
    assert sum(p < 0.01 for p in same_p) <= 1, same_p  # at most one false alarm in ten
    assert min(same_p) > 0.001


def test_the_p_value_is_bounded_by_the_permutations() -> None:
    rng = np.random.default_rng(2)
    result = mmd_test(rng.normal(0, 1, (50, 4)), rng.normal(5, 1, (30, 4)), 99, rng)
    assert result.p_value == pytest.approx(1 / 100)
    assert result.mmd2 > 0 and result.bandwidth > 0


QUESTIONS = ["How do I reset my password?", "What does the premium plan include?",
             "When will my order arrive?", "Can I change the email on my account?",
             "Why was my card declined?", "How do I invite a colleague to my team?",
             "Where can I download my invoices?", "Is there a discount for students?"]
CODE = ["def parse(rows):\n    return [r.split(',') for r in rows if r]\n",
        "for (let i = 0; i < n; i++) { total += prices[i] * counts[i]; }",
        "SELECT id, name FROM users WHERE created_at > NOW() - INTERVAL '1 day';",
        "class Cache:\n    def get(self, key):\n        return self._data.get(key)\n"]


def test_a_switch_to_code_is_drift_in_meaning(
        make_gateway: Callable[..., GatewayServer],
        make_simulator: Callable[..., SimulatorServer]) -> None:
    """The embeddings come from a second model server (the simulator's: hashed character
    trigrams, which put prose and code apart), called by the gateway's own router."""
    chat = make_simulator(completion_tokens=6)
    embedder_server = make_simulator(embedding_dimensions=64)
    gw = make_gateway(
        [{"name": "chat", "deployments": [{"url": chat.url}]},
         {"name": "embed", "deployments": [{"url": embedder_server.url}]}],
        telemetry={"signals": {"embedding_drift": {
            "model": "embed", "sample_ratio": 1.0, "reference": 60, "window": 30,
            "permutations": 500, "p_value": 0.01}}})
    admin = gw.create_key("ops", admin=True)
    rng = random.Random(4)

    def ask(prompt: str) -> None:
        response = httpx.post(gw.v1 + "/chat/completions", timeout=30,
                              headers={"Authorization": f"Bearer {admin}"},
                              json={"model": "chat", "messages": [
                                  {"role": "user", "content": prompt}]})
        assert response.status_code == 200

    def drift() -> list[dict[str, Any]]:
        listed = httpx.get(gw.base_url + "/admin/signals",
                           headers={"Authorization": f"Bearer {admin}"}).json()["signals"]
        return [s for s in listed if s["kind"] == "drift"
                and s["detail"]["subject"] == "embeddings"]

    insight = gw.gateway.insight
    assert insight is not None and insight.embedder is not None
    embedder = insight.embedder
    for _ in range(90):  # the reference, then a window like it
        ask(rng.choice(QUESTIONS) + f" (ticket {rng.randint(1, 999)})")
    assert wait_until(lambda: embedder.embedded >= 90, 30), embedder.embedded
    assert wait_until(lambda: insight.embedding["chat"].fresh == 0, 10)  # judged
    assert drift() == []
    for _ in range(30):
        ask(rng.choice(CODE))
    assert wait_until(lambda: bool(drift()), 30), (embedder.embedded, embedder.failures)
    [signal] = drift()
    assert signal["model"] == "chat" and signal["active"]
    assert signal["detail"]["p_value"] < 0.01
    assert signal["detail"]["embedded_by"] == "embed"
    # The embeddings group's own traffic is not watched, and the gateway's calls to it are
    # not requests of anyone's: the simulator saw one call per batch, not one per prompt.
    assert "embed" not in insight.embedding
    assert embedder_server.simulator.served < 120
    assert embedder.failures == 0


def test_an_unreachable_p_value_is_refused(tmp_path: Any) -> None:
    from ironhold.config.telemetry import EmbeddingDriftConfig

    with pytest.raises(ValueError, match="needs at least 2000 permutations"):
        EmbeddingDriftConfig(model="embed", permutations=300, p_value=1e-3)
