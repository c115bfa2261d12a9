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
import random
import time
from collections.abc import Mapping

import orjson

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
from ironhold.core.exchange import Exchange, Reply
from ironhold.core.usage import StreamUsage
from ironhold.routing.answers import (
    as_openai_body,
    bounded_read,
    error_hint,
    fallback_reason,
    is_json,
    retry_after,
)
from ironhold.routing.deployment import Deployment
from ironhold.routing.group import ModelGroup, no_release
from ironhold.routing.streams import Relay, Released, first_chunk
from ironhold.telemetry.metrics import Metrics
from ironhold.upstream.transport import Deadlines, UpstreamRequest

log = logging.getLogger("ironhold.routing")

#: Upstream response headers worth passing to the client.
_PASS_HEADERS = ("retry-after", "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests")
#: Upstream answers that say the gateway is misconfigured (its credential, the upstream model
#: name or path), not that the client erred: never passed on as if they were the client's fault.
_MISCONFIGURED = {401: "refused the gateway's credentials", 403: "refused the gateway's access",
                  404: "does not know the model or path the gateway asked for"}
#: A Retry-After longer than this is not believed (a misbehaving server must not park a
#: deployment for a day).
_MAX_RETRY_AFTER = 300.0
#: Without a Retry-After, a 429 parks the deployment this long.
_DEFAULT_RETRY_AFTER = 1.0


