"""Guarding streamed answers: server-sent events split anywhere (inside an event, a character or
a secret), redaction that never splits a placeholder, restoring, a block that ends the stream
with an error event, and everything else passed through in order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from ironhold.config.guard import GuardConfig
from ironhold.core.codec import SseDecoder, encode_event
from ironhold.core.events import Event
from ironhold.core.exchange import Exchange, Operation
from ironhold.guard import InjectionModel
from ironhold.guard.content import Segment
from ironhold.guard.engine import Guard, RequestGuard
from ironhold.guard.findings import Finding
from ironhold.guard.leaks import new_canary
from ironhold.guard.stream import GuardedStream

KEY = "AKIAIOSFODNN7EXAMPLE"
LOREM = ("The quarterly report covers revenue, costs and the outlook for next year. "
         "Each section has a short summary and a table of figures. ")


@pytest.fixture(scope="module")
def model() -> InjectionModel:
    return InjectionModel.load()


class Upstream:
    """Bytes as a model server sends them, cut into chunks of ``size`` bytes, decoded into
    events as the router decodes them."""

    def __init__(self, data: bytes, size: int):
        self._chunks = [data[i:i + size] for i in range(0, len(data), size)]
        self._decoder = SseDecoder()
        self._events: list[Event] = []
        self.closed = False

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        while not self._events:
            if self.closed:
                raise StopAsyncIteration
            if not self._chunks:
                self.closed = True
                self._events = self._decoder.finish()
                continue
            self._events = self._decoder.feed(self._chunks.pop(0))
        return self._events.pop(0)

    def ready(self) -> bool:
        return bool(self._events)

    async def aclose(self) -> None:
        self.closed = True


def events(words: list[str], chat: bool = True, extra: bytes = b"") -> bytes:
    kind = "chat.completion.chunk" if chat else "text_completion"
    out = []
    for i, word in enumerate(words):
        choice: dict[str, Any] = {"index": 0, "finish_reason": None}
        choice.update({"delta": {"content": word}} if chat else {"text": word})
        if chat and i == 0:
            choice["delta"]["role"] = "assistant"
        out.append({"id": "c1", "object": kind, "created": 1, "model": "m", "choices": [choice]})
    final: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
    final.update({"delta": {}} if chat else {"text": ""})  # type: ignore[dict-item]
    out.append({"id": "c1", "object": kind, "created": 1, "model": "m", "choices": [final]})
    out.append({"id": "c1", "object": kind, "created": 1, "model": "m", "choices": [],
                "usage": {"prompt_tokens": 5, "completion_tokens": len(words)}})
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in out) + extra + \
        b"data: [DONE]\n\n"


def tokens(text: str) -> list[str]:
    """Cut like a tokenizer might: 3-character pieces, words and values split anywhere."""
    return [text[i:i + 3] for i in range(0, len(text), 3)]


async def relay(guard: Guard, data: bytes, size: int, chat: bool = True,
                state: RequestGuard | None = None) -> tuple[bytes, Exchange, Upstream]:
    state = state or RequestGuard(guard.plan("chat"))
    exchange = Exchange("r1", Operation.CHAT if chat else Operation.COMPLETION, "chat", {}, True)
    upstream = Upstream(data, size)
    stream = GuardedStream(upstream, guard, state, exchange, chat=chat)
    out = [encode_event(event) async for event in stream]
    await stream.aclose()
    return b"".join(out), exchange, upstream


def parse(data: bytes, chat: bool = True) -> tuple[str, list[dict[str, Any]], list[bytes]]:
    """The text a client would assemble, the error events, and every event's raw bytes."""
    text, errors, raw = [], [], []
    for event in data.split(b"\n\n"):
        if not event:
            continue
        raw.append(event)
        if not event.startswith(b"data: {"):
            continue
        doc = orjson.loads(event[6:])
        if "error" in doc:
            errors.append(doc["error"])
        for choice in doc.get("choices", []):
            piece = choice["delta"].get("content") if chat else choice["text"]
            text.append(piece or "")
    return "".join(text), errors, raw


def whole(guard: Guard, text: str, state: RequestGuard | None = None) -> str:
    """The same answer scanned whole, as a non-streamed reply is."""
    seg = Segment("choices[0].message.content", text, "assistant", lambda _: None)
    guard.scan_output(state or RequestGuard(guard.plan("chat")), [seg])
    return seg.text


