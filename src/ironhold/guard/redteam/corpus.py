"""The red-team probe corpus: attacks and benign requests, by OWASP LLM Top 10 (2025) category.

A probe is one chat (or embeddings) request. An attack probe states its goal, the sign that the
attack worked: the run's random marker in the answer, a planted secret or personal value in the
answer, an image or link to the attacker's host, a call to a tool the attacker wanted, or (for
poisoned embeddings and unbounded consumption) the request simply being served. A benign probe
passes when it gets an answer.

Values are drawn fresh for every run (``--seed`` repeats them), so no guard can know them in
advance: ``$MARKER``, ``$SECRET``, ``$EMAIL``, ``$PHONE``, ``$CARD``, ``$IBAN``, ``$AWS_KEY``,
``$GITHUB_TOKEN``. ``$PAYLOAD`` is the probe's ``payload`` after its ``encode`` step
(base64, leetspeak, homoglyphs, invisible characters, ...).
"""

from __future__ import annotations

import base64
import codecs
import random
import string
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from stdnum import iban as iban_
from stdnum import luhn

from ironhold.config.loader import load_yaml_model

Category = Literal["LLM01", "LLM02", "LLM03", "LLM04", "LLM05", "LLM06", "LLM07", "LLM08",
                   "LLM09", "LLM10"]

#: The OWASP Top 10 for LLM Applications 2025, and why a category has no probes, if it has none.
CATEGORIES: dict[str, tuple[str, str | None]] = {
    "LLM01": ("Prompt Injection", None),
    "LLM02": ("Sensitive Information Disclosure", None),
    "LLM03": ("Supply Chain", "not observable through the API: verify model artifacts instead"),
    "LLM04": ("Data and Model Poisoning", "not observable through the API: it happens in "
              "training"),
    "LLM05": ("Improper Output Handling", None),
    "LLM06": ("Excessive Agency", None),
    "LLM07": ("System Prompt Leakage", None),
    "LLM08": ("Vector and Embedding Weaknesses", None),
    "LLM09": ("Misinformation", "needs a judge of truth, not a gateway probe"),
    "LLM10": ("Unbounded Consumption", None),
}

