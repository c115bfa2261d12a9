"""Fixtures for the security regression suite: a real gateway on loopback, the simulator as its
model server, and Redis where a finding was about limits shared across replicas."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from ironhold.core.principal import Quota
from tests.servers import GatewayServer, SimulatorServer

REDIS_URL = "redis://127.0.0.1:6379/13"


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database of its own, emptied before and after."""
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def chat_gateway(make_gateway: Callable[..., GatewayServer],
                 simulator: SimulatorServer) -> Callable[..., GatewayServer]:
    """A gateway with one model group, ``chat``, on the simulator, and any other sections."""
    def make(**sections: Any) -> GatewayServer:
        return make_gateway([{"name": "chat", "deployments": [{"url": simulator.url}]}],
                            **sections)
    return make


def limited_key(gw: GatewayServer, name: str = "tenant", **quota: Any) -> str:
    """A key with the given limits (``rpm=2``, ``tpm=2000``, ``concurrency=2``...)."""
    return gw.gateway.keys.create(name, quota=Quota(**quota))[1]


def audit_records(gw: GatewayServer, request_id: str) -> list[dict[str, Any]]:
    """The audit records of one request, decoded."""
    import orjson

    assert gw.gateway.audit is not None
    rows = gw.gateway.audit.log.store.find(request_id)
    return [orjson.loads(row.record) for row in rows]
