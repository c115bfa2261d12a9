"""Guarding a streamed answer, event by event.

The generated text of each choice goes through a sliding window. What is not yet safe to send
is held back: the last word (the next chunk may extend it, so an API key, an address or a
placeholder arriving in pieces is scanned whole), and, within the last ``stream_hold``
characters, everything from a word that could begin a value spanning several words (a number:
phone, card, IBAN; a bracket: markdown image, placeholder; a key block; a password keyword).
Plain prose goes out word by word. The rest is scanned together with the text released just
before it, acted on, and released. So:

- redaction never splits a value or a placeholder: a finding that would straddle the cut moves
  the cut before it;
- a finding whose action is block ends the stream at once with an error event in the OpenAI
  shape (code ``guard_blocked``), which the ``openai`` SDK raises as ``APIError``; the upstream
  request is closed;
- each scan covers a bounded window (at most ``_CONTEXT`` released characters plus what is
  held), so the cost per chunk does not grow with the answer.

Tool calls are held until their choice finishes (a tool cannot run on half its arguments):
their arguments are then scanned whole, as in a whole answer, and sent as one event before the
finish. Other events (role, usage, comments, errors) pass through in order; held text is
released before an event that ends a choice and before ``[DONE]``.
"""

from __future__ import annotations

import dataclasses
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ironhold.core.errors import IronholdError
from ironhold.core.events import Chunk, Done, Event, EventStream, StreamError
from ironhold.core.exchange import Exchange
from ironhold.guard.content import argument_segments
from ironhold.guard.engine import Guard, RequestGuard, blocked
from ironhold.guard.findings import Finding
from ironhold.guard.leaks import scan_refusal

__all__ = ["GuardedStream"]

#: Released text kept as context for the next scan (a leak of 12 words spans many chunks).
_CONTEXT = 256
#: Where a value that spans words may begin: numbers (phone, card, IBAN, ids, addresses),
#: brackets (placeholders, markdown images and links, HTML), key blocks, secret keywords.
_RISKY = re.compile(r"\d|[\[!<(]|-----BEGIN|PuTTY|(?i:pass|pwd|secret|token|key|credential|auth)")
#: A token with no whitespace is held whole up to this many characters.
_MAX_TOKEN = 4096
#: The start of an answer that is checked for a refusal.
_HEAD = 400


@dataclass(slots=True)
class _Choice:
    index: int
    where: str
    #: Generated, not yet released.
    pending: str = ""
    #: The end of what was released (as generated, before redaction): context for the next scan.
    tail: str = ""
    #: Characters released so far (the offset of ``pending`` in the whole answer).
    offset: int = 0
    head: str = ""
    refusal_checked: bool = False
    envelope: dict[str, Any] = field(default_factory=dict)
    #: Tool calls being received, by their index: held until the choice finishes.
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)


