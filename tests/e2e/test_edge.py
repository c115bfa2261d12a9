"""The HTTP edge spoken to directly: malformed input, limits, request ids, admin, health,
metrics, and cancellation when the client goes away."""

from __future__ import annotations

import httpx
import pytest

from ironhold.core.ids import is_uuid
from tests.helpers import CHAT, assert_openai_error, post, wait_until
from tests.servers import GatewayServer, SimulatorServer


def outstanding(gw: GatewayServer, group: str = "chat") -> int:
    """Requests the gateway has in flight to the group's first deployment, read on its loop."""
    async def read() -> int:
        return gw.gateway.router.groups[group].deployments[0].outstanding

    return int(gw.run(read))


def test_malformed_json_is_400(gateway: GatewayServer) -> None:
    key = gateway.create_key()
    error = assert_openai_error(post(gateway, key, content=b'{"model": "chat",'), 400)
    assert "parse the JSON" in str(error["message"])


@pytest.mark.parametrize("body", [
    [], "text", 3, None, {}, {"model": ""}, {"model": 5, "messages": []},
    {"model": "chat"}, {"model": "chat", "messages": "hi"}, {"model": "chat", "messages": [1]},
    {"model": "chat", "messages": [{"content": "no role"}]},
    {**CHAT, "stream": "yes"}, {**CHAT, "stream_options": {"include_usage": True}},
])
def test_invalid_bodies_are_400_never_500(gateway: GatewayServer, body: object) -> None:
    assert_openai_error(post(gateway, gateway.create_key(), content=httpx.Request(
        "POST", "http://x", json=body).content), 400)


def test_invalid_embedding_and_completion_bodies(gateway: GatewayServer) -> None:
    key = gateway.create_key()
    for path, body in [("/v1/embeddings", {"model": "chat"}),
                       ("/v1/embeddings", {"model": "chat", "input": "x", "stream": True}),
                       ("/v1/completions", {"model": "chat", "prompt": 12})]:
        assert_openai_error(post(gateway, key, body, path=path), 400)


def test_body_over_the_limit_is_413(make_gateway, simulator: SimulatorServer) -> None:  # type: ignore[no-untyped-def]
    gw = make_gateway([{"name": "chat", "deployments": [{"url": simulator.url}]}],
                      server={"max_body_bytes": 2048})
    key = gw.create_key()
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 4096}]}
    error = assert_openai_error(post(gw, key, big), 413)
    assert "2048" in str(error["message"])
    assert post(gw, key, CHAT).status_code == 200
    assert simulator.simulator.served == 1


def test_missing_and_malformed_credentials_are_401(gateway: GatewayServer) -> None:
    assert assert_openai_error(post(gateway, None, CHAT), 401)["code"] == "missing_api_key"
    assert_openai_error(post(gateway, None, CHAT, headers={"Authorization": "Basic abc"}), 401)
    assert_openai_error(post(gateway, "ih-wrong", CHAT), 401)
    assert_openai_error(httpx.get(gateway.v1 + "/models"), 401)


def test_revoked_key_is_refused(gateway: GatewayServer) -> None:
    key, secret = gateway.gateway.keys.create("short-lived")
    assert post(gateway, secret, CHAT).status_code == 200
    gateway.gateway.keys.revoke(key.id)
    assert_openai_error(post(gateway, secret, CHAT), 401)


def test_request_id_accepted_generated_and_forwarded(gateway: GatewayServer,
                                                     simulator: SimulatorServer) -> None:
    key = gateway.create_key()
    ok = post(gateway, key, CHAT, headers={"x-request-id": "client-abc.123"})
    assert ok.headers["x-request-id"] == "client-abc.123"
    forwarded = {k.lower(): v for k, v in simulator.simulator.requests[-1]["headers"].items()}
    assert forwarded["x-request-id"] == "client-abc.123"
    bad = post(gateway, key, CHAT, headers={"x-request-id": "bad id\twith spaces"})
    assert is_uuid(bad.headers["x-request-id"])
    assert is_uuid(post(gateway, None, CHAT).headers["x-request-id"])
    unknown = httpx.get(gateway.base_url + "/no/such/route")
    assert_openai_error(unknown, 404)
    assert is_uuid(unknown.headers["x-request-id"])
    assert_openai_error(httpx.get(gateway.v1 + "/chat/completions"), 405)


