"""A semantic diff of two configs: what changed, named by where it is (``models[chat]
.deployments[gpu-1].url``), not by line. Named lists (model groups, deployments) are matched by
name, so reordering them is no change; defaults are filled in on both sides, so spelling out a
default is no change either; secrets are masked on both sides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ironhold.config.schema import Config
from ironhold.config.version import canonical_form

__all__ = ["RESTART_ONLY", "Change", "config_diff", "needs_restart"]

#: What a running gateway cannot change by a reload: what it listens on and how it reads
#: requests off the socket, where its state and audit log live (one writer each), how it logs.
RESTART_ONLY = ("server.host", "server.port", "server.max_connections", "server.header_timeout",
                "server.max_body_bytes", "server.drain.timeout", "state", "audit", "logging")


@dataclass(frozen=True, slots=True)
class Change:
    #: ``added``, ``removed`` or ``changed``.
    kind: str
    path: str
    old: Any = None
    new: Any = None

    @property
    def section(self) -> str:
        """The top-level key it is under (``models``, ``guard``, ``limits``...)."""
        return self.path.split(".", 1)[0].split("[", 1)[0]

    def line(self) -> str:
        if self.kind == "added":
            return f"+ {self.path}: {_show(self.new)}"
        if self.kind == "removed":
            return f"- {self.path}: {_show(self.old)}"
        return f"~ {self.path}: {_show(self.old)} -> {_show(self.new)}"


def config_diff(old: Config, new: Config) -> list[Change]:
    changes: list[Change] = []
    _walk(canonical_form(old), canonical_form(new), "", changes)
    return changes


def needs_restart(changes: list[Change]) -> list[Change]:
    """The changes a reload cannot apply."""
    return [c for c in changes
            if any(c.path == p or c.path.startswith((f"{p}.", f"{p}[")) for p in RESTART_ONLY)]


def _walk(a: Any, b: Any, path: str, out: list[Change]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in a:
                out.append(Change("added", where, new=b[key]))
            elif key not in b:
                out.append(Change("removed", where, old=a[key]))
            else:
                _walk(a[key], b[key], where, out)
        return
    if isinstance(a, list) and isinstance(b, list) and _named(a) and _named(b):
        left, right = _by_name(a), _by_name(b)
        for name in [*left, *(n for n in right if n not in left)]:
            where = f"{path}[{name}]"
            if name not in right:
                out.append(Change("removed", where, old=left[name]))
            elif name not in left:
                out.append(Change("added", where, new=right[name]))
            else:
                _walk(left[name], right[name], where, out)
        return
    if a != b:
        out.append(Change("changed", path, a, b))


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def _by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(item["name"]) if item["name"] is not None else f"#{i}": item
            for i, item in enumerate(items)}


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 120 else text[:117] + "..."
