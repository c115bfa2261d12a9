"""The /mcp endpoint's edges: authorization as the MCP specification wants it (RFC 9728
metadata, RFC 8707 audience), sessions bound to their caller, bad input, quarantine of a
changed tool and its approval, cancellation."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError
from tests.helpers import wait_until
from tests.idp import IdentityProvider
from tests.mcp.conftest import HttpToolServer, mcp_client
from tests.mcp.test_gateway import run, text_of
from tests.servers import GatewayServer

HEADERS = {"Accept": "application/json, text/event-stream",
           "Content-Type": "application/json"}


def rpc(gw: GatewayServer, token: str | None, body: Any, session: str | None = None
        ) -> httpx.Response:
    headers = dict(HEADERS)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if session:
        headers["Mcp-Session-Id"] = session
    content = body if isinstance(body, bytes) else httpx.Request("POST", "/", json=body).content
    return httpx.post(gw.base_url + "/mcp", content=content, headers=headers, timeout=10)


def initialize(gw: GatewayServer, token: str) -> str:
    answer = rpc(gw, token, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}})
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["protocolVersion"] == "2025-11-25"
    return answer.headers["Mcp-Session-Id"]


def test_401_points_at_the_protected_resource_metadata(tool_gateway: GatewayServer) -> None:
    answer = rpc(tool_gateway, None, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "missing_api_key"  # the OpenAI error shape
    challenge = answer.headers["WWW-Authenticate"]
    metadata_url = challenge.split('resource_metadata="')[1].split('"')[0]
    assert metadata_url == f"{tool_gateway.base_url}/.well-known/oauth-protected-resource/mcp"
    metadata = httpx.get(metadata_url, timeout=10).json()
    assert metadata["resource"] == f"{tool_gateway.base_url}/mcp"
    assert metadata["bearer_methods_supported"] == ["header"]
    root = httpx.get(tool_gateway.base_url + "/.well-known/oauth-protected-resource", timeout=10)
    assert root.json() == metadata
    wrong = rpc(tool_gateway, "ih-not-a-key", {"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers[
        "WWW-Authenticate"]


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    yield provider
    provider.close()


def test_oidc_tokens_must_be_issued_for_this_resource(
        make_tool_gateway: Callable[..., GatewayServer], idp: IdentityProvider,
        tmp_path: Path) -> None:
    idp.write_jwks(tmp_path / "jwks.json")
    resource = "https://tools.example.com/mcp"
    gw = make_tool_gateway(
        mcp={"resource": resource},
        identity={"jwt": {"issuer": idp.issuer, "audience": "ironhold",
                          "jwks": {"file": "jwks.json"}}})
    for_models = idp.token(scope="tools:files.echo")
    for_tools = idp.token(aud=resource, scope="tools:files.echo")
    refused = rpc(gw, for_models, {"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert refused.status_code == 401
    assert "aud" in refused.json()["error"]["message"]
    assert 'resource_metadata="https://tools.example.com/.well-known/oauth-protected-' \
           'resource/mcp"' in refused.headers["WWW-Authenticate"]
    metadata = httpx.get(gw.base_url + "/.well-known/oauth-protected-resource", timeout=10)
    assert metadata.json()["resource"] == resource
    assert metadata.json()["authorization_servers"] == [idp.issuer]
    session = initialize(gw, for_tools)
    listed = rpc(gw, for_tools, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, session)
    assert [t["name"] for t in listed.json()["result"]["tools"]] == ["files.echo"]


def test_sessions_are_bound_to_their_caller(tool_gateway: GatewayServer) -> None:
    alice, mallory = tool_gateway.create_key("alice"), tool_gateway.create_key("mallory")
    session = initialize(tool_gateway, alice)
    ping = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    assert rpc(tool_gateway, alice, ping, session).status_code == 200
    stolen = rpc(tool_gateway, mallory, ping, session)
    assert stolen.status_code == 404
    assert stolen.json()["error"]["code"] == "session_not_found"
    forged = rpc(tool_gateway, alice, ping, session[:-4] + "AAAA")
    assert forged.status_code == 404
    assert rpc(tool_gateway, alice, ping).status_code == 400  # no session at all
    ended = httpx.delete(tool_gateway.base_url + "/mcp", timeout=10, headers={
        "Authorization": f"Bearer {alice}", "Mcp-Session-Id": session})
    assert ended.status_code == 204
    assert rpc(tool_gateway, alice, ping, session).status_code == 404


def test_bad_input_gets_a_clear_json_rpc_error(tool_gateway: GatewayServer) -> None:
    key = tool_gateway.create_key("reader")
    session = initialize(tool_gateway, key)
    garbage = rpc(tool_gateway, key, b"{not json", session)
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == -32700
    batch = rpc(tool_gateway, key, [{"jsonrpc": "2.0", "id": 1, "method": "ping"}], session)
    assert batch.status_code == 400 and batch.json()["error"]["code"] == -32600
    unknown = rpc(tool_gateway, key, {"jsonrpc": "2.0", "id": 3, "method": "tools/nope"},
                  session)
    assert unknown.json()["error"]["code"] == -32601
    bad_args = rpc(tool_gateway, key, {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                                       "params": {"name": "files.echo", "arguments": [1]}},
                   session)
    assert bad_args.json()["error"]["code"] == -32602
    huge = rpc(tool_gateway, key, {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                                   "params": {"name": "files.echo", "arguments": {
                                       "text": "x", **{f"k{i}": i for i in range(300)}}}},
               session)
    assert huge.json()["error"]["code"] == -32602
    origin = httpx.post(tool_gateway.base_url + "/mcp", timeout=10, headers={
        **HEADERS, "Authorization": f"Bearer {key}", "Origin": "https://evil.example"},
        json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert origin.status_code == 403
    get = httpx.get(tool_gateway.base_url + "/mcp", timeout=10,
                    headers={"Authorization": f"Bearer {key}"})
    assert get.status_code == 405


def test_without_a_policy_only_tools_a_credential_names_are_callable(
        make_gateway: Callable[..., GatewayServer], http_tools: HttpToolServer) -> None:
    gw = make_gateway([], mcp={"servers": [{"name": "files", "url": http_tools.url}]})
    anything = gw.create_key("anything")
    named = gw.gateway.keys.create("named", tools=["files.echo"])[1]

    async def names(key: str) -> set[str]:
        async with mcp_client(gw, key) as client:
            return {t.name for t in (await client.list_tools()).tools}

    assert run(names(anything)) == set()
    assert run(names(named)) == {"files.echo"}


def test_a_changed_tool_is_quarantined_until_approved(
        make_tool_gateway: Callable[..., GatewayServer], http_tools: HttpToolServer,
        tmp_path: Path) -> None:
    gw = make_tool_gateway(mcp={"refresh": "0.5s"})
    key = gw.create_key("reader")
    admin = gw.create_key("ops", admin=True)

    async def names() -> set[str]:
        async with mcp_client(gw, key) as client:
            return {t.name for t in (await client.list_tools()).tools}

    assert "files.read_file" in run(names())
    # The same server, restarted with read_file's description turned into instructions.
    http_tools.stop()
    http_tools.variant = "changed"
    http_tools.start()

    def pins() -> dict[str, Any]:
        answer = httpx.get(gw.base_url + "/admin/mcp", timeout=10,
                           headers={"Authorization": f"Bearer {admin}"}).json()
        return {t["name"]: t for t in answer["tools"]}

    wait_until(lambda: pins()["files.read_file"]["status"] == "quarantined", 30)
    pin = pins()["files.read_file"]
    assert "id_rsa" in pin["pending_definition"]["description"]
    assert pins()["files.echo"]["status"] == "approved"  # unchanged tools carry on
    assert "files.read_file" not in run(names())

    async def refused() -> dict[str, Any]:
        async with mcp_client(gw, key) as client:
            with pytest.raises(MCPError) as caught:
                await client.call_tool("files.read_file", {"path": "/srv/reports/q3.txt"})
        data: dict[str, Any] = caught.value.data
        return data

    assert run(refused())["code"] == "tool_quarantined"
    signals = httpx.get(gw.base_url + "/admin/signals", timeout=10,
                        headers={"Authorization": f"Bearer {admin}"}).json()
    assert any(s["kind"] == "tool_changed" and s["active"] and s["model"] == "files"
               and s["detail"]["subject"] == "files.read_file" for s in signals["signals"])
    metrics = httpx.get(gw.base_url + "/metrics", timeout=10,
                        headers={"Authorization": f"Bearer {admin}"}).text
    assert "ironhold_mcp_tools_quarantined 1.0" in metrics
    # An admin approves exactly the definition they read.
    cli = [sys.executable, "-m", "ironhold", "mcp", "approve", "files.read_file",
           "--url", gw.base_url, "--key", admin]
    wrong = subprocess.run([*cli, "--digest", "0" * 64], capture_output=True, text=True,
                           timeout=60)
    assert wrong.returncode == 1 and "waits for approval" in wrong.stderr + wrong.stdout
    approved = subprocess.run([*cli, "--digest", pin["pending_digest"]], capture_output=True,
                              text=True, timeout=60)
    assert approved.returncode == 0, approved.stderr
    assert "approved" in approved.stdout
    assert "files.read_file" in run(names())
    assert pins()["files.read_file"]["approved_by"] is not None


def test_cancelling_a_call_cancels_it(tool_gateway: GatewayServer) -> None:
    key = tool_gateway.create_key("reader")

    async def go() -> None:
        async with mcp_client(tool_gateway, key) as client:
            running = asyncio.Event()

            async def report(progress: float, total: float | None, message: str | None) -> None:
                running.set()  # the tool server is working on it: the call reached it

            call = asyncio.create_task(client.call_tool("files.slow", {"steps": 200},
                                                        progress_callback=report))
            await asyncio.wait_for(running.wait(), 30)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            # The session carries on.
            assert text_of(await client.call_tool("files.echo", {"text": "still here"})) \
                == "still here"

    run(go())

    def cancelled_recorded() -> bool:
        metrics = tool_gateway.gateway.metrics.exposition("")[0].decode()
        return 'outcome="cancelled",server="files",tool="slow"' in metrics

    assert wait_until(cancelled_recorded, 10)


def test_a_reload_keeps_unchanged_servers_and_drops_removed_ones(
        make_tool_gateway: Callable[..., GatewayServer], http_tools: HttpToolServer,
        tmp_path: Path) -> None:
    gw = make_tool_gateway()
    key = gw.create_key("reader")
    files = gw.gateway.tools.servers["files"]  # type: ignore[union-attr]
    config = gw.config.model_copy(update={"mcp": gw.config.mcp.model_copy(
        update={"servers": [gw.config.mcp.servers[0]]})})
    assert gw.reload(config).applied

    async def names() -> set[str]:
        async with mcp_client(gw, key) as client:
            return {t.name for t in (await client.list_tools()).tools}

    listed = run(names())
    assert "files.read_file" in listed and not any(n.startswith("local.") for n in listed)
    assert gw.gateway.tools.servers["files"] is files  # type: ignore[union-attr]
    assert files.state == "up"
