"""Redaction of request and response content kept in audit records (``audit.content: true``).

Masks what must never sit in a log: credentials (Ironhold and OpenAI-style keys, bearer tokens,
JWTs, AWS access keys, private key blocks), e-mail addresses, payment card numbers (Luhn
checked) and phone-number-like digit runs. Each is replaced by ``[REDACTED:<kind>]``. The
runtime guard (its own module) detects far more; this is the audit log's floor.
"""

from __future__ import annotations

import re
from typing import Any

from stdnum import luhn

__all__ = ["redact", "redact_text"]

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("private_key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?"
                               r"(?:-----END [A-Z ]*PRIVATE KEY-----|$)")),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")),
    ("bearer", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}")),
    ("api_key", re.compile(r"\b(?:ih|sk)-[A-Za-z0-9_-]{16,}")),
    ("aws_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")),
    ("card", re.compile(r"\b(?:\d[ -]?){12,18}\d\b")),
    ("phone", re.compile(r"(?<![\w+])\+?\d[\d ().-]{6,}\d\b")),
]


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "[REDACTED:card]" if luhn.is_valid(digits) else match.group()


def redact_text(text: str) -> str:
    for kind, pattern in _PATTERNS:
        if kind == "card":
            text = pattern.sub(_card, text)
        else:
            text = pattern.sub(f"[REDACTED:{kind}]", text)
    return text


def redact(value: Any) -> Any:
    """``value`` with every string in it redacted (dicts and lists walked)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
