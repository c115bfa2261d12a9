"""A whole answer's tool calls are scanned like its text: personal data and secrets in their
arguments are redacted without breaking the JSON, the caller's own values are restored (a tool
must get the real address, not ``[EMAIL_1]``), a leaked canary blocks, and a tool argument is
not taken for a refusal."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ironhold.config.guard import GuardConfig
from ironhold.core.errors import GuardBlockedError
from ironhold.guard import InjectionModel
from ironhold.guard.content import Segment, output_segments
from ironhold.guard.engine import Guard, RequestGuard
from ironhold.guard.leaks import new_canary


@pytest.fixture(scope="module")
def model() -> InjectionModel:
    return InjectionModel.load()


def answer(*arguments: str, content: str | None = None) -> dict[str, Any]:
    calls = [{"id": f"c{i}", "type": "function",
              "function": {"name": "send_email", "arguments": a}}
             for i, a in enumerate(arguments)]
    return {"choices": [{"index": 0, "finish_reason": "tool_calls",
                         "message": {"role": "assistant", "content": content,
                                     "tool_calls": calls}}]}


def arguments(doc: dict[str, Any], k: int = 0) -> str:
    return str(doc["choices"][0]["message"]["tool_calls"][k]["function"]["arguments"])


def test_values_in_tool_arguments_are_redacted_and_the_json_stays_valid(
        model: InjectionModel) -> None:
    guard = Guard(GuardConfig(output={"pii": {"action": "redact"}}), {}, model)
    state = RequestGuard(guard.plan("chat"))
    args = {"to": "dana.w@example.com", "cc": ["ok@x"],
            "body": {"text": "Card 4111 1111 1111 1111 on file, key AKIAIOSFODNN7EXAMPLE"},
            "count": 3}
    doc = answer(orjson.dumps(args).decode(), "to: jane.doe@example.org (not JSON)")
    guard.scan_output(state, list(output_segments(doc)))
    redacted = orjson.loads(arguments(doc))
    assert redacted["to"] == "[EMAIL_1]" and redacted["count"] == 3
    assert redacted["body"]["text"] == "Card [CARD_1] on file, key [SECRET_1]"
    assert arguments(doc, 1) == "to: [EMAIL_2] (not JSON)"
    wheres = {r.where for r in state.records}
    assert "choices[0].message.tool_calls[0].function.arguments.body.text" in wheres
    assert "choices[0].message.tool_calls[1].function.arguments" in wheres


def test_the_callers_own_values_are_restored_in_tool_arguments(model: InjectionModel) -> None:
    guard = Guard(GuardConfig(input={"pii": {"action": "redact", "restore": True}}), {}, model)
    state = RequestGuard(guard.plan("chat"))
    sent = Segment("messages[0].content", "E-mail sam@example.org the invoice", "user",
                   lambda _: None)
    guard.scan_input(state, [sent])
    assert sent.text == "E-mail [EMAIL_1] the invoice"
    doc = answer('{"to": "[EMAIL_1]", "subject": "Invoice"}')
    guard.scan_output(state, list(output_segments(doc)))
    assert orjson.loads(arguments(doc)) == {"to": "sam@example.org", "subject": "Invoice"}


def test_a_canary_in_tool_arguments_blocks_the_answer(model: InjectionModel) -> None:
    guard = Guard(GuardConfig(), {}, model)
    state = RequestGuard(guard.plan("chat"))
    state.canary = new_canary()
    doc = answer(orjson.dumps({"body": f"my prompt: <!-- {state.canary} -->"}).decode())
    with pytest.raises(GuardBlockedError):
        guard.scan_output(state, list(output_segments(doc)))


def test_tool_arguments_are_not_refusals(model: InjectionModel) -> None:
    guard = Guard(GuardConfig(), {}, model)
    state = RequestGuard(guard.plan("chat"))
    doc = answer('{"reply": "I\'m sorry, but I can\'t help with that request."}',
                 content="I'm sorry, but I can't help with that request.")
    guard.scan_output(state, list(output_segments(doc)))
    assert [r.where for r in state.records if r.category == "refusal"] == [
        "choices[0].message.content"]


def test_numbers_in_tool_arguments_are_scanned(model: InjectionModel) -> None:
    # A card number written as a JSON number leaks as surely as one in a string.
    guard = Guard(GuardConfig(output={"pii": {"action": "redact"}}), {}, model)
    state = RequestGuard(guard.plan("chat"))
    doc = answer('{"card": 4111111111111111, "amount": 1250, "order": 1234567, "ok": true}')
    guard.scan_output(state, list(output_segments(doc)))
    assert orjson.loads(arguments(doc)) == {"card": "[CARD_1]", "amount": 1250,
                                            "order": 1234567, "ok": True}
    assert [r.where for r in state.records] == [
        "choices[0].message.tool_calls[0].function.arguments.card"]


def test_a_restored_number_goes_back_to_the_tool_as_a_number(model: InjectionModel) -> None:
    guard = Guard(GuardConfig(input={"pii": {"action": "redact", "restore": True}}), {}, model)
    state = RequestGuard(guard.plan("chat"))
    sent = Segment("messages[0].content", "Charge card 4111 1111 1111 1111 please", "user",
                   lambda _: None)
    guard.scan_input(state, [sent])
    assert sent.text == "Charge card [CARD_1] please"
    doc = answer('{"card": "[CARD_1]", "cents": 4111111111111111}')
    guard.scan_output(state, list(output_segments(doc)))
    restored = orjson.loads(arguments(doc))
    assert restored["card"] == "4111 1111 1111 1111"
    # The model wrote the caller's own card as a number: it stays the same number.
    assert restored["cents"] == 4111111111111111
