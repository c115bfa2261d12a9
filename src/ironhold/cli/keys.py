"""``ironhold keys``: create, list and revoke API keys."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from ironhold.cli.common import ConfigOption, fail, load_or_exit
from ironhold.core.errors import IronholdError

if TYPE_CHECKING:
    from ironhold.identity.keys import ApiKey
    from ironhold.identity.stage import Authenticator

app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


@contextlib.contextmanager
def _identity(config: Path) -> Iterator[Authenticator]:
    from ironhold.bootstrap import open_identity

    try:
        with open_identity(load_or_exit(config)) as identity:
            yield identity
    except IronholdError as exc:
        fail(exc.message)


@app.command()
def create(
    config: ConfigOption,
    name: Annotated[str, typer.Option(help="A name for the key's owner or purpose.")],
    models: Annotated[str | None, typer.Option(
        help="Comma-separated model groups the key may use (default: all).")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="May call /admin endpoints.")] = False,
    tenant: Annotated[str | None, typer.Option(
        help="The tenant (team, customer) the key belongs to; tenant limits apply to it.")] = None,
    tools: Annotated[str | None, typer.Option(
        help="Comma-separated tools the key may call (default: all).")] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute.", min=1)] = None,
    tpm: Annotated[int | None, typer.Option(
        help="Tokens per minute (prompt + completion).", min=1)] = None,
    concurrency: Annotated[int | None, typer.Option(
        help="Requests in flight at once.", min=1)] = None,
    budget_usd: Annotated[float | None, typer.Option(
        help="Spend per calendar month (UTC), in US dollars, from the price table.")] = None,
    daily_budget_usd: Annotated[float | None, typer.Option(
        help="Spend per day (UTC), in US dollars.")] = None,
    expires: Annotated[str | None, typer.Option(
        help="Lifetime, e.g. 30d, 12h, 90m. Default: never expires.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Create a key. Its secret is printed once and stored only as a keyed hash."""
    from ironhold.config.durations import parse_duration
    from ironhold.core.principal import Quota

    expires_in: float | None = None
    if expires is not None:
        try:
            parsed = parse_duration(expires)
        except ValueError as exc:
            fail(f"--expires: {exc}")
        if not isinstance(parsed, float) or parsed <= 0:
            fail("--expires: must be a positive duration such as 30d")
        expires_in = parsed
    for option, amount in (("--budget-usd", budget_usd), ("--daily-budget-usd",
                                                          daily_budget_usd)):
        if amount is not None and amount <= 0:
            fail(f"{option}: must be more than 0")
    model_list = _names(models)
    known = {group.name for group in load_or_exit(config).models}
    for unknown in sorted(set(model_list or ()) - known - {""}):
        typer.secho(f"warning: {config} has no model group {unknown!r} (yet)",
                    fg=typer.colors.YELLOW, err=True)
    quota = Quota(rpm=rpm, tpm=tpm, concurrency=concurrency, budget_usd_daily=daily_budget_usd,
                  budget_usd_monthly=budget_usd)
    with _identity(config) as identity:
        key, secret = identity.keys.create(name, model_list, admin, tenant=tenant,
                                           tools=_names(tools), expires_in=expires_in,
                                           quota=quota)
    if as_json:
        typer.echo(orjson.dumps({**key.as_dict(), "key": secret}).decode())
        return
    typer.echo(f"created {key.id} ({key.name})")
    typer.echo(f"key: {secret}")
    typer.echo("Store it now: it cannot be shown again.", err=True)


@app.command("list")
def list_keys(
    config: ConfigOption,
    include_revoked: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List keys (never their secrets)."""
    with _identity(config) as identity:
        keys = identity.keys.list_keys(include_revoked)
    if as_json:
        typer.echo(orjson.dumps([k.as_dict() for k in keys]).decode())
        return
    table = Table("id", "name", "prefix", "tenant", "models", "admin", "limits", "expires",
                  "status")
    for k in keys:
        table.add_row(k.id, k.name, k.prefix + "…", k.tenant or "-",
                      ",".join(k.models) if k.models is not None else "all",
                      "yes" if k.admin else "no", _limits(k), _when(k.expires_at), k.status)
    Console().print(table)


def _names(csv: str | None) -> list[str] | None:
    return [m.strip() for m in csv.split(",")] if csv is not None else None


def _limits(key: ApiKey) -> str:
    q = key.quota
    parts = [f"{label} {value:g}" for label, value in (
        ("rpm", q.rpm), ("tpm", q.tpm), ("conc", q.concurrency),
        ("$/day", q.budget_usd_daily), ("$/month", q.budget_usd_monthly)) if value is not None]
    return ", ".join(parts) or "-"


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


@app.command()
def revoke(
    config: ConfigOption,
    key: Annotated[str, typer.Argument(help="The key's id, or a name (revokes all with it).")],
) -> None:
    """Revoke a key and every agent passport issued for it. Running gateways stop accepting
    them within auth.cache_ttl (5 s)."""
    with _identity(config) as identity:
        revoked = identity.revoke_key(key)
    if not revoked:
        fail(f"no active key with id or name {key!r}")
    for k in revoked:
        typer.echo(f"revoked {k.id} ({k.name})")
