"""``ironhold chaos run`` as a user runs it: a subprocess against a real gateway and simulators."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ironhold.chaos.experiment import Experiment
from ironhold.config.loader import load_yaml_model
from tests.helpers import metric
from tests.servers import GatewayServer, SimulatorServer

ROOT = Path(__file__).resolve().parents[2]


def run_experiment(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ironhold", "chaos", "run", str(path), *args],
                          capture_output=True, text=True, timeout=60, check=False)


def experiment(tmp_path: Path, gw: GatewayServer, key: str, **spec: Any) -> Path:
    data = {"name": "test", "target": {"base_url": gw.v1, "api_key": key, "model": "chat"},
            "load": {"rate": 40, "concurrency": 16},
            "phases": {"steady": "1s", "inject": "2s", "recover": "1s"},
            "abort": {"min_requests": 10}, **spec}
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_fault_the_gateway_absorbs_keeps_the_hypothesis(
        tmp_path: Path, make_gateway: Callable[..., GatewayServer],
        make_simulator: Callable[..., SimulatorServer]) -> None:
    a, b = make_simulator(), make_simulator()
    gw = make_gateway([{"name": "chat", "routing": {"balancer": "round_robin"},
                        "deployments": [{"name": "a", "url": a.url},
                                        {"name": "b", "url": b.url}]}])
    path = experiment(tmp_path, gw, gw.create_key("ops", admin=True),
                      faults=[{"kind": "abort", "status": 503, "deployment": "a"}],
                      hypothesis={"success_percent": 100})
    done = run_experiment(path, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["held"] and report["aborted"] is None
    assert [p["phase"] for p in report["phases"]] == ["steady", "inject", "recover"]
    inject = report["phases"][1]
    assert inject["requests"] >= 60 and inject["success_percent"] == 100
    assert metric(gw, "ironhold_injected_faults_total", deployment="a", kind="abort") >= 1
    # Without --json: a table on stdout, progress on stderr.
    text = run_experiment(path)
    assert text.returncode == 0 and "hypothesis held" in text.stdout
    assert "inject" in text.stderr


def test_a_fault_it_cannot_absorb_breaks_the_hypothesis_and_stops_early(
        tmp_path: Path, make_gateway: Callable[..., GatewayServer],
        simulator: SimulatorServer) -> None:
    gw = make_gateway([{"name": "chat", "deployments": [{"url": simulator.url}]}])
    path = experiment(tmp_path, gw, gw.create_key("ops", admin=True),
                      phases={"steady": "1s", "inject": "10s", "recover": "1s"},
                      load={"rate": 40, "concurrency": 16, "stream": True},
                      faults=[{"kind": "abort", "status": 500}])
    done = run_experiment(path, "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert not report["held"] and "success fell" in report["aborted"]
    assert len(report["phases"]) == 2 and report["phases"][1]["seconds"] < 5
    assert report["phases"][1]["outcomes"].get("502", 0) > 0


def test_experiment_errors_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ntarget: {api_key: k, model: m}\nfaults: [{kind: explode}]\n")
    done = run_experiment(path)
    assert done.returncode == 2 and "faults[0].kind" in done.stderr
    unreachable = experiment(tmp_path, type("G", (), {"v1": "http://127.0.0.1:9/v1"})(),
                             "k", faults=[{"kind": "reset"}],
                             phases={"steady": "200ms", "inject": "200ms", "recover": "200ms"})
    done = run_experiment(unreachable)
    assert done.returncode == 2 and "could not reach" in done.stderr


def test_shipped_experiments_are_valid() -> None:
    shipped = sorted((ROOT / "examples" / "chaos").glob("*.yaml"))
    assert len(shipped) >= 3
    for path in shipped:
        load_yaml_model(path, Experiment, env={"IRONHOLD_ADMIN_KEY": "ih-test"})
