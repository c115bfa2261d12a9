"""What a scanner reports: findings with a score, a span, a category and an OWASP LLM id."""

from __future__ import annotations

from dataclasses import dataclass

from ironhold.core.exchange import GuardNote

__all__ = ["OWASP", "Finding"]

#: OWASP Top 10 for LLM Applications 2025 ids by finding category family.
OWASP = {
    "prompt_injection": "LLM01",
    "jailbreak": "LLM01",
    "pii": "LLM02",
    "secret": "LLM02",
    "system_prompt_leak": "LLM07",
    "exfiltration": "LLM05",
    "invisible_text": "LLM05",
    "refusal": "LLM09",
}


@dataclass(frozen=True, slots=True)
class Finding:
    #: The scanner that found it: injection, pii, secrets, leaks.
    scanner: str
    #: What it is: prompt_injection, email, phone, aws_access_key, canary, markdown_image, ...
    category: str
    #: The OWASP LLM Top 10 (2025) id.
    owasp: str
    #: 0..1; a finding is reported only at or above its scanner's threshold.
    score: float
    #: Character span in the scanned text (``start == end`` when it covers the whole text).
    start: int
    end: int
    #: Where the text sits in the request or response, e.g. ``messages[2].content``.
    where: str = ""
    #: What fired (a rule name, the detect-secrets plugin), never the matched value.
    detail: str = ""

    def note(self, action: str) -> GuardNote:
        """The finding and what was done about it, for the audit record (no content)."""
        return GuardNote(scanner=self.scanner, action=action, where=self.where,
                         category=self.category, owasp=self.owasp,
                         score=round(self.score, 4), detail=self.detail)