def test_admin_routes_need_an_admin_key(gateway: GatewayServer) -> None:
    user, admin = gateway.create_key("user"), gateway.create_key("ops", admin=True)
    assert_openai_error(httpx.get(gateway.base_url + "/admin/keys"), 401)
    assert_openai_error(httpx.get(gateway.base_url + "/admin/keys",
                                  headers={"Authorization": f"Bearer {user}"}), 403)
    auth = {"Authorization": f"Bearer {admin}"}
    created = httpx.post(gateway.base_url + "/admin/keys", json={"name": "svc", "models": ["chat"]},
                         headers=auth)
    assert created.status_code == 201 and created.json()["key"].startswith("ih-")
    listing = httpx.get(gateway.base_url + "/admin/keys", headers=auth)
    names = [k["name"] for k in listing.json()["data"]]
    assert names == ["user", "ops", "svc"]
    assert created.json()["key"] not in listing.text and user not in listing.text  # no secrets
    assert all(len(k["prefix"]) == 10 for k in listing.json()["data"])
    revoked = httpx.delete(gateway.base_url + f"/admin/keys/{created.json()['id']}", headers=auth)
    assert revoked.status_code == 200
    assert_openai_error(post(gateway, created.json()["key"], CHAT), 401)
    assert_openai_error(httpx.delete(gateway.base_url + "/admin/keys/key_nope", headers=auth), 404)
    assert_openai_error(httpx.post(gateway.base_url + "/admin/keys", json={"name": 3},
                                   headers=auth), 400)
    for bad in ({"name": "x", "rpm": 0}, {"name": "x", "models": "chat"},
                {"name": "x", "nope": 1}, {"name": "x", "expires_in": -5}):
        assert_openai_error(httpx.post(gateway.base_url + "/admin/keys", json=bad,
                                       headers=auth), 400)
    limited = httpx.post(gateway.base_url + "/admin/keys", headers=auth, json={
        "name": "acme-bot", "tenant": "acme", "rpm": 30, "budget_usd_monthly": 5,
        "tools": ["search"], "expires_in": 86400}).json()
    assert limited["tenant"] == "acme" and limited["tools"] == ["search"]
    assert limited["limits"]["rpm"] == 30 and limited["limits"]["budget_usd_monthly"] == 5
    assert limited["expires_at"] - limited["created_at"] in (86399, 86400, 86401)


