"""``ironhold rollout``: watch and steer a running gateway's rollouts (through its admin API)."""

from __future__ import annotations

import time
import urllib.parse
from typing import Annotated, Any

import typer

from ironhold.cli.common import KeyOption, UrlOption, admin_call, fail

app = typer.Typer(help="Watch and steer rollouts: a candidate deployment's share of a model "
                       "group's traffic, stepped up while its gates hold.",
                  no_args_is_help=True)

ModelArgument = Annotated[str, typer.Argument(help="The model group rolling out.")]


@app.command("status")
def status(
    url: UrlOption,
    key: KeyOption,
    model: Annotated[str | None, typer.Argument(help="Only this model group.")] = None,
    watch: Annotated[float | None, typer.Option(
        help="Print again every this many seconds until the rollout ends (Ctrl-C stops).",
        min=0.5)] = None,
) -> None:
    """Each rollout: its state, the candidate's share, the step, and why."""
    while True:
        rollouts = [r for r in admin_call(url, key, "GET", "/admin/rollouts")["rollouts"]
                    if model is None or r["model"] == model]
        if not rollouts:
            fail(f"no rollout{' of ' + model if model else ''} at {url}", 1)
        for r in rollouts:
            typer.echo(_line(r))
        if watch is None or all(r["state"] in ("promoted", "rolled_back") for r in rollouts):
            return
        time.sleep(watch)


def _line(r: dict[str, Any]) -> str:
    cand = r["window"]["candidate"]
    return (f"{r['model']}: {r['candidate']} {r['state']} at {r['percent']:g}% "
            f"(step {r['step'] + 1} of {len(r['steps'])}; candidate {cand['attempts']} "
            f"attempts, {cand['failures']} failed) - {r['reason']}")


def _act(action: str, url: str, key: str, model: str) -> None:
    path = f"/admin/rollouts/{urllib.parse.quote(model, safe='')}/{action}"
    state = admin_call(url, key, "POST", path)
    typer.echo(f"{state['model']}: {state['candidate']} {state['state']} at "
               f"{state['percent']:g}% - {state['reason']}")


@app.command("start")
def start(model: ModelArgument, url: UrlOption, key: KeyOption) -> None:
    """Resume a paused rollout, or start one that ended again from its first step."""
    _act("start", url, key, model)


@app.command("pause")
def pause(model: ModelArgument, url: UrlOption, key: KeyOption) -> None:
    """Hold the candidate at its share: no steps, no automatic decisions."""
    _act("pause", url, key, model)


@app.command("promote")
def promote(model: ModelArgument, url: UrlOption, key: KeyOption) -> None:
    """Send the group's traffic to the candidate now (100%)."""
    _act("promote", url, key, model)


@app.command("abort")
def abort(model: ModelArgument, url: UrlOption, key: KeyOption) -> None:
    """Roll back now: the candidate gets no traffic."""
    _act("abort", url, key, model)
