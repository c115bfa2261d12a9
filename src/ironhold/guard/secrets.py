"""Secrets: API keys, tokens, private keys and passwords, found with detect-secrets' plugins.

The regular expressions are the plugins' own (``RegexBasedDetector.denylist`` of every plugin
detect-secrets ships, public IP addresses excepted: those are personal data, see ``guard.pii``),
run over the whole text so a span can be redacted. detect-secrets' keyword plugin finds
``password = "..."`` assignments, and an entropy check (detect-secrets' Shannon entropy) catches
random-looking tokens no plugin knows.
"""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING, Any

import re2
from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString
from detect_secrets.plugins.keyword import KeywordDetector

from ironhold.config.guard import ScannerConfig
from ironhold.guard.findings import Finding
from ironhold.guard.normalize import decode_base64_text

if TYPE_CHECKING:
    from ironhold.guard.scanners import ScanContext

__all__ = ["SecretsOptions", "SecretsScanner", "scan_secrets"]

_SKIP = {"Public IP (ipv4)", "Private Key"}
# Some plugins' expressions (keyword contexts with look-behinds) cost ~0.5 ms per 5 KB of text
# each; they run only in windows around tokens long enough to be a secret.
_TOKEN = re.compile(r"[A-Za-z0-9_+/=.:@-]{12,}")
_HAS_DIGIT = re.compile(r"[0-9]")
_BEFORE, _AFTER = 80, 12
_PRIVATE_KEY = re.compile(
    r"-----BEGIN[A-Z ]{0,30} PRIVATE KEY(?: BLOCK)?-----[\s\S]*?(?:-----END[A-Z ]{0,30} PRIVATE KEY"
    r"(?: BLOCK)?-----|\Z)|PuTTY-User-Key-File-\d: .*")
# What every match of detect-secrets' keyword expressions (the quotes-required set it uses for
# a file of unknown type) contains: a denylisted word (api_key, password, pwd, secret,
# contraseña, ...), then an assignment, a comparison or a quote; or a comparison before it.
# Tested first with RE2 (linear time): prose that merely mentions a "key" skips the detector,
# whose case-insensitive alternations cost ~0.3 ms per kilobyte.
_KEYWORD_HINT = re2.compile(
    r"(?i)(?:key|pass|pwd|secret|contras)[\pL\pN_]*(?:[\]'\"]{0,2}\s*[:=!]|\S{0,50}?\s*['\"`])|"
    r"['\"`]\s*[!=]{2,3}\s*[\pL\pN_]*(?:key|pass|pwd|secret|contras)")
_KEYWORD_REACH = 256
#: A cheaper test first (a call into RE2 costs a few microseconds even on a short text).
_KEYWORDS = ("key", "pass", "pwd", "secret", "contras")
_ENTROPY_TOKEN = re.compile(r"[A-Za-z0-9+/_=-]{24,}")
_MIXED = (re.compile(r"[a-z]"), re.compile(r"[A-Z]"), re.compile(r"[0-9]"))
#: Bits per character a token must reach to count as random (detect-secrets' default is 4.5 for
#: quoted strings; unquoted prompt text needs length >= 24 and all three character classes too).
ENTROPY_LIMIT = 4.2


@cache
def _plugins() -> tuple[tuple[str, re.Pattern[str]], ...]:
    out: list[tuple[str, re.Pattern[str]]] = []
    plugins: dict[str, Any] = get_mapping_from_secret_type_to_class()
    for secret_type, plugin in sorted(plugins.items()):
        if secret_type in _SKIP or not issubclass(plugin, RegexBasedDetector):
            continue
        denylist: Any = plugin.denylist  # a class attribute (a tuple of compiled patterns)
        out.extend((secret_type, regex) for regex in denylist)
    return tuple(out)


@cache
def _keyword() -> KeywordDetector:
    return KeywordDetector()


@cache
def _entropy() -> Base64HighEntropyString:
    return Base64HighEntropyString()


def _windows(text: str) -> tuple[list[tuple[int, int]], list[tuple[int, str]]]:
    """Merged spans around the tokens that could be a secret (12+ characters with a digit, or
    20+ characters), and the tokens long enough for the entropy check."""
    spans: list[tuple[int, int]] = []
    long_tokens: list[tuple[int, str]] = []
    for m in _TOKEN.finditer(text):
        token = m.group()
        if len(token) >= 24:
            long_tokens.extend((m.start() + t.start(), t.group())
                               for t in _ENTROPY_TOKEN.finditer(token))
        elif len(token) < 20 and not _HAS_DIGIT.search(token):
            continue
        lo, hi = max(0, m.start() - _BEFORE), min(len(text), m.end() + _AFTER)
        if spans and lo <= spans[-1][1]:
            spans[-1] = (spans[-1][0], hi)
        else:
            spans.append((lo, hi))
    return spans, long_tokens


