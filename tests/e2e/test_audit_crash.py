"""SIGKILL the gateway under load, again and again: every answer a client received (a whole
reply, or a stream up to ``[DONE]``) has its record in the log, and the log still verifies."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import yaml

from ironhold.identity.keys import KEY_PREFIX
from tests.helpers import CHAT, wait_http
from tests.servers import SimulatorServer, free_port

IRONHOLD = [sys.executable, "-m", "ironhold"]
KILLS = 5
CLIENTS = 12


class Load:
    """Clients sending chats (every third one streamed) with their own request ids; an id is
    *acknowledged* once the client holds the complete answer."""

    def __init__(self, base: str, key: str):
        self.base = base
        self.key = key
        self.acknowledged: list[str] = []
        self.failed = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(n,)) for n in
                         range(CLIENTS)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _client(self, n: int) -> None:
        with httpx.Client(timeout=5) as client:
            i = 0
            while not self._stop.is_set():
                i += 1
                request_id = f"c{n}-{i}-{uuid.uuid4().hex[:8]}"
                try:
                    done = self._one(client, request_id, stream=i % 3 == 0)
                except httpx.HTTPError:
                    done = False
                with self._lock:
                    if done:
                        self.acknowledged.append(request_id)
                    else:
                        self.failed += 1
                if not done:
                    time.sleep(0.05)  # the gateway is down: try again shortly

    def _one(self, client: httpx.Client, request_id: str, stream: bool) -> bool:
        headers = {"Authorization": f"Bearer {self.key}", "x-request-id": request_id}
        if not stream:
            answer = client.post(self.base + "/v1/chat/completions", json=CHAT,
                                 headers=headers)
            return answer.status_code == 200 and answer.json()["object"] == "chat.completion"
        seen = b""
        with client.stream("POST", self.base + "/v1/chat/completions",
                           json={**CHAT, "stream": True}, headers=headers) as answer:
            if answer.status_code != 200:
                return False
            for chunk in answer.iter_bytes():
                seen += chunk
                if b"data: [DONE]" in seen:
                    return True
        return False


def test_no_acknowledged_record_is_lost_when_the_gateway_is_killed(
        tmp_path: Path, make_simulator: Callable[..., SimulatorServer]) -> None:
    simulator = make_simulator(ttft={"distribution": "uniform", "min_ms": 1, "max_ms": 15},
                               token_latency={"ms": 1}, completion_tokens=4)
    db = tmp_path / "state" / "ironhold.db"
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "state": {"url": f"sqlite:///{db}"},
        "logging": {"level": "warning", "access": False},
        "audit": {"checkpoint_interval": "200ms"},
        "models": [{"name": "chat", "deployments": [{"url": simulator.url}]}],
    }))
    made = subprocess.run([*IRONHOLD, "keys", "create", "-c", str(config), "--name", "load",
                           "--json"], capture_output=True, text=True, timeout=60)
    key = orjson.loads(made.stdout)["key"]
    assert key.startswith(KEY_PREFIX)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    rng = random.Random(7)

    with Load(base, key) as load:
        for _ in range(KILLS):
            process = subprocess.Popen(
                [*IRONHOLD, "serve", "-c", str(config), "--port", str(port)],
                stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            try:
                wait_http(base + "/readyz")
                before = len(load.acknowledged)
                time.sleep(rng.uniform(0.8, 1.6))
                assert len(load.acknowledged) > before  # it really was under load
            finally:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=10)

    assert len(load.acknowledged) > 100
    with sqlite3.connect(db) as conn:
        recorded = {row[0] for row in conn.execute(
            "SELECT request_id FROM ironhold_audit_records")}
        count, highest = conn.execute(
            "SELECT count(*), max(seq) FROM ironhold_audit_records").fetchone()
    lost = [rid for rid in load.acknowledged if rid not in recorded]
    assert not lost, f"{len(lost)} acknowledged requests have no record: {lost[:5]}"
    assert count == highest + 1  # no gaps in the sequence
    verified = subprocess.run([*IRONHOLD, "audit", "verify", "-c", str(config)],
                              capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith(f"ok: {count:,} records")
