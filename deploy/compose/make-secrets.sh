#!/usr/bin/env bash
# Random secrets for deploy/compose, into deploy/compose/secrets/ (mode 600, not in git).
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)/secrets"
mkdir -p "$dir" && chmod 700 "$dir"
umask 077
random() { python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; }
[ -f "$dir/postgres_password" ] || random > "$dir/postgres_password"
[ -f "$dir/key_secret" ] || random > "$dir/key_secret"
printf 'postgresql://ironhold:%s@postgres:5432/ironhold\n' "$(cat "$dir/postgres_password")" \
  > "$dir/database_url"
printf 'redis://redis:6379/0\n' > "$dir/redis_url"
echo "secrets in $dir"
