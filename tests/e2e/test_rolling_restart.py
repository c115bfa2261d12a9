"""Three replicas on one PostgreSQL, Redis and NATS behind a real load balancer (Debian's
HAProxy, health-checking ``/readyz``), under steady load with a third of the requests streaming
for about a second each: every replica restarted in turn, then one killed with SIGKILL.

The rolling restart fails no request; every answered request is in the audit log, which
verifies; limits stay exact across the replicas. The killed replica fails only what it had in
flight. ``bench/rolling_restart.py`` runs the same drill longer
(``IRONHOLD_DRILL_SECONDS``) and writes its figures (``IRONHOLD_DRILL_RESULTS``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.helpers import CHAT, wait_http
from tests.servers import SimulatorServer, free_port

pytestmark = pytest.mark.postgres

IRONHOLD = [sys.executable, "-m", "ironhold"]
CLIENTS = 12
STREAMING = CLIENTS // 3


class Replica:
    def __init__(self, config: Path, index: int):
        self.config, self.index = config, index
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [*IRONHOLD, "serve", "--config", str(self.config), "--port", str(self.port)],
            stderr=subprocess.DEVNULL, cwd=self.config.parent)
        wait_http(self.base + "/readyz")

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()


class Load:
    """Closed-loop clients through the load balancer, a third of them streaming."""

    def __init__(self, url: str, key: str):
        self.url, self.key = url, key
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.sent = self.ok = 0
        self.failures: list[tuple[float, str]] = []
        self.threads = [threading.Thread(target=self._client, args=(i < STREAMING,),
                                         daemon=True) for i in range(CLIENTS)]
        for thread in self.threads:
            thread.start()

    def _client(self, stream: bool) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(timeout=30, headers=headers) as client:
            while not self.stopping.is_set():
                failure = None
                try:
                    answer = client.post(self.url, json={**CHAT, "stream": stream})
                    if answer.status_code != 200:
                        failure = f"status {answer.status_code}"
                    elif stream and ("[DONE]" not in answer.text or '"error"' in answer.text):
                        failure = "stream cut"
                except httpx.HTTPError as exc:
                    failure = type(exc).__name__
                with self.lock:
                    self.sent += 1
                    if failure is None:
                        self.ok += 1
                    else:
                        self.failures.append((time.monotonic(), failure))

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)


def haproxy_config(port: int, replicas: list[Replica]) -> str:
    servers = "\n".join(f"    server r{r.index} 127.0.0.1:{r.port} check inter 100ms fall 1 "
                        "rise 2" for r in replicas)
    return f"""
global
    maxconn 512
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    # A request refused at connect (a replica whose listener just closed) goes to another.
    retries 3
    retry-on conn-failure
    option redispatch
frontend api
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option http-server-close
    option httpchk GET /readyz
    http-check expect status 200
{servers}
"""


@pytest.fixture
def replicated(tmp_path: Path, postgres_url: str, make_simulator: Any,
               ) -> Iterator[tuple[list[Replica], str, Path, str]]:
    upstream: SimulatorServer = make_simulator(token_latency={"ms": 100},
                                               completion_tokens=10)
    run_id = uuid.uuid4().hex[:10]
    config = tmp_path / "gateway.yaml"
    config.write_text(f"""
server: {{host: 127.0.0.1, drain: {{grace: 1s, timeout: 20s}}}}
state: {{url: "{postgres_url}", redis: "redis://127.0.0.1:6379/8"}}
auth: {{key_secret: "a-shared-secret-for-{run_id}"}}
audit:
  enabled: true
  nats: {{url: "nats://127.0.0.1:4222", stream: "DRILL_{run_id.upper()}",
          subject: "drill.{run_id}"}}
limits: {{tenants: {{limited-{run_id}: {{rpm: 50}}}}}}
logging: {{access: false}}
models:
  - name: chat
    deployments: [{{url: "{upstream.url}"}}]
