"""``ironhold serve --workers 2`` as an operator runs it: two workers on one port, limits exact
across them (Redis), one audit log with two writers that verifies, a worker killed with
SIGKILL replaced, SIGHUP and SIGTERM forwarded; and what it refuses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import CHAT, wait_http
from tests.servers import SimulatorServer, free_port

IRONHOLD = [sys.executable, "-m", "ironhold"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IRONHOLD, *args], capture_output=True, text=True, timeout=60)


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def wait_for(condition: object, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def workers_config(path: Path, port: int, models: str, extra: str = "") -> None:
    """A config for two workers on ``port`` (SQLite state, limits in Redis) with ``models``
    (the YAML of the models list's items)."""
    path.write_text(f"""
server: {{host: 127.0.0.1, port: {port}, drain: {{grace: 0.2s}}}}
state: {{url: "sqlite:///./state/ironhold.db", redis: "redis://127.0.0.1:6379/7"}}
logging: {{access: false}}
{extra}models:
{models}""")


def start_workers(path: Path, admin: bool = False) -> tuple[subprocess.Popen[bytes], str]:
    """``serve --workers 2`` on ``path``, and a new key (an admin's if asked)."""
    key = json.loads(run("keys", "create", "-c", str(path), "--name", "app", "--json",
                         *(["--admin"] if admin else [])).stdout)["key"]
    process = subprocess.Popen([*IRONHOLD, "serve", "--config", str(path), "--workers", "2"],
                               stderr=subprocess.DEVNULL)
    return process, key


def test_two_workers_share_a_port_limits_and_one_audit_log(
        tmp_path: Path, simulator: SimulatorServer) -> None:
    port = free_port()
    path = tmp_path / "gateway.yaml"
    prefix = uuid.uuid4().hex[:8]
    limits = f"audit: {{enabled: true}}\nlimits: {{tenants: {{t-{prefix}: {{rpm: 12}}}}}}\n"
    workers_config(path, port, f'  - {{name: chat, deployments: [{{url: "{simulator.url}"}}]}}\n',
                   extra=limits)
    key = json.loads(run("keys", "create", "-c", str(path), "--name", "app", "--tenant",
                         f"t-{prefix}", "--json").stdout)["key"]
    process = subprocess.Popen([*IRONHOLD, "serve", "--config", str(path), "--workers", "2"],
                               stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/readyz")
        assert wait_for(lambda: len(children(process.pid)) == 2)
        headers = {"Authorization": f"Bearer {key}"}
        # New connections each: the kernel spreads them over both workers.
        statuses = [httpx.post(base + "/v1/chat/completions", json=CHAT, headers=headers,
                               timeout=10).status_code for _ in range(20)]
        assert statuses.count(200) == 12 and statuses.count(429) == 8  # exact across workers
        first = children(process.pid)
        os.kill(first[0], signal.SIGKILL)
        started = time.monotonic()
        assert wait_for(lambda: len(children(process.pid)) == 2
                        and children(process.pid) != first, 5)
        assert time.monotonic() - started < 3  # replaced within about 2 s
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0  # after both workers drained and exited
    finally:
        if process.poll() is None:
            process.kill()
    verified = run("audit", "verify", "--config", str(path))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "ok: 20 records" in verified.stdout  # both writers, one gap-free log


def test_workers_without_redis_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("server: {port: 18999}\nmodels: [{name: chat, deployments: "
                    "[{url: 'http://127.0.0.1:9/v1'}]}]\n")
    refused = run("serve", "--config", str(path), "--workers", "2")
    assert refused.returncode == 1
    assert "Set state.redis" in refused.stderr
    assert run("serve", "--config", str(path), "--workers", "zero").returncode == 2


def test_metrics_are_the_whole_groups(tmp_path: Path, simulator: SimulatorServer) -> None:
    """A scrape reaches one worker; it answers with both workers' series, labelled, and the
    answer is valid Prometheus text (promtool)."""
    port = free_port()
    path = tmp_path / "gateway.yaml"
    workers_config(path, port, f'  - {{name: chat, deployments: [{{url: "{simulator.url}"}}]}}\n')
    process, key = start_workers(path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/readyz")
        for _ in range(30):
            assert httpx.post(base + "/v1/chat/completions", json=CHAT, timeout=10, headers={
                "Authorization": f"Bearer {key}"}).status_code == 200

        def scrape() -> tuple[str, dict[str, float]]:
            text = httpx.get(base + "/metrics", timeout=10).text
            counts: dict[str, float] = {}
            for line in text.splitlines():
                if line.startswith("gen_ai_client_operation_duration_seconds_count{"):
                    worker = line.split('worker="')[1].split('"')[0]
                    counts[worker] = counts.get(worker, 0) + float(line.rsplit(" ", 1)[1])
            return text, counts

        # Both workers' sockets are up once a scrape shows both.
        assert wait_for(lambda: set(scrape()[1]) == {"0", "1"})
        for _ in range(4):  # whichever worker answers, it is the whole group
            text, counts = scrape()
            assert set(counts) == {"0", "1"} and sum(counts.values()) == 30
        checked = subprocess.run(["promtool", "check", "metrics"], input=text,
                                 capture_output=True, text=True, timeout=30)
        assert "error" not in (checked.stdout + checked.stderr).lower(), checked.stderr
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0


@pytest.mark.model
def test_the_supervisor_runs_the_local_model_once_for_every_worker(tmp_path: Path) -> None:
    from ironhold.upstream.artifacts import demo_model_path

    gguf, digest = demo_model_path()
    port = free_port()
    path = tmp_path / "gateway.yaml"
    workers_config(path, port, f"""  - name: smollm
    routing: {{timeout: {{total: 120s}}}}
    deployments:
      - {{name: local, local: {{gguf: "{gguf}", sha256: "{digest}", ctx_size: 512, threads: 1,
                                default_max_tokens: 8}}}}
""")
    process, key = start_workers(path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/readyz", seconds=120)
        assert wait_for(lambda: len(children(process.pid)) == 3)  # two workers, one model
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    for pid in children(process.pid)]
        assert sum(b"llama_cpp.server" in c for c in commands) == 1
        headers = {"Authorization": f"Bearer {key}"}
        for _ in range(4):  # new connections: both workers, one model server
            answer = httpx.post(base + "/v1/chat/completions", headers=headers, timeout=120,
                                json={"model": "smollm", "max_tokens": 4, "messages": [
                                    {"role": "user", "content": "Say hi"}]})
            assert answer.status_code == 200, answer.text
        listed = httpx.get(base + "/v1/models", headers=headers).json()["data"][0]
        assert listed["deployments"][0]["digest"] == f"sha256:{digest}"
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0


def test_sighup_to_the_supervisor_reloads_every_worker(tmp_path: Path,
                                                       simulator: SimulatorServer) -> None:
    port = free_port()
    path = tmp_path / "gateway.yaml"
    models = f'  - {{name: chat, deployments: [{{url: "{simulator.url}", weight: WEIGHT}}]}}\n'
    workers_config(path, port, models.replace("WEIGHT", "1"))
    process, admin = start_workers(path, admin=True)
    base = f"http://127.0.0.1:{port}"

    def versions() -> set[str]:
        """What the workers run, over enough new connections to reach both."""
        return {httpx.get(base + "/admin/config", timeout=10,
                          headers={"Authorization": f"Bearer {admin}"}).json()["version"]
                for _ in range(16)}

    try:
        wait_http(base + "/readyz")
        assert wait_for(lambda: len(children(process.pid)) == 2)
        before = versions()
        assert len(before) == 1
        workers_config(path, port, models.replace("WEIGHT", "3"))
        process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: len(versions()) == 1 and versions() != before)
        assert run("config", "status", "--config", str(path), "--url", base,
                   "--key", admin).returncode == 0
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0


def test_a_killed_worker_fails_only_what_it_had_in_flight(
        tmp_path: Path, make_simulator: Any) -> None:
    slow: SimulatorServer = make_simulator(token_latency={"ms": 50}, completion_tokens=10)
    port = free_port()
    path = tmp_path / "gateway.yaml"
    workers_config(path, port, f'  - {{name: chat, deployments: [{{url: "{slow.url}"}}]}}\n')
    process, key = start_workers(path)
    base = f"http://127.0.0.1:{port}"
    failures: list[float] = []
    answered = [0]
    stop = threading.Event()

    def client(stream: bool) -> None:
        while not stop.is_set():  # a new connection each time, as many clients do
            try:
                answer = httpx.post(base + "/v1/chat/completions", timeout=10,
                                    json={**CHAT, "stream": stream},
                                    headers={"Authorization": f"Bearer {key}"})
                ok = answer.status_code == 200 and (not stream or "[DONE]" in answer.text)
            except httpx.HTTPError:
                ok = False
            if ok:
                answered[0] += 1
            else:
                failures.append(time.monotonic())

    threads = [threading.Thread(target=client, args=(i % 3 == 0,), daemon=True)
               for i in range(6)]
    try:
        wait_http(base + "/readyz")
        assert wait_for(lambda: len(children(process.pid)) == 2)
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        before = list(children(process.pid))
        killed_at = time.monotonic()
        os.kill(before[0], signal.SIGKILL)
        assert wait_for(lambda: len(children(process.pid)) == 2
                        and children(process.pid) != before, 5)
        time.sleep(1.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
        process.terminate()
        assert process.wait(timeout=20) == 0
    assert answered[0] > 20
    # Only what the killed worker was serving (at most every client's one request), at once.
    assert len(failures) <= len(threads), failures
    # Seen at once by the clients (1 s of slack for a loaded machine's scheduling).
    assert all(at - killed_at < 1.5 for at in failures), [at - killed_at for at in failures]
