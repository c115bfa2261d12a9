"""Streams decoded once by the router: usage counted whatever the TCP reads, whatever the
guard's config; a usage event the client did not ask for taken out; one clean error event when
a stream breaks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from tests.helpers import metric
from tests.servers import GatewayServer, SimulatorServer

BODY = {"model": "chat", "messages": [{"role": "user", "content": "count my tokens please"}],
        "max_tokens": 5, "stream": True}


def stream(gw: GatewayServer, key: str, body: dict[str, Any]) -> list[bytes]:
    with httpx.stream("POST", gw.v1 + "/chat/completions", json=body, timeout=10,
                      headers={"Authorization": f"Bearer {key}"}) as response:
        assert response.status_code == 200
        data = b"".join(response.iter_bytes())
    return [event for event in data.split(b"\n\n") if event]


@pytest.mark.parametrize("guard", [False, True])
def test_usage_split_across_reads_is_counted_with_or_without_the_guard(
        make_gateway: Callable[..., GatewayServer],
        make_simulator: Callable[..., SimulatorServer], guard: bool) -> None:
    """Was: with the guard off, 20 streams whose usage event came in two reads counted 0
    tokens."""
    sim = make_simulator(split_events=True, completion_tokens=5)
    gw = make_gateway([{"name": "chat", "deployments": [{"url": sim.url}]}],
                      guard={"enabled": guard})
    key = gw.create_key()
    reported = []
    for i in range(20):
        asked = i % 2 == 0
        events = stream(gw, key, {**BODY, "stream_options": {"include_usage": asked}})
        assert events[-1] == b"data: [DONE]"
        usage = [orjson.loads(e[6:])["usage"] for e in events[:-1] if b'"usage":{' in e]
        # The usage event reaches only the clients that asked for it.
        assert len(usage) == (1 if asked else 0)
        reported += usage
    prompt = reported[0]["prompt_tokens"]
    completion = reported[0]["completion_tokens"]
    assert prompt > 0 and completion == 5
    labels = {"gen_ai_operation_name": "chat", "gen_ai_request_model": "chat"}
    assert metric(gw, "gen_ai_client_token_usage_sum", gen_ai_token_type="input",
                  **labels) == 20 * prompt
    assert metric(gw, "gen_ai_client_token_usage_sum", gen_ai_token_type="output",
                  **labels) == 20 * completion


def test_a_stream_cut_mid_event_ends_with_exactly_one_error_event(
        make_gateway: Callable[..., GatewayServer],
        make_simulator: Callable[..., SimulatorServer]) -> None:
    sim = make_simulator(split_events=True, completion_tokens=8,
                         faults=[{"kind": "cut", "rate": 1.0, "after_chunks": 3}])
    gw = make_gateway([{"name": "chat", "deployments": [{"url": sim.url}]}],
                      guard={"enabled": False})
    events = stream(gw, gw.create_key(), {**BODY, "max_tokens": 8})
    docs = [orjson.loads(e[6:]) for e in events]  # every event whole: each parses
    assert [d for d in docs if "error" in d] == docs[-1:]
    assert docs[-1]["error"]["type"] == "upstream_error"
    assert sum(1 for d in docs if d.get("choices")) == 3
