"""Render Ironhold's Helm chart into plain manifests with the real Helm engine (Helm v4's Go
SDK, through helm-python-sdk): one YAML file per object, into OUT_DIR.

    python deploy/helm/render.py OUT_DIR [--values FILE ...] [--namespace NS] [--name NAME]

``scripts/render-manifests.sh OUT_DIR`` runs it with the default values.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent / "ironhold"


def render(values_files: list[Path], namespace: str, name: str) -> dict[str, str]:
    """Each rendered template's text, by template path (empty ones left out)."""
    from helm_python import Chart

    values: dict[str, Any] = {}
    for path in values_files:
        values = _merged(values, yaml.safe_load(path.read_text()) or {})
    chart = Chart.load(CHART)
    chart.validate_schema(values)
    rendered: dict[str, str] = chart.render(values, name=name, namespace=namespace,
                                            is_install=True)
    return {path: text for path, text in rendered.items()
            if text.strip() and not path.endswith("NOTES.txt")}


def objects(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object the templates made."""
    found = []
    for text in rendered.values():
        found += [doc for doc in yaml.safe_load_all(text) if doc]
    return found


def write(found: list[dict[str, Any]], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for obj in found:
        slug = re.sub(r"[^a-z0-9.-]+", "-", f"{obj['kind']}-{obj['metadata']['name']}".lower())
        path = out / f"{slug}.yaml"
        path.write_text(yaml.safe_dump(obj, sort_keys=False))
        paths.append(path)
    return paths


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Values files merged as Helm merges them: maps key by key, the rest replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--values", "-f", type=Path, action="append", default=[])
    parser.add_argument("--namespace", default="ironhold")
    parser.add_argument("--name", default="ironhold")
    args = parser.parse_args()
    paths = write(objects(render(args.values, args.namespace, args.name)), args.out)
    print(f"{len(paths)} objects in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
