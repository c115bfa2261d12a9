"""Where the text is in a request or an answer, and how to put a redacted text back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ironhold.core.exchange import Operation

__all__ = ["Segment", "input_segments", "output_segments"]


@dataclass(slots=True)
class Segment:
    #: Where it is, e.g. ``messages[2].content``.
    where: str
    text: str
    #: The message role for chat input (system, user, assistant, tool), else "".
    role: str
    set: Callable[[str], None]

    def replace(self, text: str) -> None:
        """Put ``text`` back where this segment came from."""
        self.set(text)
        self.text = text


def _setter(container: Any, key: Any) -> Callable[[str], None]:
    def put(value: str) -> None:
        container[key] = value
    return put


def input_segments(operation: Operation, body: dict[str, Any]) -> Iterator[Segment]:
    """Every text the caller sent: each message's content (string or text parts, every role,
    tool results included), a completion's prompt, an embedding's input."""
    if operation is Operation.CHAT:
        messages = body.get("messages")
        if not isinstance(messages, list):
            return
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                continue
            role = str(message.get("role", ""))
            content = message.get("content")
            if isinstance(content, str):
                yield Segment(f"messages[{i}].content", content, role,
                              _setter(message, "content"))
            elif isinstance(content, list):
                for j, part in enumerate(content):
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        yield Segment(f"messages[{i}].content[{j}].text", part["text"], role,
                                      _setter(part, "text"))
        return
    key = "prompt" if operation is Operation.COMPLETION else "input"
    value = body.get(key)
    if isinstance(value, str):
        yield Segment(key, value, "", _setter(body, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                yield Segment(f"{key}[{i}]", item, "", _setter(value, i))


def output_segments(body: dict[str, Any]) -> Iterator[Segment]:
    """The generated texts of a whole (non-streamed) answer."""
    choices = body.get("choices")
    if not isinstance(choices, list):
        return
    for i, choice in enumerate(choices):
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            yield Segment(f"choices[{i}].message.content", message["content"], "assistant",
                          _setter(message, "content"))
        elif isinstance(choice.get("text"), str):
            yield Segment(f"choices[{i}].text", choice["text"], "assistant",
                          _setter(choice, "text"))
