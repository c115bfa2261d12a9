"""Output leaks: the system prompt (a planted canary, or a long verbatim run of it), data
smuggled out through markdown images and links, invisible text; and refusals, which are flagged.
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING

from ironhold.config.guard import ScannerConfig
from ironhold.guard.findings import Finding

if TYPE_CHECKING:
    from ironhold.guard.scanners import ScanContext

__all__ = ["CANARY", "LeaksOptions", "LeaksScanner", "SystemPromptLeak", "new_canary",
           "plant_canary", "scan_leaks", "scan_refusal"]

CANARY = re.compile(r"ih-canary-[0-9a-f]{16}")
#: Consecutive words of the system prompt that, repeated in an answer, count as a leak.
OVERLAP_WORDS = 12
_WORD = re.compile(r"\w+")
# Images load by themselves in chat UIs: any image URL with a query, or a long path, can carry
# data out. Links need a click, so only links with long query values are reported.
_MD_IMAGE = re.compile(r"!\[[^\]\n]{0,200}\]\(\s*<?(https?://[^)\s>]+)")
_HTML_IMAGE = re.compile(r"<img\b[^>]{0,200}?\bsrc\s*=\s*[\"']?(https?://[^\"'\s>]+)", re.I)
_MD_LINK = re.compile(r"(?<!!)\[[^\]\n]{0,200}\]\(\s*<?(https?://[^)\s>]+)")
_DATA_QUERY = re.compile(r"[?&][^=&#]{1,40}=[^&#]{24,}")
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\U000e0000-\U000e007f]")
_REFUSAL = re.compile(
    r"^\W*(?:i'?m sorry|i am sorry|i apologi[sz]e|sorry,? but|unfortunately,? i)|"
    r"\bi (?:can(?:no|')t|am (?:not able|unable)|won'?t|must decline) (?:help|assist|provide|"
    r"comply|do that|fulfil|support|create|generate|answer)|\bas an ai(?: language model)?,? i "
    r"(?:can(?:no|')t|don'?t|am not)",
    re.I)


def new_canary() -> str:
    return "ih-canary-" + secrets.token_hex(8)


def plant_canary(system_prompt: str, canary: str) -> str:
    """The system prompt with the canary in an HTML comment the model has no reason to repeat."""
    return f"<!-- {canary} -->\n{system_prompt}"


class SystemPromptLeak:
    """Finds long verbatim runs of a system prompt in an answer."""

    def __init__(self, system_prompt: str):
        words = _WORD.findall(system_prompt.lower())
        self._shingles = {tuple(words[i:i + OVERLAP_WORDS])
                          for i in range(len(words) - OVERLAP_WORDS + 1)}

    def leaked(self, text: str) -> bool:
        if not self._shingles:
            return False
        words = _WORD.findall(text.lower())
        return any(tuple(words[i:i + OVERLAP_WORDS]) in self._shingles
                   for i in range(len(words) - OVERLAP_WORDS + 1))


class LeaksOptions(ScannerConfig):
    """``guard.output.leaks`` (no options beyond the action; the canary is ``guard.canary``)."""


class LeaksScanner:
    def scan(self, text: str, where: str = "", context: ScanContext | None = None
             ) -> list[Finding]:
        if context is None:
            return scan_leaks(text, where=where)
        return scan_leaks(text, canary=context.canary, system=context.system, where=where)


def scan_leaks(text: str, *, canary: str | None = None, system: SystemPromptLeak | None = None,
               where: str = "") -> list[Finding]:
    found: list[Finding] = []
    if canary is not None and canary in text:
        at = text.index(canary)
        found.append(Finding("leaks", "system_prompt_leak", "LLM07", 1.0, at, at + len(canary),
                             where, "canary"))
    elif system is not None and system.leaked(text):
        found.append(Finding("leaks", "system_prompt_leak", "LLM07", 0.9, 0, len(text), where,
                             f"{OVERLAP_WORDS}+ words of the system prompt"))
    images: tuple[tuple[re.Pattern[str], str], ...] = (
        ((_MD_IMAGE, "markdown_image"),) if "![" in text else ())
    if "<" in text:
        images += ((_HTML_IMAGE, "html_image"),)
    for pattern, detail in images:
        for m in pattern.finditer(text):
            url = m.group(1)
            if "?" in url or len(url) > 120:
                found.append(Finding("leaks", "exfiltration", "LLM05", 0.9, m.start(), m.end(),
                                     where, detail))
    for m in _MD_LINK.finditer(text) if "](" in text else ():
        if _DATA_QUERY.search(m.group(1)):
            found.append(Finding("leaks", "exfiltration", "LLM05", 0.8, m.start(), m.end(),
                                 where, "markdown_link"))
    hidden = None if text.isascii() else _INVISIBLE.search(text)
    if hidden is not None:
        found.append(Finding("leaks", "invisible_text", "LLM05", 0.8, hidden.start(),
                             hidden.end(), where, "invisible characters"))
    return found


def scan_refusal(text: str, where: str = "") -> list[Finding]:
    m = _REFUSAL.search(text[:400])
    if m is None:
        return []
    return [Finding("leaks", "refusal", "LLM09", 0.8, m.start(), m.end(), where, "refusal")]