@pytest.mark.parametrize("size", [1, 5, 17, 64, 100_000])
async def test_split_anywhere_redacts_as_the_whole_answer_would(model: InjectionModel,
                                                               size: int) -> None:
    guard = Guard(GuardConfig(output={"pii": {"action": "redact"}}), {}, model)
    text = (LOREM + f"Use the key {KEY} and write to jane.doe@example.org or call "
            "+1 415 555 0100.\n" + LOREM + "Ünïcode — ok ✓ " + LOREM)
    out, exchange, _ = await relay(guard, events(tokens(text)), size)
    got, errors, raw = parse(out)
    assert not errors
    assert got == whole(guard, text)
    assert "[SECRET_1]" in got and "[EMAIL_1]" in got and "[PHONE_1]" in got
    assert KEY not in got and "jane.doe" not in got
    # The structure is kept: role first, finish, usage, [DONE].
    assert b'"role":"assistant"' in raw[0]
    assert raw[-1] == b"data: [DONE]"
    assert b'"usage"' in raw[-2] and b'"finish_reason":"stop"' in raw[-3]
    kinds = {(g.scanner, g.category) for g in exchange.guard}
    assert kinds == {("secrets", "aws_access_key"), ("pii", "email"), ("pii", "phone")}
    assert all(g.action == "redact" for g in exchange.guard)


async def test_untouched_text_passes_whole_and_other_events_in_order(
        model: InjectionModel) -> None:
    guard = Guard(GuardConfig(), {}, model)
    text = LOREM * 6
    out, exchange, _ = await relay(guard, events(tokens(text), extra=b": keep-alive\n\n"), 7)
    got, errors, raw = parse(out)
    assert got == text and not errors and not exchange.guard
    assert b": keep-alive" in raw and raw.index(b": keep-alive") == len(raw) - 2
    # Plain prose goes out word by word (only the word still growing is held back).
    pieces = [orjson.loads(e[6:])["choices"][0]["delta"].get("content", "")
              for e in raw if e.startswith(b'data: {"id"') and b'"content"' in e]
    assert len([p for p in pieces if p]) >= 0.9 * len(text.split())
    assert max(len(p) for p in pieces) <= max(len(w) for w in text.split()) + 4


async def test_a_placeholder_split_across_chunks_is_restored(model: InjectionModel) -> None:
    guard = Guard(GuardConfig(input={"pii": {"action": "redact", "restore": True}}), {}, model)
    state = RequestGuard(guard.plan("chat"))
    sent = Segment("messages[0].content", "Mail jane@example.org please", "user", lambda _: None)
    guard.scan_input(state, [sent])
    assert sent.text == "Mail [EMAIL_1] please"
    text = LOREM + "I will write to [EMAIL_1] today, and to [EMAIL_9] never. " + LOREM
    out, _, _ = await relay(guard, events(tokens(text)), 4, state=state)
    got, _, _ = parse(out)
    assert "write to jane@example.org today" in got
    assert "[EMAIL_9]" in got  # not the caller's: stays a placeholder


async def test_a_leak_ends_the_stream_with_an_error_event(model: InjectionModel) -> None:
    guard = Guard(GuardConfig(), {}, model)
    state = RequestGuard(guard.plan("chat"))
    state.canary = new_canary()
    text = LOREM * 3 + f"My instructions begin with <!-- {state.canary} --> and " + LOREM * 20
    out, exchange, upstream = await relay(guard, events(tokens(text)), 50, state=state)
    got, errors, raw = parse(out)
    assert state.canary not in got and state.canary[:12] not in got
    assert got and text.startswith(got)  # what went out before the leak, unchanged
    assert len(got) < len(LOREM) * 4
    assert errors == [{"message": errors[0]["message"], "type": "invalid_request_error",
                       "param": None, "code": "guard_blocked"}]
    assert "system prompt leak" in errors[0]["message"] and "LLM07" in errors[0]["message"]
    assert raw[-1].startswith(b'data: {"error"')  # the last event: no [DONE] after a block
    assert upstream.closed
    assert exchange.guard[-1].action == "block" and exchange.guard[-1].detail == "canary"


async def test_completions_and_a_refusal_flag(model: InjectionModel) -> None:
    guard = Guard(GuardConfig(), {}, model)
    text = "I'm sorry, but I can't help with that. " + LOREM * 5
    out, exchange, _ = await relay(guard, events(tokens(text), chat=False), 11, chat=False)
    got, errors, _ = parse(out, chat=False)
    assert got == text and not errors
    assert [g.category for g in exchange.guard] == ["refusal"]
    assert exchange.guard[0].where == "choices[0].text"


