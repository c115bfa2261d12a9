"""The stage protocol and the builder that assembles stages into one handler.

A stage is ``async (exchange, next) -> reply``: it may refuse (raise), annotate the exchange or
wrap the reply. The builder folds a list of stages around a terminal handler once, at start-up,
the way Starlette builds its middleware stack.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from ironhold.core.exchange import Exchange, Reply

Handler = Callable[[Exchange], Awaitable[Reply]]


class Stage(Protocol):
    async def __call__(self, exchange: Exchange, next_: Handler) -> Reply: ...


def build_pipeline(stages: Sequence[Stage], terminal: Handler) -> Handler:
    """Return one handler that runs ``stages`` in order, then ``terminal``."""
    handler = terminal
    for stage in reversed(stages):
        handler = _bind(stage, handler)
    return handler


def _bind(stage: Stage, next_: Handler) -> Handler:
    async def bound(exchange: Exchange) -> Reply:
        return await stage(exchange, next_)

    return bound
