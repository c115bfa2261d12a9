"""The telemetry stage: GenAI metrics and one access-log line per request, recorded when the
reply is complete (for streams: when the stream ends or is cut)."""

from __future__ import annotations

import time

from ironhold.core.errors import IronholdError
from ironhold.core.events import Event
from ironhold.core.exchange import Exchange, Reply
from ironhold.core.pipeline import Handler
from ironhold.telemetry.logs import access_line
from ironhold.telemetry.metrics import Metrics

#: The model label of a request for a name the gateway does not serve.
OTHER_MODEL = "_other"


class TelemetryStage:
    """Runs first, before identity, so refusals are measured too. Metric labels therefore
    come only from the server's own names: a model the gateway does not serve is counted as
    ``_other``, so no client (authenticated or not) can add a series to ``/metrics``."""

    def __init__(self, metrics: Metrics, models: frozenset[str], access_log: bool = True):
        self._metrics = metrics
        self._models = models
        self._access_log = access_log

    async def __call__(self, exchange: Exchange, next_: Handler) -> Reply:
        self._metrics.in_flight.inc()
        try:
            reply = await next_(exchange)
        except IronholdError as exc:
            self.finish(exchange, error_type=exc.code, status=None)
            raise
        except BaseException:
            self.finish(exchange, error_type="internal_error", status=None)
            raise
        if reply.events is not None:
            reply.observers.append(_Observed(exchange, self))
            return reply
        self.finish(exchange, error_type="" if reply.ok else str(reply.status),
                    status=reply.status)
        return reply

    def finish(self, exchange: Exchange, error_type: str, status: int | None) -> None:
        """Record a request that has ended: exactly once per request."""
        self._metrics.in_flight.dec()
        now = time.perf_counter()
        op = exchange.operation.gen_ai_name
        model = exchange.model if exchange.model in self._models else OTHER_MODEL
        self._metrics.operation(op, model, now - exchange.started, error_type)
        if exchange.first_token_at is not None and not error_type:
            ttft = exchange.first_token_at - exchange.started
            self._metrics.first_token(op, model, ttft)
        if exchange.usage is not None:
            self._metrics.tokens(op, model, exchange.usage.prompt_tokens,
                                 exchange.usage.completion_tokens)
        exchange.outcome = error_type or "ok"
        if self._access_log:
            access_line({
                "request_id": exchange.request_id,
                "operation": op,
                "model": exchange.model,
                "deployment": exchange.deployment,
                "key_id": exchange.principal.key_id if exchange.principal else None,
                "stream": exchange.stream,
                "status": status,
                "outcome": exchange.outcome,
                "attempts": exchange.attempts,
                "latency_ms": round((now - exchange.started) * 1000, 3),
            })


class _Observed:
    """Records a stream's metrics once, when it ends or is cut."""

    __slots__ = ("_exchange", "_stage")

    def __init__(self, exchange: Exchange, stage: TelemetryStage):
        self._exchange = exchange
        self._stage = stage

    def on_event(self, event: Event, data: bytes) -> None:
        pass

    async def on_end(self, outcome: str) -> None:
        # A client that left is not an error of the gateway's (its status was sent: 200).
        error = "" if outcome in ("ok", "client_closed") else outcome
        self._stage.finish(self._exchange, error_type=error, status=200)
