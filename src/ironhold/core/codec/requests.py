"""Request validation against the OpenAI schema, for every field the gateway or its guard reads.

A request OpenAI would refuse is refused here with a 400 whose ``param`` names the field
(``messages[0].role``, ``tools[1].function.name``), the way OpenAI names it, before any stage
relies on its shape. Fields nobody reads (``temperature``, ``seed``, extensions a model server
understands) pass through untouched. Every number that flows into a reservation, a record or a
store call is bounded here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NoReturn

from ironhold.core.errors import InvalidRequestError
from ironhold.core.exchange import Operation

__all__ = ["MAX_CHOICES", "MAX_COMPLETION_TOKENS", "check_request"]

#: The most completion tokens a request may ask for. Far above any model's context window, and
#: far below what would overflow a counter (a reservation is this times ``n`` plus the prompt).
MAX_COMPLETION_TOKENS = 1 << 24
#: The most choices one request may ask for (OpenAI's own limit).
MAX_CHOICES = 128

_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
#: The content parts each role may send (OpenAI's: system text only, user media too).
_PARTS: Mapping[str, tuple[str, ...]] = {
    "system": ("text",),
    "developer": ("text",),
    "user": ("text", "image_url", "input_audio", "file"),
    "assistant": ("text", "refusal"),
    "tool": ("text",),
}
#: The object each content part type carries its value in, and that object's required strings.
_PART_FIELDS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "image_url": ("image_url", ("url",)),
    "input_audio": ("input_audio", ("data", "format")),
    "file": ("file", ()),
}
_TOOL_CHOICES = ("none", "auto", "required")
_RESPONSE_FORMATS = ("text", "json_object", "json_schema")


def check_request(operation: Operation, body: dict[str, Any]) -> tuple[str, bool]:
    """Validate ``body`` for ``operation``; returns the model name and whether to stream.
    Raises ``InvalidRequestError`` naming the first field that is wrong."""
    model = body.get("model")
    if model is None:
        _missing("model")
    if not isinstance(model, str) or not model.strip():
        _wrong("model", model, "a non-empty string")
    stream = _optional_bool(body, "stream")
    if operation is Operation.CHAT:
        _check_messages(body.get("messages"))
        _check_tools(body)
        _check_response_format(body.get("response_format"))
    elif operation is Operation.COMPLETION:
        _check_prompt(body.get("prompt"))
        if body.get("suffix") is not None and not isinstance(body["suffix"], str):
            _wrong("suffix", body["suffix"], "a string")
    else:
        _check_input(body.get("input"))
        if stream:
            raise InvalidRequestError("Embeddings cannot be streamed.", param="stream",
                                      code="unsupported_value")
    _check_stream_options(body.get("stream_options"), stream)
    for name in ("max_tokens", "max_completion_tokens"):
        _bounded_int(body, name, 1, MAX_COMPLETION_TOKENS)
    for name in ("n", "best_of"):
        _bounded_int(body, name, 1, MAX_CHOICES)
    return model, stream


# -- chat messages --------------------------------------------------------------------------


def _check_messages(messages: object) -> None:
    if messages is None:
        _missing("messages")
    if not isinstance(messages, list):
        _wrong("messages", messages, "an array")
    if not messages:
        raise InvalidRequestError("'messages' must hold at least one message.",
                                  param="messages", code="empty_array")
    for i, message in enumerate(messages):
        _check_message(f"messages[{i}]", message)


def _check_message(at: str, message: object) -> None:
    if not isinstance(message, dict):
        _wrong(at, message, "an object")
    role = message.get("role")
    if role is None:
        _missing(f"{at}.role")
    if not isinstance(role, str):
        _wrong(f"{at}.role", role, "a string")
    if role not in _ROLES:
        _unsupported(f"{at}.role", role, _ROLES)
    if message.get("name") is not None and not isinstance(message["name"], str):
        _wrong(f"{at}.name", message["name"], "a string")
    content = message.get("content")
    if role == "assistant":
        calls = message.get("tool_calls")
        if calls is not None:
            _check_tool_calls(f"{at}.tool_calls", calls)
        if content is None and not (calls or message.get("function_call")
                                    or message.get("refusal") or message.get("audio")):
            _missing(f"{at}.content")
        if message.get("refusal") is not None and not isinstance(message["refusal"], str):
            _wrong(f"{at}.refusal", message["refusal"], "a string")
    elif role == "function":
        if not isinstance(message.get("name"), str):
            _missing(f"{at}.name")
        if content is not None and not isinstance(content, str):
            _wrong(f"{at}.content", content, "a string")
        return
    elif content is None:
        _missing(f"{at}.content")
    if role == "tool":
        call_id = message.get("tool_call_id")
        if call_id is None:
            _missing(f"{at}.tool_call_id")
        if not isinstance(call_id, str):
            _wrong(f"{at}.tool_call_id", call_id, "a string")
    if content is not None:
        _check_content(f"{at}.content", content, _PARTS[role])


def _check_content(at: str, content: object, kinds: tuple[str, ...]) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        _wrong(at, content, "a string or an array of content parts")
    for here, part, kind in _typed_items(at, content, kinds):
        if kind in ("text", "refusal"):
            if kind not in part:
                _missing(f"{here}.{kind}")
            if not isinstance(part[kind], str):
                _wrong(f"{here}.{kind}", part[kind], "a string")
            continue
        key, required = _PART_FIELDS[kind]
        holder = part.get(key)
        if holder is None:
            _missing(f"{here}.{key}")
        if not isinstance(holder, dict):
            _wrong(f"{here}.{key}", holder, "an object")
        for name in required:
            if name not in holder:
                _missing(f"{here}.{key}.{name}")
            if not isinstance(holder[name], str):
                _wrong(f"{here}.{key}.{name}", holder[name], "a string")


def _typed_items(at: str, items: list[Any], kinds: Sequence[str]
                 ) -> Iterator[tuple[str, dict[str, Any], str]]:
    """Each item of ``items``: an object whose ``type`` is one of ``kinds``; yields its path,
    the object and its type."""
    for i, item in enumerate(items):
        here = f"{at}[{i}]"
        if not isinstance(item, dict):
            _wrong(here, item, "an object")
        kind = item.get("type")
        if kind is None:
            _missing(f"{here}.type")
        if kind not in kinds:
            _unsupported(f"{here}.type", kind, kinds)
        yield here, item, kind


def _check_tool_calls(at: str, calls: object) -> None:
    if not isinstance(calls, list):
        _wrong(at, calls, "an array")
    for k, call in enumerate(calls):
        here = f"{at}[{k}]"
        if not isinstance(call, dict):
            _wrong(here, call, "an object")
        for name in ("id", "type"):
            if name not in call:
                _missing(f"{here}.{name}")
            if not isinstance(call[name], str):
                _wrong(f"{here}.{name}", call[name], "a string")
        kind = call["type"]
        if kind not in ("function", "custom"):
            _unsupported(f"{here}.type", kind, ("function", "custom"))
        fields = ("name", "arguments") if kind == "function" else ("name", "input")
        _check_named(f"{here}.{kind}", call.get(kind), fields)


def _check_named(at: str, holder: object, strings: Sequence[str]) -> None:
    """An object whose ``strings`` are required strings."""
    if holder is None:
        _missing(at)
    if not isinstance(holder, dict):
        _wrong(at, holder, "an object")
    for name in strings:
        if name not in holder:
            _missing(f"{at}.{name}")
        if not isinstance(holder[name], str):
            _wrong(f"{at}.{name}", holder[name], "a string")


# -- tools and formats ----------------------------------------------------------------------


def _check_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            _wrong("tools", tools, "an array")
        for here, tool, kind in _typed_items("tools", tools, ("function", "custom")):
            _check_definition(f"{here}.{kind}", tool.get(kind))
    functions = body.get("functions")
    if functions is not None:
        if not isinstance(functions, list):
            _wrong("functions", functions, "an array")
        for i, function in enumerate(functions):
            _check_definition(f"functions[{i}]", function)
    choice = body.get("tool_choice")
    if choice is not None and not (isinstance(choice, str) and choice in _TOOL_CHOICES):
        if isinstance(choice, str):
            _unsupported("tool_choice", choice, _TOOL_CHOICES)
        if not isinstance(choice, dict):
            _wrong("tool_choice", choice, "a string or an object")
        if not isinstance(choice.get("type"), str):
            _missing("tool_choice.type")


def _check_definition(at: str, definition: object) -> None:
    _check_named(at, definition, ("name",))
    assert isinstance(definition, dict)
    if definition.get("description") is not None and \
            not isinstance(definition["description"], str):
        _wrong(f"{at}.description", definition["description"], "a string")
    if definition.get("parameters") is not None and \
            not isinstance(definition["parameters"], dict):
        _wrong(f"{at}.parameters", definition["parameters"], "an object")


def _check_response_format(value: object) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        _wrong("response_format", value, "an object")
    kind = value.get("type")
    if kind is None:
        _missing("response_format.type")
    if kind not in _RESPONSE_FORMATS:
        _unsupported("response_format.type", kind, _RESPONSE_FORMATS)
    if kind == "json_schema":
        _check_named("response_format.json_schema", value.get("json_schema"), ("name",))


# -- completions and embeddings -------------------------------------------------------------


def _check_prompt(prompt: object) -> None:
    if prompt is None:
        _missing("prompt")
    if isinstance(prompt, str):
        return
    if not isinstance(prompt, list) or not prompt or not _texts_or_token_ids(prompt):
        _wrong("prompt", prompt,
               "a string, an array of strings, or an array of token ids (or of such arrays)")


def _check_input(value: object) -> None:
    if value is None:
        _missing("input")
    if value == "" or value == []:
        raise InvalidRequestError("'input' must not be empty.", param="input",
                                  code="empty_array" if value == [] else "invalid_value")
    if isinstance(value, str):
        return
    if not isinstance(value, list) or not _texts_or_token_ids(value):
        _wrong("input", value,
               "a string, an array of strings, or an array of token ids (or of such arrays)")


def _texts_or_token_ids(items: list[Any]) -> bool:
    """All strings, all token ids, or all arrays of token ids."""
    first = items[0]
    if isinstance(first, str):
        return all(isinstance(item, str) for item in items)
    if _is_int(first):
        return all(_is_int(item) for item in items)
    return all(isinstance(item, list) and item and all(_is_int(t) for t in item)
               for item in items)


# -- scalars --------------------------------------------------------------------------------


def _optional_bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        _wrong(name, value, "a boolean")
    return value


def _check_stream_options(options: object, stream: bool) -> None:
    if options is None:
        return
    if not stream:
        raise InvalidRequestError("'stream_options' is only allowed when 'stream' is true.",
                                  param="stream_options", code="invalid_value")
    if not isinstance(options, dict):
        _wrong("stream_options", options, "an object")
    if not isinstance(options.get("include_usage", False), bool):
        _wrong("stream_options.include_usage", options["include_usage"], "a boolean")


def _bounded_int(body: dict[str, Any], name: str, low: int, high: int) -> None:
    value = body.get(name)
    if value is None:
        return
    if not _is_int(value):
        _wrong(name, value, "an integer")
    if not low <= value <= high:
        raise InvalidRequestError(f"'{name}' must be between {low} and {high} (got {value}).",
                                  param=name, code="invalid_value")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _missing(param: str) -> NoReturn:
    raise InvalidRequestError(f"Missing required parameter: '{param}'.", param=param,
                              code="missing_required_parameter")


def _wrong(param: str, value: object, expected: str) -> NoReturn:
    raise InvalidRequestError(
        f"Invalid type for '{param}': expected {expected}, but got {_type_name(value)} "
        "instead.", param=param, code="invalid_type")


def _unsupported(param: str, value: object, allowed: Sequence[str]) -> NoReturn:
    if not isinstance(value, str):
        _wrong(param, value, "a string")
    shown = value if len(value) <= 40 else value[:40] + "…"
    choices = ", ".join(f"'{a}'" for a in allowed)
    raise InvalidRequestError(
        f"Invalid value for '{param}': '{shown}'. Supported values are: {choices}.",
        param=param,
        code="unsupported_value")


#: JSON's types as an error message names them (bool before int: a bool is an int).
_TYPE_NAMES: tuple[tuple[type, str], ...] = (
    (type(None), "null"), (bool, "a boolean"), (int, "an integer"), (float, "a decimal"),
    (str, "a string"), (list, "an array"), (dict, "an object"))


def _type_name(value: object) -> str:
    return next((name for kind, name in _TYPE_NAMES if isinstance(value, kind)),
                type(value).__name__)
