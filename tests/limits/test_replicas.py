"""Three gateway processes, one Redis, one PostgreSQL: a key's limit holds across all of them
(admitted <= limit + 1%, not three times the limit)."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.helpers import CHAT, wait_http
from tests.servers import SimulatorServer, free_port

IRONHOLD = [sys.executable, "-m", "ironhold"]
pytestmark = pytest.mark.postgres


@pytest.fixture
def replicas(tmp_path: Path, simulator: SimulatorServer,
             postgres_url: str) -> Iterator[tuple[list[str], Path]]:
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "state": {"url": postgres_url, "redis": "redis://127.0.0.1:6379/14"},
        "auth": {"key_secret": "replicas-share-this-secret-" + uuid.uuid4().hex},
        "logging": {"level": "warning", "access": False},
        "models": [{"name": "chat", "deployments": [{"url": simulator.url}]}],
    }))
    processes, bases = [], []
    for _ in range(3):
        port = free_port()
        processes.append(subprocess.Popen([*IRONHOLD, "serve", "-c", str(config), "--port",
                                           str(port)], stderr=subprocess.DEVNULL))
        bases.append(f"http://127.0.0.1:{port}")
    for base in bases:
        wait_http(base + "/readyz", seconds=60)
    yield bases, config
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=15)


def test_a_limit_holds_across_three_replicas(replicas: tuple[list[str], Path]) -> None:
    bases, config = replicas
    created = subprocess.run([*IRONHOLD, "keys", "create", "-c", str(config), "--name", "shared",
                              "--rpm", "40", "--concurrency", "1000", "--json"],
                             capture_output=True, text=True, check=True)
    key = json.loads(created.stdout)["key"]

    def call(i: int) -> httpx.Response:
        return httpx.post(bases[i % 3] + "/v1/chat/completions", json=CHAT, timeout=30,
                          headers={"Authorization": f"Bearer {key}"})

    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        responses = list(pool.map(call, range(150)))
    statuses = [r.status_code for r in responses]
    admitted = statuses.count(200)
    assert admitted <= 40 * 1.01, f"{admitted} admitted for a limit of 40 across 3 replicas"
    assert admitted == 40, "every replica shares the one window, and all of it is used"
    assert statuses.count(429) == 150 - admitted
    per_replica = [sum(1 for i, s in enumerate(statuses) if s == 200 and i % 3 == r)
                   for r in range(3)]
    assert all(n > 0 for n in per_replica), per_replica  # all three replicas admitted some
    refused = next(r for r in responses if r.status_code == 429)
    assert int(refused.headers["Retry-After"]) >= 1

    # The same 150 requests, from three replicas, in one audit log: each once, one sequence,
    # and the whole log verifies (checkpoints signed by all three with the shared key).
    ids = {r.headers["x-request-id"] for r in responses}
    verified = subprocess.run([*IRONHOLD, "audit", "verify", "-c", str(config), "--json"],
                              capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["records"] == 150
    exported = subprocess.run([*IRONHOLD, "audit", "export", "-c", str(config)],
                              capture_output=True, text=True, timeout=120, check=True)
    records = [json.loads(line)["record"] for line in exported.stdout.splitlines()]
    assert {r["request_id"] for r in records} == ids
    outcomes = [r["outcome"] for r in records]
    assert outcomes.count("ok") == admitted
    assert outcomes.count("rate_limit_exceeded") == statuses.count(429)
