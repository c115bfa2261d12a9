"""The ``ironhold`` command as a user runs it: separate processes, real files, real ports."""

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
import openai
import pytest

from ironhold.core.ids import is_uuid
from tests.helpers import wait_http
from tests.servers import SimulatorServer, free_port

IRONHOLD = [sys.executable, "-m", "ironhold"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # A wide "terminal", so rich's tables are not wrapped mid-word.
    return subprocess.run([*IRONHOLD, *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env={**os.environ, "COLUMNS": "200"})


@pytest.fixture
def config_file(tmp_path: Path, simulator: SimulatorServer) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(f"""
server: {{host: 127.0.0.1, port: {free_port()}}}
state: {{url: "sqlite:///./state/ironhold.db"}}
models:
  - name: chat
    deployments: [{{url: "{simulator.url}", model: sim}}]
""")
    return path


def test_help_and_version() -> None:
    out = run("--help")
    assert out.returncode == 0
    for command in ("serve", "demo", "simulate", "keys", "config"):
        assert command in out.stdout
    assert run("--version").stdout.startswith("ironhold ")


def test_config_validate_exit_codes(tmp_path: Path, config_file: Path) -> None:
    ok = run("config", "validate", str(config_file))
    assert ok.returncode == 0 and "valid" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [{name: x, deployments: [{url: nope}]}]\n")
    failed = run("config", "validate", str(bad))
    assert failed.returncode == 1
    assert f"{bad}: models[0].deployments[0].url" in failed.stderr
    assert run("config", "validate", str(tmp_path / "missing.yaml")).returncode == 1


def test_keys_create_list_revoke(config_file: Path) -> None:
    created = run("keys", "create", "--config", str(config_file), "--name", "ci",
                  "--models", "chat,other", "--admin", "--json")
    assert created.returncode == 0, created.stderr
    assert "no model group 'other'" in created.stderr
    key = json.loads(created.stdout)
    assert key["key"].startswith("ih-") and key["models"] == ["chat", "other"] and key["admin"]
    # State lives relative to the config file, not the working directory.
    assert (config_file.parent / "state" / "ironhold.db").exists()
    listed = run("keys", "list", "--config", str(config_file), "--json")
    assert [k["id"] for k in json.loads(listed.stdout)] == [key["id"]]
    assert key["key"] not in listed.stdout
    assert run("keys", "revoke", "--config", str(config_file), key["id"]).returncode == 0
    assert json.loads(run("keys", "list", "--config", str(config_file), "--json").stdout) == []
    again = run("keys", "revoke", "--config", str(config_file), key["id"])
    assert again.returncode == 1 and "no active key" in again.stderr


def test_keys_create_with_tenant_limits_and_expiry(config_file: Path) -> None:
    created = run("keys", "create", "-c", str(config_file), "--name", "acme-bot", "--tenant",
                  "acme", "--rpm", "60", "--tpm", "5000", "--budget-usd", "12.5",
                  "--daily-budget-usd", "1", "--concurrency", "3", "--tools", "search,fetch",
                  "--expires", "30d", "--json")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["tenant"] == "acme" and key["tools"] == ["fetch", "search"]
    assert key["limits"] == {"rpm": 60, "tpm": 5000, "concurrency": 3, "budget_usd_daily": 1.0,
                             "budget_usd_monthly": 12.5}
    assert key["expires_at"] - key["created_at"] in range(30 * 86400 - 1, 30 * 86400 + 2)
    table = run("keys", "list", "-c", str(config_file))
    assert "acme" in table.stdout and "rpm 60" in table.stdout and "active" in table.stdout
    for args, problem in ((["--expires", "soon"], "--expires"), (["--rpm", "0"], "--rpm"),
                          (["--budget-usd", "-3"], "--budget-usd")):
        bad = run("keys", "create", "-c", str(config_file), "--name", "x", *args)
        assert bad.returncode != 0 and problem in bad.stderr, bad.stderr


@pytest.fixture
def served(config_file: Path) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    key = json.loads(run("keys", "create", "-c", str(config_file), "--name", "u",
                         "--json").stdout)["key"]
    port = free_port()
    process = subprocess.Popen([*IRONHOLD, "serve", "--config", str(config_file), "--port",
                                str(port)], stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/readyz")
    yield process, base, key
    if process.poll() is None:
        process.kill()
        process.wait()
    if process.stderr:
        process.stderr.close()


def test_serve_answers_logs_json_and_stops_on_sigterm(
    served: tuple[subprocess.Popen[str], str, str],
) -> None:
    process, base, key = served
    with openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0) as client:
        reply = client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "a secret prompt"}])
    assert reply.choices[0].message.content
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0
    assert process.stderr is not None
    lines = [json.loads(line) for line in process.stderr.read().splitlines() if line.strip()]
    access = [line for line in lines if line.get("msg") == "request"]
    assert len(access) == 1 and access[0]["status"] == 200
    assert is_uuid(access[0]["request_id"])
    assert not any("a secret prompt" in json.dumps(line) for line in lines)
    assert not any(key in json.dumps(line) for line in lines)


def test_serve_refuses_an_invalid_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: {port: 99999}\n")
    out = run("serve", "--config", str(bad))
    assert out.returncode == 1 and "server.port" in out.stderr and "Traceback" not in out.stderr


def test_simulate_serves_the_openai_api(tmp_path: Path) -> None:
    port = free_port()
    profile = tmp_path / "p.yaml"
    profile.write_text("completion_tokens: 3\n")
    process = subprocess.Popen([*IRONHOLD, "simulate", "--port", str(port), "--profile",
                                str(profile)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/v1/models")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x") as client:
            reply = client.chat.completions.create(model="m", messages=[{"role": "user",
                                                                         "content": "hi"}])
        assert reply.choices[0].message.content == "the gateway keeps"
    finally:
        process.terminate()
        process.wait(10)
