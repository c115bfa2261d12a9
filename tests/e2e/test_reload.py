"""Reloading a real ``ironhold serve``: SIGHUP after an edit, ``ironhold config apply`` through
the admin API, ``config status`` after each; a broken edit refused with the old config kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import wait_http, wait_until
from tests.servers import SimulatorServer, free_port

IRONHOLD = [sys.executable, "-m", "ironhold"]


def run(*args: str, key: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IRONHOLD, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "IRONHOLD_ADMIN_KEY": key})


def config_text(simulator: SimulatorServer, port: int, weight: int = 1,
                extra_group: bool = False) -> str:
    text = f"""
server: {{host: 127.0.0.1, port: {port}}}
state: {{url: "sqlite:///./state/ironhold.db"}}
audit: {{enabled: true}}
models:
  - name: chat
    deployments: [{{name: sim, url: "{simulator.url}", model: sim, weight: {weight}}}]
"""
    if extra_group:
        text += f"""  - name: second
    deployments: [{{url: "{simulator.url}"}}]
"""
    return text


@pytest.fixture
def served(tmp_path: Path, simulator: SimulatorServer
           ) -> Iterator[tuple[subprocess.Popen[str], Path, str, str]]:
    port = free_port()
    path = tmp_path / "gateway.yaml"
    path.write_text(config_text(simulator, port))
    key = json.loads(run("keys", "create", "-c", str(path), "--name", "ops", "--admin",
                         "--json").stdout)["key"]
    process = subprocess.Popen([*IRONHOLD, "serve", "--config", str(path)],
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/readyz")
    yield process, path, base, key
    if process.poll() is None:
        process.kill()
        process.wait()
    if process.stderr:
        process.stderr.close()


def running_version(base: str, key: str) -> str:
    answer = httpx.get(base + "/admin/config", headers={"Authorization": f"Bearer {key}"})
    version: str = answer.json()["version"]
    return version


def wait_for_version(base: str, key: str, not_this: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        version = running_version(base, key)
        if version != not_this:
            return version
        time.sleep(0.1)
    raise AssertionError("the gateway did not reload")


def test_sighup_reloads_the_file_and_refuses_a_broken_one(
        served: tuple[subprocess.Popen[str], Path, str, str],
        simulator: SimulatorServer) -> None:
    process, path, base, key = served
    first = running_version(base, key)
    port = int(base.rsplit(":", 1)[1])
    path.write_text(config_text(simulator, port, extra_group=True))
    process.send_signal(signal.SIGHUP)
    second = wait_for_version(base, key, first)
    models = httpx.get(base + "/v1/models", headers={"Authorization": f"Bearer {key}"}).json()
    assert {m["id"] for m in models["data"]} == {"chat", "second"}
    assert run("config", "status", "--config", str(path), "--url", base,
               key=key).returncode == 0
    path.write_text("models: [{name: chat, deployments: [{url: 'not a url'}]}]\n")
    process.send_signal(signal.SIGHUP)
    # The refusal is counted once the reload has run (not after a guessed sleep).
    assert wait_until(lambda: 'ironhold_config_reloads_total{outcome="rejected"} 1.0' in
                      httpx.get(base + "/metrics").text, 30)
    assert process.poll() is None
    assert running_version(base, key) == second
    assert run("config", "status", "--config", str(path), "--url", base,
               key=key).returncode == 2  # the file itself is invalid
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0
    assert process.stderr is not None
    logs = [json.loads(line) for line in process.stderr.read().splitlines() if line.strip()]
    reloads = [line for line in logs if line.get("msg", "").startswith("config_reload")]
    assert [line["msg"] for line in reloads] == ["config_reloaded", "config_reload_refused"]
    assert "models[0].deployments[0].url" in reloads[1]["error"]
    assert reloads[0]["trigger"] == "sighup"


def test_config_apply_through_the_admin_api(
        served: tuple[subprocess.Popen[str], Path, str, str],
        simulator: SimulatorServer, tmp_path: Path) -> None:
    _, path, base, key = served
    port = int(base.rsplit(":", 1)[1])
    edit = tmp_path / "edited.yaml"
    edit.write_text(config_text(simulator, port, weight=3))
    dry = run("config", "apply", str(edit), "--url", base, "--dry-run", key=key)
    assert dry.returncode == 0, dry.stderr
    assert "~ models[chat].deployments[sim].weight: 1.0 -> 3.0" in dry.stdout
    assert run("config", "status", "--config", str(path), "--url", base,
               key=key).returncode == 0
    applied = run("config", "apply", str(edit), "--url", base, key=key)
    assert applied.returncode == 0, applied.stderr
    assert "applied: " in applied.stdout
    assert run("config", "status", "--config", str(edit), "--url", base,
               key=key).returncode == 0
    drift = run("config", "status", "--config", str(path), "--url", base, key=key)
    assert drift.returncode == 1 and "drift" in drift.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text(config_text(simulator, port + 1))
    refused = run("config", "apply", str(broken), "--url", base, key=key)
    assert refused.returncode == 1
    assert "broken.yaml: server.port: cannot change while serving" in refused.stderr
    assert run("config", "status", "--config", str(edit), "--url", base,
               key=key).returncode == 0
    assert run("config", "apply", str(edit), "--url", base,
               key="not-a-key").returncode == 2


def test_serve_watch_reloads_when_the_file_changes(tmp_path: Path,
                                                   simulator: SimulatorServer) -> None:
    port = free_port()
    path = tmp_path / "gateway.yaml"
    path.write_text(config_text(simulator, port))
    key = json.loads(run("keys", "create", "-c", str(path), "--name", "ops", "--admin",
                         "--json").stdout)["key"]
    process = subprocess.Popen([*IRONHOLD, "serve", "--config", str(path), "--watch"],
                               stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/readyz")
        first = running_version(base, key)
        time.sleep(0.5)  # the watch is set up once the server is
        path.write_text(config_text(simulator, port, weight=2))
        second = wait_for_version(base, key, first)
        assert run("config", "status", "--config", str(path), "--url", base,
                   key=key).returncode == 0
        assert second != first
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0


def test_rollout_commands_steer_a_running_gateway(tmp_path: Path,
                                                 simulator: SimulatorServer) -> None:
    port = free_port()
    path = tmp_path / "gateway.yaml"
    path.write_text(f"""
