"""What ships for installing Ironhold, checked without a cluster or a container runtime (none
can be reached here): the Helm chart rendered by Helm's own engine into plain manifests with the
default and the production values, every object validated against the Kubernetes 1.35 schemas
and scanned by checkov, the Dockerfile scanned too, and the compose file's private network
checked by reading it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ironhold.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "ironhold"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
#: The Prometheus Operator's kinds: their schemas come with its CRDs, not with Kubernetes.
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
#: The one checkov finding left: the default values cannot pin an image no registry holds
#: yet by its digest (`image.digest` does it; docs/deploy.md says so).
CHECKOV_SKIPS = "CKV_K8S_43"


def render(out: Path, *values: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``scripts/render-manifests.sh`` as an operator runs it; the objects by kind."""
    args = [str(ROOT / "scripts" / "render-manifests.sh"), str(out)]
    for name in values:
        args += ["-f", str(CHART / name)]
    if extra is not None:
        path = out.parent / f"{out.name}-extra.yaml"
        path.write_text(yaml.safe_dump(extra))
        args += ["-f", str(path)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = {}
    for path in sorted(out.glob("*.yaml")):
        obj = yaml.safe_load(path.read_text())
        kind = obj["kind"]
        if obj["metadata"]["name"].endswith("-dashboard"):
            kind = "Dashboard"  # a second ConfigMap
        found[kind] = obj
    return found


def container(objs: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = objs["Deployment"]["spec"]["template"]["spec"][
        "containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.mark.parametrize("values", [(), ("values-production.yaml",)],
                         ids=["default", "production"])
def test_rendered_objects_are_valid_kubernetes_1_35(tmp_path: Path,
                                                    values: tuple[str, ...]) -> None:
    objs = render(tmp_path / "out", *values)
    assert {"ConfigMap", "Deployment", "Service", "ServiceAccount", "NetworkPolicy",
            "PodDisruptionBudget"} <= set(objs)
    for kind, obj in objs.items():
        assert obj["metadata"]["namespace"] == "ironhold"  # never `default`
        if kind in OPERATOR_KINDS:
            assert obj["apiVersion"] == "monitoring.coreos.com/v1"
            continue
        kubernetes_validate.validate(obj, "1.35.0", strict=True)
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    main = container(objs)
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    security = main["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"]
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    # The pod's stop matches the gateway's drain: preStop, then grace and timeout, in time.
    config = yaml.safe_load(objs["ConfigMap"]["data"]["gateway.yaml"])
    drain = config["server"]["drain"]
    pre_stop = main["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace, timeout = (int(drain[k].removesuffix("s")) for k in ("grace", "timeout"))
    assert pod["terminationGracePeriodSeconds"] > pre_stop + grace + timeout
    policy = objs["NetworkPolicy"]["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert any({"port": 53, "protocol": "UDP"} in rule["ports"] for rule in policy["egress"])
    # Secrets are files (NAME_FILE), never values or environment variables.
    assert all(e["name"].endswith("_FILE") and "valueFrom" not in e
               for e in main.get("env", []))
    # The config in the ConfigMap is one the gateway accepts.
    env = {e["name"]: str(tmp_path / e["name"]) for e in main.get("env", [])}
    for path in env.values():
        Path(path).write_text("redis://r:6379/0\n" if "REDIS" in path else
                              "postgresql://u@db/ironhold\n" if "DATABASE" in path else
                              "a-long-enough-secret-value\n")
    parsed = parse_config(config, env=env, base_dir=tmp_path)
    assert parsed.server.port == objs["Service"]["spec"]["ports"][0]["port"]


def test_production_values_scale_out_and_share_state(tmp_path: Path) -> None:
    objs = render(tmp_path / "out", "values-production.yaml")
    assert {"HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule", "Dashboard"} <= \
        set(objs)
    dashboard = json.loads(objs["Dashboard"]["data"]["ironhold.json"])
    assert dashboard["uid"] == "ironhold-gateway"
    assert objs["Dashboard"]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert objs["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2
    config = yaml.safe_load(objs["ConfigMap"]["data"]["gateway.yaml"])
    assert config["state"]["url"] == "${DATABASE_URL}" and config["state"]["redis"]
    egress_ports = {p["port"] for rule in objs["NetworkPolicy"]["spec"]["egress"]
                    for p in rule["ports"]}
    assert {53, 5432, 6379, 4222, 8000} <= egress_ports


def test_a_config_change_rolls_the_pods(tmp_path: Path) -> None:
    def checksum(objs: dict[str, Any]) -> str:
        value: str = objs["Deployment"]["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"]
        return value

    first = render(tmp_path / "a")
    same = render(tmp_path / "b")
    changed = render(tmp_path / "c", extra={"config": {"guard": {"enabled": False}}})
    assert checksum(first) == checksum(same) != checksum(changed)


def test_checkov_passes_the_manifests_and_the_dockerfile(tmp_path: Path) -> None:
    render(tmp_path / "default")
    render(tmp_path / "production", "values-production.yaml")
    for args in (["-d", str(tmp_path / "default"), "--framework", "kubernetes"],
                 ["-d", str(tmp_path / "production"), "--framework", "kubernetes"],
                 ["-f", str(ROOT / "Dockerfile"), "--framework", "dockerfile"]):
        done = subprocess.run([str(CHECKOV), *args, "--compact", "--quiet", "--skip-download",
                               "--skip-check", CHECKOV_SKIPS], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stdout[-3000:]


def test_the_chart_lints_clean() -> None:
    from helm_python import lint

    report = lint(CHART, strict=True, namespace="ironhold", kube_version="v1.35.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_compose_publishes_only_the_gateway_on_a_private_network(tmp_path: Path) -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose" / "compose.yaml").read_text())
    services = compose["services"]
    assert [name for name, s in services.items() if s.get("ports")] == ["ironhold"]
    assert compose["networks"]["internal"]["internal"] is True
    for name in ("postgres", "redis", "nats", "ollama"):
        assert services[name]["networks"] == ["internal"], name
    gateway = services["ironhold"]
    assert gateway["read_only"] is True and gateway["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in gateway["security_opt"]
    assert gateway["user"] == "10001:10001"
    assert all(key.endswith("_FILE") for key in gateway["environment"])
    # Its config is one the gateway accepts, with the secrets compose mounts as files.
    env = {}
    for key in gateway["environment"]:
        path = tmp_path / key
        path.write_text("postgresql://u@db/x\n" if "DATABASE" in key else
                        "redis://r:6379/0\n" if "REDIS" in key else "a-long-enough-secret\n")
        env[key] = str(path)
    config = yaml.safe_load((ROOT / "deploy" / "compose" / "gateway.yaml").read_text())
    assert parse_config(config, env=env, base_dir=tmp_path).models[0].deployments[0].local
