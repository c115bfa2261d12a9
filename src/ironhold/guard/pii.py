"""Personal data: e-mail addresses, phone numbers, payment cards, IBANs, national ids, IPs.

Cheap regular expressions find candidates; the validating libraries decide: ``phonenumbers``
for phone numbers, ``python-stdnum`` for Luhn, IBAN and national id checksums, ``ipaddress``
for IP addresses. A number that fails its checksum is not reported.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Literal

import phonenumbers
import re2
from pydantic import Field
from stdnum import iban, luhn
from stdnum.br import cpf
from stdnum.es import dni
from stdnum.in_ import aadhaar
from stdnum.it import codicefiscale
from stdnum.us import ssn

from ironhold.config.guard import ScannerConfig
from ironhold.guard.findings import Finding

if TYPE_CHECKING:
    from ironhold.guard.scanners import ScanContext

__all__ = ["PII_KINDS", "PiiOptions", "PiiScanner", "scan_pii"]

_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b")
# Each expression below starts with a character class, and any look-behind comes after the first
# character: ``re`` then skips positions that cannot start a match in C, 2-5x faster on prose
# than the same expression with a leading look-behind (which it tries at every position).
# ``(?<!\d\d)`` after a first digit means "not preceded by a digit".
_PHONE = re.compile(r"(?:\+(?<![\w+].)\(?\d|\((?<![\w+].)\d|0(?<![\w+].)0\(?\d|\d(?<![\w+].))"
                    r"[\d\s().-]{5,18}\d\b")
_CARD = re.compile(r"\d(?<!\d\d)(?:[ -]?\d){12,18}(?!\d)")
_IBAN = re.compile(r"[A-Z](?<!\w[A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]){11,30}\b")
_SSN = re.compile(r"\d(?<!\d\d)\d{2}-\d{2}-\d{4}(?!\d)")
_DNI = re.compile(r"\d(?<!\w\d)\d{7}-?[A-Z](?!\w)")
_CF = re.compile(r"[A-Z](?<!\w[A-Z])[A-Z]{5}\d{2}[A-EHLMPR-T]\d{2}[A-Z]\d{3}[A-Z]\b")
_CPF = re.compile(r"\d(?<!\d\d)\d{2}\.\d{3}\.\d{3}-\d{2}(?!\d)")
_AADHAAR = re.compile(r"[2-9](?<!\d[2-9])\d{3} \d{4} \d{4}(?!\d)")
_IPV4 = re.compile(r"\d(?<![\d.]\d)\d{0,2}\.(?:\d{1,3}\.){2}\d{1,3}(?!\.?\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{1,4}(?![\w:])")
_SPACE = re.compile(r"\s")
_DIGIT = re.compile(r"\d")
#: Every match of a pattern that starts with a digit (cards, phones, ids, IPv4) is digits and
#: ``\s().-`` from its first digit to its last, so it lies in one run of these, give or take a
#: prefix ("+", "00(") and a suffix ("-Z" of a DNI). The patterns run only around these runs
#: instead of at every position of the text. An IBAN starts two letters before its first digit,
#: a codice fiscale six: each is tried only there.
_DIGIT_RUN = re.compile(r"\d[\d\s().\-]*")
#: An IPv6 address is a run of hex digits and colons with two colons or more.
_HEX_RUN = re2.compile(r"[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:[0-9A-Fa-f:]*")


def _windows(runs: list[tuple[int, int]], size: int, before: int, after: int
             ) -> list[tuple[int, int]]:
    """The runs widened by ``before`` and ``after`` characters, merged where they touch."""
    out: list[tuple[int, int]] = []
    for start, end in runs:
        lo, hi = max(0, start - before), min(size, end + after)
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _within(pattern: re.Pattern[str], text: str, windows: list[tuple[int, int]]
            ) -> Iterator[re.Match[str]]:
    for lo, hi in windows:
        yield from pattern.finditer(text, lo, hi)


def _emails(text: str) -> Iterator[re.Match[str]]:
    """``_EMAIL.finditer(text)``, run only around each ``@`` (same matches: an address has no
    whitespace and at most 64 characters before its ``@``)."""
    at = text.find("@")
    while at >= 0:
        lo = max(0, at - 65)
        space = _SPACE.search(text, at)
        hi = space.start() if space is not None else len(text)
        nxt = text.find("@", hi)
        while nxt >= 0 and nxt - 65 <= hi:  # merge windows that touch
            space = _SPACE.search(text, nxt)
            hi = space.start() if space is not None else len(text)
            nxt = text.find("@", hi)
        yield from _EMAIL.finditer(text, lo, hi)
        at = nxt


def _ipv6(text: str) -> Iterator[re.Match[str]]:
    # A valid IPv6 address has "::" or seven colons; other matches fail the check anyway.
    if "::" in text or text.count(":") >= 7:
        runs = [m.span() for m in _HEX_RUN.finditer(text)]
        yield from _within(_IPV6, text, _windows(runs, len(text), 1, 1))


def _valid(check: Callable[[str], bool]) -> Callable[[str], bool]:
    def run(value: str) -> bool:
        try:
            return bool(check(value))
        except Exception:  # stdnum raises on odd input; odd input is not a valid number
            return False
    return run


def _ip(value: str) -> bool:
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return False
    # Loopback, unspecified and documentation-only placeholders are not someone's address.
    return not (addr.is_loopback or addr.is_unspecified or str(addr).endswith("::"))


#: (kind, where to find candidates, the check a candidate must pass). A compiled pattern starts
#: with a digit and runs only around the text's digit runs; (pattern, k) is tried k characters
#: before each digit run; a function runs on the whole text.
_Source = (re.Pattern[str] | tuple[re.Pattern[str], int]
           | Callable[[str], Iterator[re.Match[str]]])
_CHECKS: tuple[tuple[str, _Source, Callable[[str], bool]], ...] = (
    ("email", _emails, lambda _: True),
    ("payment_card", _CARD, _valid(lambda v: 13 <= len(re.sub(r"\D", "", v)) <= 19
                                   and luhn.is_valid(re.sub(r"\D", "", v)))),
    ("iban", (_IBAN, 2), _valid(iban.is_valid)),
    ("national_id", _SSN, _valid(ssn.is_valid)),
    ("national_id", _DNI, _valid(dni.is_valid)),
    ("national_id", (_CF, 6), _valid(codicefiscale.is_valid)),
    ("national_id", _CPF, _valid(cpf.is_valid)),
    ("national_id", _AADHAAR, _valid(aadhaar.is_valid)),
    ("ip_address", _IPV4, _ip),
    ("ip_address", _ipv6, _ip),
)

_WITHOUT_DIGITS = (_emails, _ipv6)


class _Claims:
    """Which characters of a text a find already covers."""

    __slots__ = ("_marks", "_size")

    def __init__(self, size: int):
        self._size = size
        self._marks: bytearray | None = None  # made at the first find

    def overlaps(self, start: int, end: int) -> bool:
        return self._marks is not None and self._marks.find(1, start, end) >= 0

    def claim(self, start: int, end: int) -> bool:
        """Mark ``[start, end)`` unless part of it is taken; True if it was marked."""
        if self._marks is None:
            self._marks = bytearray(self._size)
        elif self._marks.find(1, start, end) >= 0:
            return False
        self._marks[start:end] = b"\x01" * (end - start)
        return True


#: Phone-number candidates checked by ``phonenumbers`` in one text at most.
_MAX_PHONE_CHECKS = 500

#: The categories this scanner reports.
PII_KINDS = ("email", "phone", "payment_card", "iban", "national_id", "ip_address")
PiiKind = Literal["email", "phone", "payment_card", "iban", "national_id", "ip_address"]


class PiiOptions(ScannerConfig):
    """``guard.input.pii`` and ``guard.output.pii``."""

    #: The kinds to look for (default: all).
    kinds: list[PiiKind] | None = None
    #: The region phone numbers without a country code are read in (ISO 3166, e.g. US).
    region: str | None = Field(default=None, min_length=2, max_length=2)
    #: On input with action redact: put the caller's own values back into the answer.
    restore: bool = False


class PiiScanner:
    def __init__(self, options: PiiOptions):
        self._kinds = tuple(options.kinds or PII_KINDS)
        self._region = options.region

    def scan(self, text: str, where: str = "", context: ScanContext | None = None
             ) -> list[Finding]:
        return scan_pii(text, kinds=self._kinds, region=self._region, where=where)


def scan_pii(text: str, *, kinds: Iterable[str] = PII_KINDS, region: str | None = None,
             where: str = "") -> list[Finding]:
    """Personal data in ``text``, in order, without overlaps (the first kind to claim a span
    wins: a card number is not also reported as a phone number)."""
    digits = _DIGIT.search(text) is not None  # every kind but e-mail and IPv6 needs one
    if not digits and "@" not in text and ":" not in text:
        return []  # the common short text: nothing any kind could match
    wanted = set(kinds)
    found: list[Finding] = []
    # One byte a character, set where a find lies: an overlap check costs the length of the
    # span, not the number of finds so far (a text of a million short finds stays linear).
    taken = _Claims(len(text))

    def add(kind: str, start: int, end: int) -> None:
        if taken.claim(start, end):
            found.append(Finding("pii", kind, "LLM02", 1.0, start, end, where, kind))

    # Up to 3 characters before a run ("+(" and the character a look-behind reads) and 2 after
    # (a DNI's "-Z" and the character a look-ahead reads).
    runs = [m.span() for m in _DIGIT_RUN.finditer(text)] if digits else []
    windows = _windows(runs, len(text), 3, 2)
    for kind, source, check in _CHECKS:
        if kind not in wanted or not (digits or source in _WITHOUT_DIGITS):
            continue
        if isinstance(source, re.Pattern):
            matches: Iterable[re.Match[str] | None] = _within(source, text, windows)
        elif isinstance(source, tuple):
            pattern, back = source
            matches = (pattern.match(text, start - back) for start, _ in runs if start >= back)
        else:
            matches = source(text)
        for m in matches:
            if m is None:
                continue
            if check(m.group()):
                add(kind, m.start(), m.end())
    if "phone" in wanted and digits:
        checked = 0
        for m in _within(_PHONE, text, windows):
            if taken.overlaps(m.start(), m.end()):
                continue
            if region is None and "+" not in m.group():
                continue  # without a region only "+<country code>" numbers can be valid
            if sum(c.isdigit() for c in m.group()) < 7:
                continue
            checked += 1
            if checked > _MAX_PHONE_CHECKS:
                # phonenumbers costs ~0.1 ms a candidate: a text made of candidates would cost
                # seconds. Past the bound each candidate counts as a number, unchecked: more is
                # redacted or flagged than needs to be, never less.
                add("phone", m.start(), m.end())
                continue
            for pm in phonenumbers.PhoneNumberMatcher(m.group(), region or "ZZ",
                                                       leniency=phonenumbers.Leniency.VALID):
                add("phone", m.start() + pm.start, m.start() + pm.end)
    found.sort(key=lambda f: f.start)
    return found
