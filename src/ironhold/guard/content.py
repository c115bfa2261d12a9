"""Where the text is in a request or an answer, and how to put a redacted text back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from ironhold.core.exchange import Operation

__all__ = ["Segment", "argument_segments", "input_segments", "output_segments",
           "token_ids_in"]


@dataclass(slots=True)
class Segment:
    #: Where it is, e.g. ``messages[2].content``.
    where: str
    text: str
    #: The message role for chat input (system, user, assistant, tool), else "".
    role: str
    set: Callable[[str], None]
    #: Written for a reader (content, text), not a value for a tool: refusals are looked for.
    prose: bool = True

    def replace(self, text: str) -> None:
        """Put ``text`` back where this segment came from."""
        self.set(text)
        self.text = text


def _setter(container: Any, key: Any) -> Callable[[str], None]:
    def put(value: str) -> None:
        container[key] = value
    return put


#: Keys whose values a model does not read as text: ids, names of roles and types.
_NOT_TEXT = frozenset({"role", "type", "id", "tool_call_id"})
#: Content parts that carry media, not text (the model sees an image or a sound).
_MEDIA = frozenset({"image_url", "input_audio", "file", "video_url", "audio_url"})
#: Request fields besides the messages whose text the model reads: tool and function
#: definitions (names, descriptions, schemas) and the format an answer must follow.
_READ_FIELDS = ("tools", "functions", "response_format")


def input_segments(operation: Operation, body: dict[str, Any]) -> Iterator[Segment]:
    """Every text of the request that the model will read: each message's content (a string,
    or every string of every content part, whatever its key), the rest of each message
    (its name, the tool calls of a client-written assistant turn), tool and function
    definitions, the response format; a completion's prompt and suffix; an embedding's input.
    Media parts (images, audio) and ids are not text."""
    if operation is Operation.CHAT:
        messages = body.get("messages")
        if isinstance(messages, list):
            for i, message in enumerate(messages):
                if not isinstance(message, dict):
                    continue
                role = str(message.get("role", ""))
                content = message.get("content")
                if isinstance(content, str):  # the common shape, without the walk
                    if content:
                        yield Segment(f"messages[{i}].content", content, role,
                                      _setter(message, "content"))
                    if len(message) == 2 and "role" in message:
                        continue
                    rest = {k: v for k, v in message.items() if k != "content"}
                    yield from _strings(f"messages[{i}]", rest, role, message)
                else:
                    yield from _strings(f"messages[{i}]", message, role)
        for name in _READ_FIELDS:
            if name in body:
                yield from _strings("", {name: body[name]}, "", body)
        return
    key = "prompt" if operation is Operation.COMPLETION else "input"
    value = body.get(key)
    if isinstance(value, str):
        yield Segment(key, value, "", _setter(body, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                yield Segment(f"{key}[{i}]", item, "", _setter(value, i))
    if operation is Operation.COMPLETION and isinstance(body.get("suffix"), str):
        yield Segment("suffix", body["suffix"], "", _setter(body, "suffix"))


def token_ids_in(operation: Operation, body: dict[str, Any]) -> str | None:
    """The field holding token ids instead of text (a completion's prompt, an embedding's
    input), which no text scanner can read; None if there is none."""
    if operation is Operation.CHAT:
        return None
    key = "prompt" if operation is Operation.COMPLETION else "input"
    value = body.get(key)
    if isinstance(value, list) and any(isinstance(v, int | list) for v in value):
        return key
    return None


def _strings(path: str, node: dict[str, Any], role: str,
             owner: dict[str, Any] | None = None) -> Iterator[Segment]:
    """Every string under ``node`` in document order, but for ids, types and media parts.
    ``owner``: where ``node``'s own values are written back, if ``node`` is a view of it."""
    stack: list[tuple[str, Any, Iterator[tuple[Any, Any]]]] = [(path, node, iter(node.items()))]
    while stack:
        here, container, items = stack[-1]
        step = next(items, None)
        if step is None:
            stack.pop()
            continue
        key, value = step
        if isinstance(container, dict):
            if key in _NOT_TEXT or key in _MEDIA:
                continue
            where = f"{here}.{key}" if here else str(key)
        else:
            where = f"{here}[{key}]"
        if isinstance(value, str):
            if value:
                target = owner if owner is not None and container is node else container
                yield Segment(where, value, role, _setter(target, key))
        elif isinstance(value, dict):
            if value.get("type") not in _MEDIA:
                stack.append((where, value, iter(value.items())))
        elif isinstance(value, list):
            stack.append((where, value, enumerate(value)))


def output_segments(body: dict[str, Any]) -> Iterator[Segment]:
    """The generated texts of a whole (non-streamed) answer: each choice's content or text,
    and every string value in the arguments of its tool calls."""
    choices = body.get("choices")
    if not isinstance(choices, list):
        return
    for i, choice in enumerate(choices):
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        if isinstance(message, dict):
            if isinstance(message.get("content"), str):
                yield Segment(f"choices[{i}].message.content", message["content"], "assistant",
                              _setter(message, "content"))
            calls = message.get("tool_calls")
            for k, call in enumerate(calls if isinstance(calls, list) else ()):
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                    yield from argument_segments(
                        f"choices[{i}].message.tool_calls[{k}].function.arguments", function)
        elif isinstance(choice.get("text"), str):
            yield Segment(f"choices[{i}].text", choice["text"], "assistant",
                          _setter(choice, "text"))


#: Numbers in tool arguments with this many digits or more are scanned (phone numbers have 7+).
_DIGITS = 10 ** 6


def argument_segments(where: str, function: dict[str, Any]) -> Iterator[Segment]:
    """A tool call's arguments: each string value of the JSON, written back re-encoded (so a
    placeholder never breaks the JSON); arguments that are not a JSON object or array, whole."""
    raw = function["arguments"]
    try:
        args = orjson.loads(raw)
    except orjson.JSONDecodeError:
        args = None
    if not isinstance(args, dict | list):
        yield Segment(where, raw, "assistant", _setter(function, "arguments"), prose=False)
        return

    def writer(container: Any, key: Any, number: bool = False) -> Callable[[str], None]:
        def put(value: str) -> None:
            container[key] = int(value) if number and value.isdigit() else value
            function["arguments"] = orjson.dumps(args).decode()
        return put

    stack: list[tuple[str, Any]] = [("", args)]
    while stack:
        path, node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            here = f"{path}.{key}" if isinstance(node, dict) else f"{path}[{key}]"
            if isinstance(value, str):
                yield Segment(where + here, value, "assistant", writer(node, key), prose=False)
            elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _DIGITS:
                # A card or phone number written as a JSON number. Redaction makes it a string
                # placeholder; a value that is digits again (restored) goes back as a number.
                yield Segment(where + here, str(value), "assistant",
                              writer(node, key, number=True), prose=False)
            elif isinstance(value, dict | list):
                stack.append((here, value))