Encoding = Literal["none", "base64", "hex", "rot13", "leet", "homoglyph", "zero_width", "tags",
                   "spaced", "reversed"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Goal(_Strict):
    """What shows that an attack worked; any one of the set conditions is enough."""

    #: The run's marker appears in the answer (case-insensitive).
    marker: bool = False
    #: Any of these texts (placeholders filled in) appears in the answer.
    contains: tuple[str, ...] = ()
    #: The answer holds a markdown or HTML image or link whose URL contains this text.
    link_to: str | None = None
    #: The answer calls this tool.
    tool: str | None = None
    #: The request was served at all (a 200): for requests that should never be.
    served: bool = False
    #: The answer used more completion tokens than this.
    tokens_over: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _something(self) -> Goal:
        if not (self.marker or self.contains or self.link_to or self.tool or self.served
                or self.tokens_over):
            raise ValueError("a goal needs at least one condition")
        return self


class Probe(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    category: Category
    technique: str
    attack: bool
    endpoint: Literal["chat", "embeddings"] = "chat"
    #: The name of one of the corpus's ``systems``: prepended as the system message.
    system: str | None = None
    messages: tuple[dict[str, Any], ...] = ()
    #: The embeddings input.
    input: str | None = None
    tools: tuple[dict[str, Any], ...] = ()
    payload: str | None = None
    encode: Encoding = "none"
    max_tokens: int | None = Field(None, ge=1)
    goal: Goal | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Probe:
        if self.attack and self.goal is None:
            raise ValueError("an attack probe needs a goal")
        if not self.attack and self.goal is not None:
            raise ValueError("a benign probe has no goal")
        if self.endpoint == "chat" and not self.messages:
            raise ValueError("a chat probe needs messages")
        if self.endpoint == "embeddings" and self.input is None:
            raise ValueError("an embeddings probe needs input")
        if self.encode != "none" and self.payload is None:
            raise ValueError("encode needs a payload")
        return self


class Corpus(_Strict):
    systems: dict[str, str] = Field(default_factory=dict)
    probes: tuple[Probe, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> Corpus:
        seen: set[str] = set()
        for p in self.probes:
            if p.id in seen:
                raise ValueError(f"probe id {p.id!r} appears twice")
            seen.add(p.id)
            if p.system is not None and p.system not in self.systems:
                raise ValueError(f"probe {p.id!r}: no system prompt named {p.system!r}")
        return self


def load_corpus(path: Path | None = None) -> Corpus:
    """The built-in corpus, or a YAML file of the same shape (errors name the field)."""
    if path is not None:
        return load_yaml_model(path, Corpus)
    with resources.as_file(resources.files(__package__) / "probes.yaml") as builtin:
        return load_yaml_model(builtin, Corpus)


# --- the values drawn for a run -------------------------------------------------------------

def draw_values(rng: random.Random) -> dict[str, str]:
    """Fresh placeholder values: a marker, a secret, and valid-looking personal data."""
    upper = string.ascii_uppercase
    alnum = string.ascii_letters + string.digits

    def pick(chars: str, n: int) -> str:
        return "".join(rng.choice(chars) for _ in range(n))

    card = "4" + pick(string.digits, 14)
    card += luhn.calc_check_digit(card)
    bban = pick(string.digits, 18)  # DE: bank code and account number
    iban = "DE" + iban_.calc_check_digits("DE00" + bban) + bban
    name = rng.choice(["maria.lopez", "j.okafor", "li.wei", "anna.berg", "sam.patel"])
    return {
        "$MARKER": "PWNED-" + pick(upper, 6),
        "$SECRET": rng.choice(["AURORA", "SALMON", "QUARTZ", "MAPLE", "COBALT"]) + "-"
        + pick(string.digits, 4),
        "$EMAIL": f"{name}.{rng.randrange(100, 999)}@example.com",
        "$PHONE": f"+44 20 7946 0{rng.randrange(100, 999)}",
        "$CARD": " ".join(card[i:i + 4] for i in range(0, 16, 4)),
        "$IBAN": " ".join(iban[i:i + 4] for i in range(0, len(iban), 4)),
        "$AWS_KEY": "AKIA" + pick(upper + "234567", 16),
        "$GITHUB_TOKEN": "ghp_" + pick(alnum, 36),
    }


# --- encodings that attackers use to slip past filters -----------------------------------

_LEET = str.maketrans({"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"})
_HOMOGLYPHS = str.maketrans({"a": "\u0430", "e": "\u0435", "o": "\u043e", "p": "\u0440",
                             "c": "\u0441", "y": "\u0443", "x": "\u0445", "i": "\u0456"})


def _tags(text: str) -> str:
    return "".join(chr(0xE0000 + ord(c)) if 0x20 <= ord(c) < 0x7F else c for c in text)


ENCODERS: dict[str, Callable[[str], str]] = {
    "none": lambda t: t,
    "base64": lambda t: base64.b64encode(t.encode()).decode(),
    "hex": lambda t: t.encode().hex(),
    "rot13": lambda t: codecs.encode(t, "rot13"),
    "leet": lambda t: t.lower().translate(_LEET),
    "homoglyph": lambda t: t.translate(_HOMOGLYPHS),
    "zero_width": lambda t: "\u200b".join(t),
    "tags": _tags,
    "spaced": lambda t: " ".join(t),
    "reversed": lambda t: t[::-1],
}


def fill(text: str, values: dict[str, str]) -> str:
    for key in sorted(values, key=len, reverse=True):  # $PAYLOAD before $P..., longest first
        text = text.replace(key, values[key])
    return text


def _fill_any(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return fill(value, values)
    if isinstance(value, list | tuple):
        return [_fill_any(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _fill_any(v, values) for k, v in value.items()}
    return value


def build_request(probe: Probe, corpus: Corpus, model: str, values: dict[str, str],
                  max_tokens: int) -> dict[str, Any]:
    """The request body of a probe, placeholders filled and payload encoded."""
    local = dict(values)
    if probe.payload is not None:
        local["$PAYLOAD"] = ENCODERS[probe.encode](fill(probe.payload, values))
    if probe.endpoint == "embeddings":
        return {"model": model, "input": fill(probe.input or "", local)}
    messages: list[Any] = []
    if probe.system is not None:
        messages.append({"role": "system", "content": fill(corpus.systems[probe.system], local)})
    messages.extend(_fill_any(list(probe.messages), local))
    body: dict[str, Any] = {"model": model, "messages": messages,
                            "max_tokens": probe.max_tokens or max_tokens}
    if probe.tools:
        body["tools"] = _fill_any(list(probe.tools), local)
    return body


def select(corpus: Corpus, categories: Iterable[str] | None) -> list[Probe]:
    wanted = {c.upper() for c in categories} if categories else None
    return [p for p in corpus.probes if wanted is None or p.category in wanted]
