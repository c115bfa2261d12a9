"""Tool calls as Cedar sees them: the tool, its server, and its arguments as tags.

A call ``files.read_file {"path": "/srv/reports/q3.txt"}`` is decided as::

    principal: the caller
    action:    call_tool
    resource:  Tool::"files.read_file"  (in ToolServer::"files")
    context:   {..., server: "files", tool: "read_file", arguments: ToolArguments with
                tag "path" = {kind: "string", text: "/srv/reports/q3.txt", number: 0}}

so a policy can say ``context.arguments.getTag("path").text like "/srv/reports/*"``.

**Listing.** ``tools/list`` shows a tool when *some* arguments could be allowed. The listing
is decided by a second policy set made from the same policies, in which every condition on
``context.arguments`` is taken as whatever lets the tool be seen: true in a ``permit``'s
``when``, false in a ``forbid``'s. A tool hidden from the list is therefore one that no call
can reach; a listed tool may still refuse particular arguments.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from ironhold.core.errors import InvalidRequestError
from ironhold.policy.entities import uid

__all__ = ["ARGUMENTS_ID", "MAX_ARGUMENT_TAGS", "argument_tags", "listing_policies",
           "tool_entities"]

#: The id of the per-call arguments entity (each decision has its own entity set).
ARGUMENTS_ID = "call"
#: Arguments flattened past this many tags are refused: a decision's work stays bounded.
MAX_ARGUMENT_TAGS = 256
_MAX_DEPTH = 8
#: Cedar's Long is 64-bit.
_LONG = (-(2**63), 2**63 - 1)


def tool_entities(server: str, tool: str, arguments: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The server, the tool (named ``server.tool``) and the call's arguments."""
    return [
        {"uid": uid("ToolServer", server), "attrs": {}, "parents": []},
        {"uid": uid("Tool", f"{server}.{tool}"), "attrs": {},
         "parents": [uid("ToolServer", server)]},
        {"uid": uid("ToolArguments", ARGUMENTS_ID), "attrs": {}, "parents": [],
         "tags": argument_tags(arguments)},
    ]


def argument_tags(arguments: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """One tag per argument; an object's members also as ``outer.inner`` (the object itself
    keeps a tag too, with its JSON as text)."""
    tags: dict[str, dict[str, Any]] = {}
    stack: list[tuple[str, Any, int]] = [(str(k), v, 1) for k, v in arguments.items()]
    while stack:
        name, value, depth = stack.pop()
        tags[name] = _tag(value)
        if len(tags) > MAX_ARGUMENT_TAGS:
            raise InvalidRequestError(
                f"The tool call's arguments have more than {MAX_ARGUMENT_TAGS} values; policy "
                "cannot decide on so many.", param="arguments")
        if isinstance(value, dict) and depth < _MAX_DEPTH:
            stack.extend((f"{name}.{k}", v, depth + 1) for k, v in value.items())
    return tags


def _tag(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"kind": "string", "text": value, "number": 0}
    if isinstance(value, bool):
        return {"kind": "boolean", "text": "true" if value else "false", "number": 0}
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidRequestError("Tool arguments must be finite numbers.",
                                      param="arguments")
        number = math.ceil(value)
        if not _LONG[0] <= number <= _LONG[1]:
            raise InvalidRequestError("A tool argument is a number too large to decide on.",
                                      param="arguments")
        return {"kind": "number", "text": json.dumps(value), "number": number}
    if value is None:
        return {"kind": "null", "text": "null", "number": 0}
    kind = "object" if isinstance(value, dict) else "array"
    return {"kind": kind, "text": json.dumps(value, ensure_ascii=False, sort_keys=True),
            "number": 0}


# -- the listing's policies ----------------------------------------------------------------

_ARGUMENTS = {".": {"left": {"Var": "context"}, "attr": "arguments"}}


def listing_policies(policies_json: dict[str, Any]) -> dict[str, Any]:
    """The policy set (Cedar's JSON form) that decides what ``tools/list`` shows: each
    condition on the call's arguments replaced by the value that shows the tool."""
    out: dict[str, Any] = json.loads(json.dumps(policies_json))
    for policy in out.get("staticPolicies", {}).values():
        permit = policy.get("effect") == "permit"
        for condition in policy.get("conditions", ()):
            # A permit applies more when its ``when`` holds; a forbid applies less.
            want = permit if condition["kind"] == "when" else not permit
            condition["body"] = _relaxed(condition["body"], want)
    return out


def _relaxed(expr: Any, want: bool) -> Any:
    if not _mentions_arguments(expr):
        return expr
    if isinstance(expr, dict) and len(expr) == 1:
        (op, args), = expr.items()
        if op in ("&&", "||"):
            return {op: {"left": _relaxed(args["left"], want),
                         "right": _relaxed(args["right"], want)}}
        if op == "!":
            return {"!": {"arg": _relaxed(args["arg"], not want)}}
    return {"Value": want}


def _mentions_arguments(expr: Any) -> bool:
    if expr == _ARGUMENTS:
        return True
    if isinstance(expr, dict):
        return any(_mentions_arguments(v) for v in expr.values())
    if isinstance(expr, list):
        return any(_mentions_arguments(v) for v in expr)
    return False
