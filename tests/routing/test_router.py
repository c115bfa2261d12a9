"""The router's resilience semantics as unit tests: the real router, groups and attempts built by
the composition root, over in-memory transports and a virtual clock (``looptime``'s event loop,
whose time jumps ahead whenever every task waits), so retries, budgets, backoff, hedges,
ejection, bulkheads and deadlines are exact and take milliseconds. The same behaviours are also
tested against real servers (``test_resilience.py``).

looptime's pytest plugin is off (``-p no:looptime_plugin`` in pyproject.toml): with
pytest-asyncio 1.5 it left an event loop unclosed after ordinary async tests. Each test here
runs on a looptime loop of its own instead (``virtual_clock``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import looptime
import pytest

from ironhold.bootstrap import Gateway, build_gateway
from ironhold.config.schema import DeploymentConfig
from ironhold.core.errors import (
    BadGatewayError,
    OverloadedError,
    UpstreamError,
    UpstreamTimeoutError,
)
from ironhold.core.events import Chunk, Done, Event, StreamError
from ironhold.core.exchange import Exchange, Operation, Reply
from ironhold.routing.group import ModelGroup
from ironhold.upstream.mock import MockResponse, MockTransport, chat_answer, chat_stream
from ironhold.upstream.transport import UpstreamRequest
from tests.servers import gateway_config

Answer = Callable[[UpstreamRequest], MockResponse]


class Upstreams:
    """One mock transport a deployment, answering with what the test sets for it."""

    def __init__(self, **answers: Answer):
        self.answers = answers
        self.transports: dict[str, MockTransport] = {}

    def factory(self, base_url: str, dc: DeploymentConfig) -> MockTransport:
        name = base_url.rsplit("/", 1)[-1]
        transport = MockTransport(lambda request: self.answers[name](request))
        self.transports[name] = transport
        return transport

    def sent(self, name: str) -> int:
        return len(self.transports[name].requests)


def fail(status: int = 503) -> Answer:
    return lambda request: MockResponse(status=status, body=b'{"error": {"message": "down"}}')


def raising(exc: Exception) -> Answer:
    def answer(request: UpstreamRequest) -> MockResponse:
        raise exc
    return answer


def fine(delay: float = 0.0) -> Answer:
    return lambda request: chat_answer(delay=delay)


class Routers:
    """Builds gateways over mock transports on the running (virtual) loop's clock."""

    def __init__(self, tmp_path: Path):
        self._tmp = tmp_path
        self._made: list[Gateway] = []

    def __call__(self, upstreams: Upstreams, routing: dict[str, Any] | None = None,
                 each: dict[str, dict[str, Any]] | None = None, **deployment: Any) -> Gateway:
        """``deployment``: settings for every deployment; ``each``: for one, by name."""
        config = gateway_config(self._tmp / str(len(self._made)), [{
            "name": "chat", "routing": routing or {},
            "deployments": [{"name": name, "url": f"http://mock/{name}", **deployment,
                             **(each or {}).get(name, {})}
                            for name in upstreams.answers]}],
            audit={"enabled": False}, guard={"enabled": False})
        gateway = build_gateway(config, transport_factory=upstreams.factory,
                                clock=asyncio.get_running_loop().time)
        self._made.append(gateway)
        return gateway

    async def aclose(self) -> None:
        for gateway in self._made:
            await gateway.close()


def virtual_clock(test: Callable[[Routers], Awaitable[None]]) -> Callable[[Path], None]:
    """Run ``test`` on an event loop of its own whose clock is virtual, starting at 0."""
    def run(tmp_path: Path) -> None:
        loop = looptime.new_event_loop(start=0)
        routers = Routers(tmp_path)

        async def main() -> None:
            try:
                await test(routers)
            finally:
                await routers.aclose()

        assert loop.looptime_on
        try:
            loop.run_until_complete(main())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    run.__name__, run.__doc__ = test.__name__, test.__doc__
    return run


def request(stream: bool = False, **body: Any) -> Exchange:
    return Exchange("r1", Operation.CHAT, "chat",
                    {"model": "chat", "messages": [{"role": "user", "content": "hi"}], **body},
                    stream)


def group(gateway: Gateway) -> ModelGroup:
    return gateway.router.groups["chat"]


def outstanding(gateway: Gateway) -> dict[str, int]:
    return {d.name: d.outstanding for d in group(gateway).deployments}


