"""``/metrics`` for the whole process group under ``serve --workers``.

A scrape reaches one worker, whichever the kernel picked. So each worker also answers on a
Unix socket of its own (in a folder its supervisor made, ``IRONHOLD_WORKERS_DIR``), and the
worker a scrape reaches reads its siblings' metrics there and answers with every worker's
series, each labelled ``worker="<index>"``: sum them in queries (the dashboard does). A
sibling that does not answer within a second (it is restarting) is left out of that scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["ProcessGroup", "merge_expositions"]

log = logging.getLogger("ironhold.workers")

WORKERS_DIR_ENV = "IRONHOLD_WORKERS_DIR"
WORKER_INDEX_ENV = "IRONHOLD_WORKER_INDEX"
_SIBLING_TIMEOUT = 1.0
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"


class ProcessGroup:
    def __init__(self, folder: Path, index: int):
        self.folder = folder
        self.index = index
        self._runner: web.AppRunner | None = None

    @classmethod
    def from_env(cls) -> ProcessGroup | None:
        folder, index = os.environ.get(WORKERS_DIR_ENV), os.environ.get(WORKER_INDEX_ENV)
        if folder is None or index is None:
            return None
        return cls(Path(folder), int(index))

    @property
    def socket(self) -> Path:
        return self.folder / f"worker-{self.index}.sock"

    async def start(self, local: Callable[[], bytes]) -> None:
        """Answer ``GET /metrics`` with this worker's own metrics on its socket."""

        async def metrics(_: web.Request) -> web.Response:
            body = await asyncio.to_thread(local)
            return web.Response(body=body, headers={"Content-Type": TEXT_FORMAT})

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()  # left by this worker's predecessor
        await web.UnixSite(self._runner, str(self.socket)).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()

    async def exposition(self, own: bytes) -> bytes:
        """Every worker's metrics, merged, each series labelled with its worker."""
        texts = {self.index: own.decode()}
        siblings = [p for p in sorted(self.folder.glob("worker-*.sock")) if p != self.socket]
        answers = await asyncio.gather(*(_read(p) for p in siblings))
        for path, text in zip(siblings, answers, strict=True):
            if text is not None:
                texts[int(path.stem.removeprefix("worker-"))] = text
        return (await asyncio.to_thread(merge_expositions, texts)).encode()


async def _read(path: Path) -> str | None:
    try:
        async with aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(path)),
                timeout=aiohttp.ClientTimeout(total=_SIBLING_TIMEOUT)) as session, \
                session.get("http://worker/metrics") as answer:
            return await answer.text() if answer.status == 200 else None
    except (aiohttp.ClientError, TimeoutError, OSError):
        log.warning("a worker's metrics could not be read", extra={"socket": str(path)})
        return None


def merge_expositions(texts: dict[int, str]) -> str:
    """Prometheus text expositions of several workers as one: each family once, its samples
    from every worker with a ``worker`` label."""
    families: dict[str, tuple[str, str, list[str]]] = {}
    for index in sorted(texts):
        for family in text_string_to_metric_families(texts[index]):
            kind = "untyped" if family.type == "unknown" else family.type
            _, _, lines = families.setdefault(family.name, (family.documentation, kind, []))
            for sample in family.samples:
                labels = {**sample.labels, "worker": str(index)}
                shown = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
                lines.append(f"{sample.name}{{{shown}}} {_number(sample.value)}")
    out = []
    for name, (doc, kind, lines) in families.items():
        shown_name = name + "_total" if kind == "counter" and not name.endswith("_total") \
            else name
        doc = doc.replace("\\", "\\\\").replace("\n", "\\n")
        out += [f"# HELP {shown_name} {doc}", f"# TYPE {shown_name} {kind}", *lines]
    return "\n".join(out) + "\n"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
