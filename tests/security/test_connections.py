"""Finding 11: slow and numerous clients. Headers must arrive in time, bodies too, and
connections past the cap are closed at once."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest

from tests.helpers import CHAT, post, wait_until
from tests.servers import GatewayServer


def _connect(gw: GatewayServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gw.port), timeout=5)


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """True if the server closes the connection (EOF or reset) within ``within`` seconds."""
    sock.settimeout(within)
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_slow_headers_are_cut_off(chat_gateway: Callable[..., GatewayServer]) -> None:
    """Was: 1,000 connections trickling header bytes stayed open 100 s (slowloris)."""
    gw = chat_gateway(server={"header_timeout": "1s"})
    sockets = [_connect(gw) for _ in range(50)]
    for sock in sockets:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n")
    deadline = time.monotonic() + 10
    open_ = list(sockets)
    while open_ and time.monotonic() < deadline:
        for sock in list(open_):
            try:
                sock.sendall(b"X-Slow: 1\r\n")  # a header line at a time, never the end
            except OSError:
                open_.remove(sock)  # the server has closed it
        time.sleep(0.3)
    assert not open_, f"{len(open_)} of 50 trickling connections were still open after 10 s"
    for sock in sockets:
        sock.close()
    assert post(gw, gw.create_key(), CHAT).status_code == 200


def test_a_slow_body_gets_a_408(chat_gateway: Callable[..., GatewayServer]) -> None:
    gw = chat_gateway(server={"body_timeout": "1s"})
    key = gw.create_key()
    with _connect(gw) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
                     b"Authorization: Bearer " + key.encode() + b"\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"mo")
        sock.settimeout(10)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"code":"request_timeout"' in answer


@pytest.mark.parametrize("cap", [20])
def test_connections_past_the_cap_are_closed_at_once(
        chat_gateway: Callable[..., GatewayServer], cap: int) -> None:
    gw = chat_gateway(server={"max_connections": cap, "header_timeout": "30s"})
    held = [_connect(gw) for _ in range(cap)]
    server = gw._runner.server
    assert server is not None
    assert wait_until(lambda: len(server.connections) >= cap, 10)  # all accepted: at the cap
    extra = [_connect(gw) for _ in range(10)]
    assert all(_closed_by_server(sock, 5) for sock in extra)
    assert not any(_closed_by_server(sock, 0.2) for sock in held[:3])
    for sock in held + extra:
        sock.close()
    time.sleep(0.2)
    assert post(gw, gw.create_key(), CHAT).status_code == 200
