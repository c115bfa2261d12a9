"""The guard's scanners: what one is (``Scanner``), and the registry from a config name to the
scanner's own options and a factory.

A scanner reads one text and says what it found; what happens then (block, redact, flag,
reroute) is the engine's decision, from the options' ``action``. Each scanner has its own typed
options, a ``ScannerConfig`` subclass in its module, so ``guard.input.secrets.kinds`` is an
error rather than an option silently ignored.

Adding a scanner: write its module (the scanner class and its options class), then add one line
to ``SCANNERS``. The config schema, the engine and the stream path need no change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pydantic import ValidationError

from ironhold.config.guard import ScannerConfig, Side
from ironhold.guard.classifier import InjectionModel
from ironhold.guard.findings import Finding
from ironhold.guard.injection import InjectionOptions, InjectionScanner
from ironhold.guard.leaks import LeaksOptions, LeaksScanner, SystemPromptLeak
from ironhold.guard.pii import PiiOptions, PiiScanner
from ironhold.guard.secrets import SecretsOptions, SecretsScanner

__all__ = ["SCANNERS", "ScanContext", "Scanner", "ScannerKind", "ScannerResources",
           "build_scanner", "options_for"]


class ScanContext(Protocol):
    """What a scanner may know of the request besides the text: its canary and system prompt
    (the leak scanner's)."""

    @property
    def canary(self) -> str | None: ...

    @property
    def system(self) -> SystemPromptLeak | None: ...


class Scanner(Protocol):
    def scan(self, text: str, where: str, context: ScanContext | None = None
             ) -> list[Finding]:
        """What is in ``text`` (found at ``where`` in the request or answer)."""
        ...


@dataclass(frozen=True, slots=True)
class ScannerResources:
    """What scanners share, loaded once by bootstrap: the injection classifier."""

    injection_model: InjectionModel


Options = TypeVar("Options", bound=ScannerConfig)


@dataclass(frozen=True, slots=True)
class ScannerKind(Generic[Options]):
    #: The class that reads this scanner's settings.
    options: type[Options]
    #: Builds the scanner from its settings and the shared resources.
    build: Callable[[Options, ScannerResources], Scanner]
    #: Where it may run: requests, answers, or both.
    sides: frozenset[Side]
    #: Actions that make no sense for it, with the reason.
    refuses: tuple[tuple[str, str], ...] = ()


_BOTH: frozenset[Side] = frozenset({"input", "output"})

SCANNERS: dict[str, ScannerKind[Any]] = {
    "injection": ScannerKind(
        InjectionOptions,
        lambda options, shared: InjectionScanner(shared.injection_model, options.threshold),
        frozenset({"input"}),
        refuses=(("redact", "an instruction has no safe placeholder"),)),
    "pii": ScannerKind(PiiOptions, lambda options, _: PiiScanner(options), _BOTH),
    "secrets": ScannerKind(SecretsOptions, lambda options, _: SecretsScanner(options), _BOTH),
    "leaks": ScannerKind(LeaksOptions, lambda options, _: LeaksScanner(), frozenset({"output"}),
                         refuses=(("redact", "a leak is the whole answer's problem"),)),
}


def options_for(side: Side, name: str, raw: Any) -> ScannerConfig:
    """The settings of scanner ``name`` on ``side``, read by its own options class."""
    kind = SCANNERS.get(name)
    if kind is None or side not in kind.sides:
        known = ", ".join(n for n, k in SCANNERS.items() if side in k.sides)
        raise ValueError(f"guard.{side} has no scanner {name!r} (known: {known})")
    try:
        options: ScannerConfig = (raw if isinstance(raw, kind.options)
                                  else kind.options.model_validate(raw))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"guard.{side}.{name}: {problems}") from None
    for action, why in kind.refuses:
        if options.action == action:
            raise ValueError(f"guard.{side}.{name} cannot {action!r} ({why})")
    if side == "output" and options.action == "reroute":
        raise ValueError(f"guard.output.{name}: 'reroute' applies to input only (the answer "
                         "has already been generated)")
    return options


def build_scanner(name: str, options: ScannerConfig, shared: ScannerResources) -> Scanner:
    return SCANNERS[name].build(options, shared)
