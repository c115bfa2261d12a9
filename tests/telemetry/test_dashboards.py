"""The Grafana dashboard generated as code: the committed JSON is what the generator writes,
every query parses (promtool), and every metric it reads is one a gateway exposes."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path
from types import ModuleType

import httpx
import yaml

from tests.helpers import CHAT, post
from tests.servers import GatewayServer

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "deploy" / "grafana" / "dashboards.py"
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum",
                                                             "_created"), "gauge": ("",)}


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboards", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def expressions() -> list[str]:
    board = json.loads((ROOT / "deploy" / "grafana" / "ironhold.json").read_text())
    found = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            found.append(target["expr"])
    for variable in board["templating"]["list"]:
        if variable.get("type") == "query":
            found.append(variable["query"])
    return found


def _names_only(expr: str) -> str:
    """The expression without its label names: grouping clauses, selectors, and
    ``label_values``' label argument."""
    expr = re.sub(r"label_values\((\w+), \w+\)", r"\1", expr)
    expr = re.sub(r"\bby \([^)]*\)", "", expr)
    return re.sub(r"\{[^}]*\}", "", expr)


def test_the_committed_dashboard_is_what_the_generator_writes() -> None:
    written = generator().render()
    for path in (ROOT / "deploy" / "grafana" / "ironhold.json",
                 ROOT / "deploy" / "helm" / "ironhold" / "files" / "ironhold-dashboard.json"):
        assert written == path.read_text(), f"{path}: run python deploy/grafana/dashboards.py"


def test_every_query_parses(tmp_path: Path) -> None:
    exprs = [e for e in expressions() if not e.startswith("label_values")]
    assert len(exprs) >= 15
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}",
         "expr": e.replace("$__rate_interval", "1m").replace("$model", ".*")}
        for i, e in enumerate(exprs)]}]}
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    checked = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_metric_the_dashboard_reads_is_exposed(make_gateway, simulator) -> None:  # type: ignore[no-untyped-def]
    gw: GatewayServer = make_gateway([{"name": "chat", "slo": {"availability": 99.9},
                                       "deployments": [{"url": simulator.url}]}])
    assert post(gw, gw.create_key(), CHAT).status_code == 200
    exposition = httpx.get(gw.base_url + "/metrics").text
    exposed: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\w+) (\w+)$", exposition, re.MULTILINE):
        exposed.update(name + suffix for suffix in _SUFFIXES.get(kind, ("",)))
        if kind == "counter":
            exposed.add(name.removesuffix("_total") + "_total")
    referenced = {name for expr in expressions()
                  for name in re.findall(r"\b((?:gen_ai|ironhold)_[a-z0-9_]+)", _names_only(expr))}
    assert len(referenced) >= 15
    assert referenced <= exposed, sorted(referenced - exposed)