class GuardedStream:
    """Transforms a reply's events: the same events with the generated text scanned, redacted
    or restored, or ending with a ``StreamError`` when a finding blocks."""

    __slots__ = ("_chat", "_choices", "_closed", "_done", "_exchange", "_guard", "_hold",
                 "_inner", "_key", "_out", "_seen", "_state")

    def __init__(self, inner: EventStream, guard: Guard, state: RequestGuard,
                 exchange: Exchange, chat: bool):
        self._inner = inner
        self._guard = guard
        self._state = state
        self._exchange = exchange
        self._chat = chat
        self._key = "content" if chat else "text"
        self._hold = state.plan.stream_hold
        self._out: deque[Event] = deque()
        self._choices: dict[int, _Choice] = {}
        #: Findings already acted on (a whole-text finding is seen again in later windows).
        self._seen: set[tuple[object, ...]] = set()
        self._done = False
        self._closed = False

    def __aiter__(self) -> GuardedStream:
        return self

    async def __anext__(self) -> Event:
        while not self._out:
            if self._done:
                raise StopAsyncIteration
            try:
                event = await anext(self._inner)
            except StopAsyncIteration:
                self._done = True
                self._run(self._flush_all)
            else:
                self._run(partial(self._event, event))
            if self._state.records:
                self._exchange.guard.extend(self._state.records)
                self._state.records.clear()
            if self._done:
                await self.aclose()  # blocked or over: stop generating now
        return self._out.popleft()

    def ready(self) -> bool:
        return bool(self._out) or self._inner.ready()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._inner.aclose()

    # -- events ----------------------------------------------------------------------------

    def _run(self, step: Callable[[deque[Event]], None]) -> None:
        try:
            step(self._out)
        except IronholdError as exc:  # blocked, or a scanner failed and the guard fails closed
            self._done = True
            self._out.append(StreamError(exc))

    def _event(self, event: Event, out: deque[Event]) -> None:
        if isinstance(event, Chunk):
            self._chunk(event, out)
            return
        if isinstance(event, Done | StreamError):
            # Held text and tool calls go out before the stream ends.
            self._flush_all(out)
            self._done = isinstance(event, StreamError)
        out.append(event)

    def _chunk(self, event: Chunk, out: deque[Event]) -> None:
        doc = event.doc
        choices = doc.get("choices")
        if not isinstance(choices, list) or not choices:
            out.append(event)  # a usage chunk
            return
        changed, keep = False, False
        for choice in choices:
            holder = choice.get("delta") if self._chat and isinstance(choice, dict) else choice
            if not isinstance(holder, dict):
                keep = True
                continue
            st = self._choice(choice.get("index"), doc)
            if self._chat and isinstance(holder.get("tool_calls"), list):
                _collect(st, holder.pop("tool_calls"))
                changed = True
            text = holder.get(self._key)
            final = choice.get("finish_reason") is not None or (self._chat and any(
                v is not None for k, v in holder.items() if k not in ("content", "role")))
            if final and st.calls:
                self._emit_calls(st, out)
            if not holder and not final and choice.get("logprobs") is None:
                continue  # it only carried tool call pieces, now held
            if isinstance(text, str) and text:
                st.pending += text
            elif not (final and st.pending):
                keep = True
                continue
            released = self._release(st, final)
            holder[self._key] = released
            changed = True
            if (released or final or choice.get("logprobs") is not None
                    or (self._chat and len(holder) > 1)):
                keep = True
        if not changed:
            out.append(event)
        elif keep or doc.get("usage") is not None:
            event.changed()
            out.append(event)

    def _choice(self, index: object, doc: dict[str, Any]) -> _Choice:
        i = index if isinstance(index, int) else 0
        st = self._choices.get(i)
        if st is None:
            where = f"choices[{i}].delta.content" if self._chat else f"choices[{i}].text"
            st = self._choices[i] = _Choice(i, where)
            st.envelope = {k: v for k, v in doc.items() if k not in ("choices", "usage")}
        return st

    def _flush_all(self, out: deque[Event]) -> None:
        """Release all held text (scanned as final) and tool calls, each choice in an event of
        its own."""
        for i, st in self._choices.items():
            if st.calls:
                self._emit_calls(st, out)
            if not st.pending:
                continue
            released = self._release(st, final=True)
            if not released:
                continue
            choice: dict[str, Any] = (
                {"index": i, "delta": {"content": released}, "finish_reason": None}
                if self._chat else
                {"index": i, "text": released, "finish_reason": None, "logprobs": None})
            out.append(Chunk({**st.envelope, "choices": [choice]}))

    def _emit_calls(self, st: _Choice, out: deque[Event]) -> None:
        """Scan a choice's held tool calls as a whole answer's are, and send them as one event
        (raises ``GuardBlockedError`` when a finding blocks)."""
        calls, st.calls = [st.calls[k] for k in sorted(st.calls)], {}
        i = st.index
        segments = [seg for call in calls for seg in argument_segments(
            f"choices[{i}].delta.tool_calls[{call['index']}].function.arguments",
            call["function"])]
        self._guard.scan_output(self._state, segments)
        choice = {"index": i, "delta": {"tool_calls": calls}, "finish_reason": None}
        out.append(Chunk({**st.envelope, "choices": [choice]}))

    # -- the window ------------------------------------------------------------------------

    def _release(self, st: _Choice, final: bool) -> str:
        """Scan and release what can go out of ``st.pending`` (all of it when ``final``);
        raises ``GuardBlockedError`` when a finding blocks."""
        text = st.pending
        if final:
            cut = len(text)
        else:
            cut = _held_from(text, self._hold)
            if cut <= 0:
                if len(text) <= _MAX_TOKEN:
                    return ""
                cut = len(text) - self._hold
        state, plan = self._state, self._state.plan
        base, scan = len(st.tail), st.tail + text
        found = self._guard.guarded(state, st.where, self._guard.output_findings, plan, state,
                                    scan, st.where, False)
        found = [f for f in found if f.end > base]  # the rest was acted on when released

        def whole(f: Finding) -> bool:
            return f.start == 0 and f.end == len(scan)
        for f in found:
            if plan.output[f.scanner].action == "block":
                state.note(f, "block")
                raise blocked("Response", f)
        moved = not final
        while moved:  # never cut through a finding: hold it back whole
            moved = False
            for f in found:
                if not whole(f) and base <= f.start < base + cut < f.end:
                    cut, moved = f.start - base, True
        redact: list[Finding] = []
        for f in found:
            if f.start >= base + cut and not whole(f):
                continue  # not released yet: acted on later
            at = -1 if whole(f) else st.offset + f.start - base
            key = (st.where, f.scanner, f.category, f.detail, at)
            if key in self._seen:
                continue
            self._seen.add(key)
            action = plan.output[f.scanner].action
            state.note(f, action)
            if action == "redact":
                redact.append(dataclasses.replace(f, start=max(f.start - base, 0),
                                                  end=min(f.end - base, cut)))
        release = text[:cut]
        st.pending = text[cut:]
        st.tail = (st.tail + release)[-_CONTEXT:]
        st.offset += cut
        self._check_refusal(st, release, final)
        out = state.redactor.redact(release, redact) if redact else release
        if state.own:
            out = state.redactor.restore(out, state.own)
        return out

    def _check_refusal(self, st: _Choice, release: str, final: bool) -> None:
        if st.refusal_checked:
            return
        st.head += release[:_HEAD - len(st.head)]
        if len(st.head) >= _HEAD or final:
            st.refusal_checked = True
            for f in scan_refusal(st.head, st.where):
                self._state.note(f, "flag")


