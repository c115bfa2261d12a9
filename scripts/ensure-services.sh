#!/usr/bin/env bash
# Make sure the services the tests use are running (PostgreSQL on 127.0.0.1:5432, trust auth)
# and the Debian packages they drive are installed.
set -euo pipefail

pg_up() { (command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432) ||
          python3 - <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", 5432)) == 0 else 1)
PY
}

if pg_up; then
  echo "PostgreSQL: running"
else
  echo "PostgreSQL: starting"
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
  fi
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  pg_up || { echo "PostgreSQL is not running on 127.0.0.1:5432 and could not be started" >&2; exit 1; }
fi

# Debian packages the tests drive for real: Prometheus and promtool (the SLO rules), Chromium
# (the console, through Playwright), HAProxy (replicas behind a load balancer).
missing=()
command -v promtool >/dev/null && command -v prometheus >/dev/null || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
command -v haproxy >/dev/null || missing+=(haproxy)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "Installing Debian packages: ${missing[*]}"
  as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    "${as_root[@]}" apt-get update >/dev/null 2>&1
    "${as_root[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
  } || { echo "could not install ${missing[*]} (apt-get as root)" >&2; exit 1; }
fi
echo "Prometheus: $(prometheus --version 2>&1 | head -n 1)"
echo "Chromium: $(chromium --version 2>/dev/null)"
echo "HAProxy: $(haproxy -v 2>/dev/null | head -n 1)"
