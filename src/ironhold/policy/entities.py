"""Ironhold's world as Cedar sees it: principals, actions, resources and context as Cedar JSON.

Principals: ``Ironhold::User`` (OIDC), ``Ironhold::ServiceKey`` (API keys), ``Ironhold::Agent``
(passports), each ``in`` its tenant and groups; an agent is also ``in`` the key or user it acts
for. Resources: ``Ironhold::Model``, ``Ironhold::Tool``, ``Ironhold::Gateway``. The schema is
``policy/schema.cedarschema``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from ironhold.core.principal import Principal

NAMESPACE = "Ironhold"
MODEL_ACTIONS = ("chat", "complete", "embed", "list_models")
ADMIN_ACTIONS = ("manage_keys", "manage_passports", "read_audit", "inject_faults", "observe",
                 "change_config")
ACTIONS = (*MODEL_ACTIONS, "call_tool", *ADMIN_ACTIONS)
#: Stands for "no budget left to count" in ``remaining_budget_cents`` when none applies.
UNLIMITED_CENTS = 2**53

ResourceType = Literal["Model", "Tool", "Gateway"]
_KIND_TYPES = {"key": "ServiceKey", "user": "User", "agent": "Agent"}


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What a policy may look at besides who, what and which."""

    operation: str = ""
    estimated_tokens: int = 0
    #: The least budget left (in cents) over every budget that applies; None: no budget.
    remaining_budget_cents: int | None = None
    #: Unix time of the request (seconds); 0 means now.
    now: float = 0.0
    client_ip: str = "0.0.0.0"
    stream: bool = False

    def as_cedar(self, principal: Principal) -> dict[str, Any]:
        now = self.now or time.time()
        clock = time.gmtime(now)
        return {
            "operation": self.operation,
            "estimated_tokens": self.estimated_tokens,
            "has_budget": self.remaining_budget_cents is not None,
            "remaining_budget_cents": (UNLIMITED_CENTS if self.remaining_budget_cents is None
                                       else self.remaining_budget_cents),
            "now": int(now),
            "hour": clock.tm_hour,
            "weekday": clock.tm_wday,
            "client_ip": {"__extn": {"fn": "ip", "arg": self.client_ip}},
            "stream": self.stream,
            "delegation_depth": max(0, len(principal.chain) - 1),
        }


def uid(kind: str, ident: str) -> dict[str, str]:
    return {"type": f"{NAMESPACE}::{kind}", "id": ident}


def principal_uid(principal: Principal) -> dict[str, str]:
    return uid(_KIND_TYPES[principal.kind], _local_id(principal.id))


def _local_id(principal_id: str) -> str:
    """``user:alice`` → ``alice``, ``agent:planner`` → ``planner``; key ids stay as they are."""
    prefix, sep, rest = principal_id.partition(":")
    return rest if sep and prefix in ("user", "agent") else principal_id


def _subject_uid(subject_id: str) -> dict[str, str]:
    if subject_id.startswith("user:"):
        return uid("User", subject_id.removeprefix("user:"))
    return uid("ServiceKey", subject_id)


def principal_entities(principal: Principal) -> list[dict[str, Any]]:
    """The principal and what it is ``in``: tenant, groups, and for agents, its subject."""
    parents = []
    if principal.tenant is not None:
        parents.append(uid("Tenant", principal.tenant))
    parents.extend(uid("Group", g) for g in principal.groups)
    attrs: dict[str, Any] = {"name": principal.name, "admin": principal.admin}
    if principal.tenant is not None:
        attrs["tenant"] = principal.tenant
    if principal.kind == "agent":
        parents.append(_subject_uid(principal.subject))
        attrs["subject"] = principal.subject
        attrs["depth"] = len(principal.chain) - 1
    return [{"uid": principal_uid(principal), "attrs": attrs, "parents": parents}]


def action_entities() -> list[dict[str, Any]]:
    """The action hierarchy (``model_use`` and ``admin`` groups), so policies can say
    ``action in Ironhold::Action::"admin"`` without the schema at decision time."""
    def action(name: str, group: str | None) -> dict[str, Any]:
        parents = [uid("Action", group)] if group else []
        return {"uid": uid("Action", name), "attrs": {}, "parents": parents}

    return [
        action("model_use", None),
        action("admin", None),
        *(action(a, "model_use") for a in MODEL_ACTIONS),
        action("call_tool", None),
        *(action(a, "admin") for a in ADMIN_ACTIONS),
    ]
