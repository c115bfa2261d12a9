"""What the CLI's commands share: the config option, loading it, failing clearly, and calling
a running gateway's admin API."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from ironhold.config import Config, load_config
from ironhold.core.errors import IronholdError

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="The gateway's YAML config file.")
]


UrlOption = Annotated[str, typer.Option(
    help="The running gateway's base URL, e.g. http://127.0.0.1:8080.")]
KeyOption = Annotated[str, typer.Option(
    envvar="IRONHOLD_ADMIN_KEY", show_default=False,
    help="An admin API key (or set IRONHOLD_ADMIN_KEY, which keeps it out of the shell's "
         "history).")]


def fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def load_or_exit(path: Path, code: int = 1) -> Config:
    try:
        return load_config(path)
    except IronholdError as exc:
        fail(exc.message, code)


def admin_call(url: str, key: str, method: str, path: str,
               body: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call an admin route. A refusal (4xx) prints the gateway's message and exits 1; an
    unreachable gateway or an unreadable answer exits 2."""
    if not url.startswith(("http://", "https://")):  # urllib would open file:// too
        fail("--url must be an http:// or https:// URL", 2)
    headers = {"Authorization": f"Bearer {key}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url.rstrip("/") + path, data=data, headers=headers,
                                     method=method)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        message = _error_message(exc)
        if exc.code in (401, 403):
            fail(f"{url} refused {method} {path} ({exc.code}): {message} "
                 "(an admin key is needed)", 2)
        fail(f"{url} refused it ({exc.code}):\n{message}", 1 if exc.code < 500 else 2)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        fail(f"cannot reach {url}{path}: {exc}", 2)


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read())["error"]["message"])
    except (ValueError, KeyError, TypeError, OSError):
        return exc.reason
