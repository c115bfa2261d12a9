"""Request ids: accepted from the client when well-formed, generated otherwise."""

from __future__ import annotations

import re
import uuid

_WELL_FORMED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def new_request_id() -> str:
    # A UUID, because some model servers (llama-cpp-python's) refuse any other X-Request-ID.
    return str(uuid.uuid4())


def is_uuid(value: str) -> bool:
    return _UUID.fullmatch(value) is not None


def accept_request_id(candidate: str | None) -> str:
    """Return the client's id if it is safe to echo and log, else a fresh one."""
    if candidate and _WELL_FORMED.fullmatch(candidate):
        return candidate
    return new_request_id()
