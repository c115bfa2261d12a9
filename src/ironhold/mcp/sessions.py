"""MCP sessions as signed ids, so any worker or replica can serve any session.

``initialize`` answers with an ``Mcp-Session-Id``: the caller's id, the protocol version and
the time, signed with a key derived from the key-hashing secret (which every worker and
replica shares). A later request's session is checked by its signature, its age and its
caller: a session is bound to the identity that opened it, so a leaked id is useless to
anyone else. Ended sessions (``DELETE /mcp``) are remembered by the process that ended them,
in a bounded set, until they would have expired anyway.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections import OrderedDict
from dataclasses import dataclass

import orjson

from ironhold.core.errors import NotFoundError

__all__ = ["Session", "Sessions"]


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    principal: str
    protocol_version: str
    opened: float

    @property
    def digest(self) -> str:
        """What audit records name the session by (the id itself is a bearer's)."""
        return hashlib.sha256(self.id.encode()).hexdigest()[:16]


class Sessions:
    def __init__(self, key: bytes, ttl: float, max_ended: int):
        self._key = key
        self._ttl = ttl
        self._max_ended = max_ended
        self._ended: OrderedDict[str, float] = OrderedDict()

    def open(self, principal: str, protocol_version: str) -> Session:
        now = time.time()
        payload = _b64(orjson.dumps({"p": principal, "v": protocol_version, "t": round(now, 3)}))
        session_id = f"{payload}.{self._sign(payload)}"
        return Session(session_id, principal, protocol_version, now)

    def get(self, session_id: str, principal: str) -> Session:
        """The session, if it is ours, alive and the caller's; else the 404 the protocol
        prescribes (the client then opens a new one)."""
        payload, _, signature = session_id.partition(".")
        gone = NotFoundError("The MCP session is unknown or has expired; initialize a new one.",
                             code="session_not_found")
        if len(session_id) > 1024 or not hmac.compare_digest(signature, self._sign(payload)):
            raise gone
        try:
            data = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            session = Session(session_id, str(data["p"]), str(data["v"]), float(data["t"]))
        except (ValueError, KeyError, TypeError):
            raise gone from None
        if session.principal != principal or time.time() - session.opened > self._ttl \
                or session_id in self._ended:
            raise gone
        return session

    def end(self, session: Session) -> None:
        now = time.time()
        while self._ended and (len(self._ended) >= self._max_ended
                               or next(iter(self._ended.values())) < now - self._ttl):
            self._ended.popitem(last=False)
        self._ended[session.id] = now

    def _sign(self, payload: str) -> str:
        return _b64(hmac.digest(self._key, payload.encode(), "sha256"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
