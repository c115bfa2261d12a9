"""Entry point of the ``ironhold`` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ironhold import __version__
from ironhold.cli import audit as audit_cmd
from ironhold.cli import chaos as chaos_cmd
from ironhold.cli import config as config_cmd
from ironhold.cli import demo as demo_cmd
from ironhold.cli import guard as guard_cmd
from ironhold.cli import keys as keys_cmd
from ironhold.cli import mcp as mcp_cmd
from ironhold.cli import model as model_cmd
from ironhold.cli import policy as policy_cmd
from ironhold.cli import redteam as redteam_cmd
from ironhold.cli import rollout as rollout_cmd
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
app.add_typer(config_cmd.app, name="config")
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(model_cmd.app, name="model")
app.add_typer(rollout_cmd.app, name="rollout")
app.add_typer(mcp_cmd.app, name="mcp")
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
    watch: Annotated[bool, typer.Option(
        "--watch", help="Reload when the config file (or a policy file it names) changes, "
                        "as SIGHUP does.")] = False,
    workers: Annotated[str, typer.Option(
        help="Worker processes serving the port (SO_REUSEPORT) under one supervisor: a "
             "number, or 'auto' for one per core. Above 1 needs state.redis (limits shared "
             "exactly).")] = "1",
    worker: Annotated[bool, typer.Option("--worker", hidden=True)] = False,
) -> None:
    """Serve the gateway described by a config file. SIGHUP reloads the file without
    dropping a request (an invalid one is refused and logged; the running config stays).
    SIGTERM drains (/readyz 503, requests in flight finish) and exits 0; a second one exits
    at once."""
    from ironhold.telemetry.logs import configure_logging

    cfg = load_or_exit(config)
    configure_logging(cfg.logging.level, cfg.logging.format)
    bind_host = host or cfg.server.host
    bind_port = port if port is not None else cfg.server.port
    count = _worker_count(workers)
    try:
        if count > 1 and not worker:
            from ironhold.workers import Supervisor

            supervisor = Supervisor(cfg, config, count, bind_host, bind_port,
                                    log_dir=cfg.base_dir / ".ironhold" / "logs")
            raise typer.Exit(supervisor.run())
        from ironhold.api.server import run_server
        from ironhold.bootstrap import build_gateway
        from ironhold.upstream.local import provided_models

        gateway = build_gateway(cfg, log_dir=cfg.base_dir / ".ironhold" / "logs",
                                local_models=provided_models() if worker else None)
        run_server(gateway, bind_host, bind_port, watch=watch, reuse_port=worker)
    except IronholdError as exc:
        fail(exc.message)
    except OSError as exc:
        fail(f"cannot serve: {exc}")


def _worker_count(value: str) -> int:
    import os

    if value == "auto":
        return os.cpu_count() or 1
    if not value.isdigit() or not 1 <= int(value) <= 256:
        fail("--workers must be a number from 1 to 256, or auto", 2)
    return int(value)


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
