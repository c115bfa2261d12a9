"""The optional copy of the audit log on NATS JetStream: every durable record published once,
in order, with its sequence number and leaf hash."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import nats
import pytest

from ironhold.audit.merkle import leaf_hash
from tests.helpers import CHAT, post, wait_until
from tests.servers import GatewayServer, SimulatorServer

NATS_URL = "nats://127.0.0.1:4222"


async def read_stream(stream: str, subject: str, expected: int) -> list[tuple[int, bytes, str]]:
    client = await nats.connect(NATS_URL)
    try:
        js = client.jetstream()
        sub = await js.pull_subscribe(subject, durable=None, stream=stream)
        got: list[tuple[int, bytes, str]] = []
        while len(got) < expected:
            for msg in await sub.fetch(expected - len(got), timeout=5):
                headers = msg.headers or {}
                got.append((int(headers["Ironhold-Audit-Seq"]), msg.data,
                            headers["Ironhold-Audit-Leaf"]))
                await msg.ack()
        info = await js.stream_info(stream)
        assert info.state.messages == expected
        await js.delete_stream(stream)
        return got
    finally:
        await client.close()


@pytest.mark.nats
def test_records_are_copied_to_jetstream(make_gateway: Callable[..., GatewayServer],
                                         simulator: SimulatorServer) -> None:
    name = f"IH_TEST_{uuid.uuid4().hex[:8].upper()}"
    subject = f"ih.test.{name.lower()}"
    gw = make_gateway([{"name": "chat", "deployments": [{"url": simulator.url}]}],
                      audit={"nats": {"url": NATS_URL, "stream": name, "subject": subject}})
    key = gw.create_key()
    for i in range(7):
        assert post(gw, key, CHAT, headers={"x-request-id": f"n-{i}"}).status_code == 200
    stream = gw.gateway.audit_stream
    assert stream is not None
    assert wait_until(lambda: stream.published == 7, seconds=15)
    messages = asyncio.run(read_stream(name, subject, 7))
    assert [seq for seq, _, _ in messages] == list(range(7))
    for seq, data, leaf in messages:
        assert leaf_hash(data).hex() == leaf
        assert f'"request_id":"n-{seq}"'.encode() in data


def test_an_unreachable_nats_does_not_hold_up_answers(
        make_gateway: Callable[..., GatewayServer], simulator: SimulatorServer) -> None:
    gw = make_gateway([{"name": "chat", "deployments": [{"url": simulator.url}]}],
                      audit={"nats": {"url": "nats://127.0.0.1:1"}})
    key = gw.create_key()
    for _ in range(3):
        assert post(gw, key, CHAT).status_code == 200
    stream = gw.gateway.audit_stream
    assert stream is not None and stream.published == 0
    assert gw.gateway.audit is not None and gw.gateway.audit.log.store.size() == 3