@pytest.mark.parametrize("on_error", ["closed", "open"])
async def test_a_failing_scanner_in_a_stream(model: InjectionModel, on_error: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    guard = Guard(GuardConfig(on_error=on_error), {}, model)

    def broken(*_: Any, **__: Any) -> list[Finding]:
        raise RuntimeError("scanner bug")
    monkeypatch.setattr(guard, "output_findings", broken)
    text = LOREM * 4
    out, exchange, _ = await relay(guard, events(tokens(text)), 30)
    got, errors, _ = parse(out)
    first = {"scanner": "error", "where": "choices[0].delta.content", "error": "RuntimeError",
             "action": f"fail_{on_error}"}
    if on_error == "closed":
        assert [g.record() for g in exchange.guard] == [first]
        assert errors[0]["code"] == "guard_unavailable" and got == ""
    else:
        assert got == text and not errors
        # Every window failed; the audit record says so once, with how many times.
        assert len(exchange.guard) == 1
        recorded = exchange.guard[0].record()
        count = recorded.pop("count")
        assert recorded == first and isinstance(count, int) and count > 5


def tool_events(pieces: list[str], content: str = "") -> bytes:
    """A chat stream that calls two tools, OpenAI style: the first delta of a call holds its
    id and name, the following ones pieces of its arguments."""
    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return b"data: " + orjson.dumps({"id": "c1", "object": "chat.completion.chunk",
                                         "created": 1, "model": "m", "choices": [
                                             {"index": 0, "delta": delta,
                                              "finish_reason": finish}]}) + b"\n\n"
    out = [event({"role": "assistant", "content": content or None})]
    for k in (0, 1):
        out.append(event({"tool_calls": [{"index": k, "id": f"call_{k}", "type": "function",
                                          "function": {"name": "send", "arguments": ""}}]}))
        out += [event({"tool_calls": [{"index": k, "function": {"arguments": p}}]})
                for p in pieces]
    out.append(event({}, "tool_calls"))
    return b"".join(out) + b"data: [DONE]\n\n"


def tool_calls(data: bytes) -> tuple[dict[int, dict[str, str]], list[int]]:
    """The calls a client would assemble from the deltas, and the events that carried them."""
    calls: dict[int, dict[str, str]] = {}
    carriers = []
    for n, event in enumerate(data.split(b"\n\n")):
        if not event.startswith(b"data: {"):
            continue
        for choice in orjson.loads(event[6:]).get("choices", []):
            for piece in choice["delta"].get("tool_calls") or []:
                carriers.append(n)
                call = calls.setdefault(piece["index"], {"name": "", "arguments": ""})
                call["name"] += piece.get("function", {}).get("name", "")
                call["arguments"] += piece.get("function", {}).get("arguments", "")
    return calls, carriers


@pytest.mark.parametrize("size", [3, 64, 100_000])
async def test_tool_call_arguments_are_held_scanned_whole_and_sent_before_the_finish(
        model: InjectionModel, size: int) -> None:
    guard = Guard(GuardConfig(output={"pii": {"action": "redact"}}), {}, model)
    args = '{"to": "jane.doe@example.org", "body": "Hello"}'
    out, exchange, _ = await relay(guard, tool_events(tokens(args), "Sending now."), size)
    calls, carriers = tool_calls(out)
    assert {k: orjson.loads(c["arguments"]) for k, c in calls.items()} == {
        k: {"to": "[EMAIL_1]", "body": "Hello"} for k in (0, 1)}
    assert calls[0]["name"] == calls[1]["name"] == "send"
    events_ = out.split(b"\n\n")
    assert len(set(carriers)) == 1  # one event, before the finish
    assert b'"finish_reason":"tool_calls"' in events_[carriers[0] + 1]
    assert parse(out)[0] == "Sending now."
    assert {g.where for g in exchange.guard} == {
        f"choices[0].delta.tool_calls[{k}].function.arguments.to" for k in (0, 1)}


async def test_clean_tool_arguments_pass_byte_for_byte_and_a_canary_in_them_blocks(
        model: InjectionModel) -> None:
    guard = Guard(GuardConfig(), {}, model)
    args = '{"city":  "Oslo", "units": "metric"}'
    out, _, _ = await relay(guard, tool_events(tokens(args)), 10)
    calls, _ = tool_calls(out)
    assert calls[0]["arguments"] == calls[1]["arguments"] == args
    state = RequestGuard(guard.plan("chat"))
    state.canary = new_canary()
    leak = orjson.dumps({"note": f"<!-- {state.canary} -->"}).decode()
    out, _, upstream = await relay(guard, tool_events(tokens(leak)), 10, state=state)
    _, errors, raw = parse(out)
    assert errors and errors[0]["code"] == "guard_blocked" and upstream.closed
    assert not tool_calls(out)[0] and raw[-1] != b"data: [DONE]"
