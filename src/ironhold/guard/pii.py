"""Personal data: e-mail addresses, phone numbers, payment cards, IBANs, national ids, IPs.

Cheap regular expressions find candidates; the validating libraries decide: ``phonenumbers``
for phone numbers, ``python-stdnum`` for Luhn, IBAN and national id checksums, ``ipaddress``
for IP addresses. A number that fails its checksum is not reported.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable

import phonenumbers
from stdnum import iban, luhn
from stdnum.br import cpf
from stdnum.es import dni
from stdnum.in_ import aadhaar
from stdnum.it import codicefiscale
from stdnum.us import ssn

from ironhold.guard.findings import Finding

__all__ = ["PII_KINDS", "scan_pii"]

_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b")
_PHONE = re.compile(r"(?<![\w+])(?:\+|00)?\(?\d[\d\s().-]{5,18}\d\b")
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_SSN = re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)")
_DNI = re.compile(r"(?<![\w])\d{8}-?[A-Z](?!\w)")
_CF = re.compile(r"\b[A-Z]{6}\d{2}[A-EHLMPR-T]\d{2}[A-Z]\d{3}[A-Z]\b")
_CPF = re.compile(r"(?<!\d)\d{3}\.\d{3}\.\d{3}-\d{2}(?!\d)")
_AADHAAR = re.compile(r"(?<!\d)[2-9]\d{3} \d{4} \d{4}(?!\d)")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{1,4}(?![\w:])")


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


_CHECKS: tuple[tuple[str, re.Pattern[str], Callable[[str], bool]], ...] = (
    ("email", _EMAIL, lambda _: True),
    ("payment_card", _CARD, _valid(lambda v: 13 <= len(re.sub(r"\D", "", v)) <= 19
                                   and luhn.is_valid(re.sub(r"\D", "", v)))),
    ("iban", _IBAN, _valid(iban.is_valid)),
    ("national_id", _SSN, _valid(ssn.is_valid)),
    ("national_id", _DNI, _valid(dni.is_valid)),
    ("national_id", _CF, _valid(codicefiscale.is_valid)),
    ("national_id", _CPF, _valid(cpf.is_valid)),
    ("national_id", _AADHAAR, _valid(aadhaar.is_valid)),
    ("ip_address", _IPV4, _ip),
    ("ip_address", _IPV6, _ip),
)

#: The categories this scanner reports.
PII_KINDS = ("email", "phone", "payment_card", "iban", "national_id", "ip_address")


def scan_pii(text: str, *, kinds: Iterable[str] = PII_KINDS, region: str | None = None,
             where: str = "") -> list[Finding]:
    """Personal data in ``text``, in order, without overlaps (the first kind to claim a span
    wins: a card number is not also reported as a phone number)."""
    wanted = set(kinds)
    found: list[Finding] = []
    taken: list[tuple[int, int]] = []

    def add(kind: str, start: int, end: int) -> None:
        if any(start < e and s < end for s, e in taken):
            return
        taken.append((start, end))
        found.append(Finding("pii", kind, "LLM02", 1.0, start, end, where, kind))

    for kind, pattern, check in _CHECKS:
        if kind not in wanted:
            continue
        for m in pattern.finditer(text):
            if check(m.group()):
                add(kind, m.start(), m.end())
    if "phone" in wanted:
        for m in _PHONE.finditer(text):
            if any(m.start() < e and s < m.end() for s, e in taken):
                continue
            if sum(c.isdigit() for c in m.group()) < 7:
                continue
            for pm in phonenumbers.PhoneNumberMatcher(m.group(), region or "ZZ",
                                                       leniency=phonenumbers.Leniency.VALID):
                add("phone", m.start() + pm.start, m.start() + pm.end)
    found.sort(key=lambda f: f.start)
    return found
