"""Running the HTTP server: uvloop when available, a drain on SIGTERM (``/readyz`` 503 at once,
requests served through a grace, then the listener closed and what is in flight finished) and
on SIGINT (without the grace), an exit at once on a second one, a config reload on SIGHUP
(and, with ``--watch``, when the config file changes)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from ironhold.api.app import create_app
from ironhold.api.connections import CappedTCPSite
from ironhold.api.context import SERVING
from ironhold.bootstrap import Gateway
from ironhold.config.version import referenced_files
from ironhold.core.errors import IronholdError
from ironhold.serving import Serving

log = logging.getLogger("ironhold")

_MAX_HEADER_BYTES = 32 * 1024


async def start_server(gateway: Gateway, host: str, port: int, reuse_port: bool = False,
                       ) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (``await runner.cleanup()`` to stop) and the bound port."""
    app = create_app(gateway)
    # handler_cancellation: a client that disconnects cancels its handler, and with it the
    # upstream request, even before the first byte of the response.
    # max_field_size: identity providers' tokens can be several KiB; a longer header than the
    # default 8 KiB reaches the identity stage, which refuses it in the OpenAI error shape.
    # keepalive_timeout: aiohttp closes a connection still waiting for a request's headers
    # this long after it connected or was last answered (see api.connections).
    server = gateway.config.server
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                           shutdown_timeout=server.drain.timeout,
                           max_field_size=_MAX_HEADER_BYTES,
                           keepalive_timeout=server.header_timeout)
    try:
        await runner.setup()  # runs on_startup: starts local model servers
    except BaseException:
        await gateway.close()
        raise
    try:
        site = CappedTCPSite(runner, host, port, max_connections=server.max_connections,
                             reuse_port=reuse_port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = port
    for address in runner.addresses:
        bound = int(address[1])
        break
    return runner, bound


async def serve_until_stopped(
    gateway: Gateway, host: str, port: int, on_ready: Callable[[int], None] | None = None,
    watch: bool = False, reuse_port: bool = False,
) -> None:
    runner, bound = await start_server(gateway, host, port, reuse_port)
    serving = runner.app[SERVING]
    # Everything built so far (the guard's model, phone metadata, the config) lives as long as
    # the process: moved out of the cyclic collector's sight, so a full collection no longer
    # walks ~100,000 objects (50 ms on a 2-core VM) in the middle of serving requests.
    gc.collect()
    gc.freeze()
    stop = Stop()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.signalled, sig)
    reloads = Reloads(serving)
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, reloads.request, "sighup")
    if watch:
        reloads.watch()
    log.info("gateway listening", extra={"host": host, "port": bound})
    if on_ready is not None:
        on_ready(bound)
    try:
        await stop.first.wait()
        drain = serving.current.config.server.drain
        # Not ready from now on; still serving through the grace (an interrupt from a
        # terminal has no load balancer to tell: it skips it).
        serving.draining = True
        grace = drain.grace if stop.signal == signal.SIGTERM else 0.0
        log.info("gateway draining", extra={"grace_s": grace, "timeout_s": drain.timeout})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.second.wait(), grace)
    finally:
        await reloads.stop()
        # The listener closes, idle keep-alive connections close, requests and streams in
        # flight finish (up to drain.timeout), then the gateway closes: records flushed.
        await runner.cleanup()
        log.info("gateway stopped")


class Stop:
    """The first SIGTERM or SIGINT drains; a second one exits at once, cutting what is in
    flight (what the audit log acknowledged is already durable)."""

    def __init__(self) -> None:
        self.first = asyncio.Event()
        self.second = asyncio.Event()
        self.signal: int | None = None

    def signalled(self, sig: int) -> None:
        if not self.first.is_set():
            self.signal = sig
            self.first.set()
            return
        self.second.set()
        log.warning("second signal: exiting now, cutting requests in flight")
        logging.shutdown()
        os._exit(1)


class Reloads:
    """Reloads asked for by a signal or a changed file: one at a time, and a burst of asks
    while one runs is one more reload, not many. A refused reload is logged and audited by
    ``Serving``; the gateway goes on with the config it has."""

    def __init__(self, serving: Serving):
        self._serving = serving
        self._pending: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None

    def request(self, trigger: str) -> None:
        self._pending = trigger
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="config-reload")

    async def _run(self) -> None:
        while self._pending is not None:
            trigger, self._pending = self._pending, None
            with contextlib.suppress(IronholdError):
                await self._serving.reload_file(trigger)

    def watch(self) -> None:
        """Reload when the config file (or a policy file it names) changes."""
        self._watcher = asyncio.create_task(self._watch(), name="config-watch")

    async def _watch(self) -> None:
        from watchfiles import awatch

        path = self._serving.path
        if path is None:
            log.warning("--watch: the gateway was not started from a config file")
            return
        while True:
            files = await asyncio.to_thread(self._watched, path)
            # Folders are watched (editors replace files by renaming), changes filtered.
            folders = {f.parent for f in files}
            async for changes in awatch(*folders, debounce=200, recursive=False):
                if any(Path(changed) in files for _, changed in changes):
                    self.request("watch")
                    break  # the set of files may have changed with the config

    def _watched(self, path: Path) -> set[Path]:
        config = self._serving.current.config
        return {path.resolve(), *(f.resolve() for f in referenced_files(config).values())}

    async def stop(self) -> None:
        for task in (self._watcher, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def run_server(
    gateway: Gateway, host: str, port: int, on_ready: Callable[[int], None] | None = None,
    watch: bool = False, reuse_port: bool = False,
) -> None:
    try:
        import uvloop

        runner: Callable[..., None] = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        runner = asyncio.run
    runner(serve_until_stopped(gateway, host, port, on_ready, watch, reuse_port))
