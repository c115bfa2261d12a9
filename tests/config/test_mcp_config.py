"""The ``mcp:`` section: defaults, and clear errors for what cannot work."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ironhold.config.mcp import McpConfig


def config(**mcp: Any) -> McpConfig:
    return McpConfig.model_validate(mcp)


def test_defaults_guard_both_directions() -> None:
    c = config(servers=[{"name": "files", "url": "http://127.0.0.1:9000/mcp"}])
    assert c.enabled and c.servers[0].transport == "http"
    assert {k: v.action for k, v in c.guard.arguments.items()} == {"secrets": "block",
                                                                   "pii": "flag"}
    assert {k: v.action for k, v in c.guard.results.items()} == {"injection": "block",
                                                                 "secrets": "redact"}
    # A scanner named replaces its default only.
    c = config(guard={"results": {"injection": {"action": "flag"}}})
    assert c.guard.results["injection"].action == "flag"
    assert c.guard.results["secrets"].action == "redact"
    assert not config().enabled


@pytest.mark.parametrize(("mcp", "message"), [
    ({"servers": [{"name": "Files.x", "url": "http://x"}]}, "no dots"),
    ({"servers": [{"name": "f", "url": "http://x", "command": ["a"]}]}, "exactly one of"),
    ({"servers": [{"name": "f"}]}, "exactly one of"),
    ({"servers": [{"name": "f", "url": "ftp://x"}]}, "http:// or https://"),
    ({"servers": [{"name": "f", "command": ["a"], "headers": {"A": "b"}}]}, "'headers' apply"),
    ({"servers": [{"name": "f", "url": "http://x"}, {"name": "f", "url": "http://y"}]},
     "defined twice"),
    ({"guard": {"results": {"leaks": {"action": "block"}}}}, "no scanner 'leaks'"),
    ({"guard": {"arguments": {"injection": {"action": "block"}}}}, "no scanner 'injection'"),
    ({"guard": {"results": {"injection": {"action": "redact"}}}}, "cannot 'redact'"),
    ({"limits": {"rpm": 0}}, "greater than or equal to 1"),
])
def test_what_cannot_work_is_refused_by_name(mcp: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        config(**mcp)
