"""``ironhold policy``: check Cedar policies and run their test cases."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from ironhold.cli.common import fail, load_or_exit
from ironhold.core.errors import IronholdError

if TYPE_CHECKING:
    from ironhold.policy.engine import PolicyEngine

app = typer.Typer(help="Check Cedar policies and run policy test cases.", no_args_is_help=True)

ConfigFile = Annotated[Path | None, typer.Option(
    "--config", "-c", help="Take the policies from this gateway config (policy.files).")]
PolicyPaths = Annotated[list[Path] | None, typer.Option(
    "--policies", "-p", help="A *.cedar file or a folder of them (repeatable).")]


def _engine(config: Path | None, policies: list[Path] | None) -> PolicyEngine:
    from ironhold.policy.engine import PolicyEngine

    if policies:
        paths, base = policies, Path.cwd()
    elif config is not None:
        cfg = load_or_exit(config)
        if cfg.policy is None:
            fail(f"{config} has no 'policy' section")
        paths, base = list(cfg.policy.files), cfg.base_dir
    else:
        fail("say where the policies are: --config FILE or --policies PATH")
    try:
        return PolicyEngine.load(paths, base)
    except IronholdError as exc:
        fail(exc.message)


@app.command()
def validate(config: ConfigFile = None, policies: PolicyPaths = None) -> None:
    """Parse the policies and validate them against the schema."""
    engine = _engine(config, policies)
    typer.echo(f"{len(engine.policy_ids)} policies in {len(engine.sources)} files: valid "
               f"(schema: {engine.schema_path.name})")


@app.command("test")
def test_cases(
    cases: Annotated[Path, typer.Argument(help="YAML file of test cases (see docs/security.md).")],
    config: ConfigFile = None,
    policies: PolicyPaths = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run policy test cases; exits 1 if any decision differs from the expected one."""
    from ironhold.config.loader import load_yaml_model
    from ironhold.policy.cases import PolicyCases, run_cases

    engine = _engine(config, policies)
    try:
        loaded = load_yaml_model(cases, PolicyCases)
    except IronholdError as exc:
        fail(exc.message, code=2)
    results = run_cases(engine, loaded)
    failed = [r for r in results if not r.passed]
    if as_json:
        typer.echo(orjson.dumps({
            "passed": len(results) - len(failed),
            "failed": len(failed),
            "cases": [{"name": r.case.name, "expect": r.case.expect,
                       "decision": "allow" if r.allowed else "deny",
                       "policies": list(r.policies), "errors": list(r.errors),
                       "passed": r.passed} for r in results],
        }).decode())
    else:
        table = Table("", "case", "expected", "decision", "deciding policies")
        for r in results:
            table.add_row("[green]ok[/]" if r.passed else "[red]FAIL[/]", r.case.name,
                          r.case.expect + (f" {r.case.policies}" if r.case.policies else ""),
                          "allow" if r.allowed else "deny", ", ".join(r.policies) or "-")
        Console().print(table)
        for r in results:
            for error in r.errors:
                typer.secho(f"{r.case.name}: policy error: {error}", fg=typer.colors.YELLOW,
                            err=True)
        typer.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise typer.Exit(1)
