"""Fast rules: phrasings that are injection or jailbreak attempts on their own.

They run on normalized text (``guard.normalize``), so obfuscated spellings match too, and they
catch the canonical attacks even where the learned classifier is unsure. Each rule was checked
against the benign half of the training data (``ironhold guard train`` reports any benign hit),
so a match is strong evidence; the score says how strong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import re2

__all__ = ["RULES", "Rule", "match_rules", "strongest_rule"]


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    #: Compiled with RE2 (``google-re2``): a linear-time automaton, 5-8x faster than ``re`` on
    #: these alternations of phrasings (the matches are the same: the text is normalized ASCII).
    pattern: Any
    score: float
    #: Skip a match preceded by a negation ("never reveal the system prompt" is a rule, not an
    #: attack).
    negatable: bool = True
    #: Substrings of which every match contains at least one: the rule runs only on texts that
    #: have one (a substring test is ~100x cheaper than an alternation of words in ``re``).
    anchors: tuple[str, ...] = ()


_PRIOR = r"(?:all |any |the |your |my |every |these |those |of )*(?:previous|prior|above|earlier|preceding|foregoing|former|initial|original|old|existing|system|developer|safety)"
_ORDERS = r"(?:instructions?|directives?|prompts?|rules|guidelines|commands?|orders|constraints|restrictions|programming|context|guardrails|polic(?:y|ies))"
_DROP = r"(?:ignore|disregard|forget|skip|override|overwrite|bypass|abandon|drop|discard|neglect|set aside|do not follow|don't follow|stop following)"


# "Ignore all previous instructions" in Spanish, Portuguese, French, Italian, German and Dutch,
# on normalized text (accents gone: "précédentes" reads "precedentes").
_DROP_ML = r"(?:ignora|ignore|ignorez|ignori|ignoriere|ignorieren sie|olvida|olvide|descarta|omite|esqueca|desconsidere|oublie|oubliez|dimentica|dimenticate|vergiss|vergessen sie|missachte|negeer|vergeet)"
_ORDERS_ML = r"(?:instrucciones|indicaciones|reglas|instrucoes|regras|instructions|consignes|regles|istruzioni|regole|anweisungen|instruktionen|regeln|vorgaben|instructies|regels)"
_PRIOR_ML = r"(?:anteriores|previas|precedentes|anterieures|precedenti|vorherigen|bisherigen|fruheren|vorigen|eerdere|voorgaande|vorige)"


def _r(name: str, pattern: str, score: float, anchors: tuple[str, ...],
       negatable: bool = True) -> Rule:
    return Rule(name, re2.compile("(?m)" + pattern), score, negatable, anchors)


_DROP_ANCHORS = ("ignor", "disregard", "forget", "skip", "overr", "overw", "bypass", "abandon",
                 "drop", "discard", "neglect", "aside", "follow")


_NEGATION = re.compile(r"(?:\bnever|\bnot|n't|\bno|\bnor|\bwithout|\brefuse to|\bcannot)\W+(?:\w+\W+){0,2}$")


RULES: tuple[Rule, ...] = (
    _r("ignore_previous", rf"\b{_DROP}\s+(?:\w+\s+){{0,3}}?{_PRIOR}\s+(?:\w+\s+){{0,2}}?{_ORDERS}", 0.98, _DROP_ANCHORS),
    _r("ignore_previous_ml", rf"\b{_DROP_ML}\s+(?:\w+\s+){{0,3}}?(?:{_ORDERS_ML}\s+(?:\w+\s+)?{_PRIOR_ML}|{_PRIOR_ML}\s+{_ORDERS_ML})\b", 0.98, ("ignor", "olvid", "descart", "omit", "esquec", "desconsider", "oubli", "dimentic", "vergiss", "vergessen", "missacht", "negeer", "vergeet")),
    _r("ignore_orders", rf"\b{_DROP}\s+(?:all|any|every|your)\s+(?:\w+\s+){{0,2}}?{_ORDERS}", 0.95, _DROP_ANCHORS),
    _r("new_instructions", r"\b(?:new|updated|real|actual|true|revised)\s+(?:system\s+)?(?:instructions?|directives?|rules)\s*(?:are|is|follow)?\s*:", 0.9, ("instruction", "directive", "rules")),
    _r("reveal_prompt", r"\b(?:reveal|print|show|output|repeat|display|leak|tell me|give me|write out|spell out|disclose|dump)\s+(?:\w+\s+){0,3}?(?:system|initial|original|hidden|secret|full|entire|pre-?)\s*(?:prompt|instructions|message)", 0.9, ("prompt", "instructions", "message")),
    _r("repeat_above", r"\b(?:repeat|print|output|recite)\s+(?:\w+\s+){0,3}?(?:words|text|everything|all)\s+(?:above|before|prior)", 0.7, ("above", "before", "prior")),
    _r("dan", r"\b(?:do anything now|\bdan mode|developer mode (?:enabled|output|on)|jailbr(?:eak|oken) mode|stan mode|dude mode|anti-?dan|evil ?confidant|\baim\b stands for)", 0.97, ("anything now", "dan mode", "developer mode", "jailbr", "stan mode", "dude mode", "dan", "confidant", "stands for"), negatable=False),
    _r("no_restrictions", r"\b(?:without|free (?:of|from)|no longer (?:have|bound by)|not bound by|break free of|freed from|have no|has no)\s+(?:any\s+)?(?:ethical|moral|content|openai|safety|usual|typical)?\s*(?:restrictions|limitations|filters|guidelines|censorship|rules|constraints|boundaries)", 0.9, ("restrictions", "limitations", "filters", "guidelines", "censorship", "rules", "constraints", "boundaries")),
    _r("pretend_unfiltered", r"\b(?:you are|you're|act as|pretend (?:to be|you are)|roleplay as|become)\s+(?:now\s+)?(?:an?\s+)?(?:unfiltered|uncensored|unrestricted|amoral|unethical|evil|jailbroken|unchained)\b", 0.95, ("unfiltered", "uncensored", "unrestricted", "amoral", "unethical", "evil", "jailbroken", "unchained")),
    _r("fake_role", r"(?:<\|?(?:im_start|im_end|system|endoftext|start_header_id|eot_id)\|?>|\[/?inst\]|<</?sys>>|^#{2,}\s*(?:system|instruction)s?\s*:?$)", 0.9, ("im_start", "im_end", "system", "instruction", "endoftext", "start_header_id", "eot_id", "inst]", "sys>>"), negatable=False),
    _r("model_override", r"\b(?:from now on|starting now|henceforth|for the rest of (?:this|our) conversation),?\s+(?:you (?:are|will|must|shall)|act as|respond as|your name is)", 0.75, ("from now on", "starting now", "henceforth", "for the rest of")),
    _r("exfil_markdown", r"!\[[^\]]*\]\(\s*https?://[^)\s]*(?:\?|&)[^)\s]*(?:\{|%7b|\[|data|q|query|prompt|secret|history|conversation|chat)=", 0.9, ("![",)),
)


#: Every rule's anchors, each once. Most texts hold none, and one search of one pattern says
#: so: ``re`` on short texts, where a call into RE2 costs more than the whole search (a
#: one-word prompt: 1 µs against 5 µs asking anchor by anchor), RE2 on longer ones, where
#: ``re`` would try ~70 alternatives at every position.
_ANCHORS = tuple(sorted({anchor for rule in RULES for anchor in rule.anchors}))
_ANY_ANCHOR = "|".join(map(re.escape, _ANCHORS))
_ANY_ANCHOR_SHORT = re.compile(_ANY_ANCHOR)
_ANY_ANCHOR_LONG = re2.compile(_ANY_ANCHOR)
#: Where the two cost the same.
_SHORT = 24


def _has_anchor(text: str) -> bool:
    pattern = _ANY_ANCHOR_SHORT if len(text) <= _SHORT else _ANY_ANCHOR_LONG
    return pattern.search(text) is not None


def match_rules(text: str) -> list[tuple[Rule, int, int]]:
    """The rules that match ``text`` (normalized) with the span of their first match."""
    hits: list[tuple[Rule, int, int]] = []
    if not _has_anchor(text):
        return hits
    for rule in RULES:
        if not any(map(text.__contains__, rule.anchors)):
            continue
        for m in rule.pattern.finditer(text):
            if rule.negatable and _NEGATION.search(text, max(0, m.start() - 40), m.start()):
                continue
            hits.append((rule, m.start(), m.end()))
            break
    return hits


def strongest_rule(text: str) -> Rule | None:
    """The highest-scoring rule that matches ``text`` (normalized), if any."""
    hits = match_rules(text)
    if not hits:
        return None
    return max((rule for rule, _, _ in hits), key=lambda r: r.score)
