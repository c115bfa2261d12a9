"""The guard on tool calls, both ways.

- **Arguments** leave the agent for a tool server: secrets and personal data in them are
  blocked, redacted or flagged (by default: secrets blocked, personal data flagged).
- **Results** come back from a tool server and go into the agent's model: an instruction
  planted in a web page, a file or an email (indirect prompt injection) is blocked, redacted or
  flagged before the agent reads it (by default: injections blocked, secrets redacted).

The scanners are the runtime guard's own (``guard.scanners``), chosen per server and per tool
(``mcp.guard``, ``servers[].guard``, ``servers[].tools.<tool>.guard``). Only text is scanned:
images and audio (base64 ``data``, ``blob``) are not text, and ids, types and MIME types not
read as prose.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ironhold.config.guard import ScannerConfig
from ironhold.config.mcp import McpConfig
from ironhold.core.errors import GuardBlockedError, GuardUnavailableError
from ironhold.core.exchange import GuardNote
from ironhold.guard.classifier import InjectionModel
from ironhold.guard.engine import ACTION_RANK, describe
from ironhold.guard.findings import Finding
from ironhold.guard.redact import Redactor
from ironhold.guard.scanners import Scanner, ScannerResources, build_scanner

__all__ = ["ToolGuard", "ToolPlan"]

log = logging.getLogger("ironhold.guard")

#: Keys whose values are not prose: ids, kinds, addresses, media.
_NOT_TEXT = frozenset({"type", "mimeType", "uri", "data", "blob", "_meta", "annotations"})
#: Scans of more text than this run in a worker thread, off the event loop.
_THREAD_AT = 64 * 1024


@dataclass(frozen=True, slots=True)
class ToolPlan:
    """The scanners for one tool, each with its settings."""

    arguments: tuple[tuple[Scanner, ScannerConfig, str], ...]
    results: tuple[tuple[Scanner, ScannerConfig, str], ...]


class ToolGuard:
    def __init__(self, config: McpConfig, model: InjectionModel, on_error: str = "closed"):
        self._config = config
        self._shared = ScannerResources(injection_model=model)
        self._on_error = on_error
        self._plans: dict[tuple[str, str], ToolPlan] = {}
        self._servers = {s.name: s for s in config.servers}

    def plan(self, server: str, tool: str) -> ToolPlan:
        plan = self._plans.get((server, tool))
        if plan is None:
            arguments = dict(self._config.guard.arguments)
            results = dict(self._config.guard.results)
            conf = self._servers.get(server)
            overrides = [] if conf is None else [conf.guard, *(
                [conf.tools[tool].guard] if tool in conf.tools else [])]
            for override in overrides:
                if override is not None:
                    arguments.update(override.arguments)
                    results.update(override.results)
            plan = self._plans[(server, tool)] = ToolPlan(self._arm(arguments),
                                                          self._arm(results))
        return plan

    def _arm(self, options: dict[str, ScannerConfig]
             ) -> tuple[tuple[Scanner, ScannerConfig, str], ...]:
        return tuple((build_scanner(name, o, self._shared), o, name)
                     for name, o in options.items() if o.action != "off")

    async def arguments(self, server: str, tool: str, arguments: dict[str, Any],
                        notes: list[GuardNote]) -> None:
        """Scan and act on a call's arguments, in place (raises ``GuardBlockedError``)."""
        scanners = self.plan(server, tool).arguments
        if scanners:
            await self._scan(scanners, "Tool call", "arguments", arguments, notes)

    async def result(self, server: str, tool: str, result: dict[str, Any],
                     notes: list[GuardNote]) -> None:
        """Scan and act on a tool's result, in place (raises ``GuardBlockedError``)."""
        scanners = self.plan(server, tool).results
        if scanners:
            await self._scan(scanners, "Tool result", "result", result, notes)

    async def _scan(self, scanners: tuple[tuple[Scanner, ScannerConfig, str], ...], what: str,
                    root: str, node: dict[str, Any], notes: list[GuardNote]) -> None:
        texts = list(_texts(root, node))
        if sum(len(t[1]) for t in texts) >= _THREAD_AT:
            await asyncio.to_thread(self._act, scanners, what, texts, notes)
        else:
            self._act(scanners, what, texts, notes)

    def _act(self, scanners: tuple[tuple[Scanner, ScannerConfig, str], ...], what: str,
             texts: list[tuple[str, str, Callable[[str], None]]],
             notes: list[GuardNote]) -> None:
        redactor: Redactor | None = None
        for where, text, put in texts:
            found: list[tuple[Finding, str]] = []
            for scanner, options, name in scanners:
                try:
                    found += [(f, options.action) for f in scanner.scan(text, where)]
                except Exception as exc:
                    log.exception("guard scanner failed on %s", where)
                    notes.append(GuardNote(scanner="error", action="fail_" + self._on_error,
                                           where=where, error=type(exc).__name__))
                    if self._on_error == "closed":
                        raise GuardUnavailableError(
                            f"The guard could not scan the {name} of this tool call and fails "
                            "closed; try again.") from exc
            if not found:
                continue
            notes.extend(f.note(action) for f, action in found)
            worst, action = max(found, key=lambda fa: ACTION_RANK[fa[1]])
            if action == "block":
                raise GuardBlockedError(
                    f"{what} blocked by the guard: {describe(worst)} in {worst.where}.",
                    category=worst.category, owasp=worst.owasp)
            redact = [f for f, a in found if a == "redact"]
            if redact:
                redactor = redactor or Redactor()
                put(redactor.redact(text, redact))


def _texts(root: str, node: Any) -> Iterator[tuple[str, str, Callable[[str], None]]]:
    """Every prose string under ``node``, where it is, and how to put a new one back."""
    stack: list[tuple[str, Any]] = [(root, node)]
    while stack:
        path, here = stack.pop()
        items = here.items() if isinstance(here, dict) else enumerate(here)
        for key, value in items:
            if isinstance(here, dict) and key in _NOT_TEXT:
                continue
            where = f"{path}.{key}" if isinstance(here, dict) else f"{path}[{key}]"
            if isinstance(value, str):
                if value:
                    yield where, value, _setter(here, key)
            elif isinstance(value, dict | list):
                stack.append((where, value))


def _setter(container: Any, key: Any) -> Callable[[str], None]:
    def put(value: str) -> None:
        container[key] = value
    return put
