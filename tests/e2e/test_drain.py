"""Stopping a real ``ironhold serve`` without failing a request: on SIGTERM ``/readyz`` says 503
at once, requests are still served through the grace, streams in flight finish, their audit
records are written, and the process exits 0; a second signal exits at once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.helpers import CHAT, wait_http
from tests.servers import SimulatorServer, free_port

IRONHOLD = [sys.executable, "-m", "ironhold"]


def serve(tmp_path: Path, upstream: str, grace: str, timeout: str = "20s",
          ) -> tuple[subprocess.Popen[bytes], str, str]:
    port = free_port()
    path = tmp_path / "gateway.yaml"
    path.write_text(f"""
server: {{host: 127.0.0.1, port: {port}, drain: {{grace: {grace}, timeout: {timeout}}}}}
state: {{url: "sqlite:///./state/ironhold.db"}}
audit: {{enabled: true}}
models:
  - name: chat
    deployments: [{{url: "{upstream}"}}]
""")
    key = json.loads(subprocess.run(
        [*IRONHOLD, "keys", "create", "-c", str(path), "--name", "app", "--json"],
        capture_output=True, text=True, check=True).stdout)["key"]
    process = subprocess.Popen([*IRONHOLD, "serve", "--config", str(path)],
                               stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/readyz")
    return process, base, key


class Stream(threading.Thread):
    """One streamed answer read to its end (or its failure)."""

    def __init__(self, base: str, key: str):
        super().__init__(daemon=True)
        self.base, self.key = base, key
        self.started = threading.Event()
        self.text = ""
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with openai.OpenAI(base_url=self.base + "/v1", api_key=self.key, max_retries=0,
                               timeout=60) as client:
                for chunk in client.chat.completions.create(
                        model="chat", stream=True,
                        messages=[{"role": "user", "content": "hi"}]):
                    self.started.set()
                    if chunk.choices and chunk.choices[0].delta.content:
                        self.text += chunk.choices[0].delta.content
        except BaseException as exc:
            self.error = exc


def test_sigterm_drains_streams_in_flight_and_exits_0(
        tmp_path: Path, make_simulator: object) -> None:
    slow: SimulatorServer = make_simulator(token_latency={"ms": 100},  # type: ignore[operator]
                                           completion_tokens=30)
    process, base, key = serve(tmp_path, slow.url, grace="1s")
    try:
        streams = [Stream(base, key) for _ in range(3)]
        for stream in streams:
            stream.start()
        assert all(s.started.wait(10) for s in streams)
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        ready = httpx.get(base + "/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
        # Through the grace, new requests are still answered.
        late = httpx.post(base + "/v1/chat/completions", json=CHAT, timeout=10,
                          headers={"Authorization": f"Bearer {key}"})
        assert late.status_code == 200
        for stream in streams:
            stream.join(20)
        assert [s.error for s in streams] == [None, None, None]
        assert all(len(s.text.split()) == 30 for s in streams)  # every token, to the end
        assert process.wait(timeout=20) == 0
        assert time.monotonic() - stopped_at < 10
        with pytest.raises(httpx.ConnectError):
            httpx.get(base + "/healthz")
    finally:
        if process.poll() is None:
            process.kill()
    with sqlite3.connect(tmp_path / "state" / "ironhold.db") as db:
        records = [json.loads(r[0]) for r in db.execute(
            "SELECT record FROM ironhold_audit_records")]
    answered = [r for r in records if r["kind"] == "request" and r["outcome"] == "ok"]
    assert len(answered) == 4  # the three streams and the late request


def test_a_second_signal_exits_at_once(tmp_path: Path, make_simulator: object) -> None:
    endless: SimulatorServer = make_simulator(token_latency={"ms": 200},  # type: ignore[operator]
                                              completion_tokens=500)
    process, base, key = serve(tmp_path, endless.url, grace="30s", timeout="60s")
    try:
        stream = Stream(base, key)
        stream.start()
        assert stream.started.wait(10)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert process.poll() is None  # draining: the grace is long
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 1
        stream.join(10)
        assert stream.error is not None  # cut, as asked
    finally:
        if process.poll() is None:
            process.kill()
