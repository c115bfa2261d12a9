"""Tool calls decided by Cedar: arguments as tags, and the listing's relaxed policy set."""

from __future__ import annotations

from pathlib import Path

import pytest

from ironhold.core.errors import ConfigError, InvalidRequestError
from ironhold.core.principal import Principal
from ironhold.policy.engine import PolicyEngine
from ironhold.policy.entities import RequestContext
from ironhold.policy.tools import MAX_ARGUMENT_TAGS, argument_tags

POLICIES = """
@id("read-reports")
permit(principal, action == Ironhold::Action::"call_tool",
       resource == Ironhold::Tool::"files.read_file")
when { principal.name == "reader" && context.arguments.hasTag("path") &&
       context.arguments.getTag("path").text like "/srv/reports/*" };

@id("small-transfers")
permit(principal, action == Ironhold::Action::"call_tool",
       resource in Ironhold::ToolServer::"bank");
@id("no-large-transfers")
forbid(principal, action == Ironhold::Action::"call_tool", resource in Ironhold::ToolServer::"bank")
when { context.arguments.hasTag("amount") && context.arguments.getTag("amount").number > 100 };
@id("no-bank-for-guests")
forbid(principal, action == Ironhold::Action::"call_tool", resource in Ironhold::ToolServer::"bank")
unless { principal.name != "guest" };
"""


@pytest.fixture
def engine(tmp_path: Path) -> PolicyEngine:
    (tmp_path / "tools.cedar").write_text(POLICIES)
    return PolicyEngine.load([Path("tools.cedar")], tmp_path)


def key(name: str) -> Principal:
    return Principal(id=f"key_{name}", kind="key", name=name)


def decide(engine: PolicyEngine, who: str, server: str, tool: str,
           arguments: dict[str, object] | None) -> bool:
    return engine.decide_tool(key(who), server, tool, arguments, RequestContext()).allowed


def test_arguments_decide_a_call(engine: PolicyEngine) -> None:
    assert decide(engine, "reader", "files", "read_file", {"path": "/srv/reports/a.txt"})
    assert not decide(engine, "reader", "files", "read_file", {"path": "/etc/passwd"})
    assert not decide(engine, "reader", "files", "read_file", {})
    assert not decide(engine, "writer", "files", "read_file", {"path": "/srv/reports/a.txt"})
    assert decide(engine, "alice", "bank", "pay", {"amount": 100})
    assert not decide(engine, "alice", "bank", "pay", {"amount": 100.01})  # rounded up
    assert not decide(engine, "alice", "bank", "pay", {"amount": 10**6})


def test_listing_shows_what_some_arguments_allow(engine: PolicyEngine) -> None:
    # A permit conditioned on arguments lists the tool; its other conditions still hold.
    assert decide(engine, "reader", "files", "read_file", None)
    assert not decide(engine, "writer", "files", "read_file", None)
    # A forbid conditioned on arguments does not hide it; one on the caller does.
    assert decide(engine, "alice", "bank", "pay", None)
    assert not decide(engine, "guest", "bank", "pay", None)
    assert not decide(engine, "alice", "files", "write_file", None)


def test_arguments_become_tags() -> None:
    tags = argument_tags({"path": "/a", "n": 2.5, "ok": True, "to": {"iban": "DE44"},
                          "list": [1, 2], "none": None})
    assert tags["path"] == {"kind": "string", "text": "/a", "number": 0}
    assert tags["n"] == {"kind": "number", "text": "2.5", "number": 3}
    assert tags["ok"]["kind"] == "boolean" and tags["none"]["kind"] == "null"
    assert tags["to.iban"]["text"] == "DE44" and tags["to"]["kind"] == "object"
    assert tags["list"] == {"kind": "array", "text": "[1, 2]", "number": 0}


def test_arguments_past_the_bounds_are_refused() -> None:
    with pytest.raises(InvalidRequestError):
        argument_tags({f"k{i}": i for i in range(MAX_ARGUMENT_TAGS + 1)})
    with pytest.raises(InvalidRequestError):
        argument_tags({"n": 10**30})
    with pytest.raises(InvalidRequestError):
        argument_tags({"n": float("nan")})


def test_an_unsafe_forbid_does_not_load(tmp_path: Path) -> None:
    # Reading a tag without checking it exists would make the forbid error, and a policy that
    # errors is skipped: the schema's validation refuses it at load.
    (tmp_path / "bad.cedar").write_text(
        'forbid(principal, action == Ironhold::Action::"call_tool", resource) '
        'when { context.arguments.getTag("amount").number > 100 };')
    with pytest.raises(ConfigError, match="tag"):
        PolicyEngine.load([Path("bad.cedar")], tmp_path)