def _word_start(text: str, at: int) -> int:
    """``at``, moved back to the start of the word it falls in."""
    if at >= len(text) or text[at].isspace() or (at and text[at - 1].isspace()):
        return at
    return max(text.rfind(" ", 0, at), text.rfind("\n", 0, at), text.rfind("\t", 0, at)) + 1


def _held_from(text: str, hold: int) -> int:
    """Where the held-back part of ``text`` starts: the last word (it may still grow), and
    anything in the last ``hold`` characters from the first word that could begin a value
    spanning words (a number, a bracket, a key block, a password keyword)."""
    cut = _word_start(text, len(text) - 1) if not text[-1].isspace() else len(text)
    m = _RISKY.search(text, max(0, len(text) - hold), cut)
    if m is not None:
        cut = _word_start(text, m.start())
    return cut


def _collect(st: _Choice, deltas: list[Any]) -> None:
    """Add tool call pieces (``delta.tool_calls``) to the calls a choice is receiving."""
    for piece in deltas:
        if not isinstance(piece, dict):
            continue
        k = piece["index"] if isinstance(piece.get("index"), int) else 0
        call = st.calls.setdefault(k, {"index": k, "function": {"arguments": ""}})
        for key in ("id", "type"):
            if piece.get(key) is not None:
                call[key] = piece[key]
        function = piece.get("function")
        if isinstance(function, dict):
            if function.get("name") and not call["function"].get("name"):
                call["function"]["name"] = function["name"]
            if isinstance(function.get("arguments"), str):
                call["function"]["arguments"] += function["arguments"]
