"""Real servers on loopback for the tests: the simulator and the gateway, each in a thread with
its own event loop, built through the same composition root as production."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from ironhold.api.context import SERVING
from ironhold.api.server import start_server
from ironhold.bootstrap import Gateway, build_gateway
from ironhold.config import Config, parse_config
from ironhold.serving import Reloaded, Serving
from ironhold.simulator import Simulator, SimulatorProfile


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LoopThread:
    """An event loop in a daemon thread; ``call`` runs a coroutine there and waits for it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coro: Awaitable[Any], timeout: float = 180) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def stop(self) -> None:
        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.call(drain())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class AppServer:
    """An aiohttp application served on a loopback port from its own loop thread."""

    def __init__(self, app: web.Application):
        self._thread = LoopThread()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5,
                                     handler_cancellation=True)
        self.port: int = self._thread.call(self._start())
        self._closed = False

    async def _start(self) -> int:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return int(self._runner.addresses[0][1])

    def close(self) -> None:
        """Stop serving (idempotent: a test may kill a server before its fixture closes it)."""
        if self._closed:
            return
        self._closed = True
        self._thread.call(self._runner.cleanup())
        self._thread.stop()


class SimulatorServer(AppServer):
    def __init__(self, profile: SimulatorProfile | None = None):
        self.simulator = Simulator(profile)
        super().__init__(self.simulator.app())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def set_profile(self, profile: SimulatorProfile) -> None:
        self.simulator.profile = profile


class GatewayServer:
    def __init__(self, config: Config, log_dir: Path | None = None):
        self.config = config
        gateway = build_gateway(config, log_dir=log_dir)
        self._thread = LoopThread()
        try:
            self._runner, self.port = self._thread.call(start_server(gateway, "127.0.0.1", 0))
        except BaseException:
            self._thread.stop()
            raise
        self._closed = False

    @property
    def serving(self) -> Serving:
        serving: Serving = self._runner.app[SERVING]
        return serving

    @property
    def gateway(self) -> Gateway:
        """The gateway serving new requests (a reload replaces it)."""
        return self.serving.current

    def reload(self, config: Config) -> Reloaded:
        """Reload as SIGHUP does, with ``config`` for the file's contents."""
        done: Reloaded = self.run(lambda: self.serving.reload(lambda: config, trigger="test"))
        return done

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def v1(self) -> str:
        return self.base_url + "/v1"

    def create_key(self, name: str = "test", models: list[str] | None = None,
                   admin: bool = False) -> str:
        return self.gateway.keys.create(name, models, admin)[1]

    def run(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Run a coroutine on the gateway's loop (to read its state safely)."""
        return self._thread.call(fn())

    def close(self) -> None:
        """Stop serving (idempotent: a test may stop it before its fixture does)."""
        if self._closed:
            return
        self._closed = True
        self._thread.call(self._runner.cleanup())
        self._thread.stop()


def gateway_config(tmp_path: Path, models: list[dict[str, Any]], **sections: Any) -> Config:
    data: dict[str, Any] = {
        "state": {"url": f"sqlite:///{tmp_path / 'state' / 'ironhold.db'}"},
        "logging": {"level": "warning", "access": False},
        "models": models,
        **sections,
    }
    # A test that stops its gateway with a request still hanging waits 5 s, not 30.
    data["server"] = {"drain": {"timeout": "5s"}, **data.get("server", {})}
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "ironhold.yaml").write_text(yaml.safe_dump(data))
    return parse_config(data, source="test.yaml", base_dir=tmp_path)
