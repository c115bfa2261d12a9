"""HTTP helpers shared by the tests that speak to the gateway directly."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from tests.servers import GatewayServer

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


def post(gw: GatewayServer, key: str | None, body: object = None, *,
         content: bytes | None = None, headers: dict[str, str] | None = None,
         path: str = "/v1/chat/completions") -> httpx.Response:
    h = dict(headers or {})
    if key is not None:
        h["Authorization"] = f"Bearer {key}"
    return httpx.post(gw.base_url + path, json=body if content is None else None,
                      content=content, headers=h, timeout=10)


def wait_until(condition: Callable[[], bool], seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def wait_http(url: str, seconds: float = 30) -> None:
    """Wait until ``url`` answers 200 (a server process starting up)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer within {seconds} s"
        time.sleep(0.1)


def assert_openai_error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in response.text
    return error  # type: ignore[no-any-return]


def metric(gw: GatewayServer, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels`` (0 if none)."""
    text = httpx.get(gw.base_url + "/metrics").text
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(3))
    return total


@dataclass(frozen=True)
class Entry:
    """An audit record for tests of the log itself: a request id and any other fields."""

    request_id: str
    extra: dict[str, object] = field(default_factory=dict)

    def fields(self) -> dict[str, object]:
        return {"request_id": self.request_id, **self.extra}
