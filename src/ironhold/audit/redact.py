"""Redaction of request and response content kept in audit records (``audit.content: true``).

Masks what must never sit in a log. The runtime guard's scanners find personal data (e-mail,
phone, payment cards, IBANs, national ids, IP addresses) and secrets (every detect-secrets
plugin, private keys, passwords, random-looking tokens); a floor of patterns of the audit's own
adds what a log must lose even when it does not look random or valid: Ironhold and
OpenAI-style keys, bearer tokens, JWTs, AWS access keys, private key blocks, and
phone-number-like digit runs. Each span found is replaced by ``[REDACTED:<kind>]``, where
overlapping finds merge into one.
"""

from __future__ import annotations

import re
from typing import Any

from ironhold.guard.pii import scan_pii
from ironhold.guard.secrets import scan_secrets

__all__ = ["redact", "redact_text"]

_FLOOR: list[tuple[str, re.Pattern[str]]] = [
    ("private_key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?"
                               r"(?:-----END [A-Z ]*PRIVATE KEY-----|$)")),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")),
    ("bearer", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}")),
    ("api_key", re.compile(r"\b(?:ih|sk)-[A-Za-z0-9_-]{16,}")),
    ("aws_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    # Phone-number-like digit runs, valid or not, with or without a country code: a log would
    # rather lose a date than keep "415 555 0100" (the guard reads numbers without "+" only
    # with a region).
    ("phone", re.compile(r"(?<![\w+])\+?\d[\d ().-]{6,}\d\b")),
]


def redact_text(text: str) -> str:
    spans = [(m.start(), m.end(), kind) for kind, pattern in _FLOOR
             for m in pattern.finditer(text)]
    spans += [(f.start, f.end, f.category) for f in scan_secrets(text)]
    spans += [(f.start, f.end, f.category) for f in scan_pii(text)]
    merged: list[list[Any]] = []
    for start, stop, kind in sorted(spans):
        if merged and start < merged[-1][1]:  # overlaps: one span, the first find's kind
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop, kind])
    out: list[str] = []
    at = 0
    for start, stop, kind in merged:
        out += [text[at:start], f"[REDACTED:{kind}]"]
        at = stop
    out.append(text[at:])
    return "".join(out)


def redact(value: Any) -> Any:
    """``value`` with every string in it redacted (dicts and lists walked)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
