"""Policy test cases: a principal, an action, a resource and a context, and the decision the
policies must reach. ``ironhold policy test CASES.yaml`` runs them; any mismatch fails.

```yaml
cases:
  - name: acme's service may chat
    principal: {kind: key, id: key_svc, tenant: acme}
    action: chat
    resource: {model: chat}
    context: {estimated_tokens: 1200, client_ip: 10.1.2.3}
    expect: allow
  - name: a sub-agent may not manage keys
    principal: {kind: agent, id: agent:coder, chain: [key_svc, agent:planner, agent:coder],
                admin: true}
    action: manage_keys
    expect: deny
    policies: [agents-no-admin]     # optional: the deciding policy ids
```
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ironhold.core.principal import Principal, Scopes
from ironhold.policy.engine import PolicyEngine
from ironhold.policy.entities import ACTIONS, RequestContext, ResourceType


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CasePrincipal(_Strict):
    kind: Literal["key", "user", "agent"] = "key"
    id: str
    name: str | None = None
    tenant: str | None = None
    groups: list[str] = Field(default_factory=list)
    admin: bool = False
    #: For agents: the subject first, then each agent, this one last.
    chain: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _agent_chain(self) -> CasePrincipal:
        if self.kind == "agent" and (len(self.chain) < 2 or self.chain[-1] != self.id):
            raise ValueError("an agent needs a chain: its subject first and itself last")
        return self

    def build(self) -> Principal:
        return Principal(id=self.id, kind=self.kind, name=self.name or self.id,
                         scopes=Scopes(admin=self.admin), tenant=self.tenant,
                         groups=tuple(self.groups), chain=tuple(self.chain))


class CaseResource(_Strict):
    model: str | None = None
    tool: str | None = None

    @model_validator(mode="after")
    def _at_most_one(self) -> CaseResource:
        if self.model is not None and self.tool is not None:
            raise ValueError("a resource is a model or a tool, not both")
        return self


class CaseContext(_Strict):
    estimated_tokens: int = Field(0, ge=0)
    remaining_budget_cents: int | None = None
    #: ISO 8601 time of the request (default: now).
    time: dt.datetime | None = None
    client_ip: str = "127.0.0.1"
    stream: bool = False


class PolicyCase(_Strict):
    name: str
    principal: CasePrincipal
    action: str
    resource: CaseResource = Field(default_factory=CaseResource)
    context: CaseContext = Field(default_factory=CaseContext)
    expect: Literal["allow", "deny"]
    policies: list[str] | None = None

    @model_validator(mode="after")
    def _known_action(self) -> PolicyCase:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; one of {', '.join(ACTIONS)}")
        return self

    def target(self) -> tuple[ResourceType, str]:
        if self.resource.tool is not None:
            return "Tool", self.resource.tool
        if self.resource.model is not None:
            return "Model", self.resource.model
        return "Gateway", "ironhold"


class PolicyCases(_Strict):
    cases: list[PolicyCase] = Field(min_length=1)


@dataclass(frozen=True)
class CaseResult:
    case: PolicyCase
    allowed: bool
    policies: tuple[str, ...]
    errors: tuple[str, ...]

    @property
    def passed(self) -> bool:
        if ("allow" if self.allowed else "deny") != self.case.expect:
            return False
        return self.case.policies is None or set(self.case.policies) == set(self.policies)


def run_cases(engine: PolicyEngine, cases: PolicyCases) -> list[CaseResult]:
    results = []
    for case in cases.cases:
        c = case.context
        context = RequestContext(
            operation=case.action,
            estimated_tokens=c.estimated_tokens,
            remaining_budget_cents=c.remaining_budget_cents,
            now=c.time.timestamp() if c.time is not None else 0.0,
            client_ip=c.client_ip,
            stream=c.stream,
        )
        kind, ident = case.target()
        decision = engine.decide(case.principal.build(), case.action, kind, ident, context)
        results.append(CaseResult(case, decision.allowed, decision.policies, decision.errors))
    return results
