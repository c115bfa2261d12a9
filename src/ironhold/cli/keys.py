"""``ironhold keys``: create, list and revoke API keys."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from ironhold.cli.common import ConfigOption, fail, load_or_exit
from ironhold.core.errors import IronholdError

if TYPE_CHECKING:
    from ironhold.identity.keys import KeyService

app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


def _service(config: Path) -> KeyService:
    from ironhold.bootstrap import open_key_service

    try:
        return open_key_service(load_or_exit(config))
    except IronholdError as exc:
        fail(exc.message)


@app.command()
def create(
    config: ConfigOption,
    name: Annotated[str, typer.Option(help="A name for the key's owner or purpose.")],
    models: Annotated[str | None, typer.Option(
        help="Comma-separated model groups the key may use (default: all).")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="May call /admin endpoints.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Create a key. Its secret is printed once and stored only as a keyed hash."""
    service = _service(config)
    model_list = [m.strip() for m in models.split(",")] if models is not None else None
    known = {group.name for group in load_or_exit(config).models}
    for unknown in sorted(set(model_list or ()) - known - {""}):
        typer.secho(f"warning: {config} has no model group {unknown!r} (yet)",
                    fg=typer.colors.YELLOW, err=True)
    try:
        key, secret = service.create(name, model_list, admin)
    except IronholdError as exc:
        fail(exc.message)
    finally:
        service.store.close()
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
    service = _service(config)
    try:
        keys = service.list_keys(include_revoked)
    finally:
        service.store.close()
    if as_json:
        typer.echo(orjson.dumps([k.as_dict() for k in keys]).decode())
        return
    table = Table("id", "name", "prefix", "models", "admin", "status")
    for k in keys:
        table.add_row(k.id, k.name, k.prefix + "…", ",".join(k.models) if k.models else "all",
                      "yes" if k.admin else "no", "active" if k.active else "revoked")
    Console().print(table)


@app.command()
def revoke(
    config: ConfigOption,
    key: Annotated[str, typer.Argument(help="The key's id, or a name (revokes all with it).")],
) -> None:
    """Revoke a key. Running gateways stop accepting it within auth.cache_ttl (5 s)."""
    service = _service(config)
    try:
        revoked = service.revoke(key)
    finally:
        service.store.close()
    if not revoked:
        fail(f"no active key with id or name {key!r}")
    for k in revoked:
        typer.echo(f"revoked {k.id} ({k.name})")
