"""Redaction to stable placeholders, and putting the caller's own values back.

Within one request the same value always gets the same placeholder (``[EMAIL_1]`` twice for the
same address), so the model can still refer to it; ``restore`` maps placeholders in the answer
back to the values the caller sent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ironhold.guard.findings import Finding

__all__ = ["PLACEHOLDER", "Redactor"]

_LABELS = {"email": "EMAIL", "phone": "PHONE", "payment_card": "CARD", "iban": "IBAN",
           "national_id": "NATIONAL_ID", "ip_address": "IP"}
#: Any placeholder this module writes.
PLACEHOLDER = re.compile(r"\[(?:EMAIL|PHONE|CARD|IBAN|NATIONAL_ID|IP|SECRET)_\d+\]")
#: The longest placeholder prefix a stream may need to hold back ("[NATIONAL_ID_" + digits).
MAX_PLACEHOLDER = 24


class Redactor:
    def __init__(self) -> None:
        self._by_value: dict[str, str] = {}
        self._counts: dict[str, int] = {}
        #: placeholder -> original value, for restoring.
        self.values: dict[str, str] = {}

    def placeholder(self, finding: Finding, value: str) -> str:
        label = "SECRET" if finding.scanner == "secrets" else _LABELS.get(finding.category, "PII")
        key = f"{label}\x00{value}"
        if key not in self._by_value:
            n = self._counts.get(label, 0) + 1
            self._counts[label] = n
            self._by_value[key] = f"[{label}_{n}]"
            self.values[self._by_value[key]] = value
        return self._by_value[key]

    def redact(self, text: str, findings: Sequence[Finding]) -> str:
        """``text`` with each finding's span replaced (findings may come from several scanners;
        overlapping spans are merged into the first)."""
        out: list[str] = []
        at = 0
        for f in sorted(findings, key=lambda f: (f.start, -f.end)):
            if f.start < at or f.end <= f.start:
                continue
            out.append(text[at:f.start])
            out.append(self.placeholder(f, text[f.start:f.end]))
            at = f.end
        out.append(text[at:])
        return "".join(out)

    def restore(self, text: str, only: set[str] | None = None) -> str:
        """Put original values back for the placeholders in ``text`` (those in ``only``, when
        given: the caller's own personal data, never secrets)."""
        if not self.values:
            return text

        def put(m: re.Match[str]) -> str:
            token = m.group()
            if only is not None and token not in only:
                return token
            return self.values.get(token, token)
        return PLACEHOLDER.sub(put, text)
