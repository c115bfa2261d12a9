"""The prompt-injection and jailbreak scanner: normalization, rules, then the classifier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import Field

from ironhold.config.guard import ScannerConfig
from ironhold.guard.classifier import InjectionModel
from ironhold.guard.findings import Finding
from ironhold.guard.normalize import Normalized, normalize
from ironhold.guard.rules import Rule, strongest_rule

if TYPE_CHECKING:
    from ironhold.guard.scanners import ScanContext

__all__ = ["JAILBREAK_RULES", "InjectionOptions", "InjectionScanner"]

#: Rules whose match means a jailbreak (an attack on the model's own rules) rather than an
#: injected instruction.
JAILBREAK_RULES = frozenset({"dan", "no_restrictions", "pretend_unfiltered"})


class InjectionOptions(ScannerConfig):
    """``guard.input.injection``."""

    #: The score at which a text counts as an attack (default: the model's own, chosen at
    #: training for a 1% false-positive rate).
    threshold: float | None = Field(default=None, gt=0, le=1)


@dataclass(frozen=True, slots=True)
class InjectionScore:
    score: float
    category: str
    detail: str


class InjectionScanner:
    def __init__(self, model: InjectionModel, threshold: float | None = None):
        self.model = model
        self.threshold = threshold if threshold is not None else model.threshold

    def score(self, text: str) -> InjectionScore:
        """The attack score of ``text``: the stronger of the rules and the classifier."""
        norm = normalize(text)
        return self._named(norm, strongest_rule(norm.text), self.model.score(norm))

    def scan(self, text: str, where: str = "", context: ScanContext | None = None
             ) -> list[Finding]:
        norm = normalize(text)
        rule = strongest_rule(norm.text)
        learned = self.model.score(norm)
        if rule is None and learned < self.threshold:
            return []  # most texts: nothing to name
        result = self._named(norm, rule, learned)
        if result.score < self.threshold:
            return []
        return [Finding("injection", result.category, "LLM01", result.score, 0, len(text),
                        where, result.detail)]

    @staticmethod
    def _named(norm: Normalized, rule: Rule | None, learned: float) -> InjectionScore:
        if rule is not None:
            # A matching rule names the attack, whichever of the two scores is higher.
            category = "jailbreak" if rule.name in JAILBREAK_RULES else "prompt_injection"
            return InjectionScore(max(rule.score, learned), category, f"rule:{rule.name}")
        signals = ",".join(sorted(norm.signals))
        detail = "classifier" + (f" ({signals})" if signals else "")
        return InjectionScore(learned, "prompt_injection", detail)
