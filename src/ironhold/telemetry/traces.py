"""Traces: one OpenTelemetry server span per request (GenAI semantic conventions plus the
gateway's own ``ironhold.*`` attributes; each decision stage an event on it), and a client span
per upstream attempt, exported over OTLP/HTTP by the SDK's batch processor (its own thread).

The spans are made when the request has ended, from the ``core.trace`` records taken along the
way, and only for the requests that are kept: those sampled at the start (parent-based: a
client's ``traceparent`` decides; otherwise ``sample_ratio`` of trace ids, the same arithmetic
as the SDK's ``TraceIdRatioBased``), and every failed or slow one. A request that is not kept
costs its ids and a few small records, no SDK call. The ids the model server was sent in
``traceparent`` are the spans' own: the SDK is handed them through ``_PresetIds``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)
from opentelemetry.util.types import AttributeValue

from ironhold.core.errors import IronholdError
from ironhold.core.exchange import Exchange, Reply
from ironhold.core.pipeline import Handler, Stage
from ironhold.core.trace import StageMark, TraceContext, new_span_id, new_trace_id

if TYPE_CHECKING:
    from ironhold.config.telemetry import TracesConfig
    from ironhold.telemetry.answers import AnswerFacts

__all__ = ["SampledBranch", "TracedStage", "Tracer", "parse_traceparent", "routing"]

log = logging.getLogger("ironhold.telemetry")

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
#: W3C: at most 32 list members, and a vendor may drop a tracestate over 512 characters.
_TRACESTATE = re.compile(r"[\x20-\x2b\x2d-\x7e]*(?:,[\x20-\x2b\x2d-\x7e]*){0,31}")
_TRACESTATE_MAX = 512
#: ``TraceIdRatioBased`` compares the trace id's low 64 bits with ratio * 2**64.
_LOW_64 = (1 << 64) - 1


def parse_traceparent(header: str | None) -> tuple[int, int, bool] | None:
    """``(trace id, parent span id, sampled)`` from a W3C ``traceparent``, or None if it is
    missing or not valid (then the request starts a trace of its own)."""
    if not header or len(header) > 256:
        return None
    match = _TRACEPARENT.fullmatch(header.strip())
    if match is None:
        return None
    version, trace_hex, parent_hex, flags_hex, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    trace_id, parent_id = int(trace_hex, 16), int(parent_hex, 16)
    if not trace_id or not parent_id:
        return None
    return trace_id, parent_id, bool(int(flags_hex, 16) & 1)


class _PresetIds(IdGenerator):
    """Gives the SDK the ids already chosen (and already sent upstream) for the next span.
    Spans are made synchronously, one at a time, so setting them just before is safe."""

    def __init__(self) -> None:
        self.trace_id = 0
        self.span_id = 0

    def generate_trace_id(self) -> int:
        return self.trace_id or new_trace_id()

    def generate_span_id(self) -> int:
        span_id, self.span_id = self.span_id, 0
        return span_id or new_span_id()


class Tracer:
    def __init__(self, config: TracesConfig, service_version: str,
                 exporter: SpanExporter | None = None,
                 dropped: Callable[[], None] | None = None):
        self._bound = round(config.sample_ratio * (_LOW_64 + 1))
        self._slow = config.keep_slower_than
        self._keep_errors = config.keep_errors
        self._ids = _PresetIds()
        resource = Resource.create({"service.name": config.service_name,
                                    "service.version": service_version})
        self._provider = TracerProvider(resource=resource, sampler=ALWAYS_ON,
                                        id_generator=self._ids, shutdown_on_exit=False)
        self._cap = config.max_per_second
        self._allowance = self._cap or 0.0
        self._refilled = time.monotonic()
        self._dropped = dropped
        self._provider.add_span_processor(BatchSpanProcessor(
            exporter or OTLPSpanExporter(endpoint=config.traces_url, timeout=10),
            max_queue_size=8192, max_export_batch_size=512, schedule_delay_millis=1000))
        self._tracer = self._provider.get_tracer("ironhold")

    # -- while the request runs -----------------------------------------------------------

    def begin(self, exchange: Exchange) -> None:
        """Give the request its trace ids and sampling decision."""
        parent = parse_traceparent(exchange.traceparent)
        if parent is not None:
            trace_id, parent_id, sampled = parent
            tracestate = exchange.tracestate
            if tracestate is not None and (len(tracestate) > _TRACESTATE_MAX
                                           or not _TRACESTATE.fullmatch(tracestate)):
                tracestate = None
            exchange.trace = TraceContext(trace_id, new_span_id(), parent_id, sampled,
                                          tracestate)
            return
        trace_id = new_trace_id()
        exchange.trace = TraceContext(trace_id, new_span_id(), None,
                                      (trace_id & _LOW_64) < self._bound)

    def kept(self, trace: TraceContext, seconds: float, error_type: str) -> bool:
        return (trace.sampled or (self._keep_errors and bool(error_type))
                or seconds >= self._slow)

    # -- when it has ended ----------------------------------------------------------------

    def finish(self, exchange: Exchange, status: int | None, error_type: str,
               ended: float, facts: AnswerFacts | None) -> str | None:
        """If the request is kept, its spans are made once the answer has gone out (the next
        turn of the event loop, not on the request's time); returns its trace id (hex)."""
        trace = exchange.trace
        if trace is None or not self.kept(trace, ended - exchange.started, error_type):
            return None
        if not self._allowed():
            if self._dropped is not None:
                self._dropped()
            return None
        try:
            asyncio.get_running_loop().call_soon(self._make, exchange, trace, status,
                                                 error_type, ended, facts)
        except RuntimeError:  # no loop (a synchronous caller): now
            self._make(exchange, trace, status, error_type, ended, facts)
        return f"{trace.trace_id:032x}"

    def _allowed(self) -> bool:
        """A token bucket of ``max_per_second`` kept traces (a second's worth of burst)."""
        if self._cap is None:
            return True
        now = time.monotonic()
        self._allowance = min(self._cap, self._allowance + (now - self._refilled) * self._cap)
        self._refilled = now
        if self._allowance < 1:
            return False
        self._allowance -= 1
        return True

    def _make(self, exchange: Exchange, trace: TraceContext, status: int | None,
              error_type: str, ended: float, facts: AnswerFacts | None) -> None:
        try:
            self._spans(exchange, trace, status, error_type, ended, facts)
        except Exception:  # a trace is never worth a request
            log.exception("making a request's spans failed",
                          extra={"request_id": exchange.request_id})

    def _spans(self, exchange: Exchange, trace: TraceContext, status: int | None,
               error_type: str, ended: float, facts: AnswerFacts | None) -> None:
        parent: Context | None = None
        if trace.parent_id is not None:
            state = TraceState.from_header([trace.tracestate]) if trace.tracestate else None
            parent = set_span_in_context(NonRecordingSpan(SpanContext(
                trace.trace_id, trace.parent_id, is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED if trace.sampled else 0),
                trace_state=state)))
        op = exchange.operation.gen_ai_name
        self._ids.trace_id, self._ids.span_id = trace.trace_id, trace.span_id
        server = self._tracer.start_span(
            f"{op} {exchange.model}", context=parent, kind=SpanKind.SERVER,
            start_time=trace.ns(exchange.started),
            attributes=self._request_attributes(exchange, status, error_type, facts))
        self._ids.trace_id = 0
        inside = set_span_in_context(server)
        self._stage_events(server, trace, ended)
        for record in trace.attempts:
            self._ids.span_id = record.span_id
            attrs: dict[str, AttributeValue] = {
                "gen_ai.operation.name": op,
                "gen_ai.request.model": exchange.group or exchange.model,
                "ironhold.deployment": record.deployment,
                "ironhold.attempt.number": record.number,
                "ironhold.attempt.kind": record.kind,
                "ironhold.attempt.outcome": record.outcome or "cancelled",
            }
            if record.answered_at is not None:
                # A stream's first chunk is its first token; a whole answer's, all of it.
                first = round((record.answered_at - record.started) * 1000, 3)
                attrs["ironhold.attempt.first_byte_ms"] = first
                if exchange.stream:
                    attrs["ironhold.attempt.time_to_first_token_ms"] = first
            span = self._tracer.start_span(
                f"{op} {record.deployment}", context=inside, kind=SpanKind.CLIENT,
                start_time=trace.ns(record.started), attributes=attrs)
            if not record.outcome.isdigit() or int(record.outcome) >= 500 \
                    or record.outcome.startswith("stream_"):
                span.set_status(Status(StatusCode.ERROR, record.outcome or "cancelled"))
            span.end(trace.ns(record.ended if record.ended is not None else ended))
        for note in exchange.guard:
            server.add_event("ironhold.guard", _clean({
                "scanner": note.scanner, "action": note.action, "where": note.where,
                "category": note.category, "detail": note.detail, "error": note.error}))
        if error_type:
            server.set_status(Status(StatusCode.ERROR, error_type))
        server.end(trace.ns(ended))

    @staticmethod
    def _stage_events(server: Span, trace: TraceContext, ended: float) -> None:
        """Each decision as an event on the server span (far cheaper than a span each): when
        it began, how long it took (until the next began), and what it refused."""
        marks = trace.marks
        first_attempt = trace.attempts[0].started if trace.attempts else ended
        for i, mark in enumerate(marks):
            until = marks[i + 1].started if i + 1 < len(marks) else min(first_attempt, ended)
            if mark.refused:
                until = ended
            attrs: dict[str, AttributeValue] = {
                "ironhold.duration_ms": round(max(until - mark.started, 0.0) * 1000, 3)}
            if mark.refused:
                attrs["ironhold.refused"] = mark.refused
            server.add_event(f"ironhold.{mark.stage}", attrs, trace.ns(mark.started))

    def _request_attributes(self, exchange: Exchange, status: int | None,
                            error_type: str,
                            facts: AnswerFacts | None) -> dict[str, AttributeValue]:
        body = exchange.body
        a: dict[str, AttributeValue] = {
            "gen_ai.operation.name": exchange.operation.gen_ai_name,
            "gen_ai.request.model": exchange.model[:256],
            "http.request.method": "POST",
            "http.route": f"/v1{exchange.operation.upstream_path}",
            "ironhold.request_id": exchange.request_id,
            "ironhold.stream": exchange.stream,
            "ironhold.attempts": exchange.attempts,
            "ironhold.outcome": exchange.outcome,
            "ironhold.config.version": exchange.config_version,
        }
        for key, attr in _REQUEST_NUMBERS:
            value = body.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                a[attr] = value
        if status is not None:
            a["http.response.status_code"] = status
        if error_type:
            a["error.type"] = error_type
        if exchange.deployment is not None:
            a["ironhold.deployment"] = exchange.deployment
            if exchange.deployment_version is not None:
                a["ironhold.deployment.version"] = exchange.deployment_version
            if exchange.model_digest is not None:
                a["ironhold.model.digest"] = exchange.model_digest
        if exchange.usage is not None:
            a["gen_ai.usage.input_tokens"] = exchange.usage.prompt_tokens
            a["gen_ai.usage.output_tokens"] = exchange.usage.completion_tokens
        if facts is not None:
            if facts.response_model is not None:
                a["gen_ai.response.model"] = facts.response_model
            if facts.response_id is not None:
                a["gen_ai.response.id"] = facts.response_id
            if facts.finish_reasons:
                a["gen_ai.response.finish_reasons"] = facts.finish_reasons
        principal = exchange.principal
        if principal is not None:
            a["ironhold.principal.id"] = principal.id
            a["ironhold.principal.kind"] = str(principal.kind)
            if principal.tenant is not None:
                a["ironhold.tenant"] = principal.tenant
        policy = exchange.policy
        if policy is not None:
            a["ironhold.policy.decision"] = "allow" if policy.allowed else "deny"
            a["ironhold.policy.ids"] = list(policy.policies)
        limits = exchange.limits
        if limits is not None:
            a["ironhold.limits.outcome"] = ("allowed" if limits.allowed
                                            else f"refused:{limits.refused_by}")
        elif exchange.principal is not None:
            a["ironhold.limits.outcome"] = "unlimited"  # no limit applies to this caller
        if exchange.guard:
            a["ironhold.guard.verdicts"] = _verdicts(exchange)
        if exchange.audit_seq is not None:
            a["ironhold.audit.leaf_index"] = exchange.audit_seq
        if exchange.cost_micros is not None:
            a["ironhold.cost_micros"] = exchange.cost_micros
        return a

    def close(self) -> None:
        """Export what is queued, then stop (blocking: call it off the event loop)."""
        self._provider.shutdown()