async def events_of(reply: Reply) -> list[Event]:
    assert reply.events is not None
    try:
        return [event async for event in reply.events]
    finally:
        await reply.events.aclose()


@virtual_clock
async def test_a_failed_attempt_is_retried_on_another_deployment(routers: Routers) -> None:
    up = Upstreams(a=fail(), b=fine())
    gw = routers(up, {"balancer": "round_robin"})
    for _ in range(4):
        exchange = request()
        reply = await gw.router(exchange)
        assert reply.ok and exchange.deployment == "b"
    assert up.sent("b") == 4 and 1 <= up.sent("a") <= 4
    assert outstanding(gw) == {"a": 0, "b": 0}


@virtual_clock
async def test_backoff_is_full_jitter_within_the_cap(routers: Routers) -> None:
    up = Upstreams(a=fail())
    gw = routers(up, {"retries": {"attempts": 4, "backoff_base": "100ms",
                                      "backoff_cap": "150ms", "min_per_second": 100}})
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(BadGatewayError, match="after 4 attempts"):
        await gw.router(request())
    waited = loop.time() - started
    # Three pauses: uniform(0, 0.1), uniform(0, 0.15), uniform(0, 0.15).
    assert up.sent("a") == 4 and 0 < waited <= 0.4 + 1e-6
    assert outstanding(gw) == {"a": 0}


@virtual_clock
async def test_an_empty_retry_budget_stops_retries(routers: Routers) -> None:
    up = Upstreams(a=fail(), b=fail())
    gw = routers(up, {"retries": {"budget_percent": 0, "min_per_second": 0},
                          "outlier": {"enabled": False}})
    for _ in range(5):
        with pytest.raises(UpstreamError):
            await gw.router(request())
    assert up.sent("a") + up.sent("b") == 5  # one attempt each: no budget to retry


@virtual_clock
async def test_consecutive_failures_eject_then_a_probe_readmits(routers: Routers) -> None:
    up = Upstreams(a=fail(), b=fine())
    gw = routers(up, {"balancer": "round_robin",
                          "outlier": {"consecutive_failures": 3, "base_ejection": "30s",
                                      "failure_rate": None}})
    a = group(gw).deployments[0]
    while not a.ejected:
        await gw.router(request())
    sent = up.sent("a")
    assert sent == 3
    for _ in range(10):
        await gw.router(request())
    assert up.sent("a") == sent  # ejected: not tried
    up.answers["a"] = fine()
    await asyncio.sleep(30)  # virtual: the ejection runs out
    for _ in range(4):
        await gw.router(request())
    assert not a.ejected and up.sent("a") > sent  # the half-open probe succeeded


@virtual_clock
async def test_a_slow_attempt_is_hedged_and_the_loser_is_closed(routers: Routers) -> None:
    up = Upstreams(a=fine(delay=0.02), b=fine(delay=0.02))
    gw = routers(up, {"balancer": "round_robin", "hedging": {
        "enabled": True, "percentile": 90, "min_samples": 5, "max_extra_percent": 50}})
    for _ in range(20):  # both deployments learn a 20 ms time to first byte
        await gw.router(request())
    loop = asyncio.get_running_loop()
    up.answers["a"] = fine(delay=5.0)
    up.answers["b"] = fine(delay=0.02)
    started = loop.time()
    winners = set()
    for _ in range(2):  # round robin: one of the two goes to the slow 'a' first
        exchange = request()
        await gw.router(exchange)
        winners.add(exchange.deployment)
    elapsed = loop.time() - started
    assert winners == {"b"}
    assert elapsed < 0.2  # not 5 s: the hedge answered
    assert outstanding(gw) == {"a": 0, "b": 0}  # the slow loser was cancelled and released
    assert group(gw).deployments[0].probing is False


