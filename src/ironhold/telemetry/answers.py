"""What an answer was, in a few numbers: its model and id, finish reasons, length, tool calls
and whether it refused. Read from a whole answer the router decoded, or gathered chunk by
chunk from a stream; traces, signals and drift read these, never the answer again."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AnswerFacts"]

#: How a refusal usually begins; only an answer's first characters are looked at.
_REFUSAL = re.compile(
    r"\s*(?:I'?m sorry|I am sorry|sorry, (?:but )?I can|I can(?:no|')t (?:help|assist|comply|"
    r"provide|do that)|I cannot (?:help|assist|comply|provide|do that)|I(?:'m| am) (?:unable|not "
    r"able) to|I won'?t (?:help|assist|provide)|as an AI(?: language model)?, I)",
    re.IGNORECASE)
_HEAD = 160
#: Finish reasons kept per answer at most (``n`` choices each have one).
_MAX_REASONS = 16


@dataclass(slots=True)
class AnswerFacts:
    response_model: str | None = None
    response_id: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    #: Characters of answer text (every choice).
    chars: int = 0
    tool_calls: int = 0
    #: The model said it would not answer (OpenAI's ``refusal`` field, or a refusal's words).
    refused: bool = False
    _head: str = ""

    @classmethod
    def of_answer(cls, answer: dict[str, Any]) -> AnswerFacts:
        facts = cls()
        facts._top(answer)
        choices = answer.get("choices")
        if isinstance(choices, list):
            for choice in choices[:_MAX_REASONS]:
                if isinstance(choice, dict):
                    message = choice.get("message")
                    facts._part(message if isinstance(message, dict) else choice)
                    facts._finish(choice.get("finish_reason"))
        facts.settle()
        return facts

    def add_chunk(self, doc: dict[str, Any]) -> None:
        """One streamed chunk (cheap: it runs for every chunk)."""
        if self.response_id is None:
            self._top(doc)
        choices = doc.get("choices")
        if not choices or not isinstance(choices, list):
            return
        for choice in choices:
            if isinstance(choice, dict):
                delta = choice.get("delta")
                self._part(delta if isinstance(delta, dict) else choice)
                reason = choice.get("finish_reason")
                if reason is not None:
                    self._finish(reason)

    def settle(self) -> None:
        """The answer is complete: decide whether it was a refusal."""
        if not self.refused and self._head and _REFUSAL.match(self._head):
            self.refused = True

    @property
    def empty(self) -> bool:
        """Nothing said and no tool called."""
        return self.chars == 0 and self.tool_calls == 0

    @property
    def truncated(self) -> bool:
        return "length" in self.finish_reasons

    def _top(self, doc: dict[str, Any]) -> None:
        model, ident = doc.get("model"), doc.get("id")
        if isinstance(model, str):
            self.response_model = model[:256]
        if isinstance(ident, str):
            self.response_id = ident[:256]

    def _part(self, part: dict[str, Any]) -> None:
        text = part.get("content")
        if text is None:
            text = part.get("text")  # legacy completions
        if isinstance(text, str) and text:
            self.chars += len(text)
            if len(self._head) < _HEAD:
                self._head += text[:_HEAD - len(self._head)]
        calls = part.get("tool_calls")
        if isinstance(calls, list):
            # A stream repeats a call's index in every delta of its arguments: count the
            # deltas that open a call (those that carry its id).
            self.tool_calls += sum(1 for c in calls if isinstance(c, dict) and c.get("id"))
        if part.get("refusal"):
            self.refused = True

    def _finish(self, reason: object) -> None:
        if isinstance(reason, str) and len(self.finish_reasons) < _MAX_REASONS:
            self.finish_reasons.append(reason[:32])
