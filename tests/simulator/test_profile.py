from __future__ import annotations

import random
import statistics
from pathlib import Path

import pytest

from ironhold.core.errors import ConfigError
from ironhold.simulator import Latency, load_profile

ROOT = Path(__file__).resolve().parents[2]


def test_latency_distributions() -> None:
    rng = random.Random(5)
    assert Latency(distribution="fixed", ms=20).sample(rng) == 0.02
    uniform = [Latency(distribution="uniform", min_ms=10, max_ms=20).sample(rng)
               for _ in range(500)]
    assert min(uniform) >= 0.01 and max(uniform) <= 0.02
    lognormal = [Latency(distribution="lognormal", median_ms=40, sigma=0.5).sample(rng)
                 for _ in range(4000)]
    assert 0.036 < statistics.median(lognormal) < 0.044
    expo = [Latency(distribution="exponential", mean_ms=10).sample(rng) for _ in range(4000)]
    assert 0.009 < statistics.mean(expo) < 0.011
    assert Latency(distribution="normal", mean_ms=1, stddev_ms=50).sample(rng) >= 0


def test_shipped_profiles_load_and_bad_ones_are_named(tmp_path: Path) -> None:
    for path in (ROOT / "examples" / "profiles").glob("*.yaml"):
        load_profile(path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("faults: [{kind: explode, rate: 2}]\n")
    with pytest.raises(ConfigError, match=r"faults\.0"):
        load_profile(bad)


def test_drill_endpoints_over_http() -> None:
    import httpx

    from tests.servers import SimulatorServer

    sim = SimulatorServer()
    try:
        base = f"http://127.0.0.1:{sim.port}"
        httpx.post(sim.url + "/chat/completions", headers={"X-Request-Id": "abc"},
                   json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        recorded = httpx.get(base + "/_sim/requests").json()
        assert recorded["served"] == 1
        headers = {k.lower(): v for k, v in recorded["requests"][0]["headers"].items()}
        assert headers["x-request-id"] == "abc"
        swapped = httpx.put(base + "/_sim/profile", json={"completion_tokens": 2})
        assert swapped.status_code == 200 and sim.simulator.profile.completion_tokens == 2
    finally:
        sim.close()
