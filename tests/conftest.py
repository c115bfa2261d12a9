from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ironhold.simulator import SimulatorProfile
from tests.servers import GatewayServer, SimulatorServer, gateway_config

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL database on the local server, dropped afterwards."""
    name = f"ironhold_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    server = SimulatorServer()
    yield server
    server.close()


@pytest.fixture
def make_simulator() -> Iterator[Callable[..., SimulatorServer]]:
    with ExitStack() as made:
        def make(**profile: Any) -> SimulatorServer:
            server = SimulatorServer(SimulatorProfile.model_validate(profile))
            made.callback(server.close)
            return server

        yield make


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayServer]]:
    with ExitStack() as made:
        def make(models: list[dict[str, Any]], **sections: Any) -> GatewayServer:
            server = GatewayServer(gateway_config(tmp_path, models, **sections))
            made.callback(server.close)
            return server

        yield make


@pytest.fixture
def gateway(make_gateway: Callable[..., GatewayServer],
            simulator: SimulatorServer) -> GatewayServer:
    """A gateway with one model group, ``chat``, on the simulator."""
    return make_gateway([{"name": "chat", "deployments": [
        {"url": simulator.url, "model": "sim-upstream"}]}])