def test_health_readiness_and_metrics(make_gateway, simulator: SimulatorServer) -> None:  # type: ignore[no-untyped-def]
    gw = make_gateway([{"name": "chat", "deployments": [{"url": simulator.url}]}])
    assert httpx.get(gw.base_url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(gw.base_url + "/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    key = gw.create_key()
    post(gw, key, {**CHAT, "stream": True, "stream_options": {"include_usage": True}})
    post(gw, key, CHAT)
    post(gw, key, {**CHAT, "model": "missing"})
    text = httpx.get(gw.base_url + "/metrics").text
    assert 'gen_ai_client_operation_duration_seconds_count{error_type="",' \
           'gen_ai_operation_name="chat",gen_ai_request_model="chat"} 2.0' in text
    assert 'gen_ai_client_token_usage_count{gen_ai_operation_name="chat",' \
           'gen_ai_request_model="chat",gen_ai_token_type="output"} 2.0' in text
    assert "gen_ai_server_time_to_first_token_seconds_count" in text
    assert 'error_type="model_not_found"' in text
    assert 'ironhold_upstream_attempts_total{deployment="chat-0",model="chat",outcome="200"} 2.0' \
        in text
    assert "ironhold_requests_in_flight 0.0" in text
    assert 'ironhold_requests_total{route="/v1/chat/completions",status="200"} 2.0' in text
    assert 'ironhold_requests_total{route="/v1/chat/completions",status="404"} 1.0' in text
    httpx.get(gw.base_url + "/nowhere")
    assert 'ironhold_requests_total{route="unmatched",status="404"} 1.0' in httpx.get(
        gw.base_url + "/metrics").text


def test_readiness_follows_deployment_health(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw = make_gateway([{"name": "chat", "deployments": [{"url": "http://127.0.0.1:9/v1"}],
                        "routing": {"outlier": {"consecutive_failures": 3}}}])
    assert httpx.get(gw.base_url + "/readyz").status_code == 200  # nothing known to be wrong
    # Three attempts (the default), three connect errors: the deployment is ejected.
    assert_openai_error(post(gw, gw.create_key(), CHAT), 503)
    ready = httpx.get(gw.base_url + "/readyz")
    assert ready.status_code == 503
    assert ready.json()["models"]["chat"][0]["healthy"] is False


def test_upstream_429_comes_back_with_retry_after_and_is_honoured(  # type: ignore[no-untyped-def]
        make_gateway, make_simulator) -> None:
    limited = make_simulator(faults=[{"kind": "status", "status": 429, "rate": 1.0,
                                      "retry_after": 7}])
    gw = make_gateway([{"name": "chat", "deployments": [{"url": limited.url}]}])
    key = gw.create_key()
    for body in (CHAT, {**CHAT, "stream": True}):
        response = post(gw, key, body)
        assert_openai_error(response, 429)
        assert response.headers["retry-after"] == "7"
    # Retry-After is honoured: the second request is refused by the gateway itself, fast,
    # without touching the throttled model server.
    assert limited.simulator.served == 1


@pytest.mark.parametrize("content", [
    b"\xff\xfe not utf-8", b"[" * 5000 + b"]" * 5000, b'{"model": "chat", "messages": 1e999}',
    b'{"model": "chat", "messages": [{"role": "user", "content": "\\ud800"}]}',
])
def test_hostile_bodies_get_a_4xx_never_a_500(gateway: GatewayServer, content: bytes) -> None:
    response = post(gateway, gateway.create_key(), content=content)
    assert 400 <= response.status_code < 500, response.text
    assert "Traceback" not in response.text


def test_client_giving_up_before_the_first_byte_cancels_upstream(  # type: ignore[no-untyped-def]
        make_gateway, make_simulator) -> None:
    slow = make_simulator(ttft={"ms": 3000})
    gw = make_gateway([{"name": "chat", "deployments": [{"url": slow.url}]}])
    key = gw.create_key()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gw.v1 + "/chat/completions", json=CHAT, timeout=0.3,
                   headers={"Authorization": f"Bearer {key}"})
    # Seen by the upstream while it was still before its first byte: the request was cancelled.
    assert wait_until(lambda: slow.simulator.disconnects == 1, seconds=2)
    assert wait_until(lambda: outstanding(gw) == 0, seconds=2)
    metrics = httpx.get(gw.base_url + "/metrics").text
    assert 'ironhold_requests_total{route="/v1/chat/completions",status="499"} 1.0' in metrics


def test_stream_request_answered_whole_is_passed_on_as_json(make_gateway) -> None:  # type: ignore[no-untyped-def]
    # The fixed upstream of the benchmarks ignores "stream": any server may.
    from aiohttp import web

    from tests.servers import LoopThread

    async def whole(_: web.Request) -> web.Response:
        return web.json_response({"id": "x", "object": "chat.completion", "choices": []})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", whole)
    thread = LoopThread()
    runner = web.AppRunner(app)

    async def start() -> int:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return int(runner.addresses[0][1])

    port = thread.call(start())
    try:
        gw = make_gateway([{"name": "chat", "deployments": [
            {"url": f"http://127.0.0.1:{port}/v1"}]}])
        response = post(gw, gw.create_key(), {**CHAT, "stream": True})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["object"] == "chat.completion"
    finally:
        thread.call(runner.cleanup())
        thread.stop()


def test_client_disconnect_cancels_the_upstream_stream(make_gateway, make_simulator) -> None:  # type: ignore[no-untyped-def]
    slow = make_simulator(completion_tokens=400, token_latency={"ms": 20})
    gw = make_gateway([{"name": "chat", "deployments": [{"url": slow.url}]}])
    key = gw.create_key()
    with httpx.stream("POST", gw.v1 + "/chat/completions", headers={
            "Authorization": f"Bearer {key}"}, json={**CHAT, "stream": True}) as response:
        for _ in response.iter_bytes():
            break  # one chunk, then hang up
    assert wait_until(lambda: slow.simulator.disconnects == 1)
    assert wait_until(lambda: outstanding(gw) == 0)
    assert "ironhold_requests_in_flight 0.0" in httpx.get(gw.base_url + "/metrics").text
