"""The guard's decisions, independent of HTTP: which scanners run for a model group, what each
finding leads to, and the per-request state (placeholders, canary) that links a request to its
answer."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ironhold.config.guard import GuardConfig, GuardOverride, ScannerConfig
from ironhold.core.errors import GuardBlockedError, GuardUnavailableError
from ironhold.core.exchange import GuardNote
from ironhold.guard.classifier import InjectionModel
from ironhold.guard.content import Segment
from ironhold.guard.findings import Finding
from ironhold.guard.leaks import SystemPromptLeak, scan_refusal
from ironhold.guard.pii import PiiOptions
from ironhold.guard.redact import Redactor
from ironhold.guard.scanners import Scanner, ScannerResources, build_scanner

__all__ = ["ACTION_RANK", "Guard", "Plan", "RequestGuard", "blocked", "describe"]

log = logging.getLogger("ironhold.guard")

_NAMES = {"prompt_injection": "prompt injection", "jailbreak": "jailbreak",
          "system_prompt_leak": "system prompt leak", "exfiltration": "data exfiltration",
          "invisible_text": "invisible text", "high_entropy_string": "secret"}
#: How much each action does: the strongest of a text's findings wins.
ACTION_RANK = {"block": 4, "reroute": 3, "redact": 2, "flag": 1, "off": 0}


def describe(finding: Finding) -> str:
    name = _NAMES.get(finding.category, finding.category.replace("_", " "))
    if finding.scanner == "secrets" and finding.category != "high_entropy_string":
        name = f"secret ({finding.detail or name})"
    elif finding.scanner == "pii":
        name = f"personal data ({name})"
    return f"{name} (OWASP {finding.owasp})"


def blocked(what: str, finding: Finding) -> GuardBlockedError:
    """The error a blocking finding raises (``what``: Request or Response)."""
    return GuardBlockedError(
        f"{what} blocked by the guard: {describe(finding)} in {finding.where}.",
        category=finding.category, owasp=finding.owasp)


@dataclass(frozen=True)
class Plan:
    """The scanners and actions for one model group."""

    input: dict[str, ScannerConfig]
    output: dict[str, ScannerConfig]
    #: The scanners that are not off, in the config's order.
    input_scanners: tuple[Scanner, ...]
    output_scanners: tuple[Scanner, ...]
    on_error: str
    canary: bool
    stream_hold: int

    @cached_property
    def restores(self) -> bool:
        pii = self.input.get("pii")
        return isinstance(pii, PiiOptions) and pii.action == "redact" and pii.restore

    @cached_property
    def scans_input(self) -> bool:
        return bool(self.input_scanners)

    @cached_property
    def scans_output(self) -> bool:
        return self.restores or bool(self.output_scanners)


class RequestGuard:
    """One request's guard state."""

    __slots__ = ("_failures", "_redactor", "canary", "own", "plan", "records", "system")

    def __init__(self, plan: Plan):
        self.plan = plan
        self.canary: str | None = None
        self.system: SystemPromptLeak | None = None
        #: Placeholders standing for the caller's own personal data (restorable).
        self.own: set[str] = set()
        self.records: list[GuardNote] = []
        # Made on first use: most requests redact nothing and no scanner fails.
        self._redactor: Redactor | None = None
        self._failures: dict[tuple[str, str], GuardNote] | None = None

    @property
    def redactor(self) -> Redactor:
        if self._redactor is None:
            self._redactor = Redactor()
        return self._redactor

    @property
    def failures(self) -> dict[tuple[str, str], GuardNote]:
        """Scanner errors recorded so far, by place and error type (a stream fails once per
        window)."""
        if self._failures is None:
            self._failures = {}
        return self._failures

    def note(self, finding: Finding, action: str) -> None:
        self.records.append(finding.note(action))


