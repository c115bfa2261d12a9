"""Serving: the gateway new requests go to, and the reloads that replace it.

A reload loads and checks the new config, builds a new ``Gateway`` beside the running one
(taking over every part whose config is unchanged: see ``core.parts``), starts what is new in
it, and swaps it in with one assignment. Requests and streams already in flight finish on the
gateway they started on; once the last has, the parts the new gateway did not take are closed.
An invalid config, or one that changes what only a restart can change, is never applied: the
running gateway goes on serving, and the refusal says which file and field, and why.

Every reload, applied or refused, is logged, counted and audited (``kind: change``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ironhold.audit.record import ChangeRecord
from ironhold.bootstrap import Gateway
from ironhold.config.diff import Change, config_diff, needs_restart
from ironhold.config.loader import load_config
from ironhold.config.schema import Config
from ironhold.core.errors import ConfigError, IronholdError
from ironhold.core.exchange import Principal
from ironhold.core.ids import new_request_id
from ironhold.core.parts import Parts, close_parts

__all__ = ["Reloaded", "Serving"]

log = logging.getLogger("ironhold.config")

#: How long a retired gateway's requests may take beyond its longest request deadline.
_DRAIN_SLACK = 5.0


@dataclass(frozen=True, slots=True)
class Reloaded:
    """What a reload did."""

    version: str
    previous_version: str
    source: str
    changes: list[Change]
    seconds: float
    applied: bool = True
    #: Parts taken over from the running gateway, and parts made anew.
    kept: int = 0
    made: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"applied": self.applied, "version": self.version,
                "previous_version": self.previous_version, "source": self.source,
                "changes": [c.line() for c in self.changes],
                "reload_ms": round(self.seconds * 1000, 3),
                "parts": {"kept": self.kept, "made": self.made}}


@dataclass(eq=False)
class Serving:
    current: Gateway
    #: The file a SIGHUP (or a change seen by ``--watch``) reloads: the one it started from.
    path: Path | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _retiring: set[asyncio.Task[None]] = field(default_factory=set)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    #: Stopping: ``/readyz`` answers 503 so load balancers send no more.
    draining: bool = False

    @classmethod
    def of(cls, gateway: Gateway) -> Serving:
        source = Path(gateway.config.source)
        return cls(gateway, source if source.is_file() else None)

    async def reload_file(self, trigger: str) -> Reloaded:
        """Reload the file the gateway started from (``trigger``: ``sighup``, ``watch``)."""
        if self.path is None:
            raise ConfigError("this gateway was not started from a config file")
        path = self.path
        return await self.reload(lambda: load_config(path), trigger=trigger)

    async def reload(self, load: Callable[[], Config], *, trigger: str,
                     principal: Principal | None = None, dry_run: bool = False) -> Reloaded:
        """Load a config with ``load`` (off the event loop) and, if it is valid and needs no
        restart, serve it from now on. Raises ``ConfigError`` (nothing applied) otherwise."""
        async with self._lock:
            old = self.current
            began = time.perf_counter()
            try:
                config = await asyncio.to_thread(_loaded, load)
                changes = await asyncio.to_thread(config_diff, old.config, config)
                _refuse_restart_only(config, changes)
                if dry_run:
                    return Reloaded(old.version, old.version, config.source, changes,
                                    time.perf_counter() - began, applied=False)
                new = await self._build(old, config)
            except IronholdError as exc:
                await self._refused(old, trigger, principal, exc, began)
                raise
            self.current = new
            retired = new.parts.retired()
            made = len(new.parts.new())
            new.parts.forget_previous()
            done = Reloaded(new.version, old.version, config.source, changes,
                            time.perf_counter() - began,
                            kept=sum(1 for _ in new.parts) - made, made=made)
            self._retire(old, retired)
        new.metrics.config_reloaded("applied", done.seconds)
        log.info("config_reloaded", extra={
            "trigger": trigger, "version": new.version, "previous_version": old.version,
            "changes": len(changes), "reload_ms": round(done.seconds * 1000, 1),
            "retired": len(retired)})
        await _audit(new, principal, "applied", {
            "trigger": trigger, **done.as_json()})
        return done

    async def _build(self, old: Gateway, config: Config) -> Gateway:
        parts = Parts(old.parts)
        assert old.rebuild is not None
        try:
            new = old.rebuild(config, parts)
            await new.start()
        except BaseException as exc:
            await close_parts(parts.new())
            if isinstance(exc, ConfigError) or not isinstance(exc, Exception):
                raise
            # A model file that does not verify, a server that does not start...: the config
            # is refused, saying why.
            reason = exc.message if isinstance(exc, IronholdError) else str(exc)
            raise ConfigError(f"{config.source}: cannot be served: {reason}") from exc
        return new

    async def _refused(self, old: Gateway, trigger: str, principal: Principal | None,
                       exc: IronholdError, began: float) -> None:
        old.metrics.config_reloaded("rejected", time.perf_counter() - began)
        log.error("config_reload_refused", extra={"trigger": trigger, "error": exc.message,
                                                  "version": old.version})
        await _audit(old, principal, "rejected", {"trigger": trigger, "error": exc.message,
                                                  "version": old.version})

    def _retire(self, old: Gateway, retired: list[Any]) -> None:
        """Close the parts the new gateway did not take, once ``old`` has served its last
        request (or its longest deadline has passed)."""
        limit = max((g.routing.timeout.total for g in old.config.models), default=0.0)

        async def retire() -> None:
            waits = {asyncio.ensure_future(old.drained()),
                     asyncio.ensure_future(self._stopping.wait())}
            _, pending = await asyncio.wait(waits, timeout=limit + _DRAIN_SLACK,
                                            return_when=asyncio.FIRST_COMPLETED)
            for wait in pending:
                wait.cancel()
            if old.in_flight and not self._stopping.is_set():
                log.warning("retired config still had requests in flight; closing its parts",
                            extra={"version": old.version, "in_flight": old.in_flight})
            await close_parts(retired)

        task = asyncio.create_task(retire(), name=f"retire:{old.version[:12]}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def close(self) -> None:
        """Stop serving: close the retiring gateways' parts (without waiting for their
        requests: the server has stopped them) and the current one's."""
        self._stopping.set()
        await self.settled()
        await self.current.close()

    async def settled(self) -> None:
        """Wait until every retired gateway's parts are closed (tests and drills)."""
        await asyncio.gather(*self._retiring, return_exceptions=True)


def _loaded(load: Callable[[], Config]) -> Config:
    try:
        return load()
    except IronholdError:
        raise
    except Exception as exc:  # a loader's own failure: refused, never a 500
        raise ConfigError(f"the config cannot be loaded: {type(exc).__name__}: {exc}") from exc


def _refuse_restart_only(config: Config, changes: list[Change]) -> None:
    blocked = needs_restart(changes)
    if blocked:
        raise ConfigError("\n".join(
            f"{config.source}: {c.path}: cannot change while serving (restart the gateway "
            "to change it)" for c in blocked))


async def _audit(gateway: Gateway, principal: Principal | None, outcome: str,
                 detail: dict[str, Any]) -> None:
    if gateway.audit is None:
        return
    await gateway.audit.record_change(ChangeRecord(
        round(time.time(), 6), new_request_id(), principal, "config_reload", outcome, detail))
