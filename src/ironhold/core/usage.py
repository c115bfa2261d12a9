"""What a streamed answer used: the usage event the model server sends, or, when it sends
none, a count of what the stream delivered."""

from __future__ import annotations

import math
from typing import Any

from ironhold.core.codec.usage import usage_in
from ironhold.core.events import Chunk
from ironhold.core.exchange import Exchange, Usage
from ironhold.core.tokens import estimate_prompt_tokens

__all__ = ["StreamUsage"]


class StreamUsage:
    """What a streamed answer used, whether or not the client asked for usage.

    The router asks the model server for a usage event (``stream_options.include_usage``)
    on every stream; when the client did not ask for one itself, that event is taken out of
    what the client receives (``keep`` says which chunks to pass on). Model servers that send
    no usage event (llama-cpp-python's) are counted from the events: the generated characters
    at about four a token, and at least one token an event that carries text, with the prompt
    at its admission estimate. Either way ``finish`` leaves ``exchange.usage`` set, so limits
    and budgets are charged for what was delivered (a stream without ``include_usage`` used
    to be charged its reservation only)."""

    __slots__ = ("_chars", "_events", "_exchange", "_finished", "_hide", "_reported")

    def __init__(self, exchange: Exchange, hide_usage: bool):
        self._exchange = exchange
        self._hide = hide_usage
        self._finished = False
        self._reported: Usage | None = None
        self._chars = 0
        self._events = 0

    def keep(self, chunk: Chunk) -> bool:
        """Account for ``chunk``; False when it is the usage chunk the client did not ask
        for (taken out of the stream)."""
        doc = chunk.doc
        if "usage" in doc:
            usage = usage_in(doc)
            if usage is not None:
                self._reported = usage
                if self._hide and not doc.get("choices"):
                    return False
        self._count(doc.get("choices"))
        return True

    def finish(self) -> None:
        """Set ``exchange.usage``: as reported, or counted."""
        if self._finished:
            return
        self._finished = True
        exchange = self._exchange
        if self._reported is not None:
            exchange.usage = self._reported
            return
        if exchange.usage is not None:
            return
        prompt = exchange.estimated_tokens
        if prompt is None:
            prompt = estimate_prompt_tokens(exchange.operation, exchange.body)
        completion = max(self._events, math.ceil(self._chars / 4))
        exchange.usage = Usage(prompt_tokens=prompt, completion_tokens=completion)

    def _count(self, choices: Any) -> None:
        if not isinstance(choices, list):
            return
        chars = 0
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                content = delta.get("content")
                chars += len(content) if isinstance(content, str) else 0
                for call in delta.get("tool_calls") or ():
                    function = call.get("function") if isinstance(call, dict) else None
                    arguments = function.get("arguments") if isinstance(function, dict) else None
                    chars += len(arguments) if isinstance(arguments, str) else 0
            text = choice.get("text")
            chars += len(text) if isinstance(text, str) else 0
        if chars:
            self._chars += chars
            self._events += 1