class Router:
    def __init__(self, groups: Mapping[str, ModelGroup], metrics: Metrics,
                 rng: random.Random | None = None):
        self.groups = dict(groups)
        self._metrics = metrics
        self._rng = rng or random.Random()

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
        deadline = time.monotonic() + _total_timeout(exchange, primary)
        key_id = exchange.principal.key_id if exchange.principal else ""
        for index, group in enumerate(chain):
            has_next = index + 1 < len(chain)
            release = no_release if group.per_key_cap is None else \
                await group.admit_key(key_id, deadline - time.monotonic())
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
                if reply.stream is not None:
                    await reply.stream.aclose()
                release()
                self._fell_back(exchange, group, chain[index + 1], reason, "")
                continue
            if reply.stream is not None:
                reply.stream = Released(reply.stream, release)
            else:
                release()
            exchange.group = group.name
            reply.headers["x-ironhold-model"] = group.name
            return reply
        raise AssertionError("unreachable: the last group returns or raises")

    def _fell_back(self, exchange: Exchange, group: ModelGroup, fallback: ModelGroup,
                   reason: str, detail: str) -> None:
        self._metrics.fallback(group.name, fallback.name, reason)
        log.warning("falling back to another model group", extra={
            "request_id": exchange.request_id, "model": group.name,
            "fallback": fallback.name, "reason": reason, "detail": detail})

    # -- one group: attempts, retries, hedges ---------------------------------------------------

    async def _serve_group(self, exchange: Exchange, group: ModelGroup, deadline: float) -> Reply:
        group.budget.on_request()
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
            d.outstanding += 1
            exchange.attempts += 1
            # Each attempt's transport deadlines are the time left (see ``_request``), so no
            # extra timer is needed here.
            try:
                reply = await self._attempt(exchange, group, d, deadline)
            except UpstreamError as exc:
                group.released(d)
                failures += 1
                last_error = exc
            except BaseException:
                group.outlier.abandoned(d)
                group.released(d)
                raise
            else:
                exchange.deployment = d.name
                exchange.model_digest = d.digest
                reply.headers["x-ironhold-deployment"] = d.name
                return reply
            await self._may_retry(exchange, group, last_error, attempts, failures, deadline)

    async def _serve_hedged(self, exchange: Exchange, group: ModelGroup,
                            deadline: float) -> Reply:
        """Attempts run as tasks, so a hedge can race the first one; the first to reach the
        commit point wins and the rest are cancelled."""
        retries = group.policy.retries
        hedging = group.policy.hedging
        running: dict[asyncio.Task[Reply], tuple[Deployment, float, bool]] = {}
        tried: list[Deployment] = []
        attempts = 0
        failures = 0
        hedge_done = False
        last_error: IronholdError | None = None
        start_next = True
        try:
            while True:
                now = time.monotonic()
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
                        task = self._launch(exchange, group, d, deadline)
                        running[task] = (d, time.monotonic(), False)
                wait = deadline - now
                hedge_at = None
                if not hedge_done and len(running) == 1 and attempts < retries.attempts:
                    d, started, _ = next(iter(running.values()))
                    if d.recent.count >= hedging.min_samples:
                        hedge_at = started + max(hedging.min_delay, d.recent.value())
                        wait = min(wait, hedge_at - now)
                done, _ = await asyncio.wait(running, timeout=max(wait, 0.0),
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    now = time.monotonic()
                    if now >= deadline:
                        raise _deadline_passed(last_error, attempts)
                    if hedge_at is not None and now >= hedge_at:
                        hedge_done = True
                        self._hedge(exchange, group, tried, running, deadline)
                    continue
                winner: Reply | None = None
                for task in done:
                    d, _, is_hedge = running.pop(task)
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
                        reply.headers["x-ironhold-deployment"] = d.name
                        if is_hedge:
                            self._metrics.hedge(group.name, won=True)
                    elif reply.stream is not None:
                        await reply.stream.aclose()  # both answered at once: one is enough
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
                        if reply.stream is not None:
                            await reply.stream.aclose()

    async def _choose(self, exchange: Exchange, group: ModelGroup, tried: list[Deployment],
                      running: Mapping[asyncio.Task[Reply], tuple[Deployment, float, bool]],
                      deadline: float) -> Deployment | None:
        busy = [entry[0] for entry in running.values()]
        while True:
            d = group.pick(tried, busy, exchange.body)
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
            await group.wait_for_capacity(deadline - time.monotonic())

    def _launch(self, exchange: Exchange, group: ModelGroup, d: Deployment,
                deadline: float) -> asyncio.Task[Reply]:
        d.outstanding += 1
        exchange.attempts += 1
        task = asyncio.get_running_loop().create_task(
            self._attempt(exchange, group, d, deadline))

        # Bookkeeping that must happen even if the task is cancelled before it starts.
        def settle(task: asyncio.Task[Reply]) -> None:
            if task.cancelled():
                group.outlier.abandoned(d)
                group.released(d)
            elif task.exception() is not None:
                group.released(d)

        task.add_done_callback(settle)
        return task

    def _hedge(self, exchange: Exchange, group: ModelGroup, tried: list[Deployment],
               running: dict[asyncio.Task[Reply], tuple[Deployment, float, bool]],
               deadline: float) -> None:
        if not (group.hedge_budget.available() and group.budget.available()):
            self._metrics.no_budget(group.name, "hedge")
            return
        busy = [entry[0] for entry in running.values()]
        d = group.pick(tried, busy, exchange.body)
        if d is None:
            return
        group.hedge_budget.spend()
        group.budget.spend()
        self._metrics.hedge(group.name)
        tried.append(d)
        task = self._launch(exchange, group, d, deadline)
        running[task] = (d, time.monotonic(), True)

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
        if time.monotonic() + pause >= deadline:
            raise _deadline_passed(error, attempts)
        self._metrics.retry(group.name)
        if pause:
            await asyncio.sleep(pause)
        return True

    # -- one attempt ----------------------------------------------------------------------------

    async def _attempt(self, exchange: Exchange, group: ModelGroup, d: Deployment,
                       deadline: float) -> Reply:
        """One try, up to the commit point. Raises ``UpstreamError`` for anything worth trying
        elsewhere; keeps the deployment's statistics and outlier state."""
        started = time.monotonic()
        request = self._request(exchange, group, d, deadline, started)
        # A request that carries its own faults (an admin's header, a chaos key) is a test: its
        # outcomes must not throttle, eject or slow a deployment for every other caller.
        shared = not exchange.faults
        try:
            reply = await self._send(exchange, group, d, request)
        except UpstreamThrottledError as exc:
            wait = min(exc.retry_after if exc.retry_after is not None else _DEFAULT_RETRY_AFTER,
                       _MAX_RETRY_AFTER)
            if shared:
                d.throttled_until = max(d.throttled_until, time.monotonic() + wait)
            group.outlier.abandoned(d)
            self._failed(exchange, group, d, exc)
            raise
        except UpstreamError as exc:
            now = time.monotonic()
            if shared:
                # A failure makes the deployment look slow to peak-EWMA: it loses P2C contests.
                d.latency.observe(max(now - started, 4 * d.latency.current(now), 0.05), now)
                group.outlier.failure(d, exc.code)
            else:
                group.outlier.abandoned(d)
            self._failed(exchange, group, d, exc)
            raise
        now = time.monotonic()
        if not shared:
            group.outlier.abandoned(d)
        elif reply.status < 500:
            d.latency.observe(now - started, now)
            if reply.status < 400:
                d.recent.add(now - started)
            group.outlier.success(d)
        self._metrics.upstream_attempt(group.name, d.name, str(reply.status))
        if reply.stream is None:
            group.released(d)  # a stream's Relay releases the deployment when it is closed
        return reply

    def _request(self, exchange: Exchange, group: ModelGroup, d: Deployment, deadline: float,
                 now: float) -> UpstreamRequest:
        body = dict(exchange.body)
        body["model"] = d.upstream_model
        if exchange.stream:
            # Usage is asked for on every stream, so limits count what was delivered; the
            # Relay takes the usage event out again if the client did not ask for it.
            options = body.get("stream_options")
            body["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                      "include_usage": True}
        configured = group.deadlines
        remaining = deadline - now
        if remaining > configured.total - 0.05 and exchange.first_token_timeout is None:
            deadlines = configured  # the first attempt, as configured: one cached client timeout
        else:
            remaining = max(round(remaining, 2), 0.01)
            first_token = configured.first_token
            if exchange.first_token_timeout is not None:
                first_token = min(first_token, exchange.first_token_timeout)
            deadlines = Deadlines(connect=min(configured.connect, remaining),
                                  first_token=min(first_token, remaining), total=remaining)
        return UpstreamRequest(
            path=exchange.operation.upstream_path,
            body=orjson.dumps(body),
            stream=exchange.stream,
            deadlines=deadlines,
            headers={"X-Request-Id": exchange.request_id},
            faults=exchange.faults,
        )

    def _failed(self, exchange: Exchange, group: ModelGroup, d: Deployment,
                exc: UpstreamError) -> None:
        self._metrics.upstream_attempt(group.name, d.name, exc.code)
        log.warning("upstream attempt failed", extra={
            "request_id": exchange.request_id, "model": group.name,
            "deployment": d.name, "attempt": exchange.attempts,
            "error": exc.code, "detail": exc.message})

    async def _send(self, exchange: Exchange, group: ModelGroup, d: Deployment,
                    request: UpstreamRequest) -> Reply:
        response = await d.transport.send(request)
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
                body = await response.read()
                if status == 200 and not is_json(body):
                    raise BadGatewayError("the model server answered with a malformed body")
                return Reply(status=status, body=as_openai_body(status, body), headers=passed)
            chunks = response.chunks()
            first = await first_chunk(chunks, request.deadlines.first_token)
        except BaseException:
            response.close()
            raise
        exchange.first_token_at = time.perf_counter()
        return Reply(
            status=200,
            stream=Relay(first, chunks, response, d, group,
                         StreamUsage(exchange, hide_usage=not _asked_for_usage(exchange)),
                         shared=not exchange.faults),
            headers=passed,
            content_type="text/event-stream",
        )


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
                                                     or _DEFAULT_RETRY_AFTER)
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
