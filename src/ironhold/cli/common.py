"""What the CLI's commands share: the config option, loading it, and failing clearly."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from ironhold.config import Config, load_config
from ironhold.core.errors import IronholdError

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="The gateway's YAML config file.")
]


def fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def load_or_exit(path: Path, code: int = 1) -> Config:
    try:
        return load_config(path)
    except IronholdError as exc:
        fail(exc.message, code)
