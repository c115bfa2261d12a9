"""The tool catalogue: every upstream server's tools, resources and prompts under the names
agents see (``files.read_file``), each tool checked against its pin.

The catalogue follows each server's listings (``ToolServer.on_listing``). A tool whose
definition differs from its pin is kept, but quarantined: hidden from ``tools/list`` and its
calls refused until an admin approves the change (``approve``). A tool's input schema is
compiled once, to check every call's arguments against it before policy decides on them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from ironhold.mcp.pins import Pin, PinRepository, Verdict, definition_of, pin_digest
from ironhold.mcp.upstream import ToolServer

__all__ = ["Catalogue", "CatalogueTool", "Changed"]

log = logging.getLogger("ironhold.mcp")

#: Told of each tool whose definition changed since it was pinned (now quarantined).
Changed = Callable[["CatalogueTool", Pin], None]


@dataclass(slots=True)
class CatalogueTool:
    server: str
    #: The server's own name for it, and the name agents see (``server.name``).
    name: str
    qualified: str
    #: As ``tools/list`` shows it (the qualified name in ``name``).
    listing: dict[str, Any]
    digest: str
    quarantined: bool
    validator: Draft202012Validator | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Entry:
    """A resource or prompt: its server and the server's own name (or URI) for it."""

    server: str
    name: str
    listing: dict[str, Any]


class Catalogue:
    def __init__(self, pins: PinRepository, on_change: Changed | None = None):
        self.pins = pins
        self._on_change = on_change
        self.tools: dict[str, CatalogueTool] = {}
        self.resources: dict[str, Entry] = {}
        self.prompts: dict[str, Entry] = {}
        self._lock = asyncio.Lock()

    async def follow(self, server: ToolServer) -> None:
        """Bring the catalogue up to ``server``'s latest listings."""
        async with self._lock:  # two servers listing at once must not interleave pin checks
            checked = await asyncio.to_thread(self._check, server.name, server.tools)
            self.tools = {q: t for q, t in self.tools.items() if t.server != server.name}
            for tool, verdict, pin in checked:
                self.tools[tool.qualified] = tool
                if verdict == "changed" and self._on_change is not None:
                    self._on_change(tool, pin)
            self._entries(server)

    def _check(self, server: str, tools: list[dict[str, Any]]
               ) -> list[tuple[CatalogueTool, Verdict, Pin]]:
        out = []
        now = time.time()
        for raw in tools:
            name = raw.get("name")
            if not isinstance(name, str) or not name:
                continue
            qualified = f"{server}.{name}"
            definition = definition_of(raw)
            digest = pin_digest(definition)
            verdict, pin = self.pins.check(qualified, server, digest, definition, now)
            if verdict == "changed":
                log.warning("mcp_tool_changed", extra={"tool": qualified, "pinned": pin.digest,
                                                       "now": digest})
            out.append((CatalogueTool(server, name, qualified, {**raw, "name": qualified},
                                      digest, verdict in ("changed", "quarantined"),
                                      _validator(qualified, raw.get("inputSchema"))),
                        verdict, pin))
        return out

    def _entries(self, server: ToolServer) -> None:
        self.resources = {u: e for u, e in self.resources.items() if e.server != server.name}
        for raw in server.resources:
            uri = raw.get("uri")
            if isinstance(uri, str) and uri not in self.resources:
                shown = f"{server.name}.{raw.get('name', '')}"
                self.resources[uri] = Entry(server.name, uri, {**raw, "name": shown})
        self.prompts = {n: e for n, e in self.prompts.items() if e.server != server.name}
        for raw in server.prompts:
            name = raw.get("name")
            if isinstance(name, str) and name:
                qualified = f"{server.name}.{name}"
                self.prompts[qualified] = Entry(server.name, name, {**raw, "name": qualified})

    def tell(self, on_change: Changed) -> None:
        """Who hears of changed tools from now on (a reload's signal board and audit log)."""
        self._on_change = on_change

    def keep(self, servers: set[str]) -> None:
        """Forget what servers no longer configured offered."""
        self.tools = {q: t for q, t in self.tools.items() if t.server in servers}
        self.resources = {u: e for u, e in self.resources.items() if e.server in servers}
        self.prompts = {n: e for n, e in self.prompts.items() if e.server in servers}

    async def approve(self, qualified: str, by: str, digest: str | None) -> Pin | None:
        """Approve a quarantined tool's new definition: it is listed and callable again."""
        async with self._lock:
            pin = await asyncio.to_thread(self.pins.approve, qualified, by, digest, time.time())
            tool = self.tools.get(qualified)
            if pin is not None and tool is not None and pin.status == "approved" \
                    and pin.digest == tool.digest:
                tool.quarantined = False
            return pin

    def quarantined(self) -> int:
        return sum(1 for t in self.tools.values() if t.quarantined)


def _validator(qualified: str, schema: Any) -> Draft202012Validator | None:
    """The tool's input schema, compiled; None (no check) if the server gave none usable."""
    if not isinstance(schema, dict):
        return None
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        log.warning("mcp_tool_schema_invalid", extra={"tool": qualified, "error": exc.message})
        return None
    return Draft202012Validator(schema)
