"""The same gateway with its state in PostgreSQL instead of SQLite."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.servers import GatewayServer, SimulatorServer, gateway_config

pytestmark = pytest.mark.postgres


def test_two_gateways_share_keys_through_postgres(tmp_path: Path, postgres_url: str,
                                                  simulator: SimulatorServer) -> None:
    models = [{"name": "chat", "deployments": [{"url": simulator.url}]}]
    shared = {"state": {"url": postgres_url}, "auth": {"key_secret": "replicas-share-this-secret"}}
    first = GatewayServer(gateway_config(tmp_path / "a", models, **shared))
    second = GatewayServer(gateway_config(tmp_path / "b", models, **shared))
    try:
        key = first.create_key("shared")
        for gateway in (first, second):
            with openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0) as client:
                reply = client.chat.completions.create(
                    model="chat", messages=[{"role": "user", "content": "hi"}])
            assert reply.choices[0].message.content
        assert [k.name for k in second.gateway.keys.list_keys()] == ["shared"]
    finally:
        first.close()
        second.close()
