"""The classifier's features: one function, used by training and by the gateway alike.

A text is normalized (``guard.normalize``), split into words and symbol runs, and described by
the set of its word unigrams and bigrams plus the obfuscations the normalizer found. Long texts
are scored in overlapping windows so an instruction buried in a long document is not diluted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import pairwise

__all__ = ["FEATURE_VERSION", "MIN_TOKENS", "WINDOW_STRIDE", "WINDOW_TOKENS", "bigrams",
           "features", "tokens", "windows"]

#: Bumped whenever ``features`` changes; a model trained on another version is refused.
FEATURE_VERSION = 5
#: Tokens per window, and how far the next window starts.
WINDOW_TOKENS = 400
WINDOW_STRIDE = 300
#: Texts shorter than this are too short for the classifier's evidence: only the rules judge
#: them ("the password policy" is not an attack however its words are weighted).
MIN_TOKENS = 6

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]{1,4}")


#: Links and e-mail addresses are left out: neither their parts ("com", "www", a domain) nor
#: their presence says anything about intent, and the training attacks hold many more links
#: than its benign lines, so a model that saw them learned "a link is an attack". Data sent
#: out through links is the rules' and the output scanners' job.
_LOCAL_PART = re.compile(r"[\w.+-]{1,64}$")
_DOMAIN = re.compile(r"@[\w-]+(?:\.[\w-]+)+")
_URL_REST = re.compile(r"[^\s<>()\[\]\"']+")


def _links(text: str) -> list[tuple[int, int]]:
    """Where the links (``http://``, ``https://``, ``www.``) and e-mail addresses are, found from
    each ``@``, ``://`` and ``www.`` (a regex tried at every position cost 0.4 ms a prompt)."""
    spans = []
    at = text.find("@")
    while at != -1:
        domain = _DOMAIN.match(text, at)
        local = _LOCAL_PART.search(text, max(0, at - 64), at) if domain else None
        if domain and local:
            spans.append((local.start(), domain.end()))
        at = text.find("@", at + 1)
    at = text.find("://")
    while at != -1:
        # (startswith with a negative start would read the end of the text)
        scheme = 5 if at >= 5 and text.startswith("https", at - 5) \
            else 4 if at >= 4 and text.startswith("http", at - 4) else 0
        rest = _URL_REST.match(text, at + 3)
        if scheme and rest:
            spans.append((at - scheme, rest.end()))
        at = text.find("://", at + 3)
    at = text.find("www.")
    while at != -1:
        rest = _URL_REST.match(text, at + 4)
        if rest:
            spans.append((at, rest.end()))
        at = text.find("www.", at + 4)
    return spans


def _drop_links(text: str) -> str:
    spans = sorted(_links(text))
    if not spans:
        return text
    out = []
    at = 0
    for start, end in spans:
        if end <= at:
            continue
        out.append(text[at:max(at, start)] + " ")
        at = end
    out.append(text[at:])
    return "".join(out)


def tokens(text: str) -> list[str]:
    """The normalized text's tokens."""
    if "@" in text or "://" in text or "www." in text:
        text = _drop_links(text)
    return _TOKEN.findall(text)


def windows(toks: list[str]) -> Iterator[tuple[int, list[str]]]:
    """The overlapping token windows of a text (one for short texts) and where each starts."""
    if len(toks) <= WINDOW_TOKENS:
        yield 0, toks
        return
    start = 0
    while True:
        yield start, toks[start:start + WINDOW_TOKENS]
        if start + WINDOW_TOKENS >= len(toks):
            return
        start += WINDOW_STRIDE


def bigrams(toks: list[str]) -> list[str]:
    return list(map(" ".join, pairwise(toks)))


def features(toks: list[str], signals: frozenset[str],
             pairs: list[str] | None = None) -> set[str]:
    """The binary features of one window; ``pairs``: its bigrams, if already joined (windows
    overlap, so the gateway joins a text's bigrams once)."""
    feats = set(toks)
    feats.update(bigrams(toks) if pairs is None else pairs)
    feats.update("!" + s for s in signals)
    # The window's length, in buckets: short texts carry little evidence, so the model learns
    # how much more a short text needs before it counts as an attack.
    feats.add("#len" + str(next(b for b in _LENGTH_BUCKETS if len(toks) <= b)))
    return feats


_LENGTH_BUCKETS = (3, 6, 10, 16, 24, 40, 64, 128, 256, 1 << 30)
