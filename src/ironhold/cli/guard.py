"""``ironhold guard``: measure the injection detector on a dataset, and retrain it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ironhold.cli.common import fail, load_or_exit

app = typer.Typer(help="Measure and rebuild the runtime guard's injection/jailbreak detector.",
                  no_args_is_help=True)


@app.command("eval")
def eval_(
    dataset: Annotated[Path, typer.Argument(
        help="JSONL with 'text' and 'label' ('attack' or 'benign') on each line; an optional "
        "'kind' is reported separately.", exists=True, dir_okay=False)],
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    predictions: Annotated[Path | None, typer.Option(
        "--predictions", help="Write {index, attack, score} per input line, in order.")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Use this gateway config's guard threshold.")] = None,
) -> None:
    """Precision, recall, F1, false-positive rate and latency of the detector, with the same
    scanners and threshold as the gateway (its default config, or --config's)."""
    from ironhold.guard import InjectionModel, InjectionScanner
    from ironhold.guard.evaluate import evaluate
    from ironhold.guard.injection import InjectionOptions

    threshold = None
    if config is not None:
        cfg = load_or_exit(config)
        injection = cfg.guard.input.get("injection")
        threshold = injection.threshold if isinstance(injection, InjectionOptions) else None
    scanner = InjectionScanner(InjectionModel.load(), threshold)
    err = Console(stderr=True)
    try:
        with Progress(console=err, transient=True, disable=json_ or not err.is_terminal) as bar:
            task = bar.add_task(f"scanning {dataset.name}", total=None)
            result = evaluate(dataset, scanner,
                              lambda done, total: bar.update(task, completed=done, total=total))
    except ValueError as exc:
        fail(str(exc))
    if predictions is not None:
        with predictions.open("wb") as out:
            for p in result.predictions:
                out.write(orjson.dumps({"index": p.index, "attack": p.attack, "score": p.score})
                          + b"\n")
    summary = result.summary()
    if json_:
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
        return
    table = Table(title=f"{dataset.name}: {result.n} lines, threshold {result.threshold}")
    for col in ("precision", "recall", "f1", "fpr", "latency p50 ms", "latency p99 ms"):
        table.add_column(col, justify="right")
    table.add_row(*(f"{summary[k]:.4f}" for k in ("precision", "recall", "f1", "fpr")),
                  f"{summary['latency_ms_p50']:.3f}", f"{summary['latency_ms_p99']:.3f}")
    console = Console()
    console.print(table)
    console.print(f"tp {result.tp}  fp {result.fp}  tn {result.tn}  fn {result.fn}; all input "
                  f"scanners p50 {summary['latency_all_scanners_ms_p50']} ms, p99 "
                  f"{summary['latency_all_scanners_ms_p99']} ms")
    for kind, counts in result.by_kind.items():
        console.print(f"  {kind}: {counts['flagged']}/{counts['n']} flagged "
                      f"({counts['flag_rate']:.1%})")


@app.command("train")
def train_(
    data: Annotated[list[Path] | None, typer.Option(
        "--data", help="Labelled JSONL to train on (repeat for several files). Default: "
        "data/guard/train.jsonl and the files in data/guard/extra/ (prompt_templates, "
        "judge_prompts, attacks).", exists=True,
        dir_okay=False)] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the model.")] = Path(
        "src/ironhold/guard/models/injection.json"),
    target_fpr: Annotated[float, typer.Option(
        help="False-positive rate on benign lines the threshold is chosen for.", min=0.0,
        max=0.5)] = 0.01,
    target_hard_fpr: Annotated[float, typer.Option(
        help="False-positive rate on the hard negatives (kind benign_hard) the threshold is "
        "also chosen for.", min=0.0, max=0.5)] = 0.02,
) -> None:
    """Train the classifier reproducibly (needs `pip install 'ironhold\\[train]'`). Print the new
    model's SHA-256: pin it in guard/classifier.py (BUNDLED_SHA256) to ship it."""
    try:
        from ironhold.guard.train import DEFAULT_DATA, train
    except ImportError:
        fail("training needs scikit-learn: pip install 'ironhold[train]'")
    err = Console(stderr=True)
    try:
        result = train(data or [Path(p) for p in DEFAULT_DATA], out, target_fpr=target_fpr,
                       target_hard_fpr=target_hard_fpr,
                       progress=lambda m: err.print(m))
    except ImportError:
        fail("training needs scikit-learn: pip install 'ironhold[train]'")
    except ValueError as exc:
        fail(str(exc))
    typer.echo(f"wrote {result.path}: {result.n} lines ({result.attacks} attacks), "
               f"{result.features} features, threshold {result.threshold}")
    typer.echo(f"5-fold CV: recall {result.cv_recall:.4f} at false-positive rate "
               f"{result.cv_fpr:.4f}")
    typer.echo(f"sha256 {result.sha256}")
