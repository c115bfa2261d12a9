"""``ironhold slo rules`` checked by promtool, unit-tested with ``promtool test rules``, and
evaluated by a real Prometheus scraping a real gateway's /metrics."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers import CHAT, post, wait_http, wait_until
from tests.servers import GatewayServer, SimulatorServer, free_port

IRONHOLD = [sys.executable, "-m", "ironhold"]
SLO = {"availability": 99.9, "ttft_p95": "800ms", "latency_p99": "10s", "window": "30d"}


def write_config(tmp_path: Path, url: str = "http://127.0.0.1:9/v1") -> Path:
    path = tmp_path / "slo.yaml"
    path.write_text(yaml.safe_dump({"models": [
        {"name": "chat", "slo": SLO, "deployments": [{"url": url}]},
        {"name": "embed", "deployments": [{"url": url}]}]}))
    return path


def rules_of(config: Path) -> tuple[Path, dict[str, Any]]:
    done = subprocess.run([*IRONHOLD, "slo", "rules", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, check=True)
    path = config.parent / "rules.yaml"
    path.write_text(done.stdout)
    return path, yaml.safe_load(done.stdout)


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd)


def test_rules_pass_promtool_check(tmp_path: Path) -> None:
    path, rules = rules_of(write_config(tmp_path))
    checked = promtool("check", "rules", str(path), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    alerts = [r for r in rules["groups"][1]["rules"]]
    # Three SLIs of one group (the other has no slo), a page and a ticket alert each.
    assert {(a["labels"]["model"], a["labels"]["sli"], a["labels"]["severity"])
            for a in alerts} == {("chat", sli, sev) for sli in ("availability", "ttft", "latency")
                                 for sev in ("page", "ticket")}
    page = next(a for a in alerts if a["labels"] == {
        "severity": "page", "model": "chat", "sli": "availability"})
    assert "> (14.4 * 0.001)" in page["expr"] and "> (6 * 0.001)" in page["expr"]
    ttft_ticket = next(a for a in alerts if a["labels"] == {
        "severity": "ticket", "model": "chat", "sli": "ttft"})
    assert "ratio_rate3d" in ttft_ticket["expr"] and "> (1 * 0.05)" in ttft_ticket["expr"]


def test_no_slo_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump({"models": [{"name": "chat", "deployments": [
        {"url": "http://127.0.0.1:9/v1"}]}]}))
    done = subprocess.run([*IRONHOLD, "slo", "rules", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "no model group has an 'slo'" in done.stderr


def test_burn_rate_alerts_under_promtool_test_rules(tmp_path: Path) -> None:
    path, rules = rules_of(write_config(tmp_path))
    page, ticket = (next(a for a in rules["groups"][1]["rules"] if a["labels"] == {
        "severity": severity, "model": "chat", "sli": "availability"})
        for severity in ("page", "ticket"))
    series = 'ironhold_slo_events_total{{model="chat",sli="{sli}",result="{result}"}}'
    tests = {"rule_files": [path.name], "evaluation_interval": "1m", "tests": [
        {   # 3% of requests fail for two hours: 30x the 0.1% budget, so the page fires (and
            # the ticket: the 3d window holds only these hours so far).
            "interval": "1m",
            "input_series": [
                {"series": series.format(sli="availability", result="good"),
                 "values": "0+97x120"},
                {"series": series.format(sli="availability", result="bad"),
                 "values": "0+3x120"},
                {"series": series.format(sli="latency", result="good"),
                 "values": "0+100x120"},
                {"series": series.format(sli="latency", result="bad"), "values": "0+0x120"}],
            "alert_rule_test": [
                {"eval_time": "70m", "alertname": "IronholdSloBurnRate", "exp_alerts": [
                    {"exp_labels": a["labels"], "exp_annotations": a["annotations"]}
                    for a in (page, ticket)]}],
            "promql_expr_test": [
                {"expr": 'model_sli:ironhold_slo_errors:ratio_rate5m{sli="availability"}',
                 "eval_time": "70m",
                 "exp_samples": [{"labels": 'model_sli:ironhold_slo_errors:ratio_rate5m'
                                            '{model="chat",sli="availability"}',
                                  "value": 0.03}]}],
        },
        {   # 0.05% fail: inside the budget, nothing fires.
            "interval": "1m",
            "input_series": [
                {"series": series.format(sli="availability", result="good"),
                 "values": "0+1999x120"},
                {"series": series.format(sli="availability", result="bad"),
                 "values": "0+1x120"}],
            "alert_rule_test": [
                {"eval_time": "110m", "alertname": "IronholdSloBurnRate", "exp_alerts": []}],
        },
    ]}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    tested = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[str, Path], str]]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(target: str, rules: Path) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [{"job_name": "ironhold", "static_configs": [
                {"targets": [target]}]}]}))
        processes.append(subprocess.Popen(
            [shutil.which("prometheus") or "prometheus", f"--config.file={config}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/-/ready", 30)
        return url

    yield start
    for process in processes:
        process.terminate()
        process.wait(10)


def test_a_real_prometheus_scraping_the_gateway_fires_the_page(
        tmp_path: Path, prometheus: Callable[[str, Path], str],
        make_gateway: Callable[..., GatewayServer],
        make_simulator: Callable[..., SimulatorServer]) -> None:
    flaky = make_simulator(faults=[{"kind": "status", "status": 503, "rate": 0.5}], seed=3)
    gw = make_gateway([{"name": "chat", "slo": SLO,
                        "routing": {"retries": {"attempts": 1}},
                        "deployments": [{"url": flaky.url}]}])
    rules, _ = rules_of(write_config(tmp_path, flaky.url))
    url = prometheus(f"127.0.0.1:{gw.port}", rules)
    key = gw.create_key()

    def query(expr: str) -> list[dict[str, Any]]:
        answer = httpx.get(url + "/api/v1/query", params={"query": expr}).json()
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    # Traffic spread over scrapes, so Prometheus sees the counters rise.
    assert wait_until(lambda: bool(query('up{job="ironhold"} == 1')), 30)
    statuses = []
    for _ in range(40):
        statuses.append(post(gw, key, CHAT).status_code)
        time.sleep(0.1)
    assert 200 in statuses and 502 in statuses

    firing = 'ALERTS{alertname="IronholdSloBurnRate",alertstate="firing",severity="page"}'
    assert wait_until(lambda: bool(query(firing)), 30), query("ALERTS")
    [alert] = query(firing)
    assert alert["metric"]["model"] == "chat" and alert["metric"]["sli"] == "availability"
    [ratio] = query('model_sli:ironhold_slo_errors:ratio_rate5m{sli="availability"}')
    assert 0.2 < float(ratio["value"][1]) < 0.8
    # The latency SLIs' series exist (and are all good): no alert for them.
    assert query('ironhold_slo_events_total{sli="latency",result="good"}')
    assert not query('ALERTS{sli="latency"}')
