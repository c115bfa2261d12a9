"""Request validation: what OpenAI refuses is refused with a 400 naming the field; valid shapes
(tool calls, tool results, media parts, fields nobody reads) pass untouched."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ironhold.core.codec import check_request
from ironhold.core.errors import InvalidRequestError
from ironhold.core.exchange import Operation

USER = {"role": "user", "content": "hi"}


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [USER], **fields}


BAD: list[tuple[dict[str, Any], str]] = [
    (chat(messages=[{"role": 3}]), "messages[0].role"),
    (chat(messages=[{"role": "wizard", "content": "hi"}]), "messages[0].role"),
    (chat(messages=[{"role": "user"}]), "messages[0].content"),
    (chat(messages=[{"role": "user", "content": 5}]), "messages[0].content"),
    (chat(messages=[{"role": "user", "content": [{"type": "text"}]}]),
     "messages[0].content[0].text"),
    (chat(messages=[{"role": "user", "content": [{"text": "x"}]}]),
     "messages[0].content[0].type"),
    (chat(messages=[{"role": "system", "content": [{"type": "image_url",
                                                   "image_url": {"url": "x"}}]}]),
     "messages[0].content[0].type"),
    (chat(messages=[USER, {"role": "assistant", "content": None, "tool_calls": {}}]),
     "messages[1].tool_calls"),
    (chat(messages=[USER, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                                             "function": {"name": "f"}}]}]),
     "messages[1].tool_calls[0].function.arguments"),
    (chat(messages=[USER, {"role": "assistant"}]), "messages[1].content"),
    (chat(messages=[USER, {"role": "tool", "content": "sunny"}]), "messages[1].tool_call_id"),
    (chat(messages=[USER, {"role": "tool", "tool_call_id": 1, "content": "x"}]),
     "messages[1].tool_call_id"),
    (chat(messages=[{"role": "user", "content": "x", "name": 3}]), "messages[0].name"),
    (chat(max_tokens="many"), "max_tokens"),
    (chat(max_tokens=0), "max_tokens"),
    (chat(max_completion_tokens=1.5), "max_completion_tokens"),
    (chat(n=0), "n"),
    (chat(n=True), "n"),
    (chat(tools={}), "tools"),
    (chat(tools=[{"type": "function"}]), "tools[0].function"),
    (chat(tools=[{"type": "function", "function": {"description": "no name"}}]),
     "tools[0].function.name"),
    (chat(tools=[{"type": "retrieval"}]), "tools[0].type"),
    (chat(tool_choice="sometimes"), "tool_choice"),
    (chat(response_format={"type": "yaml"}), "response_format.type"),
    (chat(stream="yes"), "stream"),
    (chat(stream_options={"include_usage": True}), "stream_options"),
    (chat(stream=True, stream_options={"include_usage": "yes"}), "stream_options.include_usage"),
    (chat(messages=[]), "messages"),
    (chat(messages={"role": "user"}), "messages"),
    ({"messages": [USER]}, "model"),
]


@pytest.mark.parametrize(("body", "param"), BAD, ids=[f"{i}-{p}" for i, (_, p) in enumerate(BAD)])
def test_what_openai_refuses_is_a_400_naming_the_field(body: dict[str, Any],
                                                       param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        check_request(Operation.CHAT, body)
    assert caught.value.param == param
    assert param in caught.value.message


def test_valid_shapes_pass_untouched() -> None:
    body = chat(
        messages=[
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "name": "ann", "content": [
                {"type": "text", "text": "What is in this image?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA",
                                                    "detail": "low"}},
                {"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": "look", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "a cat"}]},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
            {"role": "function", "name": "old", "content": None},
        ],
        tools=[{"type": "function", "function": {"name": "look", "strict": True,
                                                 "parameters": {"type": "object"}}}],
        tool_choice={"type": "function", "function": {"name": "look"}},
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
        stream=True, stream_options={"include_usage": False},
        max_tokens=64, n=2, temperature=0.3, vendor_extension={"anything": [1, None]},
    )
    before = copy.deepcopy(body)
    assert check_request(Operation.CHAT, body) == ("m", True)
    assert body == before


@pytest.mark.parametrize(("operation", "body", "param"), [
    (Operation.COMPLETION, {"model": "m"}, "prompt"),
    (Operation.COMPLETION, {"model": "m", "prompt": 12}, "prompt"),
    (Operation.COMPLETION, {"model": "m", "prompt": ["a", 1]}, "prompt"),
    (Operation.COMPLETION, {"model": "m", "prompt": "a", "suffix": 1}, "suffix"),
    (Operation.COMPLETION, {"model": "m", "prompt": "a", "best_of": 500}, "best_of"),
    (Operation.EMBEDDING, {"model": "m"}, "input"),
    (Operation.EMBEDDING, {"model": "m", "input": ""}, "input"),
    (Operation.EMBEDDING, {"model": "m", "input": [[1, 2], []]}, "input"),
    (Operation.EMBEDDING, {"model": "m", "input": "x", "stream": True}, "stream"),
])
def test_completion_and_embedding_fields(operation: Operation, body: dict[str, Any],
                                         param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        check_request(operation, body)
    assert caught.value.param == param


def test_completion_and_embedding_shapes_that_pass() -> None:
    for prompt in ("", ["a", "b"], [1, 2, 3], [[1, 2], [3]]):
        check_request(Operation.COMPLETION, {"model": "m", "prompt": prompt})
    for value in ("text", ["a", "b"], [1, 2], [[1], [2, 3]]):
        check_request(Operation.EMBEDDING, {"model": "m", "input": value})
