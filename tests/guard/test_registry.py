"""The scanner registry: each scanner reads its own typed options (an option it does not have is
an error), names and sides come from the registry, and a scanner added to the registry alone is
configured, run and acted on like the built-in ones."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from ironhold.config.guard import GuardConfig, GuardOverride, ScannerConfig
from ironhold.config.schema import Config
from ironhold.core.errors import GuardBlockedError
from ironhold.guard import InjectionModel
from ironhold.guard.content import Segment
from ironhold.guard.engine import Guard, RequestGuard
from ironhold.guard.findings import Finding
from ironhold.guard.injection import InjectionOptions
from ironhold.guard.pii import PiiOptions
from ironhold.guard.scanners import SCANNERS, ScanContext, ScannerKind
from ironhold.guard.secrets import SecretsOptions


@pytest.fixture(scope="module")
def model() -> InjectionModel:
    return InjectionModel.load()


def test_each_scanner_reads_its_own_typed_options() -> None:
    config = GuardConfig(input={"injection": {"action": "flag", "threshold": 0.9},
                                "pii": {"action": "redact", "kinds": ["email"], "region": "US",
                                        "restore": True}},
                         output={"secrets": {"action": "flag", "entropy": False}})
    injection, pii = config.input["injection"], config.input["pii"]
    assert isinstance(injection, InjectionOptions) and injection.threshold == 0.9
    assert isinstance(pii, PiiOptions) and pii.kinds == ["email"] and pii.restore
    secrets = config.output["secrets"]
    assert isinstance(secrets, SecretsOptions) and not secrets.entropy
    # Scanners not named keep their defaults, typed too.
    assert isinstance(config.input["secrets"], SecretsOptions)
    assert config.output["leaks"].action == "block"


@pytest.mark.parametrize(("guard", "message"), [
    ({"input": {"secrets": {"action": "block", "kinds": ["email"]}}},
     "guard.input.secrets: kinds: Extra inputs are not permitted"),
    ({"input": {"injection": {"action": "flag", "entropy": False}}},
     "guard.input.injection: entropy: Extra inputs are not permitted"),
    ({"input": {"pii": {"action": "flag", "kinds": ["shoe_size"]}}},
     "guard.input.pii: kinds.0: Input should be"),
    ({"input": {"injection": {"action": "redact"}}},
     "guard.input.injection cannot 'redact'"),
    ({"output": {"leaks": {"action": "redact"}}}, "guard.output.leaks cannot 'redact'"),
    ({"output": {"pii": {"action": "reroute", "reroute_to": "x"}}},
     "'reroute' applies to input only"),
    ({"input": {"leaks": {"action": "block"}}},
     "guard.input has no scanner 'leaks' (known: injection, pii, secrets)"),
    ({"output": {"telepathy": {"action": "block"}}},
     "guard.output has no scanner 'telepathy' (known: pii, secrets, leaks)"),
    ({"input": {"pii": {"action": "reroute"}}}, "action 'reroute' needs 'reroute_to'"),
    ({"input": ["pii"]}, "guard.input must be a mapping"),
])
def test_a_wrong_setting_is_refused_naming_the_scanner_and_field(guard: dict[str, object],
                                                                  message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        Config.model_validate({"guard": guard, "models": []})
    # The same rules hold for a model group's override.
    with pytest.raises(ValidationError, match=re.escape(message)):
        GuardOverride.model_validate(guard)


class ShoutOptions(ScannerConfig):
    """A scanner written for this test: finds a word in capitals, at least ``letters`` long."""

    letters: int = 5


class ShoutScanner:
    def __init__(self, options: ShoutOptions):
        self._word = re.compile(rf"\b[A-Z]{{{options.letters},}}\b")

    def scan(self, text: str, where: str = "", context: ScanContext | None = None
             ) -> list[Finding]:
        return [Finding("shout", "shouting", "LLM09", 1.0, m.start(), m.end(), where, "caps")
                for m in self._word.finditer(text)]


def test_a_scanner_added_to_the_registry_alone_is_configured_and_run(
        model: InjectionModel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SCANNERS, "shout", ScannerKind(
        ShoutOptions, lambda options, _: ShoutScanner(options), frozenset({"input", "output"})))
    config = GuardConfig(input={"shout": {"action": "redact", "letters": 4}},
                         output={"shout": {"action": "block"}})
    guard = Guard(config, {}, model)
    state = RequestGuard(guard.plan("chat"))
    written: list[str] = []
    seg = Segment("messages[0].content", "please STOP the ALARM now", "user", written.append)
    guard.scan_input(state, [seg])
    assert written == ["please [PII_1] the [PII_2] now"]
    assert [(n.scanner, n.action) for n in state.records] == [("shout", "redact")] * 2
    with pytest.raises(GuardBlockedError):
        guard.scan_output(state, [Segment("choices[0].message.content", "NEVER", "assistant",
                                          written.append)])
    with pytest.raises(ValidationError, match="letters: Input should be a valid integer"):
        GuardConfig(input={"shout": {"action": "flag", "letters": "many"}})