""")
    replicas = [Replica(config, i) for i in range(3)]
    for replica in replicas:
        replica.start()
    port = free_port()
    balancer_config = tmp_path / "haproxy.cfg"
    balancer_config.write_text(haproxy_config(port, replicas))
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    balancer = subprocess.Popen([haproxy, "-f", str(balancer_config), "-db"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz")
        yield replicas, f"http://127.0.0.1:{port}", config, run_id
    finally:
        balancer.terminate()
        balancer.wait(10)
        for replica in replicas:
            if replica.process is not None and replica.process.poll() is None:
                replica.kill()


def audit_requests(postgres_url: str) -> list[dict[str, Any]]:
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT record FROM ironhold_audit_records ORDER BY seq").fetchall()
    return [r for r in (json.loads(row[0]) for row in rows) if r["kind"] == "request"]


def test_a_rolling_restart_fails_nothing_and_a_kill_fails_only_its_own(
        replicated: tuple[list[Replica], str, Path, str], postgres_url: str) -> None:
    replicas, balancer, config, run_id = replicated
    seconds = float(os.environ.get("IRONHOLD_DRILL_SECONDS", "2"))
    key = json.loads(subprocess.run(
        [*IRONHOLD, "keys", "create", "-c", str(config), "--name", "app", "--json"],
        capture_output=True, text=True, check=True, cwd=config.parent).stdout)["key"]
    load = Load(balancer + "/v1/chat/completions", key)
    exits = []
    try:
        time.sleep(seconds)
        for replica in replicas:  # one at a time, as a Deployment's rolling update does
            exits.append(replica.stop())
            replica.start()
            time.sleep(seconds)
        restarted_failures = list(load.failures)
        # A replica killed outright: only what it had in flight may fail.
        killed_at = time.monotonic()
        replicas[1].kill()
        time.sleep(seconds)
        replicas[1].start()
        time.sleep(seconds)
    finally:
        load.stop()
    assert exits == [0, 0, 0]
    assert restarted_failures == [], restarted_failures
    after_kill = [f for f in load.failures if f[0] >= killed_at]
    # At most what one replica had in flight (a third of the clients, and a few in the time
    # the balancer takes to see it gone), all within the second after the kill.
    assert len(after_kill) <= CLIENTS // 3 + 2, after_kill
    assert all(at - killed_at < 1.5 for at, _ in after_kill), after_kill
    # Limits stay exact across the replicas (Redis): 50 a minute, whichever replica answers.
    limited = json.loads(subprocess.run(
        [*IRONHOLD, "keys", "create", "-c", str(config), "--name", "limited", "--tenant",
         f"limited-{run_id}", "--json"], capture_output=True, text=True, check=True,
        cwd=config.parent).stdout)["key"]

    def limited_request(_: int) -> int:
        return httpx.post(balancer + "/v1/chat/completions", json=CHAT, timeout=30,
                          headers={"Authorization": f"Bearer {limited}"}).status_code

    with ThreadPoolExecutor(20) as pool:  # at once, across the replicas
        statuses = list(pool.map(limited_request, range(60)))
    assert statuses.count(200) == 50 and statuses.count(429) == 10
    for replica in replicas:
        assert replica.stop() == 0
    # Every answered request is in the one audit log, which verifies.
    recorded = audit_requests(postgres_url)
    assert len([r for r in recorded if r["outcome"] == "ok"]) >= load.ok
    verified = subprocess.run([*IRONHOLD, "audit", "verify", "--config", str(config)],
                              capture_output=True, text=True, cwd=config.parent, timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    results = os.environ.get("IRONHOLD_DRILL_RESULTS")
    if results:
        Path(results).write_text(json.dumps({
            "replicas": len(replicas), "clients": CLIENTS, "streaming": STREAMING,
            "seconds_between_restarts": seconds, "requests": load.sent, "answered": load.ok,
            "failed_during_rolling_restart": len(restarted_failures),
            "failed_after_kill": len(after_kill), "kill_failures": after_kill,
            "audit_request_records": len(recorded), "audit_verified": True,
            "limited_statuses": {"200": statuses.count(200), "429": statuses.count(429)},
        }, indent=2))
