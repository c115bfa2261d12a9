"""Token usage as model servers report it, in a whole answer or a stream's usage chunk."""

from __future__ import annotations

from typing import Any

from ironhold.core.exchange import Usage

__all__ = ["MAX_REPORTED_TOKENS", "usage_in"]

#: Usage figures past this are not believed (a model server's bug or lie must not overflow a
#: counter or a record).
MAX_REPORTED_TOKENS = 1 << 31


def usage_in(doc: dict[str, Any]) -> Usage | None:
    """The ``usage`` an answer or a chunk reports, if it reports a believable one."""
    raw = doc.get("usage")
    if not isinstance(raw, dict):
        return None
    prompt, completion = raw.get("prompt_tokens"), raw.get("completion_tokens", 0)
    if type(prompt) is not int or type(completion) is not int:
        return None
    if not (0 <= prompt < MAX_REPORTED_TOKENS and 0 <= completion < MAX_REPORTED_TOKENS):
        return None
    return Usage(prompt_tokens=prompt, completion_tokens=completion)