_REQUEST_NUMBERS = (
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("max_completion_tokens", "gen_ai.request.max_tokens"),
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
    ("presence_penalty", "gen_ai.request.presence_penalty"),
    ("frequency_penalty", "gen_ai.request.frequency_penalty"),
    ("seed", "gen_ai.request.seed"),
    ("n", "gen_ai.request.choice.count"),
)


def _verdicts(exchange: Exchange) -> Sequence[str]:
    return [f"{n.scanner}:{n.action}" + (f":{n.category}" if n.category else "")
            for n in exchange.guard[:32]]


def _clean(attrs: dict[str, str]) -> dict[str, AttributeValue]:
    return {k: v for k, v in attrs.items() if v}



class TracedStage:
    """A decision stage (identity, policy, limits, guard) whose start, and refusal, a traced
    request records: its span runs from there to where the next stage begins."""

    __slots__ = ("_stage", "name")

    def __init__(self, name: str, stage: Stage):
        self.name = name
        self._stage = stage

    async def __call__(self, exchange: Exchange, next_: Handler) -> Reply:
        trace = exchange.trace
        if trace is None:
            return await self._stage(exchange, next_)
        mark = StageMark(self.name, time.perf_counter())
        trace.marks.append(mark)
        marks = len(trace.marks)
        try:
            return await self._stage(exchange, next_)
        except IronholdError as exc:
            if len(trace.marks) == marks:  # no later stage began: this one refused
                mark.refused = exc.code
            raise


class SampledBranch:
    """Sends a sampled request down ``marked`` (the decision stages wrapped in ``TracedStage``)
    and every other request on down the bare ones: an unsampled request pays for no marks
    (one it keeps, failed or slow, has its spans without the decisions' events)."""

    __slots__ = ("_marked",)

    def __init__(self, marked: Handler):
        self._marked = marked

    async def __call__(self, exchange: Exchange, next_: Handler) -> Reply:
        trace = exchange.trace
        if trace is not None and trace.sampled:
            return await self._marked(exchange)
        return await next_(exchange)


async def routing(exchange: Exchange, next_: Handler) -> Reply:
    """The last traced stage: marks where routing (choosing, waiting, attempts) begins."""
    return await next_(exchange)
