"""``ironhold serve --workers N``: N worker processes serving one port, under one supervisor.

Each worker is an ordinary ``ironhold serve`` that binds the port with ``SO_REUSEPORT``, so the
kernel spreads connections across them. The supervisor listens on nothing. It:

- prepares what the workers share before any starts (the state database's schema, the
  key-hashing secret, the signing keys), so N processes never race to create them;
- runs the managed local model servers, once, and tells the workers where they are
  (``IRONHOLD_LOCAL_MODELS``): never one llama.cpp process per worker;
- restarts a worker that dies, after a backoff (1 s, doubling while it crash-loops);
- gives each worker a Unix socket in a folder of its own, where the worker a scrape reaches
  reads its siblings' metrics (``api/process_group.py``): ``/metrics`` is the whole group's;
- forwards SIGHUP (each worker reloads its config) and SIGTERM / SIGINT (each drains; the
  supervisor exits once they all have, stopping the model servers last). A second SIGTERM is
  forwarded too: the workers exit at once, and so does the supervisor.

What the workers share lives in the engines that make it exact: limits, budgets and
concurrency in Redis (so ``--workers`` above 1 needs ``state.redis``), keys, the audit log and
rollouts in the SQL store (its writers number the log without gaps across processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from ironhold.api.process_group import WORKER_INDEX_ENV, WORKERS_DIR_ENV
from ironhold.bootstrap import audit_signing_key_path, open_identity
from ironhold.config.schema import Config
from ironhold.core.errors import ConfigError
from ironhold.core.keyfiles import load_or_create_ed25519
from ironhold.upstream.local import (
    LOCAL_MODELS_ENV,
    LocalModelServer,
    ProvidedModel,
    restart_delay,
)

__all__ = ["Supervisor", "check_workers"]

log = logging.getLogger("ironhold.workers")

def check_workers(config: Config, workers: int) -> None:
    """Refuse what N processes would get wrong."""
    if workers > 1 and config.state.redis is None:
        raise ConfigError(
            f"--workers {workers}: limits, budgets and concurrency caps are counted in one "
            "process unless they are in Redis, and N workers would each count their own "
            "(N times the limit). Set state.redis (e.g. redis://127.0.0.1:6379/0), or serve "
            "with one worker.")
    if workers > 1 and config.server.port == 0:
        raise ConfigError(f"--workers {workers}: needs a fixed port (server.port or --port), "
                          "which every worker binds")


class Supervisor:
    def __init__(self, config: Config, config_path: Path, workers: int, host: str, port: int,
                 log_dir: Path | None = None):
        check_workers(config, workers)
        self.config = config
        self._path = config_path
        self._count = workers
        self._host, self._port = host, port
        self._log_dir = log_dir
        self._models: list[LocalModelServer] = []
        self._workers: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = False
        self._stopped = asyncio.Event()
        self.restarts = 0

    def run(self) -> int:
        return asyncio.run(self._run())

    async def _run(self) -> int:
        await asyncio.to_thread(self._prepare_state)
        provided = await self._start_models()
        loop = asyncio.get_running_loop()
        second = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._signalled, sig, second)
        loop.add_signal_handler(signal.SIGHUP, self._forward, signal.SIGHUP)
        folder = Path(tempfile.mkdtemp(prefix="ironhold-workers-"))
        env = {**os.environ, WORKERS_DIR_ENV: str(folder), LOCAL_MODELS_ENV: json.dumps(
            {name: {"url": m.url, "digest": m.digest} for name, m in provided.items()})}
        try:
            async with asyncio.TaskGroup() as group:
                for index in range(self._count):
                    group.create_task(self._keep(index, {**env, WORKER_INDEX_ENV: str(index)}))
            return 1 if second.is_set() else 0
        finally:
            for server in self._models:
                await server.stop()
            shutil.rmtree(folder, ignore_errors=True)
            log.info("supervisor stopped")

    def _prepare_state(self) -> None:
        """The schema, the key-hashing secret and the signing keys, made once, here."""
        with open_identity(self.config):
            pass
        if self.config.audit.enabled:
            load_or_create_ed25519(audit_signing_key_path(self.config), "audit.signing_key")

    async def _start_models(self) -> dict[str, ProvidedModel]:
        provided = {}
        for group in self.config.models:
            for index, dc in enumerate(group.deployments):
                if dc.local is None:
                    continue
                name = dc.name or f"{group.name}-{index}"
                server = LocalModelServer(name, dc.local, self.config.base_dir, self._log_dir)
                self._models.append(server)
                await server.start()
                provided[f"{group.name}/{name}"] = ProvidedModel(server.base_url, server.digest)
        return provided

    async def _keep(self, index: int, env: dict[str, str]) -> None:
        """Run worker ``index`` until the supervisor stops, restarting it when it dies."""
        delay: float | None = None
        while not self._stopping:
            started = time.monotonic()
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ironhold", "serve", "--config", str(self._path),
                "--host", self._host, "--port", str(self._port), "--worker", env=env)
            self._workers[index] = process
            log.info("worker started", extra={"worker": index, "pid": process.pid})
            code = await process.wait()
            if self._stopping:
                return
            delay = restart_delay(delay, time.monotonic() - started)
            self.restarts += 1
            log.warning("worker died; restarting", extra={
                "worker": index, "pid": process.pid, "exit_code": code, "backoff_s": delay})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), delay)

    def _signalled(self, sig: int, second: asyncio.Event) -> None:
        if self._stopping:
            second.set()
        self._stopping = True
        self._stopped.set()
        log.info("supervisor stopping", extra={"signal": signal.Signals(sig).name,
                                               "workers": len(self._workers)})
        self._forward(sig)

    def _forward(self, sig: int) -> None:
        for process in self._workers.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)
