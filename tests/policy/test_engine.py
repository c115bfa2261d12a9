"""Cedar policies: loading (and refusing bad files), decisions, deciding ids, context."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ironhold.core.errors import ConfigError
from ironhold.core.principal import Principal, Scopes
from ironhold.policy.cases import PolicyCases, run_cases
from ironhold.policy.engine import PolicyEngine
from ironhold.policy.entities import RequestContext

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
SVC = Principal(id="key_svc", kind="key", name="svc", tenant="acme")


@pytest.fixture
def engine() -> PolicyEngine:
    return PolicyEngine.load([EXAMPLES])


def test_the_example_policies_pass_their_cases(engine: PolicyEngine) -> None:
    import yaml

    cases = PolicyCases.model_validate(yaml.safe_load((EXAMPLES / "cases.yaml").read_text()))
    results = run_cases(engine, cases)
    assert len(results) == 11 and all(r.passed for r in results)


def test_decisions_name_their_policies(engine: PolicyEngine) -> None:
    context = RequestContext(operation="chat", client_ip="10.0.0.5")
    allowed = engine.decide(SVC, "chat", "Model", "chat", context)
    assert allowed.allowed and allowed.policies == ("tenants-use-general-models",)
    default = engine.decide(SVC, "chat", "Model", "secret-model", context)
    assert not default.allowed and default.policies == ()
    assert "default deny" in default.describe()
    forbidden = engine.decide(SVC, "chat", "Model", "chat",
                              RequestContext(client_ip="8.8.8.8"))
    assert not forbidden.allowed and forbidden.policies == ("private-networks-only",)
    assert engine.uses_budget


def test_the_hierarchy_reaches_through_delegation(engine: PolicyEngine) -> None:
    agent = Principal(id="agent:a", kind="agent", name="a", tenant="research",
                      chain=("user:bob", "agent:a"))
    context = RequestContext(estimated_tokens=100, client_ip="127.0.0.1")
    assert engine.decide(agent, "chat", "Model", "large", context).allowed
    deep = Principal(id="agent:c", kind="agent", name="c", scopes=Scopes(admin=True),
                     chain=("key_ops", "agent:b", "agent:c"))
    decision = engine.decide(deep, "manage_keys", "Gateway", "ironhold", context)
    assert not decision.allowed and decision.policies == ("deep-agents-never-administer",)


def test_unannotated_policies_are_named_by_file_and_position(tmp_path: Path) -> None:
    (tmp_path / "a.cedar").write_text(
        'permit(principal, action, resource) when { context.estimated_tokens < 10 };\n'
        'forbid(principal, action, resource) when { context.stream };\n')
    engine = PolicyEngine.load([tmp_path])
    assert engine.policy_ids == ["a.cedar#1", "a.cedar#2"]
    decision = engine.decide(SVC, "chat", "Model", "m", RequestContext(stream=True))
    assert decision.policies == ("a.cedar#2",) and not engine.uses_budget


@pytest.mark.parametrize("content, problem", [
    ("permit(principal, action, resource) when { x", "not valid Cedar"),
    ("permit(principal, action, resource) when { context.estimated_tokenz > 1 };",
     "does not match the schema"),
    ("permit(principal is Ironhold::Robot, action, resource);", "does not match the schema"),
    ('@id("x") permit(principal, action, resource);\n@id("x") forbid(principal, action, '
     'resource);', "used twice"),
    ("permit(principal == ?principal, action, resource);", "templates"),
])
def test_bad_policy_files_stop_start_up(tmp_path: Path, content: str, problem: str) -> None:
    (tmp_path / "bad.cedar").write_text(content)
    with pytest.raises(ConfigError) as err:
        PolicyEngine.load([tmp_path])
    assert problem in err.value.message and "bad.cedar" in err.value.message


def test_missing_and_empty_policy_sources(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        PolicyEngine.load([tmp_path / "nope"])
    with pytest.raises(ConfigError, match=r"no \*\.cedar files"):
        PolicyEngine.load([tmp_path])


def test_a_schema_of_ones_own_replaces_the_built_in_one(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "gateway.cedar", tmp_path)
    (tmp_path / "mine.cedarschema").write_text("namespace Other { entity Thing; }")
    with pytest.raises(ConfigError) as err:  # the examples don't fit this schema
        PolicyEngine.load([tmp_path])
    assert "mine.cedarschema" in err.value.message
    (tmp_path / "mine.cedarschema").write_text("namespace {")
    with pytest.raises(ConfigError, match="not a valid Cedar schema"):
        PolicyEngine.load([tmp_path])


def test_a_request_carries_only_the_context_policies_read(tmp_path: Path) -> None:
    from ironhold.policy.engine import context_read

    (tmp_path / "p.cedar").write_text(
        'permit(principal, action, resource) when { context.estimated_tokens < 10 };\n'
        'forbid(principal, action, resource) when {\n'
        '  context has stream && context["stream"] && context.client_ip.isLoopback() };\n')
    engine = PolicyEngine.load([tmp_path / "p.cedar"])
    assert engine._context_keys == frozenset({"estimated_tokens", "stream", "client_ip"})
    # The attributes left out change no decision: every read one is there.
    small = RequestContext(estimated_tokens=5, client_ip="10.0.0.1", stream=True)
    assert engine.decide(SVC, "chat", "Model", "m", small).allowed
    local = RequestContext(estimated_tokens=5, client_ip="127.0.0.1", stream=True)
    decision = engine.decide(SVC, "chat", "Model", "m", local)
    assert not decision.allowed and decision.policies == ("p.cedar#2",) and not decision.errors
    big = RequestContext(estimated_tokens=50, client_ip="10.0.0.1")
    assert not engine.decide(SVC, "chat", "Model", "m", big).allowed
    # A policy that compares the context whole gets all of it.
    whole = {"staticPolicies": {"policy0": {"conditions": [{"kind": "when", "body": {
        "==": {"left": {"Var": "context"}, "right": {"Record": {}}}}}]}}}
    assert context_read(whole) is None
