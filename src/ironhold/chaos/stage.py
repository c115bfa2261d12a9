"""The chaos stage: turns an admin's ``x-ironhold-fault`` header and the per-key faults of the
config into the faults of this request's upstream attempts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson
from pydantic import TypeAdapter, ValidationError

from ironhold.config.schema import FaultConfig
from ironhold.core.errors import InvalidRequestError, PermissionDeniedError
from ironhold.core.exchange import Exchange, Reply
from ironhold.core.pipeline import Handler
from ironhold.policy.authorizer import Authorizer

HEADER = "x-ironhold-fault"
_FAULTS = TypeAdapter(list[FaultConfig])


class ChaosStage:
    def __init__(self, allow_header: bool, key_faults: Mapping[str, Sequence[FaultConfig]],
                 authorizer: Authorizer | None = None):
        self._allow_header = allow_header
        self._key_faults = {name: tuple(faults) for name, faults in key_faults.items()}
        self._authorizer = authorizer

    async def __call__(self, exchange: Exchange, next_: Handler) -> Reply:
        principal = exchange.principal
        # Keys only: a key's name is chosen by an admin, an agent's by whoever mints it.
        if self._key_faults and principal is not None and principal.kind == "key":
            exchange.faults = self._key_faults.get(principal.name, ())
        if exchange.fault_header is not None:
            if not self._allow_header:
                raise PermissionDeniedError(
                    f"fault injection by header is turned off (chaos.header: false); "
                    f"remove the {HEADER} header")
            if exchange.principal is None or not exchange.principal.admin:
                raise PermissionDeniedError(f"the {HEADER} header needs an admin key")
            if self._authorizer is not None:
                self._authorizer.require(exchange.principal, "inject_faults", exchange.client_ip)
            exchange.faults = exchange.faults + parse_fault_header(exchange.fault_header)
        return await next_(exchange)


def parse_fault_header(value: str) -> tuple[FaultConfig, ...]:
    """``x-ironhold-fault`` holds one fault or a list of them, as JSON in the config's shape:
    ``{"kind": "abort", "status": 503, "percent": 50, "deployment": "chat-0"}``."""
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"{HEADER} is not valid JSON: {exc}", param=HEADER) from None
    items = data if isinstance(data, list) else [data]
    try:
        return tuple(_FAULTS.validate_python(items))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InvalidRequestError(f"{HEADER}: {problems}", param=HEADER) from None
