"""Undo the obfuscations attackers use to slip instructions past a guard.

``normalize`` returns the text a detector should read and the obfuscations it found (those are
evidence in themselves). It handles invisible and Unicode tag characters (ASCII smuggling),
compatibility forms (fullwidth, ligatures, styled letters), homoglyphs from other scripts,
leetspeak, letter-by-letter spacing, and payloads hidden in base64, hex and URL encoding (decoded
and appended, one level deep). Every pass is a C-level ``str``/``re`` operation on the common path:
plain ASCII text costs a few microseconds per kilobyte.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote

import re2
from anyascii import anyascii
from confusable_homoglyphs.confusables import confusables_data

__all__ = ["Normalized", "decode_base64_text", "normalize"]

# Zero-width characters, bidi controls, soft hyphen, word joiners, variation selectors, BOM.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0]"
)
# Unicode tag characters U+E0000..U+E007F mirror ASCII and render as nothing.
_TAGS = re.compile("[\U000e0000-\U000e007f]+")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_LEET_TOKEN = re.compile(
    r"\b(?=[a-z0-9@$!|]*[a-z])(?=[a-z0-9@$!|]*[0-9@$!|][a-z])[a-z0-9@$!|]{3,}\b")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b",
                       "@": "a", "$": "s", "!": "i", "|": "l"})
# Cheap necessary conditions, tested before the expensive expressions they stand for.
_LEET_HINT = re.compile(r"[0-9@$!|][a-z]")
_LEET_RUN = re2.compile(r"[a-z0-9@$!|]*[0-9@$!|][a-z][a-z0-9@$!|]*")
_SPACED_HINT = re.compile(r"[ ._\-*/][a-z][ ._\-*/][a-z][ ._\-*/]")
_DIGIT_RUN = re.compile(r"[0-9]{3}")
_INNER_SUB = re.compile(r"[a-z][0-9@$!|][a-z]")
_DOMAIN_AFTER = re.compile(r"\.[a-z]")
# Four or more single letters joined by one separator: "i g n o r e", "i-g-n-o-r-e".
_SPACED = re.compile(r"(?<![a-z])(?:[a-z][ ._\-*/]){3,}[a-z](?![a-z])")
_SPACED_SEP = re.compile(r"[ ._\-*/]")
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}")
# A _BASE64 match can only start where a run of 16+ of these characters starts (its
# look-behind), and one run holds at most one: RE2 finds the runs, ``re`` checks each start.
_BASE64_RUN = re2.compile(r"[A-Za-z0-9+/=_-]{16,}")
# Twelve or more hex pairs not preceded by a hex digit, written to start with a character class
# so ``re`` can skip ahead quickly (the look-behind comes after the first digit).
_HEX = re.compile(r"[0-9A-Fa-f](?<![0-9A-Fa-f]{2})[0-9A-Fa-f][ :]?(?:[0-9A-Fa-f]{2}[ :]?){11,}")
# Every _HEX match holds twelve pairs in a row: without them, _HEX need not run.
_HEX_HINT = re2.compile(r"(?:[0-9A-Fa-f]{2}[ :]?){12}")
_URL_ENCODED = re.compile(r"[^\s%]*(?:%[0-9A-Fa-f]{2}[^\s%]*){3,}")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Normalized:
    #: Lower-cased, de-obfuscated text, with decoded payloads appended after a newline.
    text: str
    #: The obfuscations found: ``invisible``, ``tag_chars``, ``homoglyph``, ``leet``, ``spaced``,
    #: ``base64``, ``hex``, ``urlencoded``.
    signals: frozenset[str]


def normalize(text: str) -> Normalized:
    signals: set[str] = set()
    payloads = _decode_payloads(text, signals)
    main = _fold(text, signals)
    if payloads:
        main = main + "\n" + "\n".join(_fold(p, signals) for p in payloads)
    return Normalized(main, frozenset(signals))


def _fold(text: str, signals: set[str]) -> str:
    if not text.isascii():
        if _TAGS.search(text):
            signals.add("tag_chars")
            text = _TAGS.sub(lambda m: "".join(chr(ord(c) - 0xE0000) for c in m.group()), text)
        stripped = _INVISIBLE.sub("", text)
        if len(stripped) != len(text):
            signals.add("invisible")
        text = unicodedata.normalize("NFKC", stripped)
        if not text.isascii():
            text = _to_ascii(text, signals)
    text = text.lower()
    if _LEET_HINT.search(text):
        folded = _unleet_text(text)
        if folded != text:
            signals.add("leet")
            text = folded
    if _SPACED_HINT.search(text) and _SPACED.search(text):
        signals.add("spaced")
        text = _SPACED.sub(lambda m: _SPACED_SEP.sub("", m.group()), text)
    return text


def _to_ascii(text: str, signals: set[str]) -> str:
    """Other scripts folded to ASCII; "homoglyph" if a non-ASCII letter touches an ASCII one
    inside a word (checked at the edges of each non-ASCII run). Typographic quotes and dashes
    next to letters (curly apostrophes and quotes) are not letters, and accented Latin letters
    ('café') are not from another script: neither counts.

    A homoglyph run is folded by look (Unicode's confusables: Cyrillic er, U+0440, is 'p');
    other text by sound (anyascii: Cyrillic er is 'r')."""
    def fold(m: re.Match[str]) -> str:
        s, e = m.span()
        run = m.group()
        if (s and _is_ascii_letter(text[s - 1]) and _is_foreign_letter(text[s])) or (
                e < len(text) and _is_ascii_letter(text[e]) and _is_foreign_letter(text[e - 1])):
            signals.add("homoglyph")
            run = run.translate(_LOOKALIKE)
        return anyascii(run)
    return _NON_ASCII.sub(fold, text)


def _lookalikes() -> dict[int, str]:
    """Each character that Unicode lists as confusable with one ASCII letter or digit."""
    table: dict[int, str] = {}
    for char, glyphs in confusables_data.items():
        if len(char) != 1 or char.isascii():
            continue
        for glyph in glyphs:
            c = glyph.get("c", "")
            if len(c) == 1 and c.isascii() and c.isalnum():
                # Unicode folds capital I into l (they look alike); a capital stays a capital.
                table[ord(char)] = "I" if c == "l" and char.isupper() else c
                break
    return table


_LOOKALIKE = _lookalikes()


def _is_ascii_letter(c: str) -> bool:
    return c.isascii() and c.isalpha()


def _is_foreign_letter(c: str) -> bool:
    """A letter of another script than Latin (Cyrillic a, U+0430; Greek omicron, U+03BF; ...)."""
    return c.isalpha() and not unicodedata.name(c, "").startswith("LATIN")


def _unleet_text(text: str) -> str:
    """``_LEET_TOKEN.sub(_unleet, text)``, with ``re`` run only on the runs RE2 finds (in
    linear time) that could hold a leet token. Each run is searched with one more character, so
    ``\b`` at its end sees the real text."""
    out: list[str] = []
    at = 0
    for run in _LEET_RUN.finditer(text):
        for m in _LEET_TOKEN.finditer(text, run.start(), min(len(text), run.end() + 1)):
            out.append(text[at:m.start()])
            out.append(_unleet(m))
            at = m.end()
    if not out:
        return text
    out.append(text[at:])
    return "".join(out)


def _unleet(match: re.Match[str]) -> str:
    token = match.group()
    # An e-mail address is not leet: "doe@example" followed by ".com".
    if "@" in token and _DOMAIN_AFTER.match(match.string, match.end()):
        return token
    # Leave numbers with units and identifiers ("4k", "1st", "mp3", "sha256") alone: leet needs
    # two substitutes, or one between letters, and no run of three digits.
    if _DIGIT_RUN.search(token):
        return token
    subs = sum(1 for c in token if not c.isalpha())
    if subs >= 2 or _INNER_SUB.search(token):
        return token.translate(_LEET)
    return token


def _decode_payloads(text: str, signals: set[str]) -> list[str]:
    out: list[str] = []
    long = len(text) >= 16  # base64 and hex payloads need 16 characters or more
    for run in _BASE64_RUN.finditer(text) if long else ():
        match = _BASE64.match(text, run.start())
        if match is None:
            continue
        raw = match.group()
        if raw.isalpha() or raw.isdigit():
            continue  # long words and numbers are not base64 payloads
        decoded = decode_base64_text(raw)
        if decoded is not None:
            signals.add("base64")
            out.append(decoded)
    for match in _HEX.finditer(text) if long and _HEX_HINT.search(text) else ():
        try:
            decoded_bytes = bytes.fromhex(re.sub("[ :]", "", match.group()))
        except ValueError:
            continue
        decoded = _printable(decoded_bytes)
        if decoded is not None:
            signals.add("hex")
            out.append(decoded)
    for match in _URL_ENCODED.finditer(text) if text.count("%") >= 3 else ():
        decoded = unquote(match.group())
        if decoded != match.group():
            signals.add("urlencoded")
            out.append(decoded)
    return out


def decode_base64_text(raw: str) -> str | None:
    """The text ``raw`` encodes in (standard or URL-safe) base64, or None if it is not base64
    of printable text."""
    padded = raw + "=" * (-len(raw) % 4)
    try:
        data = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return None
    return _printable(data)


def _printable(data: bytes) -> str | None:
    """Text if ``data`` decodes to mostly printable text with words, else None."""
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(decoded) < 8 or " " not in decoded.strip():
        return None
    printable = sum(c.isprintable() or c in "\n\t" for c in decoded)
    return decoded if printable >= 0.95 * len(decoded) else None
