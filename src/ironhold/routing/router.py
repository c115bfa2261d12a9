"""The router: the pipeline's terminal handler, and the resilience engine.

For each request it walks the model group and then its fallbacks. Within a group:

- an attempt goes to a deployment picked by the group (balancer, outlier state, bulkheads);
- **commit point**: an attempt is done when the reply can be committed to the client (the whole
  body; for streams, the first chunk). Before that, failures (connect errors, 5xx, 429, first-
  token timeouts, broken bodies) are retried, on another deployment when there is one, with
  full-jitter exponential backoff, within ``retries.attempts`` and the group's retry budget.
  After it, nothing is retried: a stream that breaks ends with an error event.
- **hedging**: if the attempt has waited longer than a high percentile of that deployment's
  recent time to first byte, a copy goes to another deployment (budget allowing); the first to
  reach the commit point wins and the other is cancelled, its connection closed.
- **deadlines**: one total deadline covers every attempt and backoff; the first-token deadline
  bounds each attempt's wait for a stream's first chunk.
- **429s** are honoured: the deployment is not used again before its ``Retry-After``; when every
  deployment is throttled the client gets a fast 429 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable, Mapping

import orjson

from ironhold.core.codec import usage_in
from ironhold.core.errors import (
    BadGatewayError,
    IronholdError,
    ModelNotFoundError,
    RateLimitedError,
    UpstreamError,
    UpstreamThrottledError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from ironhold.core.events import Event
from ironhold.core.exchange import Exchange, Operation, Reply
from ironhold.core.usage import StreamUsage
from ironhold.routing.answers import (
    as_openai_body,
    bounded_read,
    error_hint,
    fallback_reason,
    retry_after,
)
from ironhold.routing.attempt import DEFAULT_RETRY_AFTER, Attempt
from ironhold.routing.deployment import Deployment
from ironhold.routing.group import ModelGroup, no_release
from ironhold.routing.stats import Clock
from ironhold.routing.streams import Relay, first_chunk
from ironhold.telemetry.metrics import Metrics
from ironhold.upstream.transport import Deadlines, UpstreamRequest

log = logging.getLogger("ironhold.routing")

#: The attempts of one request in flight at once (the first and its hedge), by their task.
Running = dict[asyncio.Task[Reply], Attempt]

#: A first attempt that starts within this of the request uses the configured deadlines as
#: they are (at most this much past the request's own deadline).
_DEADLINE_SLACK = 0.005
#: A timer within this of its due time is due (an event loop may wake a hair early).
_TIMER_SLACK = 1e-4
#: Upstream response headers worth passing to the client.
_PASS_HEADERS = ("retry-after", "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests")
#: Upstream answers that say the gateway is misconfigured (its credential, the upstream model
#: name or path), not that the client erred: never passed on as if they were the client's fault.
_MISCONFIGURED = {401: "refused the gateway's credentials", 403: "refused the gateway's access",
                  404: "does not know the model or path the gateway asked for"}


class Router:
    def __init__(self, groups: Mapping[str, ModelGroup], metrics: Metrics,
                 rng: random.Random | None = None, clock: Clock = time.monotonic):
        self.groups = dict(groups)
        self._metrics = metrics
        self._rng = rng or random.Random()
        self._clock = clock

    def group(self, name: str) -> ModelGroup:
        group = self.groups.get(name)
        if group is None:
            raise ModelNotFoundError(
                f"The model '{name}' does not exist or you do not have access to it.",
                param="model",
            )
        return group

    async def __call__(self, exchange: Exchange) -> Reply:
        primary = self.group(exchange.model)
        chain = [primary, *(self.groups[name] for name in primary.fallbacks)]
        deadline = self._clock() + _total_timeout(exchange, primary)
        key_id = exchange.principal.key_id if exchange.principal else ""
        for index, group in enumerate(chain):
            has_next = index + 1 < len(chain)
            release = no_release if group.per_key_cap is None else \
                await group.admit_key(key_id, deadline - self._clock())
            try:
                reply = await self._serve_group(exchange, group, deadline)
            except (UpstreamError, RateLimitedError) as exc:
                release()
                if has_next and primary.fallback_on.exhausted:
                    self._fell_back(exchange, group, chain[index + 1], "exhausted", exc.message)
                    continue
                raise
            except BaseException:
                release()
                raise
            reason = fallback_reason(reply, primary.fallback_on) if has_next else None
            if reason is not None:
                if reply.events is not None:
                    await reply.events.aclose()
                release()
                self._fell_back(exchange, group, chain[index + 1], reason, "")
                continue
            if reply.events is not None:
                reply.observers.append(_ReleasedAtEnd(release))
            else:
                release()
            exchange.group = group.name
            if reply.answer is not None:
                # The answer that goes out (not a lost hedge's, not a filtered one's) is the
                # request's usage.
                exchange.usage = usage_in(reply.answer)
            reply.headers["x-ironhold-model"] = group.name
            return reply
        raise AssertionError("unreachable: the last group returns or raises")

    async def mirror(self, exchange: Exchange, group: str, deployment: str) -> Reply:
        """One attempt of a shadow copy on ``deployment``: no retries, hedges or fallbacks
        (the copy is compared, not answered)."""
        g = self.group(group)
        d = next(d for d in g.deployments if d.name == deployment)
        attempt = self._new_attempt(exchange, g, d)
        return await self._attempt(exchange, attempt, self._clock() + _total_timeout(exchange, g))

    def _fell_back(self, exchange: Exchange, group: ModelGroup, fallback: ModelGroup,
                   reason: str, detail: str) -> None:
        self._metrics.fallback(group.name, fallback.name, reason)
        log.warning("falling back to another model group", extra={
            "request_id": exchange.request_id, "model": group.name,
            "fallback": fallback.name, "reason": reason, "detail": detail})

    # -- one group: attempts, retries, hedges ---------------------------------------------------

    async def _serve_group(self, exchange: Exchange, group: ModelGroup, deadline: float) -> Reply:
        group.budget.on_request()
        exchange.rollout_side = group.split.side(exchange) if group.split is not None else None
        if not group.policy.hedging.enabled:
            return await self._serve_in_turn(exchange, group, deadline)
        group.hedge_budget.on_request()
        return await self._serve_hedged(exchange, group, deadline)

    async def _serve_in_turn(self, exchange: Exchange, group: ModelGroup,
                             deadline: float) -> Reply:
        """Without hedging there is one attempt at a time: run it inline, no task to create
        and wait on (the hot path for most groups)."""
        tried: list[Deployment] = []
        attempts = failures = 0
        last_error: IronholdError | None = None
        while True:
            d = await self._choose(exchange, group, tried, {}, deadline)
            if d is None:
                raise _exhausted(last_error, attempts, group)
            attempts += 1
            tried.append(d)
            attempt = self._new_attempt(exchange, group, d)
            # Each attempt's transport deadlines are the time left (see ``_request``), so no
            # extra timer is needed here.
            try:
                reply = await self._attempt(exchange, attempt, deadline)
            except UpstreamError as exc:
                failures += 1
                last_error = exc
            else:
                exchange.deployment = d.name
                exchange.model_digest = d.digest
                exchange.deployment_version = d.version
                reply.headers["x-ironhold-deployment"] = d.name
                return reply
            await self._may_retry(exchange, group, last_error, attempts, failures, deadline)

    async def _serve_hedged(self, exchange: Exchange, group: ModelGroup,
                            deadline: float) -> Reply:
        """Attempts run as tasks, so a hedge can race the first one; the first to reach the
        commit point wins and the rest are cancelled."""
        retries = group.policy.retries
        hedging = group.policy.hedging
        running: Running = {}
        tried: list[Deployment] = []
        attempts = 0
        failures = 0
        hedge_done = False
        #: Hedge decisions taken for the attempt in flight (each refused by the budget).
        refused = 0
        last_error: IronholdError | None = None
        start_next = True
        try:
            while True:
                now = self._clock()
                if start_next:
                    start_next = False
                    d = await self._choose(exchange, group, tried, running, deadline)
                    if d is None:
                        # Every deployment is this request's own attempt in flight: wait.
                        if not running:
                            raise _exhausted(last_error, attempts, group)
                    else:
                        attempts += 1
                        tried.append(d)
                        self._launch(exchange, group, d, deadline, running)
                        refused = 0
                wait = deadline - now
                hedge_at = None
                if not hedge_done and len(running) == 1 and attempts < retries.attempts:
                    only = next(iter(running.values()))
                    d, started = only.deployment, only.started
                    if d.recent.count >= hedging.min_samples:
                        # A hedge the budget refused is tried again one hedge delay later:
                        # the budget refills as requests arrive, and the slow request that
                        # met it empty is the one that most needs its hedge.
                        delay = max(hedging.min_delay, d.recent.value())
                        hedge_at = started + delay * (refused + 1)
                        wait = min(wait, hedge_at - now)
                done, _ = await asyncio.wait(running, timeout=max(wait, 0.0),
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    # A timer may fire a hair early (clock resolution): due is due.
                    now = self._clock() + _TIMER_SLACK
                    if now >= deadline:
                        raise _deadline_passed(last_error, attempts)
                    if hedge_at is not None and now >= hedge_at:
                        hedge_done = self._hedge(exchange, group, tried, running, deadline,
                                                 first=refused == 0)
                        refused += not hedge_done
                    continue
                winner: Reply | None = None
                for task in done:
                    attempt = running.pop(task)
                    d = attempt.deployment
                    try:
                        reply = task.result()
                    except UpstreamError as exc:
                        failures += 1
                        last_error = exc
                        continue
                    if winner is None:
                        winner = reply
                        exchange.deployment = d.name
                        exchange.model_digest = d.digest
                        exchange.deployment_version = d.version
                        reply.headers["x-ironhold-deployment"] = d.name
                        if attempt.hedge:
                            self._metrics.hedge(group.name, won=True)
                    elif reply.events is not None:
                        await reply.events.aclose()  # both answered at once: one is enough
                if winner is not None:
                    return winner
                if running:
                    continue  # a hedge (or the hedged attempt) is still going
                start_next = await self._may_retry(exchange, group, last_error, attempts,
                                                   failures, deadline)
        finally:
            if running:
                for task in running:
                    task.cancel()
                # The losers close their connections as they unwind.
                await asyncio.gather(*running, return_exceptions=True)
                for task in running:
                    if not task.cancelled() and task.exception() is None:
                        reply = task.result()
                        if reply.events is not None:
                            await reply.events.aclose()

    async def _choose(self, exchange: Exchange, group: ModelGroup, tried: list[Deployment],
                      running: Running, deadline: float) -> Deployment | None:
        busy = [attempt.deployment for attempt in running.values()]
        while True:
            d = group.pick(tried, busy, exchange.body, exchange.rollout_side)
            if d is not None:
                return d
            throttled = group.throttled_for()
            if throttled is not None:
                group.metrics.shed(group.name, "upstream_throttled")
                raise RateLimitedError(
                    f"every deployment of '{group.name}' is rate limited; retry after "
                    f"{throttled:.1f}s", retry_after=throttled)
            if busy or not group.any_full():
                return None
            await group.wait_for_capacity(deadline - self._clock())

    def _launch(self, exchange: Exchange, group: ModelGroup, d: Deployment, deadline: float,
                running: Running, hedge: bool = False) -> None:
        """Start an attempt on ``d`` as a task of its own, added to ``running``."""
        attempt = self._new_attempt(exchange, group, d, hedge)
        task = asyncio.get_running_loop().create_task(self._attempt(exchange, attempt, deadline))
        # A task cancelled before it starts never runs the attempt's own clean-up.
        task.add_done_callback(lambda t: attempt.release() if t.cancelled() else None)
        running[task] = attempt

    def _hedge(self, exchange: Exchange, group: ModelGroup, tried: list[Deployment],
               running: Running, deadline: float, first: bool) -> bool:
        """Send a hedge if the budget and a deployment allow; True if it was sent. A refusal
        is counted once a request (``first``), however often it is tried again."""
        if not (group.hedge_budget.available() and group.budget.available()):
            if first:
                self._metrics.no_budget(group.name, "hedge")
            return False
        busy = [attempt.deployment for attempt in running.values()]
        d = group.pick(tried, busy, exchange.body, exchange.rollout_side)
        if d is None:
            return False
        group.hedge_budget.spend()
        group.budget.spend()
        self._metrics.hedge(group.name)
        tried.append(d)
        self._launch(exchange, group, d, deadline, running, hedge=True)
        return True

    async def _may_retry(self, exchange: Exchange, group: ModelGroup,
                         error: IronholdError | None, attempts: int, failures: int,
                         deadline: float) -> bool:
        """After a failed attempt with nothing else in flight: back off and retry, or raise."""
        if attempts >= group.policy.retries.attempts:
            raise _exhausted(error, attempts, group)
        # A request carrying its own faults retries outside the shared budget: its failures
        # were injected (no upstream was loaded), and spending the budget on them would deny
        # other callers their retries. ``retries.attempts`` still bounds it.
        if not exchange.faults and not group.budget.try_spend():
            self._metrics.no_budget(group.name, "retry")
            raise _exhausted(error, attempts, group)
        retries = group.policy.retries
        ceiling = min(retries.backoff_cap, retries.backoff_base * 2 ** (failures - 1))
        pause = self._rng.uniform(0, ceiling)
        if self._clock() + pause >= deadline:
            raise _deadline_passed(error, attempts)
        self._metrics.retry(group.name)
        if pause:
            await asyncio.sleep(pause)
        return True

    # -- one attempt ----------------------------------------------------------------------------

    def _new_attempt(self, exchange: Exchange, group: ModelGroup, d: Deployment,
                     hedge: bool = False) -> Attempt:
        exchange.attempts += 1
        trace = exchange.trace
        record = (trace.attempt(d.name, exchange.attempts, hedge) if trace is not None
                  else None)
        return Attempt(group, d, shared=not exchange.faults, clock=self._clock, hedge=hedge,
                       record=record)

    async def _attempt(self, exchange: Exchange, attempt: Attempt, deadline: float) -> Reply:
        """One try, up to the commit point. Raises ``UpstreamError`` for anything worth trying
        elsewhere. A streamed reply owns the attempt from here (its ``Relay`` releases it);
        otherwise the attempt is released before this returns, whatever happened."""
        try:
            request = self._request(exchange, attempt, deadline)
            reply = await self._send(exchange, attempt, request)
        except UpstreamError as exc:
            attempt.failed(exc, exchange.request_id, exchange.attempts)
            attempt.release()
            raise
        except BaseException:
            attempt.release()  # cancelled (a lost hedge, the client left): no outcome
            raise
        attempt.answered(reply.status)
        if reply.events is None:
            attempt.release()
        return reply

    def _request(self, exchange: Exchange, attempt: Attempt, deadline: float) -> UpstreamRequest:
        group, d = attempt.group, attempt.deployment
        body = dict(exchange.body)
        body["model"] = d.upstream_model
        if d.default_max_tokens is not None and exchange.operation is not Operation.EMBEDDING \
                and body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
            body["max_tokens"] = d.default_max_tokens
        if exchange.stream:
            # Usage is asked for on every stream, so limits count what was delivered; the
            # Relay takes the usage event out again if the client did not ask for it.
            options = body.get("stream_options")
            body["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                      "include_usage": True}
        configured = group.deadlines
        remaining = deadline - attempt.started
        if (exchange.attempts == 1 and configured.total - remaining < _DEADLINE_SLACK
                and exchange.first_token_timeout is None):
            deadlines = configured  # the first attempt, as configured: one cached client timeout
        else:
            # Rounded down (to share cached client timeouts), so no attempt outlives the
            # request's deadline.
            remaining = max(math.floor(remaining * 100) / 100, 0.01)
            first_token = configured.first_token
            if exchange.first_token_timeout is not None:
                first_token = min(first_token, exchange.first_token_timeout)
            deadlines = Deadlines(connect=min(configured.connect, remaining),
                                  first_token=min(first_token, remaining), total=remaining)
        headers = {"X-Request-Id": exchange.request_id}
        if exchange.trace is not None and attempt.record is not None:
            headers.update(exchange.trace.propagated(attempt.record.span_id))
        return UpstreamRequest(
            path=exchange.operation.upstream_path,
            body=orjson.dumps(body),
            stream=exchange.stream,
            deadlines=deadlines,
            headers=headers,
            faults=exchange.faults,
        )

    async def _send(self, exchange: Exchange, attempt: Attempt,
                    request: UpstreamRequest) -> Reply:
        response = await attempt.deployment.transport.send(request)
        try:
            status = response.status
            if status == 429:
                detail = await bounded_read(response)
                raise UpstreamThrottledError(
                    f"the model server is rate limiting (429){error_hint(detail)}",
                    retry_after=retry_after(response.headers.get("retry-after")), body=detail)
            if status >= 500 or status in _MISCONFIGURED:
                detail = await bounded_read(response)
                what = _MISCONFIGURED.get(status, "answered")
                raise BadGatewayError(
                    f"the model server {what} ({status}){error_hint(detail)}"
                )
            passed = {h: response.headers[h] for h in _PASS_HEADERS if h in response.headers}
            is_sse = response.headers.get("content-type", "").startswith("text/event-stream")
            # A server that ignored "stream" and answered whole is passed on whole, as JSON.
            if not exchange.stream or status != 200 or not is_sse:
                return _whole(status, await response.read(), passed)
            chunks = response.chunks()
            first = await first_chunk(chunks, request.deadlines.first_token)
        except BaseException:
            response.close()
            raise
        exchange.first_token_at = time.perf_counter()
        usage = StreamUsage(exchange, hide_usage=not _asked_for_usage(exchange))
        return Reply(status=200, events=Relay(first, chunks, response, attempt, usage),
                     headers=passed)


class _ReleasedAtEnd:
    """Gives the per-key bulkhead slot back when the stream ends."""

    __slots__ = ("_release",)

    def __init__(self, release: Callable[[], None]):
        self._release = release

    def on_event(self, event: Event, data: bytes) -> None:
        pass

    async def on_end(self, outcome: str) -> None:
        self._release()


def _whole(status: int, body: bytes, headers: dict[str, str]) -> Reply:
    """A whole answer, decoded once for every stage."""
    if status != 200:
        return Reply(status=status, body=as_openai_body(status, body), headers=headers)
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadGatewayError("the model server answered with a malformed body") from None
    if not isinstance(answer, dict):
        return Reply(status=status, body=body, headers=headers)
    return Reply(status=status, body=body, answer=answer, headers=headers)


def _asked_for_usage(exchange: Exchange) -> bool:
    options = exchange.body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _total_timeout(exchange: Exchange, group: ModelGroup) -> float:
    configured = group.policy.timeout.total
    if exchange.timeout is not None:
        return min(configured, exchange.timeout)
    return configured


def _exhausted(last_error: IronholdError | None, attempts: int,
               group: ModelGroup) -> IronholdError:
    plural = "s" if attempts != 1 else ""
    if isinstance(last_error, UpstreamThrottledError):
        wait = group.throttled_for()
        retry_after = wait if wait is not None else (last_error.retry_after
                                                     or DEFAULT_RETRY_AFTER)
        group.metrics.shed(group.name, "upstream_throttled")
        return RateLimitedError(f"{last_error.message} (after {attempts} attempt{plural})",
                                retry_after=retry_after)
    if isinstance(last_error, UpstreamTimeoutError | BadGatewayError):
        return type(last_error)(f"{last_error.message} (after {attempts} attempt{plural})")
    reason = last_error.message if last_error else "no deployment is available"
    return UpstreamUnavailableError(f"all deployments failed: {reason}")


def _deadline_passed(last_error: IronholdError | None, attempts: int) -> UpstreamTimeoutError:
    plural = "s" if attempts != 1 else ""
    why = f"; last error: {last_error.message}" if last_error else ""
    return UpstreamTimeoutError(
        f"the request's deadline passed after {attempts} attempt{plural}{why}")
