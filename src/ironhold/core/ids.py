"""Request ids: accepted from the client when well-formed, generated otherwise."""

from __future__ import annotations

import os
import re

_WELL_FORMED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")


def new_request_id() -> str:
    return "req_" + os.urandom(12).hex()


def accept_request_id(candidate: str | None) -> str:
    """Return the client's id if it is safe to echo and log, else a fresh one."""
    if candidate and _WELL_FORMED.fullmatch(candidate):
        return candidate
    return new_request_id()
