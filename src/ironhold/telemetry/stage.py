"""The telemetry stage: GenAI metrics, one access-log line and (when tracing is on) the
request's spans, recorded when the reply is complete (for streams: when the stream ends or is
cut). It gives the request its trace ids on the way in, so every stage after it is traced."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ironhold.core.errors import IronholdError
from ironhold.core.events import Chunk, Event
from ironhold.core.exchange import Exchange, Reply
from ironhold.core.pipeline import Handler
from ironhold.telemetry.answers import AnswerFacts
from ironhold.telemetry.insight import Insight
from ironhold.telemetry.logs import access_line
from ironhold.telemetry.metrics import Metrics
from ironhold.telemetry.outcome import CallOutcome
from ironhold.telemetry.traces import Tracer

log = logging.getLogger("ironhold.telemetry")

#: Told of each answer of a model group in a rollout: the group, the deployment that
#: answered, whether it refused (the rollout's refusal gate).
RolloutAnswers = Callable[[str | None, str | None, bool], None]

#: The model label of a request for a name the gateway does not serve.
OTHER_MODEL = "_other"


class TelemetryStage:
    """Runs first, before identity, so refusals are measured too. Metric labels therefore
    come only from the server's own names: a model the gateway does not serve is counted as
    ``_other``, so no client (authenticated or not) can add a series to ``/metrics``."""

    def __init__(self, metrics: Metrics, models: frozenset[str], access_log: bool = True,
                 tracer: Tracer | None = None, insight: Insight | None = None,
                 rollout_answers: RolloutAnswers | None = None):
        self._metrics = metrics
        self._models = models
        self._access_log = access_log
        self._tracer = tracer
        self._insight = insight
        self._rollout_answers = rollout_answers
        #: Whether anything reads what the answers were (finish reasons, length...).
        self._facts = tracer is not None or insight is not None or rollout_answers is not None

    async def __call__(self, exchange: Exchange, next_: Handler) -> Reply:
        self._metrics.in_flight.inc()
        if self._tracer is not None:
            self._tracer.begin(exchange)
        try:
            reply = await next_(exchange)
        except IronholdError as exc:
            self.finish(exchange, error_type=exc.code, status=None, exc=exc)
            raise
        except BaseException as exc:
            self.finish(exchange, error_type="internal_error", status=None, exc=exc)
            raise
        if reply.events is not None:
            reply.observers.append(_Observed(exchange, self, self._facts))
            return reply
        facts = (AnswerFacts.of_answer(reply.answer)
                 if self._facts and reply.answer is not None else None)
        self.finish(exchange, error_type="" if reply.ok else str(reply.status),
                    status=reply.status, facts=facts)
        return reply

    def finish(self, exchange: Exchange, error_type: str, status: int | None,
               facts: AnswerFacts | None = None, exc: BaseException | None = None) -> None:
        """Record a request that has ended: exactly once per request."""
        self._metrics.in_flight.dec()
        now = time.perf_counter()
        exchange.outcome = error_type or "ok"
        trace_id = (self._tracer.finish(exchange, status, error_type, now, facts)
                    if self._tracer is not None else None)
        op = exchange.operation.gen_ai_name
        model = exchange.model if exchange.model in self._models else OTHER_MODEL
        latency = now - exchange.started
        self._metrics.operation(op, model, latency, error_type, trace_id)
        if exchange.first_token_at is not None and not error_type:
            ttft = exchange.first_token_at - exchange.started
            self._metrics.first_token(op, model, ttft, trace_id)
        if exchange.usage is not None:
            self._metrics.tokens(op, model, exchange.usage.prompt_tokens,
                                 exchange.usage.completion_tokens)
        if self._insight is not None:
            # The group that answered (a fallback's) is the one whose health this tells.
            watched = exchange.group or model
            try:
                self._insight.observe(CallOutcome.of(exchange, watched, status, error_type,
                                                     exc, latency, facts, trace_id),
                                      exchange.body)
            except Exception:  # watching a request is never worth failing it
                log.exception("observing a request failed",
                              extra={"request_id": exchange.request_id})
        if (self._rollout_answers is not None and exchange.rollout_side is not None
                and facts is not None and not error_type):
            self._rollout_answers(exchange.group, exchange.deployment, facts.refused)
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
    """Records a stream's metrics once, when it ends or is cut; gathers what the answer was
    as its chunks go by when something reads it."""

    __slots__ = ("_exchange", "_facts", "_stage")

    def __init__(self, exchange: Exchange, stage: TelemetryStage, facts: bool):
        self._exchange = exchange
        self._stage = stage
        self._facts = AnswerFacts() if facts else None

    def on_event(self, event: Event, data: bytes) -> None:
        if self._facts is not None and type(event) is Chunk:
            self._facts.add_chunk(event.doc)

    async def on_end(self, outcome: str) -> None:
        # A client that left is not an error of the gateway's (its status was sent: 200).
        error = "" if outcome in ("ok", "client_closed") else outcome
        if self._facts is not None:
            self._facts.settle()
        self._stage.finish(self._exchange, error_type=error, status=200, facts=self._facts)
