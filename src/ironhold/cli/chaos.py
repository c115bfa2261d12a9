"""``ironhold chaos``: run chaos experiments against a running gateway."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ironhold.cli.common import fail
from ironhold.core.errors import IronholdError

app = typer.Typer(help="Chaos experiments: inject faults under load and check a steady-state "
                       "hypothesis.", no_args_is_help=True)


@app.command("run")
def run(
    experiment: Annotated[Path, typer.Argument(help="The experiment's YAML file "
                                                    "(see examples/chaos/).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    base_url: Annotated[str | None, typer.Option(help="Override target.base_url.")] = None,
    key: Annotated[str | None, typer.Option(
        help="Override target.api_key (an admin key: faults are injected by header).")] = None,
) -> None:
    """Drive load at a gateway, inject the experiment's faults for a while, and report whether
    the steady-state hypothesis held before, during and after. Exits 0 if it held, 1 if it
    broke (or the run stopped early), 2 if the experiment could not run."""
    from ironhold.chaos.experiment import Experiment, Runner
    from ironhold.config.loader import load_yaml_model

    try:
        spec = load_yaml_model(experiment, Experiment)
    except IronholdError as exc:
        fail(exc.message, code=2)
    overrides: dict[str, Any] = {}
    if base_url:
        overrides["base_url"] = base_url
    if key:
        overrides["api_key"] = key
    if overrides:
        spec = spec.model_copy(update={"target": spec.target.model_copy(update=overrides)})
    err = Console(stderr=True)
    runner = Runner(spec, progress=None if as_json else lambda m: err.print(f"[dim]{m}[/dim]"))
    report = asyncio.run(runner.run())
    if all(p["requests"] == 0 or p["outcomes"].keys() <= {"ClientConnectorError"}
           for p in report["phases"]):
        fail(f"could not reach {spec.target.base_url}: is the gateway running?", code=2)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print(report)
    raise typer.Exit(0 if report["held"] else 1)


def _print(report: dict[str, Any]) -> None:
    console = Console()
    console.print(f"[bold]{report['experiment']}[/bold]  {report['target']}  "
                  f"model {report['model']}")
    if report["description"]:
        console.print(report["description"].strip())
    table = Table()
    for column in ("phase", "requests", "req/s", "success %", "p50 ttft", "p99 ttft",
                   "p99 latency", "outcomes", "hypothesis"):
        table.add_column(column, justify="left" if column in ("phase", "outcomes",
                                                               "hypothesis") else "right")
    for p in report["phases"]:
        outcomes = ", ".join(f"{k}: {v}" for k, v in p["outcomes"].items())
        verdict = "[green]held[/green]" if p["held"] else "[red]" + "; ".join(p["broken"]) \
            + "[/red]"
        table.add_row(p["phase"], str(p["requests"]), f"{p['rps']:g}",
                      f"{p['success_percent']:g}", _ms(p["p50_ttft_ms"]),
                      _ms(p["p99_ttft_ms"]), _ms(p["p99_latency_ms"]), outcomes, verdict)
    console.print(table)
    if report["aborted"]:
        console.print(f"[red]stopped early: {report['aborted']}[/red]")
    console.print("[bold green]hypothesis held[/bold green]" if report["held"]
                  else "[bold red]hypothesis broken[/bold red]")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g} ms"
