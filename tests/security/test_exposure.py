"""Findings 3 and 12: what the gateway shows about itself. Metric labels come only from the
server's own names; internal addresses never reach a client; /metrics and /readyz's detail can
be kept for admins."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable

import httpx

from tests.helpers import CHAT, assert_openai_error, post
from tests.servers import GatewayServer, free_port


def test_client_model_names_cannot_inflate_metrics(
        chat_gateway: Callable[..., GatewayServer]) -> None:
    """Was: telemetry labelled histograms with the client's raw 'model', even on a 401: 40
    requests with 512 KB names made /metrics 387 MB."""
    gw = chat_gateway()
    key = gw.create_key()
    before = len(httpx.get(gw.base_url + "/metrics").content)

    def probe(i: int) -> int:
        name = f"m{i}-" + "x" * 64_000
        body = {**CHAT, "model": name}
        unauthenticated = post(gw, None, body).status_code
        authenticated = post(gw, key, body).status_code
        return unauthenticated * 1000 + authenticated

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert set(pool.map(probe, range(40))) == {401 * 1000 + 404}
    exposition = httpx.get(gw.base_url + "/metrics")
    assert "xxxxxxxx" not in exposition.text
    assert 'gen_ai_request_model="_other"' in exposition.text
    # Growth is a handful of series (the _other label), not one per name sent.
    assert len(exposition.content) - before < 20_000


def test_upstream_addresses_stay_out_of_client_errors(
        make_gateway: Callable[..., GatewayServer]) -> None:
    """Was: a connect error told the caller the deployment's address and port."""
    port = free_port()  # nothing listens there
    gw = make_gateway([{"name": "chat", "deployments": [{"url": f"http://127.0.0.1:{port}/v1"}],
                        "routing": {"retries": {"attempts": 1}}}])
    answer = post(gw, gw.create_key(), CHAT)
    error = assert_openai_error(answer, 503)
    assert str(port) not in answer.text and "127.0.0.1" not in answer.text
    assert "Connection refused" in str(error["message"])


def test_internals_can_be_kept_for_admins(chat_gateway: Callable[..., GatewayServer]) -> None:
    """Was: /readyz and /metrics listed deployments and traffic to anyone."""
    gw = chat_gateway(server={"internals": "admin"})
    user = gw.create_key("user")
    admin = gw.create_key("ops", admin=True)
    assert_openai_error(httpx.get(gw.base_url + "/metrics"), 401)
    assert_openai_error(httpx.get(gw.base_url + "/metrics",
                                  headers={"Authorization": f"Bearer {user}"}), 403)
    scraped = httpx.get(gw.base_url + "/metrics", headers={"Authorization": f"Bearer {admin}"})
    assert scraped.status_code == 200 and "ironhold_requests_total" in scraped.text
    anonymous = httpx.get(gw.base_url + "/readyz")
    assert anonymous.status_code == 200 and anonymous.json() == {"status": "ready"}
    detailed = httpx.get(gw.base_url + "/readyz", headers={"Authorization": f"Bearer {admin}"})
    assert detailed.json()["models"]["chat"][0]["deployment"] == "chat-0"


def test_internals_are_public_by_default(chat_gateway: Callable[..., GatewayServer]) -> None:
    """As before (keep the port on a private network, or set server.internals: admin)."""
    open_gw = chat_gateway()
    assert httpx.get(open_gw.base_url + "/metrics").status_code == 200
    assert "models" in httpx.get(open_gw.base_url + "/readyz").json()