class Guard:
    def __init__(self, config: GuardConfig, overrides: dict[str, GuardOverride],
                 model: InjectionModel):
        self.config = config
        self.model = model
        self._shared = ScannerResources(injection_model=model)
        self._overrides = overrides
        self._plans: dict[str, Plan] = {}
        self._default = self._plan(None)

    def plan(self, group: str) -> Plan:
        plan = self._plans.get(group)
        if plan is None:
            override = self._overrides.get(group)
            plan = self._default if override is None else self._plan(override)
            self._plans[group] = plan
        return plan

    def _plan(self, override: GuardOverride | None) -> Plan:
        inputs: dict[str, ScannerConfig] = {k: v for k, v in self.config.input.items()}
        outputs: dict[str, ScannerConfig] = {k: v for k, v in self.config.output.items()}
        if override is not None:
            inputs.update((k, v) for k, v in override.input.items())
            outputs.update((k, v) for k, v in override.output.items())
        return Plan(inputs, outputs, self._arm(inputs), self._arm(outputs),
                    self.config.on_error, self.config.canary, self.config.stream_hold)

    def _arm(self, options: dict[str, ScannerConfig]) -> tuple[Scanner, ...]:
        return tuple(build_scanner(name, o, self._shared)
                     for name, o in options.items() if o.action != "off")

    # -- input ---------------------------------------------------------------------------

    def scan_input(self, state: RequestGuard, segments: Iterable[Segment]) -> str | None:
        """Scan and act on the request's texts, in place. Raises ``GuardBlockedError`` on a
        block; returns the group to reroute to, if a finding says so."""
        plan = state.plan
        reroute: str | None = None
        for seg in segments:
            findings = self.guarded(state, seg.where, self._input_findings, plan, seg)
            if not findings:
                continue
            worst = max(findings, key=lambda f: ACTION_RANK[plan.input[f.scanner].action])
            action = plan.input[worst.scanner].action
            for f in findings:
                state.note(f, plan.input[f.scanner].action)
            if action == "block":
                raise blocked("Request", worst)
            if action == "reroute" and reroute is None:
                reroute = plan.input[worst.scanner].reroute_to
            redact = [f for f in findings if plan.input[f.scanner].action == "redact"]
            if redact:
                if plan.restores:
                    state.own.update(state.redactor.placeholder(f, seg.text[f.start:f.end])
                                     for f in redact if f.scanner == "pii")
                seg.replace(state.redactor.redact(seg.text, redact))
        return reroute

    def _input_findings(self, plan: Plan, seg: Segment) -> list[Finding]:
        # Every role: the model reads a client-written assistant turn as its own words.
        found: list[Finding] = []
        for scanner in plan.input_scanners:
            found += scanner.scan(seg.text, seg.where)
        return found

    # -- output --------------------------------------------------------------------------

    def scan_output(self, state: RequestGuard, segments: Iterable[Segment]) -> bool:
        """Scan and act on the answer's texts, in place (raises ``GuardBlockedError``); True if
        any text was redacted or restored."""
        plan = state.plan
        changed = False
        for seg in segments:
            findings = self.guarded(state, seg.where, self.output_findings, plan, state, seg.text,
                                    seg.where, seg.prose)
            text = seg.text
            if findings:
                acted = [f for f in findings if f.category != "refusal"]
                for f in findings:
                    state.note(f, "flag" if f.category == "refusal"
                               else plan.output[f.scanner].action)
                if acted:
                    worst = max(acted, key=lambda f: ACTION_RANK[plan.output[f.scanner].action])
                    if plan.output[worst.scanner].action == "block":
                        raise blocked("Response", worst)
                    redact = [f for f in acted if plan.output[f.scanner].action == "redact"]
                    if redact:
                        text = state.redactor.redact(text, redact)
            if state.own:
                text = state.redactor.restore(text, state.own)
            if text != seg.text:
                seg.replace(text)
                changed = True
        return changed

    def output_findings(self, plan: Plan, state: RequestGuard, text: str, where: str,
                        refusal: bool = True) -> list[Finding]:
        """What the output scanners find in ``text``; ``refusal``: also look for a refusal
        (which only makes sense at the start of an answer)."""
        found: list[Finding] = []
        for scanner in plan.output_scanners:
            found += scanner.scan(text, where, state)
        if refusal:
            found += scan_refusal(text, where)
        return found

    # -- errors --------------------------------------------------------------------------

    def guarded(self, state: RequestGuard, where: str, scan: Callable[..., list[Finding]],
                *args: Any) -> list[Finding]:
        """``scan(*args)``; a scanner's error is recorded once per place and error, and fails
        the request closed or lets it through open (``guard.on_error``)."""
        try:
            return scan(*args)
        except GuardBlockedError:
            raise
        except Exception as exc:
            # A stream scans the same place once per window: one record (and one logged
            # traceback) per place and error, with a count, not one per window.
            key = (where, type(exc).__name__)
            failed = state.failures.get(key)
            if failed is not None:  # already recorded (and perhaps flushed to the exchange)
                failed.count += 1
            else:
                log.exception("guard scanner failed on %s", where)
                state.failures[key] = failed = GuardNote(
                    scanner="error", action="fail_" + state.plan.on_error, where=where,
                    error=key[1])
                state.records.append(failed)
            if state.plan.on_error == "closed":
                raise GuardUnavailableError(
                    "The guard could not scan this request and fails closed; try again.") from exc
            return []
