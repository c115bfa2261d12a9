#!/usr/bin/env bash
# Render the Helm chart (deploy/helm/ironhold) with its default values into plain manifests,
# one file per object, in OUT_DIR, with the real Helm engine. Extra arguments go to
# deploy/helm/render.py (e.g. -f deploy/helm/ironhold/values-production.yaml).
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 OUT_DIR [-f VALUES.yaml ...] [--namespace NS]" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")/.." && pwd)"
exec "${PYTHON:-$here/.venv/bin/python}" "$here/deploy/helm/render.py" "$@"
