"""Shadow traffic: a copy of a share of a model group's requests goes to its shadow deployment,
off the client's path, and the two answers are compared.

The copy starts when the client's request reaches the router and runs as a task of its own:
the client's answer never waits for it, is never changed by it, and cannot fail because of it;
it is not charged to the client's limits or budget (it never passes the limits stage). At most
``max_in_flight`` copies run at once; past that a copy is skipped and counted, so a slow or
dead shadow cannot build up load or memory. When both sides have ended, the pair is compared:
latency and time to first token, errors, refusals, answer length, exact agreement (and, with
an embeddings group configured, how alike the two answers mean). Each pair is audited as a
record of its own kind (``shadow``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ironhold.config.changes import ShadowConfig
from ironhold.core.errors import IronholdError
from ironhold.core.events import Chunk, Event, StreamError
from ironhold.core.exchange import Exchange, Reply
from ironhold.core.ids import new_request_id
from ironhold.core.pipeline import Handler
from ironhold.routing.stats import nearest_rank
from ironhold.telemetry.answers import AnswerFacts
from ironhold.telemetry.metrics import Metrics

__all__ = ["Shadow", "ShadowStage", "Side"]

log = logging.getLogger("ironhold.shadow")

#: Sends a copy to the shadow deployment (one attempt: ``Router.mirror``).
Mirror = Callable[[Exchange], Awaitable[Reply]]
#: Pairs kept for the percentiles and rates shown (the newest).
_KEPT = 2000
#: Characters of each answer kept for the embedding comparison.
_TEXT = 2000


@dataclass(slots=True)
class Side:
    """One side of a pair: how its answer went."""

    started: float = field(default_factory=time.perf_counter)
    latency: float | None = None
    ttft: float | None = None
    error: str | None = None
    facts: AnswerFacts = field(default_factory=AnswerFacts)
    digest: Any = field(default_factory=hashlib.sha256)
    text: list[str] = field(default_factory=list)
    kept: int = 0

    def chunk(self, doc: dict[str, Any]) -> None:
        if self.ttft is None:
            self.ttft = time.perf_counter() - self.started
        self.facts.add_chunk(doc)
        choices = doc.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            delta = choices[0].get("delta")
            if isinstance(delta, dict):
                self._text(delta.get("content"))

    def whole(self, status: int, answer: dict[str, Any] | None) -> None:
        self.latency = time.perf_counter() - self.started
        if status >= 400 or answer is None:
            self.error = str(status)
            return
        self.facts = AnswerFacts.of_answer(answer)
        choices = answer.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            message = choices[0].get("message")
            if isinstance(message, dict):
                self._text(message.get("content"))
            else:
                self._text(choices[0].get("text"))

    def ended(self, error: str | None) -> None:
        self.latency = time.perf_counter() - self.started
        self.error = error
        self.facts.settle()

    def _text(self, part: object) -> None:
        if isinstance(part, str) and part:
            self.digest.update(part.encode())
            if self.kept < _TEXT:
                self.text.append(part[:_TEXT - self.kept])
                self.kept += len(self.text[-1])

    @property
    def done(self) -> bool:
        return self.latency is not None


class _Pair:
    """A client's request and its copy, compared when both have ended."""

    __slots__ = ("copy", "primary", "request_id", "shadow")

    def __init__(self, shadow: Shadow, request_id: str):
        self.shadow = shadow
        self.request_id = request_id
        self.primary = Side()
        self.copy = Side()

    def side_ended(self) -> None:
        if self.primary.done and self.copy.done:
            self.shadow.compared(self)


