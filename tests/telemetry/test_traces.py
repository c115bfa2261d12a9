"""Traces end to end: the gateway's spans as a real OTLP/HTTP receiver decodes them, the W3C
trace context it passes to the model server, sampling, and exemplars on /metrics."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, TraceIdRatioBased

from ironhold.core.trace import new_trace_id
from ironhold.telemetry.traces import parse_traceparent
from tests.helpers import CHAT, assert_openai_error, post, wait_until
from tests.otlp import OtlpReceiver, ReceivedSpan
from tests.servers import GatewayServer, SimulatorServer

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver()
    yield server
    server.close()


def traced(make_gateway: Callable[..., GatewayServer], receiver: OtlpReceiver,
           models: list[dict[str, Any]], ratio: float, **sections: Any) -> GatewayServer:
    return make_gateway(models, telemetry={"traces": {
        "otlp_endpoint": receiver.endpoint, "sample_ratio": ratio}}, **sections)


def spans_of(receiver: OtlpReceiver, trace_id: str, count: int) -> list[ReceivedSpan]:
    assert wait_until(lambda: len(receiver.of_trace(trace_id)) >= count, 10), \
        receiver.of_trace(trace_id)
    return receiver.of_trace(trace_id)


def only(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def test_a_sampled_client_trace_gets_genai_spans_and_reaches_the_model_server(
        receiver: OtlpReceiver, make_gateway: Callable[..., GatewayServer],
        simulator: SimulatorServer) -> None:
    # Sampling at 0: only the client's sampled flag keeps this trace (parent-based).
    gw = traced(make_gateway, receiver, [{"name": "chat", "deployments": [
        {"name": "sim", "url": simulator.url, "model": "sim-upstream"}]}], 0.0)
    key = gw.create_key("tracer")
    body = {**CHAT, "max_tokens": 30, "temperature": 0.5}
    response = post(gw, key, body, headers={"traceparent": f"00-{TRACE}-{PARENT}-01",
                                            "tracestate": "vendor=abc"})
    assert response.status_code == 200, response.text

    spans = spans_of(receiver, TRACE, 2)
    server = only(spans, "chat chat")
    assert server.kind == "SPAN_KIND_SERVER"
    assert server.parent_id == PARENT
    assert server.resource["service.name"] == "ironhold"
    a = server.attributes
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "chat"
    assert a["gen_ai.response.model"] == "sim-upstream"
    assert a["gen_ai.request.max_tokens"] == 30
    assert a["gen_ai.request.temperature"] == 0.5
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["http.response.status_code"] == 200
    assert a["ironhold.principal.id"].startswith("key_")
    assert a["ironhold.limits.outcome"] == "unlimited"
    assert isinstance(a["ironhold.audit.leaf_index"], int)
    assert re.fullmatch(r"[0-9a-f]{64}", a["ironhold.config.version"])
    assert a["ironhold.deployment"] == "sim"
    assert server.status == "STATUS_CODE_UNSET"
    # No secret in any attribute.
    assert key not in repr([s.attributes for s in spans])

    # Each decision is an event on the server span, in order, with its duration.
    assert [name for name, _ in server.events] == [
        "ironhold.identity", "ironhold.limits", "ironhold.guard", "ironhold.chaos",
        "ironhold.route"]
    assert all(attrs["ironhold.duration_ms"] >= 0 for _, attrs in server.events)
    assert len(spans) == 2
    attempt = only(spans, "chat sim")
    assert attempt.kind == "SPAN_KIND_CLIENT"
    assert attempt.attributes["ironhold.attempt.number"] == 1
    assert attempt.attributes["ironhold.attempt.kind"] == "first"
    assert attempt.attributes["ironhold.attempt.outcome"] == "200"
    assert attempt.parent_id == server.span_id
    assert server.start_ns <= attempt.start_ns <= attempt.end_ns <= server.end_ns

    # The model server was told the attempt's span is its parent, and given the tracestate.
    headers = simulator.simulator.requests[-1]["headers"]
    assert headers["traceparent"] == f"00-{TRACE}-{attempt.span_id}-01"
    assert headers["tracestate"] == "vendor=abc"


def test_unsampled_requests_make_no_spans_but_failures_and_streams_are_followed(
        receiver: OtlpReceiver, make_gateway: Callable[..., GatewayServer],
        simulator: SimulatorServer) -> None:
    gw = traced(make_gateway, receiver, [{"name": "chat", "deployments": [
        {"url": simulator.url}]}], 0.0)
    key = gw.create_key()
    assert post(gw, key, CHAT).status_code == 200
    # Not sampled: the model server is told so, in a trace of the gateway's own.
    sent = simulator.simulator.requests[-1]["headers"]["traceparent"]
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-00", sent)

    # A refusal is kept: the identity stage's span says why.
    assert_openai_error(post(gw, "sk-wrong", CHAT, headers={
        "traceparent": f"00-{TRACE}-{PARENT}-00"}), 401)
    spans = spans_of(receiver, TRACE, 1)
    server = only(spans, "chat chat")
    assert server.status == "STATUS_CODE_ERROR"
    assert server.attributes["error.type"] == "invalid_api_key"
    # Unsampled requests skip the decision marks (cost); the error type says why.
    assert server.events == []
    assert spans == [server]  # no model was called: no attempt span
    # Only the kept trace was exported.
    assert {s.trace_id for s in receiver.spans} == {TRACE}

    # A sampled refusal: the identity stage's event says it refused.
    refused = "1af7651916cd43dd8448eb211c80319c"
    assert_openai_error(post(gw, "sk-wrong", CHAT, headers={
        "traceparent": f"00-{refused}-{PARENT}-01"}), 401)
    [server] = spans_of(receiver, refused, 1)
    [(name, attrs)] = server.events
    assert name == "ironhold.identity" and attrs["ironhold.refused"] == "invalid_api_key"

    # A sampled stream: finish reasons gathered from its chunks.
    other = "0af7651916cd43dd8448eb211c80319c"
    with httpx.stream("POST", gw.v1 + "/chat/completions", json={**CHAT, "stream": True},
                      headers={"Authorization": f"Bearer {key}",
                               "traceparent": f"00-{other}-{PARENT}-01"}) as streamed:
        assert streamed.status_code == 200
        assert b"[DONE]" in streamed.read()
    spans = spans_of(receiver, other, 2)
    server = only(spans, "chat chat")
    assert server.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert server.attributes["ironhold.stream"] is True
    [attempt] = [s for s in spans if s.kind == "SPAN_KIND_CLIENT"]
    assert attempt.attributes["ironhold.attempt.time_to_first_token_ms"] > 0


def test_retries_are_attempt_spans_and_errors_are_kept(
        receiver: OtlpReceiver, make_gateway: Callable[..., GatewayServer],
        make_simulator: Callable[..., SimulatorServer]) -> None:
    broken = make_simulator(faults=[{"kind": "status", "status": 500, "rate": 1.0}])
    fine = make_simulator()
    gw = traced(make_gateway, receiver, [{"name": "chat", "deployments": [
        {"name": "broken", "url": broken.url, "weight": 1000},
        {"name": "fine", "url": fine.url, "weight": 0.001}]}], 1.0)
    key = gw.create_key()
    response = post(gw, key, CHAT, headers={"traceparent": f"00-{TRACE}-{PARENT}-01"})
    assert response.status_code == 200
    spans = spans_of(receiver, TRACE, 3)
    attempts = sorted((s for s in spans if s.kind == "SPAN_KIND_CLIENT"),
                      key=lambda s: s.attributes["ironhold.attempt.number"])
    assert [(s.name, s.attributes["ironhold.attempt.kind"],
             s.attributes["ironhold.attempt.outcome"], s.status) for s in attempts] == [
        ("chat broken", "first", "bad_gateway", "STATUS_CODE_ERROR"),
        ("chat fine", "retry", "200", "STATUS_CODE_UNSET")]
    assert only(spans, "chat chat").attributes["ironhold.attempts"] == 2
    # Each model server saw its own attempt's span as parent.
    assert broken.simulator.requests[-1]["headers"]["traceparent"].split("-")[2] == \
        attempts[0].span_id
    assert fine.simulator.requests[-1]["headers"]["traceparent"].split("-")[2] == \
        attempts[1].span_id


def test_exemplars_name_kept_traces(receiver: OtlpReceiver,
                                    make_gateway: Callable[..., GatewayServer],
                                    simulator: SimulatorServer) -> None:
    gw = traced(make_gateway, receiver, [{"name": "chat", "deployments": [
        {"url": simulator.url}]}], 1.0)
    key = gw.create_key()
    assert post(gw, key, CHAT, headers={"traceparent": f"00-{TRACE}-{PARENT}-01"}
                ).status_code == 200
    open_metrics = httpx.get(gw.base_url + "/metrics",
                             headers={"Accept": "application/openmetrics-text"})
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert re.search(r'gen_ai_client_operation_duration_seconds_bucket\{.*\} 1\.0 # '
                     rf'\{{trace_id="{TRACE}"\}}', open_metrics.text), open_metrics.text
    plain = httpx.get(gw.base_url + "/metrics")
    assert plain.headers["content-type"].startswith("text/plain")
    assert "trace_id" not in plain.text


def test_no_endpoint_no_tracing(gateway: GatewayServer, simulator: SimulatorServer) -> None:
    assert gateway.gateway.tracer is None
    key = gateway.create_key()
    assert post(gateway, key, CHAT, headers={"traceparent": f"00-{TRACE}-{PARENT}-01"}
                ).status_code == 200
    assert "traceparent" not in simulator.simulator.requests[-1]["headers"]


@pytest.mark.parametrize(("header", "parsed"), [
    (f"00-{TRACE}-{PARENT}-01", (int(TRACE, 16), int(PARENT, 16), True)),
    (f"00-{TRACE}-{PARENT}-00", (int(TRACE, 16), int(PARENT, 16), False)),
    (f"00-{TRACE}-{PARENT}-03", (int(TRACE, 16), int(PARENT, 16), True)),
    # A later version may add fields; version 00 may not.
    (f"01-{TRACE}-{PARENT}-01-extra", (int(TRACE, 16), int(PARENT, 16), True)),
    (f"00-{TRACE}-{PARENT}-01-extra", None),
    (f"ff-{TRACE}-{PARENT}-01", None),
    (f"00-{'0' * 32}-{PARENT}-01", None),
    (f"00-{TRACE}-{'0' * 16}-01", None),
    (f"00-{TRACE.upper()}-{PARENT}-01", None),
    (f"00-{TRACE}-{PARENT}", None),
    ("", None), (None, None), ("x" * 10_000, None),
])
def test_traceparent_parsing(header: str | None, parsed: tuple[int, int, bool] | None) -> None:
    assert parse_traceparent(header) == parsed


def test_a_hostile_traceparent_or_tracestate_is_not_passed_on(
        receiver: OtlpReceiver, make_gateway: Callable[..., GatewayServer],
        simulator: SimulatorServer) -> None:
    gw = traced(make_gateway, receiver, [{"name": "chat", "deployments": [
        {"url": simulator.url}]}], 1.0)
    key = gw.create_key()
    for traceparent, tracestate in [("00-zz-yy-01", "a=b"),
                                    (f"00-{TRACE}-{PARENT}-01", "a=" + "b" * 600),
                                    (f"00-{TRACE}-{PARENT}-01",
                                     ",".join(f"k{i}=v" for i in range(40)))]:
        assert post(gw, key, CHAT, headers={"traceparent": traceparent,
                                            "tracestate": tracestate}).status_code == 200
        sent = simulator.simulator.requests[-1]["headers"]
        assert "tracestate" not in sent
        assert parse_traceparent(sent["traceparent"]) is not None


def test_the_ratio_decision_is_the_sdks() -> None:
    """The gateway decides sampling itself (no SDK call on the hot path); it must agree with
    the SDK's own ParentBased(TraceIdRatioBased) on fresh traces."""
    from ironhold.config.telemetry import TracesConfig
    from ironhold.core.exchange import Exchange, Operation
    from ironhold.telemetry.traces import Tracer

    ratio = 0.3
    tracer = Tracer(TracesConfig(otlp_endpoint="http://127.0.0.1:9", sample_ratio=ratio), "0")
    sdk = ParentBased(TraceIdRatioBased(ratio))
    agreed = kept = 0
    try:
        for _ in range(4000):
            exchange = Exchange("r", Operation.CHAT, "chat", {}, False)
            tracer.begin(exchange)
            assert exchange.trace is not None
            decision = sdk.should_sample(None, exchange.trace.trace_id, "x").decision
            agreed += (decision is Decision.RECORD_AND_SAMPLE) == exchange.trace.sampled
            kept += exchange.trace.sampled
    finally:
        tracer.close()
    assert agreed == 4000
    assert 0.25 < kept / 4000 < 0.35
    assert new_trace_id() != new_trace_id()


