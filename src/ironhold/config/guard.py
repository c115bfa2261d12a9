"""The config of the runtime guard (``guard:`` and ``models[].guard``). Part of the one config
schema (``config.schema.Config``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["GUARD_DEFAULT_INPUT", "GUARD_DEFAULT_OUTPUT", "GuardConfig", "GuardOverride",
           "InputScanner", "OutputScanner", "ScannerConfig"]

InputScanner = Literal["injection", "pii", "secrets"]
OutputScanner = Literal["pii", "secrets", "leaks"]
Action = Literal["block", "redact", "flag", "reroute", "off"]
PiiKind = Literal["email", "phone", "payment_card", "iban", "national_id", "ip_address"]


class ScannerConfig(BaseModel):
    """What one scanner does when it finds something: ``block`` (400 ``guard_blocked``),
    ``redact`` (replace the span with a placeholder), ``flag`` (record it in the audit log only),
    ``reroute`` (send the request to the model group ``reroute_to``), or ``off``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Action
    #: injection: the score at which a text counts as an attack (default: the model's own,
    #: chosen at training for a 1% false-positive rate).
    threshold: float | None = Field(default=None, gt=0, le=1)
    reroute_to: str | None = None
    #: pii: the kinds to look for (default: all).
    kinds: list[PiiKind] | None = None
    #: pii: the region phone numbers without a country code are read in (ISO 3166, e.g. US).
    region: str | None = Field(default=None, min_length=2, max_length=2)
    #: pii on input with action redact: put the caller's own values back into the answer.
    restore: bool = False
    #: secrets: also flag random-looking tokens no detect-secrets plugin knows.
    entropy: bool = True

    @model_validator(mode="after")
    def _reroute(self) -> ScannerConfig:
        if self.action == "reroute" and not self.reroute_to:
            raise ValueError("action 'reroute' needs 'reroute_to' (a model group)")
        if self.reroute_to and self.action != "reroute":
            raise ValueError("'reroute_to' applies only with action 'reroute'")
        return self


GUARD_DEFAULT_INPUT: dict[InputScanner, ScannerConfig] = {
    "injection": ScannerConfig(action="block"),
    "pii": ScannerConfig(action="flag"),
    "secrets": ScannerConfig(action="block"),
}
GUARD_DEFAULT_OUTPUT: dict[OutputScanner, ScannerConfig] = {
    "pii": ScannerConfig(action="flag"),
    "secrets": ScannerConfig(action="redact"),
    "leaks": ScannerConfig(action="block"),
}


class GuardOverride(BaseModel):
    """A model group's changes to the guard: the scanners named here replace the global ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: dict[InputScanner, ScannerConfig] = Field(default_factory=dict)
    output: dict[OutputScanner, ScannerConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _actions(self) -> GuardOverride:
        if (inj := self.input.get("injection")) is not None and inj.action == "redact":
            raise ValueError("guard.input.injection cannot 'redact' (an instruction has no safe "
                             "placeholder); use block, flag or reroute")
        for name, cfg in self.output.items():
            if cfg.action == "reroute":
                raise ValueError(f"guard.output.{name}: 'reroute' applies to input only (the "
                                 "answer has already been generated)")
        if (leaks := self.output.get("leaks")) is not None and leaks.action == "redact":
            raise ValueError("guard.output.leaks cannot 'redact'; use block or flag")
        return self


class GuardConfig(GuardOverride):
    """The runtime guard. On by default: prompt injection and secrets in requests are blocked,
    secrets in answers redacted, system-prompt leaks blocked, personal data flagged."""

    enabled: bool = True
    input: dict[InputScanner, ScannerConfig] = Field(
        default_factory=lambda: dict(GUARD_DEFAULT_INPUT))
    output: dict[OutputScanner, ScannerConfig] = Field(
        default_factory=lambda: dict(GUARD_DEFAULT_OUTPUT))
    #: A scanner that fails: ``closed`` refuses the request (503 ``guard_unavailable``),
    #: ``open`` lets it through; either way the error is logged and audited.
    on_error: Literal["open", "closed"] = "closed"
    #: Plant a canary token in system prompts and block answers that repeat it.
    canary: bool = True
    #: Streams: characters of generated text held back before they go out, so a secret, an
    #: address or a placeholder arriving over several chunks is scanned whole. A token still
    #: growing at the cut (no whitespace yet) is held whole too, up to 4,096 characters.
    stream_hold: int = Field(default=64, ge=32, le=1024)
    #: Characters of request text scanned at most; a request with more is refused (400), since
    #: what is not scanned must not reach the model. Scans of long texts run in a worker thread.
    max_input_chars: int = Field(default=1_000_000, ge=1_000, le=8_000_000)

    @model_validator(mode="after")
    def _defaults(self) -> GuardConfig:
        # Scanners not named keep their defaults; name one with action 'off' to turn it off.
        merged_in: dict[InputScanner, ScannerConfig] = {**GUARD_DEFAULT_INPUT, **self.input}
        merged_out: dict[OutputScanner, ScannerConfig] = {**GUARD_DEFAULT_OUTPUT, **self.output}
        object.__setattr__(self, "input", merged_in)
        object.__setattr__(self, "output", merged_out)
        return self
