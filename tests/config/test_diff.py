"""The config's version and its semantic diff, through the library and the command."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx
import yaml

from ironhold.config import Config, parse_config
from ironhold.config.diff import config_diff
from ironhold.config.version import config_version
from tests.servers import GatewayServer

BASE = {"models": [
    {"name": "chat", "deployments": [
        {"name": "gpu-0", "url": "http://10.0.0.1:8000/v1", "api_key": "secret-one"},
        {"name": "gpu-1", "url": "http://10.0.0.2:8000/v1"}]},
    {"name": "embed", "deployments": [{"url": "http://10.0.0.3:8000/v1"}]}],
    "guard": {"enabled": True}}


def parsed(data: Mapping[str, object], where: Path = Path("/a")) -> Config:
    return parse_config(data, source=str(where / "ironhold.yaml"), base_dir=where)


def test_reordering_and_spelt_out_defaults_are_no_change() -> None:
    models: list[dict[str, object]] = BASE["models"]  # type: ignore[assignment]
    same = {"models": [models[1], {**models[0], "routing": {"retries": {"attempts": 3}}}],
            "guard": {"enabled": True}, "server": {"port": 8080}}
    before, after = parsed(BASE), parsed(same, Path("/elsewhere"))
    assert config_diff(before, after) == []
    assert config_version(before) == config_version(after)


def test_changes_are_named_by_where_they_are() -> None:
    changed = yaml.safe_load(yaml.safe_dump(BASE))
    chat = changed["models"][0]
    chat["deployments"][1]["weight"] = 2
    chat["deployments"].append({"name": "gpu-2", "url": "http://10.0.0.4:8000/v1"})
    del changed["models"][1]
    changed["guard"]["enabled"] = False
    lines = [c.line() for c in config_diff(parsed(BASE), parsed(changed))]
    assert "~ models[chat].deployments[gpu-1].weight: 1.0 -> 2.0" in lines
    assert any(line.startswith("+ models[chat].deployments[gpu-2]: ") for line in lines)
    assert any(line.startswith("- models[embed]: ") for line in lines)
    assert "~ guard.enabled: True -> False" in lines
    assert len(lines) == 4
    assert "secret-one" not in repr(lines)


def test_the_command_exits_by_the_answer(tmp_path: Path) -> None:
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(yaml.safe_dump(BASE))
    new.write_text(yaml.safe_dump({**BASE, "guard": {"enabled": False}}))

    def diff(a: Path, b: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ironhold", "config", "diff", str(a),
                               str(b)], capture_output=True, text=True, timeout=60)

    same = diff(old, old)
    assert same.returncode == 0 and "no differences" in same.stdout
    differ = diff(old, new)
    assert differ.returncode == 1
    assert "guard:\n  ~ guard.enabled: True -> False" in differ.stdout
    assert "1 change: version" in differ.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [{name: chat}]")
    invalid = diff(old, broken)
    assert invalid.returncode == 2 and "deployments" in invalid.stderr


def test_the_running_config_is_named_not_shown(gateway: GatewayServer) -> None:
    url = gateway.base_url + "/admin/config"
    assert httpx.get(url).status_code == 401
    user = gateway.create_key()
    assert httpx.get(url, headers={"Authorization": f"Bearer {user}"}).status_code == 403
    admin = gateway.create_key(admin=True)
    answer = httpx.get(url, headers={"Authorization": f"Bearer {admin}"}).json()
    assert set(answer) == {"version", "loaded_at", "source"}
    assert answer["version"] == config_version(gateway.config)
    assert answer["source"] == "test.yaml" and answer["loaded_at"] > 0


def test_config_status_tells_drift_from_sync(gateway: GatewayServer, tmp_path: Path) -> None:
    admin = gateway.create_key(admin=True)
    running = tmp_path / "running.yaml"
    # The gateway's own config, as written by the test helper beside its state.
    running.write_text((gateway.config.base_dir / "ironhold.yaml").read_text())
    edited = tmp_path / "edited.yaml"
    data = yaml.safe_load(running.read_text())
    data["guard"] = {"enabled": False}
    edited.write_text(yaml.safe_dump(data))

    def status(path: Path, key: str = admin,
               url: str = gateway.base_url) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ironhold", "config", "status", "--config",
                               str(path), "--url", url], capture_output=True, text=True,
                              timeout=60, env={**os.environ, "IRONHOLD_ADMIN_KEY": key})

    same = status(running)
    assert same.returncode == 0 and "in sync" in same.stdout, same.stdout + same.stderr
    drift = status(edited)
    assert drift.returncode == 1 and "drift" in drift.stdout
    refused = status(running, key=gateway.create_key())
    assert refused.returncode == 2 and "403" in refused.stderr
    assert status(running, url="file:///etc/passwd").returncode == 2
