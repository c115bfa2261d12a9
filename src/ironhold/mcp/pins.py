"""Pinned tool definitions: a tool that changes after it was first seen is quarantined.

The first time the gateway sees a tool, the SHA-256 of its name, description and input schema
is recorded (the *pin*). When a server later describes the same tool differently (a "rug
pull": an innocent tool whose description turns into instructions, or whose schema starts
asking for more), the tool is quarantined: hidden from ``tools/list`` and its calls refused,
until an admin approves the new definition (``ironhold mcp approve``). Pins live in the state
database, so every replica and every restart sees the same.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from ironhold.store.sql import SqlStore, tool_pins

__all__ = ["Pin", "PinRepository", "SqlPinRepository", "Verdict", "definition_of", "pin_digest"]

PinStatus = Literal["approved", "quarantined"]
#: What checking a tool against its pin says: first seen (now pinned), as pinned, or changed.
Verdict = Literal["pinned", "unchanged", "changed", "quarantined"]


def definition_of(tool: dict[str, Any]) -> dict[str, Any]:
    """What a pin covers: what an agent's model reads and what it is asked to send."""
    return {"name": tool.get("name"), "description": tool.get("description"),
            "inputSchema": tool.get("inputSchema")}


def pin_digest(definition: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(definition, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class Pin:
    name: str
    server: str
    digest: str
    definition: dict[str, Any]
    status: PinStatus
    pending_digest: str | None
    pending_definition: dict[str, Any] | None
    first_seen: float
    changed_at: float
    approved_by: str | None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "server": self.server, "status": self.status,
                "digest": self.digest, "pending_digest": self.pending_digest,
                "definition": self.definition, "pending_definition": self.pending_definition,
                "first_seen": self.first_seen, "changed_at": self.changed_at,
                "approved_by": self.approved_by}


class PinRepository(Protocol):
    def check(self, name: str, server: str, digest: str, definition: dict[str, Any],
              now: float) -> tuple[Verdict, Pin]:
        """Compare a tool's definition with its pin: pin it if first seen, quarantine it (and
        keep the new definition pending) if it differs."""
        ...

    def approve(self, name: str, by: str, digest: str | None, now: float) -> Pin | None:
        """Make the pending definition the pin (only if it is ``digest``, when given)."""
        ...

    def list_pins(self) -> list[Pin]: ...


class SqlPinRepository:
    """Pins in the state database. Calls block (short statements): run them off the loop."""

    def __init__(self, store: SqlStore):
        self._engine = store.engine

    def check(self, name: str, server: str, digest: str, definition: dict[str, Any],
              now: float) -> tuple[Verdict, Pin]:
        try:
            return self._check(name, server, digest, definition, now)
        except IntegrityError:  # another replica pinned it first: compare with theirs
            return self._check(name, server, digest, definition, now)

    def _check(self, name: str, server: str, digest: str, definition: dict[str, Any],
               now: float) -> tuple[Verdict, Pin]:
        with self._engine.begin() as conn:
            row = conn.execute(select(tool_pins).where(tool_pins.c.name == name)).first()
            if row is None:
                values = {"name": name, "server": server, "digest": digest,
                          "definition": orjson.dumps(definition).decode(),
                          "status": "approved", "pending_digest": None,
                          "pending_definition": None, "first_seen": now, "changed_at": now,
                          "approved_by": None}
                conn.execute(insert(tool_pins).values(**values))
                return "pinned", _pin(values)
            pin = _pin(row._mapping)
            if pin.digest == digest and pin.status == "approved":
                return "unchanged", pin
            if pin.digest == digest:  # changed back to what was approved: nothing to approve
                changes: dict[str, Any] = {"status": "approved", "pending_digest": None,
                                           "pending_definition": None, "changed_at": now}
                conn.execute(update(tool_pins).where(tool_pins.c.name == name)
                             .values(**changes))
                return "unchanged", _pin({**row._mapping, **changes})
            if pin.pending_digest == digest:
                return "quarantined", pin
            changes = {"status": "quarantined", "pending_digest": digest,
                       "pending_definition": orjson.dumps(definition).decode(),
                       "changed_at": now}
            conn.execute(update(tool_pins).where(tool_pins.c.name == name).values(**changes))
            return "changed", _pin({**row._mapping, **changes})

    def approve(self, name: str, by: str, digest: str | None, now: float) -> Pin | None:
        with self._engine.begin() as conn:
            row = conn.execute(select(tool_pins).where(tool_pins.c.name == name)).first()
            if row is None:
                return None
            pin = _pin(row._mapping)
            if pin.pending_digest is None or (digest is not None and digest != pin.pending_digest):
                return pin
            changes = {"digest": pin.pending_digest,
                       "definition": row._mapping["pending_definition"], "status": "approved",
                       "pending_digest": None, "pending_definition": None,
                       "changed_at": now, "approved_by": by}
            conn.execute(update(tool_pins).where(tool_pins.c.name == name).values(**changes))
            return _pin({**row._mapping, **changes})

    def list_pins(self) -> list[Pin]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(tool_pins).order_by(tool_pins.c.name)).all()
        return [_pin(r._mapping) for r in rows]


def _pin(row: Any) -> Pin:
    pending = row["pending_definition"]
    return Pin(row["name"], row["server"], row["digest"], orjson.loads(row["definition"]),
               row["status"], row["pending_digest"],
               orjson.loads(pending) if pending else None, row["first_seen"],
               row["changed_at"], row["approved_by"])