class Shadow:
    def __init__(self, group: str, deployment: str, config: ShadowConfig, metrics: Metrics,
                 mirror: Mirror, record: Callable[[dict[str, Any]], None] | None = None,
                 similarity: Callable[[str, str], Awaitable[float]] | None = None):
        self.group = group
        self.deployment = deployment
        self.config = config
        self._metrics = metrics
        #: The serving gateway's (``reconnect``), as are the two below.
        self.mirror = mirror
        self.record = record
        self.similarity = similarity
        self._tasks: set[asyncio.Task[None]] = set()
        self.pairs: deque[dict[str, Any]] = deque(maxlen=_KEPT)
        self.compared_total = 0
        self.skipped = 0

    def reconnect(self, mirror: Mirror, record: Callable[[dict[str, Any]], None] | None,
                  similarity: Callable[[str, str], Awaitable[float]] | None) -> None:
        """Send copies through a reloaded gateway's router (and record them through its
        audit log) from now on; the comparison so far goes on."""
        self.mirror, self.record, self.similarity = mirror, record, similarity

    def sampled(self) -> bool:
        return random.random() * 100 < self.config.percent

    def start(self, exchange: Exchange) -> _Pair | None:
        """Send the copy now (None: too many copies in flight; counted as skipped)."""
        if len(self._tasks) >= self.config.max_in_flight:
            self.skipped += 1
            self._metrics.shadow(self.group, self.deployment, "skipped")
            return None
        pair = _Pair(self, exchange.request_id)
        copy = Exchange(request_id=new_request_id(), operation=exchange.operation,
                        model=exchange.model, body=dict(exchange.body), stream=exchange.stream,
                        principal=exchange.principal, client_ip=exchange.client_ip,
                        config_version=exchange.config_version)
        task = asyncio.get_running_loop().create_task(self._run(copy, pair),
                                                      name=f"shadow:{self.group}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return pair

    async def _run(self, copy: Exchange, pair: _Pair) -> None:
        side = pair.copy
        error = None
        try:
            reply = await self.mirror(copy)
            if reply.events is None:
                side.whole(reply.status, reply.answer)
            else:
                try:
                    async for event in reply.events:
                        if type(event) is Chunk:
                            side.chunk(event.doc)
                        elif type(event) is StreamError:
                            error = event.error.code
                finally:
                    await reply.events.aclose()
                side.ended(error)
        except IronholdError as exc:
            side.ended(exc.code)
        except Exception:
            log.exception("a shadow copy failed", extra={"model": self.group})
            side.ended("internal_error")
        pair.side_ended()

    def compared(self, pair: _Pair) -> None:
        p, s = pair.primary, pair.copy
        agree = (p.error is None and s.error is None
                 and p.digest.digest() == s.digest.digest())
        row: dict[str, Any] = {
            "request_id": pair.request_id, "model": self.group, "deployment": self.deployment,
            "primary": _side_json(p), "shadow": _side_json(s), "exact_agreement": agree}
        self.pairs.append(row)
        self.compared_total += 1
        self._metrics.shadow(self.group, self.deployment,
                             "error" if s.error is not None else "agreed" if agree else
                             "differed")
        if self.similarity is not None and p.error is None and s.error is None and p.text \
                and s.text and not agree:
            task = asyncio.get_running_loop().create_task(self._similar(row, p, s))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif self.record is not None:
            self.record(row)

    async def _similar(self, row: dict[str, Any], p: Side, s: Side) -> None:
        assert self.similarity is not None
        try:
            row["similarity"] = round(await self.similarity("".join(p.text),
                                                             "".join(s.text)), 4)
        except Exception as exc:  # the comparison is a bonus: the pair is recorded anyway
            log.warning("shadow similarity failed", extra={"model": self.group,
                                                           "error": str(exc)[:200]})
        if self.record is not None:
            self.record(row)

    def summary(self) -> dict[str, Any]:
        """The comparison over the last pairs, as ``GET /admin/shadow`` shows it."""
        rows = list(self.pairs)
        out: dict[str, Any] = {
            "model": self.group, "deployment": self.deployment,
            "percent": self.config.percent, "pairs": self.compared_total,
            "window": len(rows), "skipped": self.skipped, "in_flight": len(self._tasks)}
        for side in ("primary", "shadow"):
            sides = [r[side] for r in rows]
            answered = [x for x in sides if x["error"] is None]
            out[side] = {
                "errors": len(sides) - len(answered),
                "refusals": sum(1 for x in answered if x["refused"]),
                "latency_ms": _percentiles([x["latency_ms"] for x in answered]),
                "ttft_ms": _percentiles([x["ttft_ms"] for x in answered
                                         if x["ttft_ms"] is not None]),
                "answer_chars_mean": round(sum(x["chars"] for x in answered)
                                           / len(answered), 1) if answered else None,
            }
        out["exact_agreement"] = (round(sum(r["exact_agreement"] for r in rows) / len(rows), 4)
                                  if rows else None)
        similar = [r["similarity"] for r in rows if "similarity" in r]
        out["similarity_mean"] = round(sum(similar) / len(similar), 4) if similar else None
        return out

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _side_json(side: Side) -> dict[str, Any]:
    return {"latency_ms": round((side.latency or 0.0) * 1000, 3),
            "ttft_ms": None if side.ttft is None else round(side.ttft * 1000, 3),
            "error": side.error, "refused": side.facts.refused, "chars": side.facts.chars}


def _percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {name: round(nearest_rank(ordered, q), 3)
            for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))}


class ShadowStage:
    """The pipeline's last stage before the router: admitted requests of a group with a
    shadow are copied (a share of them); the client's answer is watched for the comparison
    and passed on untouched."""

    def __init__(self, shadows: dict[str, Shadow]):
        self._shadows = shadows

    async def __call__(self, exchange: Exchange, next_: Handler) -> Reply:
        shadow = self._shadows.get(exchange.model)
        if shadow is None or not shadow.sampled():
            return await next_(exchange)
        pair = shadow.start(exchange)
        if pair is None:
            return await next_(exchange)
        try:
            reply = await next_(exchange)
        except IronholdError as exc:
            pair.primary.ended(exc.code)
            pair.side_ended()
            raise
        except BaseException:
            pair.primary.ended("cancelled")
            pair.side_ended()
            raise
        if reply.events is None:
            pair.primary.whole(reply.status, reply.answer)
            pair.side_ended()
        else:
            reply.observers.append(_PrimaryStream(pair))
        return reply


class _PrimaryStream:
    __slots__ = ("_pair",)

    def __init__(self, pair: _Pair):
        self._pair = pair

    def on_event(self, event: Event, data: bytes) -> None:
        if type(event) is Chunk:
            self._pair.primary.chunk(event.doc)

    async def on_end(self, outcome: str) -> None:
        self._pair.primary.ended(None if outcome == "ok" else outcome)
        self._pair.side_ended()
