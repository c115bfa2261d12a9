"""A prompt's token count, estimated at admission before any tokenizer has seen it.

About four characters a token for English text (OpenAI's rule of thumb), plus a few tokens of
framing per chat message. Limits reserve this at admission and settle with the real usage the
model server reports, so the estimate only needs to be cheap and roughly right.
"""

from __future__ import annotations

from typing import Any

from ironhold.core.exchange import Operation

_CHARS_PER_TOKEN = 4
_PER_MESSAGE = 4


def estimate_prompt_tokens(operation: Operation, body: dict[str, Any]) -> int:
    if operation is Operation.CHAT:
        chars = 0
        messages = body.get("messages") or ()
        for message in messages:
            chars += _chars(message.get("content")) if isinstance(message, dict) else 0
        tokens = chars // _CHARS_PER_TOKEN + _PER_MESSAGE * len(messages)
    elif operation is Operation.COMPLETION:
        tokens = _chars(body.get("prompt")) // _CHARS_PER_TOKEN
    else:
        tokens = _chars(body.get("input")) // _CHARS_PER_TOKEN
    return max(1, tokens)


def _chars(value: Any) -> int:
    """Characters of text in a content value: a string, a list of parts or of strings."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        total = 0
        for part in value:
            if isinstance(part, str):
                total += len(part)
            elif isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    total += len(text)
            elif isinstance(part, list):  # pre-tokenized input: one token per number
                total += len(part) * _CHARS_PER_TOKEN
            elif isinstance(part, int):
                total += _CHARS_PER_TOKEN
        return total
    return 0
