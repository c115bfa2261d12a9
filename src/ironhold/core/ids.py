"""Request ids: accepted from the client when well-formed, generated otherwise."""

from __future__ import annotations

import os
import re
import time

_WELL_FORMED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


_RAND_B = (1 << 62) - 1
#: The last (milliseconds << 12 | fraction) handed out: ids made in the same tick still grow.
_last_tick = 0


def new_request_id() -> str:
    """A fresh id: a UUID, because some model servers (llama-cpp-python's) refuse any other
    X-Request-ID, of version 7 (RFC 9562): 48 bits of Unix time in milliseconds, 12 bits of
    finer time (kept growing within a tick), then 62 random bits. Ids therefore sort by time,
    and the audit log's index of request ids grows at its right edge, one page a batch; random
    ids dirtied an index page per record, half of SQLite's work for it."""
    global _last_tick
    ms, ns = divmod(time.time_ns(), 1_000_000)
    tick = max((ms << 12) | (ns * 4096 // 1_000_000), _last_tick + 1)
    _last_tick = tick
    value = ((tick >> 12) << 80 | 0x7000 << 64 | (tick & 0xFFF) << 64 | 1 << 63
             | int.from_bytes(os.urandom(8)) & _RAND_B)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def is_uuid(value: str) -> bool:
    return _UUID.fullmatch(value) is not None


def accept_request_id(candidate: str | None) -> str:
    """Return the client's id if it is safe to echo and log, else a fresh one."""
    if candidate and _WELL_FORMED.fullmatch(candidate):
        return candidate
    return new_request_id()