def test_kept_traces_are_capped_per_second() -> None:
    """An error storm, or clients marking every request sampled, cannot spend the core on
    spans: past ``max_per_second`` a kept trace is counted, not made."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from ironhold.config.telemetry import TracesConfig
    from ironhold.core.exchange import Exchange, Operation
    from ironhold.telemetry.traces import Tracer

    memory = InMemorySpanExporter()
    dropped: list[int] = []
    tracer = Tracer(TracesConfig(otlp_endpoint="http://127.0.0.1:9", sample_ratio=1.0,
                                 max_per_second=5), "0", exporter=memory,
                    dropped=lambda: dropped.append(1))
    made = 0
    try:
        for i in range(50):
            exchange = Exchange(f"r{i}", Operation.CHAT, "chat", {}, False)
            tracer.begin(exchange)
            exchange.outcome = "ok"
            made += tracer.finish(exchange, 200, "", exchange.started + 0.01, None) is not None
    finally:
        tracer.close()
    assert made == 5 and len(dropped) == 45
    assert len([s for s in memory.get_finished_spans() if s.name == "chat chat"]) == 5


def test_a_slow_request_is_kept_whatever_the_sampling(
        receiver: OtlpReceiver, make_gateway: Callable[..., GatewayServer],
        make_simulator: Callable[..., SimulatorServer]) -> None:
    slow = make_simulator(ttft={"ms": 150})
    gw = make_gateway([{"name": "chat", "deployments": [{"url": slow.url}]}],
                      telemetry={"traces": {"otlp_endpoint": receiver.endpoint,
                                            "sample_ratio": 0.0, "keep_slower_than": "100ms"}})
    key = gw.create_key()
    assert post(gw, key, CHAT, headers={"traceparent": f"00-{TRACE}-{PARENT}-00"}
                ).status_code == 200
    server = only(spans_of(receiver, TRACE, 2), "chat chat")
    assert server.status == "STATUS_CODE_UNSET"  # kept for being slow, not for failing
    assert (server.end_ns - server.start_ns) / 1e9 >= 0.1