def _keyword_windows(text: str) -> list[tuple[int, int]]:
    """The parts of lines, around each keyword hint, that detect-secrets' keyword plugin reads
    (it costs ~0.8 us per character, and prompts have long lines). A value longer than
    ``_KEYWORD_REACH`` characters is cut there."""
    spans: list[tuple[int, int]] = []
    lowered = text.lower()
    if not any(map(lowered.__contains__, _KEYWORDS)):
        return spans
    for m in _KEYWORD_HINT.finditer(text):
        start = text.rfind("\n", 0, m.start()) + 1
        end = text.find("\n", m.start())
        lo = max(start, m.start() - _KEYWORD_REACH)
        hi = min(len(text) if end < 0 else end, m.end() + _KEYWORD_REACH)
        if spans and lo <= spans[-1][1] and start <= spans[-1][0]:
            spans[-1] = (spans[-1][0], max(hi, spans[-1][1]))  # same line, overlapping
        else:
            spans.append((lo, hi))
    return spans


def _category(secret_type: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", secret_type.lower()).strip("_")


class SecretsOptions(ScannerConfig):
    """``guard.input.secrets`` and ``guard.output.secrets``."""

    #: Also report random-looking tokens no detect-secrets plugin knows.
    entropy: bool = True


class SecretsScanner:
    def __init__(self, options: SecretsOptions):
        self._entropy = options.entropy

    def scan(self, text: str, where: str = "", context: ScanContext | None = None
             ) -> list[Finding]:
        return scan_secrets(text, entropy=self._entropy, where=where)


#: Texts up to this long are first checked for anything a finding needs (on longer ones the
#: check would cost about what it saves).
_CHECK_FIRST = 1024


def _may_hold_secret(text: str) -> bool:
    """Whether ``text`` has what every finding needs: a word of 12 characters or more (every
    plugin's token and the entropy check's), a keyword, or a private key's header. Most chat
    turns have none; these tests cost a microsecond where the scan costs several."""
    if len(text) >= 12 and max(map(len, text.split()), default=0) >= 12:
        return True
    lowered = text.lower()
    return any(map(lowered.__contains__, _KEYWORDS)) or "-----begin" in lowered \
        or "putty-user-key-file" in lowered


def scan_secrets(text: str, *, entropy: bool = True, where: str = "") -> list[Finding]:
    found: list[Finding] = []
    if len(text) <= _CHECK_FIRST and not _may_hold_secret(text):
        return found
    taken: list[tuple[int, int]] = []

    def add(category: str, start: int, end: int, score: float, detail: str) -> None:
        if end <= start or any(start < e and s < end for s, e in taken):
            return
        taken.append((start, end))
        found.append(Finding("secrets", category, "LLM02", score, start, end, where, detail))

    if "-----BEGIN" in text or "PuTTY-User-Key-File" in text:
        for m in _PRIVATE_KEY.finditer(text):
            add("private_key", m.start(), m.end(), 0.99, "Private Key")
    spans, long_tokens = _windows(text)
    for lo, hi in spans:
        window = text[lo:hi]
        for secret_type, regex in _plugins():
            for m in regex.finditer(window):
                start, end = m.span()
                if m.lastindex:  # the secret is a group inside a keyword context
                    for g in range(m.lastindex, 0, -1):
                        if m.group(g) and len(m.group(g)) >= 8:
                            start, end = m.span(g)
                            break
                add(_category(secret_type), lo + start, lo + end, 0.99, secret_type)
    for lo, hi in _keyword_windows(text):
        line = text[lo:hi]
        for secret in _keyword().analyze_line(filename="prompt.txt", line=line, line_number=0):
            value = secret.secret_value or ""
            at = line.find(value) if value else -1
            if at >= 0:
                add("password", lo + at, lo + at + len(value), 0.9, "Secret Keyword")
    if entropy:
        for at, token in long_tokens:
            if not all(p.search(token) for p in _MIXED) or decode_base64_text(token) is not None:
                continue
            if _entropy().calculate_shannon_entropy(token) >= ENTROPY_LIMIT:
                add("high_entropy_string", at, at + len(token), 0.75, "High Entropy String")
    found.sort(key=lambda f: f.start)
    return found