@virtual_clock
async def test_a_hedge_the_budget_refused_is_sent_once_the_budget_refills(
        routers: Routers) -> None:
    """Was: a request whose hedge found the budget empty was never hedged, however long it
    then waited; under a closed loop the budget empties in bursts, and the slow requests that
    met an empty budget set p99.9."""
    up = Upstreams(a=fine(delay=0.02), b=fine(delay=0.02))
    gw = routers(up, {"balancer": "round_robin", "hedging": {
        "enabled": True, "percentile": 90, "min_samples": 5, "max_extra_percent": 10},
        "retries": {"min_per_second": 0}}, each={"a": {"max_concurrent": 1}})
    for _ in range(20):
        await gw.router(request())
    g = group(gw)
    while g.hedge_budget.available():  # an earlier burst spent it
        g.hedge_budget.spend()
    up.answers["a"] = fine(delay=5.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    slow = request()
    assert g.balancer is not None
    if g.balancer.pick(g.deployments).name == "a":  # round robin: make 'a' come next
        g.balancer.pick(g.deployments)
    task = asyncio.ensure_future(gw.router(slow))
    await asyncio.sleep(0.025)  # its hedge was due at ~20 ms, and refused
    # More requests arrive ('a' is full with the slow one, so they go to 'b'): the budget
    # grows with them.
    await asyncio.gather(*(gw.router(request()) for _ in range(30)))
    await task
    assert slow.deployment == "b" and loop.time() - started < 0.5
    assert outstanding(gw) == {"a": 0, "b": 0}


@virtual_clock
async def test_a_first_token_timeout_is_retried_elsewhere(routers: Routers) -> None:
    up = Upstreams(a=lambda r: MockResponse(stream=[(10.0, b"data: {}\n\n")],
                                            headers={"content-type": "text/event-stream"}),
                   b=lambda r: chat_stream(["hello", " world"]))
    gw = routers(up, {"balancer": "round_robin",
                          "timeout": {"first_token": "500ms", "total": "30s"}})
    loop = asyncio.get_running_loop()
    for _ in range(2):
        started = loop.time()
        exchange = request(stream=True)
        events = await events_of(await gw.router(exchange))
        assert exchange.deployment == "b" and loop.time() - started < 1.0
        assert isinstance(events[-1], Done)
    assert outstanding(gw) == {"a": 0, "b": 0}
    assert up.transports["a"].responses[0].closed  # the timed-out stream was closed


@virtual_clock
async def test_the_deadline_covers_every_attempt(routers: Routers) -> None:
    up = Upstreams(a=raising(UpstreamTimeoutError("slow")), b=fine(delay=5.0))
    gw = routers(up, {"timeout": {"total": "1s"}, "retries": {"min_per_second": 100}})
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(UpstreamError):
        await gw.router(request())
    assert loop.time() - started <= 1.0 + 1e-6
    assert outstanding(gw) == {"a": 0, "b": 0}


@virtual_clock
async def test_a_full_deployment_sheds_after_the_bounded_wait(routers: Routers) -> None:
    up = Upstreams(a=fine(delay=1.0))
    gw = routers(up, {"bulkhead": {"max_wait": "50ms"}}, max_concurrent=1)
    loop = asyncio.get_running_loop()
    first = asyncio.ensure_future(gw.router(request()))
    await asyncio.sleep(0.1)
    started = loop.time()
    with pytest.raises(OverloadedError):
        await gw.router(request())
    assert abs(loop.time() - started - 0.05) < 1e-3  # shed after exactly max_wait
    assert (await first).ok
    # A waiter that fits in max_wait gets the freed slot.
    first = asyncio.ensure_future(gw.router(request()))
    await asyncio.sleep(0.98)
    second = await gw.router(request())
    assert second.ok and (await first).ok and outstanding(gw) == {"a": 0}


@virtual_clock
async def test_a_stream_that_breaks_after_the_commit_point_ends_with_one_error(
        routers: Routers) -> None:
    up = Upstreams(a=lambda r: chat_stream(["one", " two"], gap=0.01,
                                           error=BadGatewayError("connection reset")))
    gw = routers(up, {"outlier": {"consecutive_failures": 1}})
    exchange = request(stream=True)
    events = await events_of(await gw.router(exchange))
    assert [type(e) for e in events] == [Chunk, Chunk, StreamError]
    assert outstanding(gw) == {"a": 0}
    assert group(gw).deployments[0].ejected  # the break counted against the deployment
    assert exchange.usage is not None and exchange.usage.completion_tokens >= 2  # counted


@virtual_clock
async def test_a_client_that_leaves_mid_attempt_releases_everything(routers: Routers) -> None:
    up = Upstreams(a=fine(delay=10.0))
    gw = routers(up, {"outlier": {"consecutive_failures": 1}})
    task = asyncio.ensure_future(gw.router(request()))
    await asyncio.sleep(1)
    assert outstanding(gw) == {"a": 1}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    a = group(gw).deployments[0]
    assert outstanding(gw) == {"a": 0} and not a.ejected and a.consecutive_failures == 0