server: {{host: 127.0.0.1, port: {port}}}
state: {{url: "sqlite:///./state/ironhold.db"}}
models:
  - name: chat
    deployments:
      - {{name: stable, url: "{simulator.url}", version: v1}}
      - {{name: candidate, url: "{simulator.url}", version: v2}}
    rollout: {{candidate: candidate, steps: [10, 100], hold: 1h}}
""")
    key = json.loads(run("keys", "create", "-c", str(path), "--name", "ops", "--admin",
                         "--json").stdout)["key"]
    process = subprocess.Popen([*IRONHOLD, "serve", "--config", str(path)],
                               stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/readyz")
        deadline = time.monotonic() + 10
        while "at 10%" not in (status := run("rollout", "status", "--url", base,
                                              key=key)).stdout:
            assert time.monotonic() < deadline, status.stdout + status.stderr
            time.sleep(0.2)
        assert status.stdout.startswith("chat: candidate progressing at 10% (step 1 of 2")
        paused = run("rollout", "pause", "chat", "--url", base, key=key)
        assert paused.returncode == 0 and "paused at 10%" in paused.stdout
        again = run("rollout", "pause", "chat", "--url", base, key=key)
        assert again.returncode == 1 and "cannot pause" in again.stderr
        aborted = run("rollout", "abort", "chat", "--url", base, key=key)
        assert "rolled_back at 0%" in aborted.stdout
        assert run("rollout", "status", "nope", "--url", base, key=key).returncode == 1
        listed = httpx.get(base + "/v1/models", headers={"Authorization": f"Bearer {key}"})
        versions = [d["version"] for d in listed.json()["data"][0]["deployments"]]
        assert versions == ["v1", "v2"]
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0
