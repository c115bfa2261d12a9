"""Entry point of the ``ironhold`` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ironhold import __version__
from ironhold.cli import audit as audit_cmd
from ironhold.cli import chaos as chaos_cmd
from ironhold.cli import demo as demo_cmd
from ironhold.cli import guard as guard_cmd
from ironhold.cli import keys as keys_cmd
from ironhold.cli import policy as policy_cmd
from ironhold.cli import redteam as redteam_cmd
from ironhold.cli import slo as slo_cmd
from ironhold.cli.common import ConfigOption, fail, load_or_exit
from ironhold.core.errors import IronholdError

app = typer.Typer(
    name="ironhold",
    help="Ironhold: a resilient, secure, observable gateway for self-hosted AI "
    "(OpenAI-compatible).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Check configuration files.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(chaos_cmd.app, name="chaos")
app.add_typer(policy_cmd.app, name="policy")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(guard_cmd.app, name="guard")
app.add_typer(slo_cmd.app, name="slo")
app.command("demo")(demo_cmd.demo)
app.command("redteam")(redteam_cmd.redteam)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ironhold {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Ironhold: one deployable that every AI call passes through."""


@app.command()
def serve(
    config: ConfigOption,
    host: Annotated[str | None, typer.Option(help="Override server.host.")] = None,
    port: Annotated[int | None, typer.Option(help="Override server.port.")] = None,
) -> None:
    """Serve the gateway described by a config file."""
    from ironhold.api.server import run_server
    from ironhold.bootstrap import build_gateway
    from ironhold.telemetry.logs import configure_logging

    cfg = load_or_exit(config)
    configure_logging(cfg.logging.level, cfg.logging.format)
    try:
        gateway = build_gateway(cfg, log_dir=cfg.base_dir / ".ironhold" / "logs")
        run_server(gateway, host or cfg.server.host, port if port is not None else cfg.server.port)
    except IronholdError as exc:
        fail(exc.message)
    except OSError as exc:
        fail(f"cannot serve: {exc}")


@config_app.command("validate")
def validate(path: Annotated[Path, typer.Argument(help="The YAML config file.")]) -> None:
    """Validate a config file; exits non-zero and names each problem if it is invalid."""
    cfg = load_or_exit(path)
    groups = ", ".join(g.name for g in cfg.models) or "none"
    typer.echo(f"{path}: valid ({len(cfg.models)} model groups: {groups})")


@config_app.command("diff")
def diff(
    old: Annotated[Path, typer.Argument(help="The config as it was (or as it runs).")],
    new: Annotated[Path, typer.Argument(help="The config as it will be.")],
) -> None:
    """What changed between two configs, by meaning: model groups and deployments matched by
    name, defaults filled in, secrets masked. Exit 0 when they are the same, 1 when they
    differ, 2 when either is invalid."""
    from ironhold.config.diff import config_diff
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
    raise typer.Exit(1)


@config_app.command("status")
def status(
    config: ConfigOption,
    url: Annotated[str, typer.Option(
        help="The running gateway's base URL, e.g. http://127.0.0.1:8080.")],
    key: Annotated[str, typer.Option(
        envvar="IRONHOLD_ADMIN_KEY", show_default=False,
        help="An admin API key (or set IRONHOLD_ADMIN_KEY, which keeps it out of the shell's "
             "history).")],
) -> None:
    """Whether the gateway at URL runs this file's config (drift between git and what runs):
    compares the file's version with GET /admin/config's. Exit 0 when they are the same, 1
    when they differ, 2 when either cannot be read."""
    import json
    import urllib.error
    import urllib.request

    from ironhold.config.version import config_version

    if not url.startswith(("http://", "https://")):  # urllib would open file:// too
        fail("--url must be an http:// or https:// URL", 2)
    want = config_version(load_or_exit(config, code=2))
    request = urllib.request.Request(url.rstrip("/") + "/admin/config",
                                     headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            running = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        fail(f"{url} answered {exc.code} to GET /admin/config (an admin key is needed)", 2)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        fail(f"cannot read {url}/admin/config: {exc}", 2)
    if running.get("version") == want:
        typer.echo(f"in sync: {url} runs {config} (version {want[:12]})")
        return
    typer.echo(f"drift: {url} runs version {str(running.get('version'))[:12]} "
               f"(loaded from {running.get('source')}), {config} is version {want[:12]}")
    raise typer.Exit(1)


@app.command()
def simulate(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 18000,
    profile: Annotated[Path | None, typer.Option(
        help="YAML profile: latency distributions and faults (see docs/simulator.md).")] = None,
) -> None:
    """Run an OpenAI-compatible model server with programmable latency and faults."""
    from aiohttp import web

    from ironhold.simulator import Simulator, load_profile

    try:
        sim = Simulator(load_profile(profile) if profile else None)
    except IronholdError as exc:
        fail(exc.message)
    typer.echo(f"simulator on http://{host}:{port}/v1", err=True)
    try:
        import uvloop

        web.run_app(sim.app(), host=host, port=port, print=None, access_log=None,
                    shutdown_timeout=1, handler_cancellation=True,
                    loop=uvloop.new_event_loop())
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc}")


def run() -> None:
    app()
