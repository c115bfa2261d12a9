"""The config of the runtime guard (``guard:`` and ``models[].guard``). Part of the one config
schema (``config.schema.Config``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["GUARD_DEFAULT_INPUT", "GUARD_DEFAULT_OUTPUT", "GuardConfig", "GuardOverride",
           "ScannerConfig", "Side"]

Action = Literal["block", "redact", "flag", "reroute", "off"]
Side = Literal["input", "output"]


class ScannerConfig(BaseModel):
    """What one scanner does when it finds something: ``block`` (400 ``guard_blocked``),
    ``redact`` (replace the span with a placeholder), ``flag`` (record it in the audit log only),
    ``reroute`` (send the request to the model group ``reroute_to``), or ``off``.

    Each scanner's own options extend this class in the scanner's module (``PiiOptions``,
    ``SecretsOptions``, ...), and ``guard.scanners.SCANNERS`` says which class reads a name's
    options: an option a scanner does not have is an error, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Action
    reroute_to: str | None = None

    @model_validator(mode="after")
    def _reroute(self) -> ScannerConfig:
        if self.action == "reroute" and not self.reroute_to:
            raise ValueError("action 'reroute' needs 'reroute_to' (a model group)")
        if self.reroute_to and self.action != "reroute":
            raise ValueError("'reroute_to' applies only with action 'reroute'")
        return self


#: What runs when the config names nothing (each scanner's options at their defaults).
GUARD_DEFAULT_INPUT: dict[str, dict[str, Any]] = {
    "injection": {"action": "block"},
    "pii": {"action": "flag"},
    "secrets": {"action": "block"},
}
GUARD_DEFAULT_OUTPUT: dict[str, dict[str, Any]] = {
    "pii": {"action": "flag"},
    "secrets": {"action": "redact"},
    "leaks": {"action": "block"},
}


def scanner_options(side: Side, raw: Any) -> dict[str, ScannerConfig]:
    """``raw`` (the YAML mapping of scanner names to their settings) read by each scanner's own
    options class. Raises ``ValueError`` naming the scanner and the field at fault."""
    # Imported here: the scanners import this module for ScannerConfig.
    from ironhold.guard.scanners import options_for

    if not isinstance(raw, Mapping):
        raise ValueError(f"guard.{side} must be a mapping of scanner names to settings")
    return {str(name): options_for(side, str(name), value) for name, value in raw.items()}


class GuardOverride(BaseModel):
    """A model group's changes to the guard: the scanners named here replace the global ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: dict[str, ScannerConfig] = Field(default_factory=dict)
    output: dict[str, ScannerConfig] = Field(default_factory=dict)

    @field_validator("input", mode="before")
    @classmethod
    def _input(cls, raw: Any) -> dict[str, ScannerConfig]:
        return scanner_options("input", raw)

    @field_validator("output", mode="before")
    @classmethod
    def _output(cls, raw: Any) -> dict[str, ScannerConfig]:
        return scanner_options("output", raw)


class GuardConfig(GuardOverride):
    """The runtime guard. On by default: prompt injection and secrets in requests are blocked,
    secrets in answers redacted, system-prompt leaks blocked, personal data flagged."""

    enabled: bool = True
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
        object.__setattr__(self, "input",
                           {**scanner_options("input", GUARD_DEFAULT_INPUT), **self.input})
        object.__setattr__(self, "output",
                           {**scanner_options("output", GUARD_DEFAULT_OUTPUT), **self.output})
        return self
