"""The managed local model: a llama.cpp server (``llama-cpp-python[server]``) as a supervised
child process.

Start-up verifies the GGUF file against its pinned SHA-256 and its model-signing signature
(each that is configured) and refuses to serve on a mismatch, starts the server on a free
loopback port, and waits until it answers. A supervisor task
restarts it with exponential backoff if it dies, and ``stop`` ends it on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp

from ironhold.config.schema import LocalModelConfig
from ironhold.core.errors import ArtifactIntegrityError, UpstreamUnavailableError
from ironhold.upstream.artifacts import verify_artifact
from ironhold.upstream.signatures import verify_model

log = logging.getLogger("ironhold.local")

_BACKOFF_START_S = 1.0
_BACKOFF_MAX_S = 30.0
#: A server that stayed up this long before dying earns a fresh backoff.
_STABLE_AFTER_S = 60.0


#: How the supervisor tells workers where its local model servers are (JSON).
LOCAL_MODELS_ENV = "IRONHOLD_LOCAL_MODELS"


@dataclass(frozen=True, slots=True)
class ProvidedModel:
    """A managed local model the supervisor runs: its server's base URL and verified digest."""

    url: str
    digest: str | None


def provided_models() -> dict[str, ProvidedModel] | None:
    """In a worker: the supervisor's local model servers by ``group/deployment`` (None when
    not a worker)."""
    raw = os.environ.get(LOCAL_MODELS_ENV)
    if raw is None:
        return None
    return {name: ProvidedModel(**value) for name, value in json.loads(raw).items()}


def restart_delay(previous: float | None, uptime: float) -> float:
    """How long to wait before restarting a server that died after ``uptime`` seconds:
    doubling while it crash-loops, back to the start once it had been stable."""
    if previous is None or uptime >= _STABLE_AFTER_S:
        return _BACKOFF_START_S
    return min(previous * 2, _BACKOFF_MAX_S)


class LocalModelServer:
    def __init__(
        self,
        name: str,
        config: LocalModelConfig,
        base_dir: Path,
        log_dir: Path | None = None,
    ):
        self.name = name
        self.config = config
        gguf = config.gguf
        self.gguf = gguf if gguf.is_absolute() else (base_dir / gguf).resolve()
        self._base_dir = base_dir
        #: The served file's digest (``sha256:<hex>``), once verified.
        self.digest: str | None = f"sha256:{config.sha256}" if config.sha256 else None
        self.port = _free_port()
        #: Told True when the server answers, False when it dies or stops.
        self.on_availability: Callable[[bool], None] = lambda up: None
        self._log_dir = log_dir
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self.restarts = 0

    def verify(self) -> str:
        """Check the model file against its pinned digest and its signature (each that is
        configured); returns its digest (``sha256:<hex>``). Raises ``ArtifactIntegrityError``
        saying why the file must not be served."""
        config = self.config
        digest = ""
        if config.sha256 is not None:
            verify_artifact(self.gguf, config.sha256)
            digest = f"sha256:{config.sha256}"
        if config.signature is not None:
            signature = config.signature
            digest = verify_model(self.gguf, self._resolve(signature.bundle),
                                  self._resolve(signature.public_key))
        return digest

    def _resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else (self._base_dir / path).resolve()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def start(self) -> None:
        """Verify, start, and wait until the server answers; then supervise it."""
        log.info("verifying model file", extra={"deployment": self.name, "path": str(self.gguf)})
        self.digest = await asyncio.to_thread(self.verify)
        await self._spawn_and_wait()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"supervise:{self.name}")

    async def stop(self) -> None:
        self._stopping = True
        self.on_availability(False)
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        await self._terminate()

    async def _spawn_and_wait(self) -> None:
        command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.gguf),
            "--model_alias", self.name,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--n_ctx", str(self.config.ctx_size),
            "--verbose", "False",
        ]
        if self.config.chat_format:
            command += ["--chat_format", self.config.chat_format]
        if self.config.threads:
            command += ["--n_threads", str(self.config.threads)]
        command += self.config.args
        output: int | IO[bytes] = asyncio.subprocess.DEVNULL
        log_file: IO[bytes] | None = None
        if self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            log_file = (self._log_dir / f"{_safe(self.name)}.log").open("ab")
            output = log_file
        try:
            self._process = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=output,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        finally:
            if log_file is not None:
                log_file.close()
        log.info("local model server starting",
                 extra={"deployment": self.name, "pid": self._process.pid, "port": self.port})
        await self._wait_ready(self.config.startup_timeout)
        self.on_availability(True)
        log.info("local model server ready", extra={"deployment": self.name, "port": self.port})

    async def _wait_ready(self, within_s: float) -> None:
        deadline = time.monotonic() + within_s
        url = f"http://127.0.0.1:{self.port}/v1/models"
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self._process is None or self._process.returncode is not None:
                    code = self._process.returncode if self._process else None
                    raise UpstreamUnavailableError(
                        f"local model server {self.name} exited with code {code} while "
                        f"starting (is llama-cpp-python[server] installed?)"
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.2)
        await self._terminate()
        raise UpstreamUnavailableError(
            f"local model server {self.name} was not ready within {within_s:.0f}s"
        )

    async def _supervise(self) -> None:
        delay: float | None = None
        up_since = time.monotonic()
        while not self._stopping:
            assert self._process is not None
            code = await self._process.wait()
            if self._stopping:
                return
            delay = restart_delay(delay, time.monotonic() - up_since)
            self.on_availability(False)
            log.warning("local model server died; restarting",
                        extra={"deployment": self.name, "exit_code": code, "backoff_s": delay})
            await asyncio.sleep(delay)
            try:
                await self._spawn_and_wait()
                self.restarts += 1
            except (UpstreamUnavailableError, ArtifactIntegrityError, OSError) as exc:
                log.error("local model server restart failed",
                          extra={"deployment": self.name, "error": str(exc)})
            up_since = time.monotonic()

    async def _terminate(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=10)
        except TimeoutError:
            process.kill()
            await process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
