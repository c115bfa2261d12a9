"""``ironhold config``: validate a file, diff two, apply one to a running gateway, and check
that what runs is what is in git."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ironhold.cli.common import ConfigOption, KeyOption, UrlOption, admin_call, fail, load_or_exit

app = typer.Typer(help="Check configuration files, and apply them to a running gateway.",
                  no_args_is_help=True)



@app.command("validate")
def validate(path: Annotated[Path, typer.Argument(help="The YAML config file.")]) -> None:
    """Validate a config file; exits non-zero and names each problem if it is invalid."""
    cfg = load_or_exit(path)
    groups = ", ".join(g.name for g in cfg.models) or "none"
    servers = ", ".join(s.name for s in cfg.mcp.servers)
    tools = f"; {len(cfg.mcp.servers)} tool servers: {servers}" if servers else ""
    typer.echo(f"{path}: valid ({len(cfg.models)} model groups: {groups}{tools})")


@app.command("diff")
def diff(
    old: Annotated[Path, typer.Argument(help="The config as it was (or as it runs).")],
    new: Annotated[Path, typer.Argument(help="The config as it will be.")],
) -> None:
    """What changed between two configs, by meaning: model groups and deployments matched by
    name, defaults filled in, secrets masked, policy files compared by content. Exit 0 when
    they are the same, 1 when they differ, 2 when either is invalid."""
    from ironhold.config.diff import config_diff, needs_restart
    from ironhold.config.version import config_version

    before = load_or_exit(old, code=2)
    after = load_or_exit(new, code=2)
    changes = config_diff(before, after)
    if not changes:
        typer.echo(f"no differences (version {config_version(after)[:12]})")
        return
    section = None
    for change in changes:
        if change.section != section:
            section = change.section
            typer.echo(f"{section}:")
        typer.echo(f"  {change.line()}")
    typer.echo(f"{len(changes)} change{'s' if len(changes) != 1 else ''}: version "
               f"{config_version(before)[:12]} -> {config_version(after)[:12]}")
    restart = needs_restart(changes)
    if restart:
        typer.echo(f"needs a restart (a reload refuses it): {', '.join(c.path for c in restart)}")
    raise typer.Exit(1)


@app.command("apply")
def apply(
    path: Annotated[Path, typer.Argument(help="The YAML config file to serve.")],
    url: UrlOption,
    key: KeyOption,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Have the gateway check it and list the changes, applying "
                          "nothing.")] = False,
) -> None:
    """Apply a config to a running gateway through its admin API (POST /admin/config). The
    gateway checks it, builds it beside the running one and swaps it in; requests in flight
    finish on the config they started with. Relative paths and ${ENV} references resolve on
    the gateway's side. Exit 0 when applied, 1 when refused (the running config stays), 2
    when the gateway cannot be reached."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"{path}: cannot read: {exc}", 1)
    answer = admin_call(url, key, "POST", "/admin/config",
                    {"config": text, "source": path.name, "dry_run": dry_run})
    for line in answer.get("changes", []):
        typer.echo(f"  {line}")
    if dry_run:
        typer.echo(f"checked, not applied: {len(answer.get('changes', []))} changes; "
                   f"{url} runs {str(answer.get('previous_version'))[:12]}")
        return
    typer.echo(f"applied: {url} runs version {str(answer.get('version'))[:12]} "
               f"(was {str(answer.get('previous_version'))[:12]}) in "
               f"{answer.get('reload_ms')} ms")


@app.command("status")
def status(config: ConfigOption, url: UrlOption, key: KeyOption) -> None:
    """Whether the gateway at URL runs this file's config (drift between git and what runs):
    compares the file's version with GET /admin/config's. Exit 0 when they are the same, 1
    when they differ, 2 when either cannot be read."""
    from ironhold.config.version import config_version

    want = config_version(load_or_exit(config, code=2))
    running = admin_call(url, key, "GET", "/admin/config")
    if running.get("version") == want:
        typer.echo(f"in sync: {url} runs {config} (version {want[:12]})")
        return
    typer.echo(f"drift: {url} runs version {str(running.get('version'))[:12]} "
               f"(loaded from {running.get('source')}), {config} is version {want[:12]}")
    raise typer.Exit(1)
