"""Cedar policies loaded once, decided per request (``cedarpy``).

``policy.files`` lists ``*.cedar`` files or folders of them; a ``*.cedarschema`` beside them
replaces the built-in schema (``schema.cedarschema``). Every policy is validated against the
schema at load, so a typo in an attribute stops the gateway from starting instead of silently
never matching. Default deny: a request no ``permit`` matches is refused, and any matching
``forbid`` wins.

A decision names the policies that decided it: their ``@id("...")`` annotation, or
``file.cedar#N`` (the N-th policy in the file) when they have none.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cedarpy
import orjson

from ironhold.core.errors import ConfigError
from ironhold.core.exchange import PolicyDecision
from ironhold.core.principal import Principal
from ironhold.policy.entities import (
    RequestContext,
    ResourceType,
    action_entities,
    principal_entities,
    principal_uid,
    uid,
)
from ironhold.policy.tools import ARGUMENTS_ID, listing_policies, tool_entities

BUILTIN_SCHEMA = Path(__file__).resolve().parent / "schema.cedarschema"
_ENTITY_CACHE = 10_000


class PolicyEngine:
    def __init__(self, policies: cedarpy.PolicySet, names: dict[str, str], sources: list[Path],
                 schema_path: Path, listing: cedarpy.PolicySet | None = None,
                 context_keys: frozenset[str] | None = None):
        self._policies = policies
        #: The context attributes some policy reads (None: all). Cedar spends most of a
        #: decision building the request's context, per attribute (an IP address or an entity
        #: reference the most), so a request carries only these.
        self._context_keys = context_keys
        #: What ``tools/list`` is decided by (``policy.tools.listing_policies``).
        self._listing = listing if listing is not None else policies
        self._names = names  # Cedar's policyN -> @id or file#N
        self._actions = action_entities()
        # Parsing the entity graph is most of a decision's cost, and a principal's entities
        # only change when the principal does: one pre-parsed handle per principal.
        self._entities: dict[Principal, cedarpy.Entities] = {}
        self.sources = sources
        self.schema_path = schema_path
        #: Whether any policy reads the remaining budget (only then is it looked up).
        self.uses_budget = context_keys is None or not context_keys.isdisjoint(
            {"remaining_budget_cents", "has_budget"})

    @property
    def policy_ids(self) -> list[str]:
        return list(self._names.values())

    @classmethod
    def load(cls, paths: Sequence[Path], base_dir: Path = Path(".")) -> PolicyEngine:
        files: list[Path] = []
        schemas: list[Path] = []
        for raw in paths:
            path = (base_dir / raw).resolve()
            if path.is_dir():
                files.extend(sorted(path.glob("*.cedar")))
                schemas.extend(sorted(path.glob("*.cedarschema")))
            elif path.is_file():
                (schemas if path.suffix == ".cedarschema" else files).append(path)
            else:
                raise ConfigError(f"policy.files: {path} does not exist")
        if not files:
            raise ConfigError("policy.files: no *.cedar files found (default deny would refuse "
                              "every request)")
        if len(schemas) > 1:
            raise ConfigError(f"policy.files: more than one schema: "
                              f"{', '.join(s.name for s in schemas)}")
        schema_path = schemas[0] if schemas else BUILTIN_SCHEMA
        schema_text = _read(schema_path)
        try:
            cedarpy.Schema.from_str(schema_text)
        except ValueError as exc:
            raise ConfigError(f"{schema_path}: not a valid Cedar schema: {exc}") from None
        texts: list[str] = []
        names: dict[str, str] = {}
        seen: set[str] = set()
        for file in files:
            text = _read(file)
            try:
                parsed = json.loads(cedarpy.policies_to_json_str(text))
            except ValueError as exc:
                raise ConfigError(f"{file}: not valid Cedar: {exc}") from None
            if parsed.get("templates"):
                raise ConfigError(f"{file}: policy templates are not supported")
            result = cedarpy.validate_policies(text, schema_text)
            if not result.validation_passed:
                problems = "; ".join(str(e) for e in result.errors)
                raise ConfigError(f"{file}: does not match the schema ({schema_path.name}): "
                                  f"{problems}")
            local = parsed.get("staticPolicies", {})
            # Cedar numbers a text's policies policy0, policy1, ... in order.
            for index in range(len(local)):
                policy = local[f"policy{index}"]
                name = policy.get("annotations", {}).get("id") or f"{file.name}#{index + 1}"
                if name in seen:
                    raise ConfigError(f"{file}: policy id {name!r} is used twice")
                seen.add(name)
                names[f"policy{len(names)}"] = name
            texts.append(text)
        combined = "\n".join(texts)
        policy_json = json.loads(cedarpy.policies_to_json_str(combined))
        listing = cedarpy.policies_from_json_str(json.dumps(listing_policies(policy_json)))
        return cls(cedarpy.PolicySet.from_str(combined), names, files, schema_path,
                   cedarpy.PolicySet.from_str(listing), context_read(policy_json))

    def decide(self, principal: Principal, action: str, resource_type: ResourceType,
               resource_id: str, context: RequestContext) -> PolicyDecision:
        request = {
            "principal": principal_uid(principal),
            "action": uid("Action", action),
            "resource": uid(resource_type, resource_id),
            "context": self._context(context.as_cedar(principal)),
        }
        return self._decision(_authorize(request, self._policies,
                                         self._entities_of(principal)))

    def _context(self, full: dict[str, Any]) -> dict[str, Any]:
        keys = self._context_keys
        return full if keys is None else {k: v for k, v in full.items() if k in keys}

    def _entities_of(self, principal: Principal) -> cedarpy.Entities:
        entities = self._entities.get(principal)
        if entities is None:
            if len(self._entities) >= _ENTITY_CACHE:
                self._entities.clear()
            entities = self._entities[principal] = cedarpy.Entities.from_json_str(
                json.dumps([*principal_entities(principal), *self._actions]))
        return entities

    def decide_tool(self, principal: Principal, server: str, tool: str,
                    arguments: Mapping[str, Any] | None, context: RequestContext
                    ) -> PolicyDecision:
        """A ``call_tool`` decision on ``server.tool`` with these arguments; ``None``: whether
        the tool is listed at all (``policy.tools``)."""
        cedar_context = context.as_cedar(principal)
        cedar_context.update(server=server, tool=tool,
                             arguments={"__entity": uid("ToolArguments", ARGUMENTS_ID)})
        request = {
            "principal": principal_uid(principal),
            "action": uid("Action", "call_tool"),
            "resource": uid("Tool", f"{server}.{tool}"),
            "context": self._context(cedar_context),
        }
        # The caller's pre-parsed entities, with this call's tool and arguments added.
        entities = self._entities_of(principal).with_added_json_str(
            orjson.dumps(tool_entities(server, tool, arguments or {})).decode())
        policies = self._policies if arguments is not None else self._listing
        return self._decision(_authorize(request, policies, entities))

    def _decision(self, result: dict[str, Any]) -> PolicyDecision:
        diagnostics = result["diagnostics"]
        return PolicyDecision(
            allowed=result["decision"] == "Allow",
            policies=tuple(self._names.get(r, r) for r in diagnostics["reason"]),
            errors=tuple(_error_text(e, self._names) for e in diagnostics["errors"]),
        )


def _authorize(request: dict[str, Any], policies: cedarpy.PolicySet,
               entities: cedarpy.Entities) -> dict[str, Any]:
    """One Cedar decision, as Cedar's JSON answer. Straight to cedarpy's extension rather than
    through ``cedarpy.is_authorized``, whose conveniences (the standard library's JSON both
    ways, a copy of the request, a result object) cost 35-45 µs of a 70-110 µs decision; the
    extension's interface is the one ``is_authorized`` itself calls (cedarpy is pinned, and
    the policy tests go through here)."""
    sent = {**request, "context": orjson.dumps(request["context"]).decode()}
    answer: str = cedarpy._internal.is_authorized_batch(
        [sent], policies, entities._inner, None, False)[0]
    result: dict[str, Any] = orjson.loads(answer)
    return result


def context_read(node: Any) -> frozenset[str] | None:
    """The context attributes policies in Cedar's JSON form read (``context.a``,
    ``context["a"]``, ``context has a``); None if one uses the context as a whole."""
    names: set[str] = set()
    pending = [node]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            if item.get("Var") == "context":
                return None  # not under an attribute access: the whole record
            for op in (".", "has"):
                access = item.get(op)
                if isinstance(access, dict) and access.get("left") == {"Var": "context"}:
                    names.add(access["attr"])
                    item = {k: v for k, v in access.items() if k != "left"}
            pending.extend(item.values())
    return frozenset(names)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None


def _error_text(error: Any, names: dict[str, str]) -> str:
    text = str(error)
    for cedar_id, name in names.items():
        text = text.replace(f"`{cedar_id}`", f"`{name}`")
    return text[:300]
