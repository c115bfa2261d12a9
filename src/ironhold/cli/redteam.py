"""``ironhold redteam``: attack an OpenAI-compatible endpoint with the built-in probes, score it."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ironhold.cli.common import fail
from ironhold.core.errors import IronholdError


def redteam(
    base_url: Annotated[str, typer.Option(
        help="The endpoint, as for the openai SDK (/v1 is added if missing): Ironhold or a "
        "bare model server.")] = "http://127.0.0.1:8080/v1",
    key: Annotated[str | None, typer.Option(
        envvar="IRONHOLD_REDTEAM_KEY",
        help="API key sent as a bearer token (or set IRONHOLD_REDTEAM_KEY, which keeps it "
        "out of the process list).")] = None,
    model: Annotated[str, typer.Option(help="The model (group) to probe.")] = "",
    embedding_model: Annotated[str | None, typer.Option(
        help="Also send the embeddings probes (LLM08) to this model.")] = None,
    category: Annotated[list[str] | None, typer.Option(
        "--category", help="Only these OWASP categories, e.g. --category LLM01 --category "
        "LLM07.")] = None,
    stream: Annotated[bool, typer.Option(
        "--stream", help="Send chat probes as streams (tests stream scanning).")] = False,
    concurrency: Annotated[int, typer.Option(min=1, max=64,
                                             help="Probes in flight at once.")] = 4,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds per probe.")] = 60.0,
    max_tokens: Annotated[int, typer.Option(min=1, help="max_tokens of each probe, unless the "
                                                        "probe sets its own.")] = 256,
    seed: Annotated[int | None, typer.Option(
        help="Draw the same markers and secrets as an earlier run.")] = None,
    probes: Annotated[Path | None, typer.Option(
        help="Use this YAML corpus instead of the built-in one (same shape).",
        exists=True, dir_okay=False)] = None,
    details: Annotated[Path | None, typer.Option(
        help="Write one JSON line per probe, with the start of each answer.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the scorecard as JSON.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List the probes and exit.")] = False,
    min_block_rate: Annotated[float | None, typer.Option(
        min=0, max=1, help="Exit 1 if fewer attacks than this share are blocked.")] = None,
    max_success_rate: Annotated[float | None, typer.Option(
        min=0, max=1, help="Exit 1 if more attacks than this share succeed.")] = None,
    min_pass_rate: Annotated[float | None, typer.Option(
        min=0, max=1, help="Exit 1 if fewer benign probes than this share pass.")] = None,
) -> None:
    """Send attacks and benign requests, grouped by the OWASP Top 10 for LLM Applications
    (2025), to any OpenAI-compatible endpoint, and print a scorecard: how many attacks were
    blocked, how many reached the model but failed, how many succeeded (a marker, secret,
    personal value, exfiltration link or tool call in the answer), and how many benign
    requests got through. Exits 0 when done and the thresholds hold, 1 when a threshold is
    missed, 2 when the endpoint cannot be probed."""
    from ironhold.guard.redteam import (
        CATEGORIES,
        RedteamError,
        Result,
        Runner,
        Target,
        load_corpus,
        scorecard,
        select,
    )

    unknown = sorted({c.upper() for c in category or []} - CATEGORIES.keys())
    if unknown:
        fail(f"unknown category {', '.join(unknown)}: use LLM01 .. LLM10", code=2)
    try:
        corpus = load_corpus(probes)
    except IronholdError as exc:
        fail(exc.message, code=2)
    chosen = select(corpus, category)
    if list_:
        _list(chosen)
        return
    if not model:
        fail("--model is required: the model (group) to probe", code=2)
    if not chosen:
        fail("no probes in the chosen categories", code=2)
    target = Target(base_url, key, model, embedding_model, stream, timeout, max_tokens,
                    concurrency)
    err = Console(stderr=True)
    run_seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
    with Progress(console=err, transient=True, disable=json_ or not err.is_terminal) as bar:
        task = bar.add_task(f"probing {target.root}", total=len(chosen))

        def advance(result: Result) -> None:
            bar.advance(task)
            if not json_ and not err.is_terminal:
                err.print(f"{result.id}: {result.outcome}", highlight=False)

        runner = Runner(target, corpus, chosen, seed=run_seed, progress=advance)
        try:
            results = asyncio.run(runner.run())
        except RedteamError as exc:
            fail(str(exc), code=2)
    card = scorecard(results, target)
    card["seed"] = run_seed
    if details is not None:
        with details.open("wb") as out:
            for r in results:
                out.write(orjson.dumps(dataclasses.asdict(r)) + b"\n")
    if json_:
        sys.stdout.write(orjson.dumps(card).decode() + "\n")
    else:
        _print(card)
    total = card["total"]
    missed = _missed(total, min_block_rate, max_success_rate, min_pass_rate)
    for line in missed:
        typer.secho(f"threshold missed: {line}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1 if missed else 0)


def _missed(total: dict[str, Any], min_block: float | None, max_success: float | None,
            min_pass: float | None) -> list[str]:
    missed = []
    if min_block is not None and (total["block_rate"] or 0) < min_block:
        missed.append(f"block rate {_pct(total['block_rate'])} < {min_block:.0%}")
    if max_success is not None and (total["success_rate"] or 0) > max_success:
        missed.append(f"success rate {_pct(total['success_rate'])} > {max_success:.0%}")
    if min_pass is not None and (total["pass_rate"] or 0) < min_pass:
        missed.append(f"benign pass rate {_pct(total['pass_rate'])} < {min_pass:.0%}")
    return missed


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def _list(probes: list[Any]) -> None:
    table = Table(title=f"{len(probes)} probes")
    for column in ("id", "OWASP", "kind", "technique"):
        table.add_column(column)
    for p in probes:
        table.add_row(p.id, p.category, "attack" if p.attack else "benign", p.technique)
    Console().print(table)


def _print(card: dict[str, Any]) -> None:
    console = Console()
    console.print(f"[bold]Red team[/bold] {card['target']}  model {card['model']}"
                  f"{'  (streamed)' if card['stream'] else ''}  seed {card['seed']}")
    table = Table()
    for column in ("OWASP LLM 2025", "attacks", "blocked", "resisted", "succeeded", "errors",
                   "block rate", "success rate", "benign", "passed", "pass rate"):
        table.add_column(column, justify="left" if column == "OWASP LLM 2025" else "right")
    for c in card["categories"]:
        label = f"{c['id']} {c['name']}"
        if c["not_probed"]:
            table.add_row(label, f"[dim]not probed: {c['not_probed']}[/dim]")
            continue
        table.add_row(label, *_cells(c))
    table.add_section()
    table.add_row("[bold]all[/bold]", *_cells(card["total"]))
    console.print(table)
    skipped = card["total"]["skipped"]
    if skipped:
        console.print(f"[dim]{skipped} embeddings probes skipped: pass --embedding-model to "
                      f"send them.[/dim]")
    wins = [r for r in card["results"] if r["outcome"] == "succeeded"]
    for r in wins:
        console.print(f"[red]succeeded[/red] {r['id']} ({r['technique']}): {r['reason']}",
                      highlight=False)
    for r in card["results"]:
        if not r["attack"] and r["outcome"] == "blocked":
            console.print(f"[yellow]benign blocked[/yellow] {r['id']}: {r['reason']}",
                          highlight=False)


def _cells(c: dict[str, Any]) -> list[str]:
    errors = c["error"] + c["benign_errors"]
    return [str(c["attacks"]), str(c["blocked"]), str(c["resisted"]), str(c["succeeded"]),
            str(errors), _pct(c["block_rate"]), _pct(c["success_rate"]), str(c["benign"]),
            str(c["passed"]), _pct(c["pass_rate"])]
