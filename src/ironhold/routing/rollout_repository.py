"""Where rollout state is kept, so it survives a restart and every replica sees the same, and
the lease that lets one replica decide while the others follow. One Protocol, and its SQL
implementation (SQLite on one node, PostgreSQL for several). Calls block (short statements):
the controller runs them in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Protocol

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ironhold.store.sql import SqlStore, leases, rollouts

__all__ = ["RolloutRepository", "RolloutState", "SqlRolloutRepository", "State"]

State = Literal["progressing", "paused", "promoted", "rolled_back"]


@dataclass(frozen=True, slots=True)
class RolloutState:
    model: str
    #: Which rollout: a digest of the candidate's deployment and the rollout's settings.
    rollout_id: str
    candidate: str
    state: State
    #: The step index and the candidate's share of traffic now (percent).
    step: int
    percent: float
    #: When the step began (Unix seconds).
    step_started: float
    reason: str
    revision: int = 0
    updated_at: float = 0.0

    def moved(self, now: float, **changes: object) -> RolloutState:
        """The next revision, with ``changes``."""
        return replace(self, **changes, revision=self.revision + 1,  # type: ignore[arg-type]
                       updated_at=now)

    def as_json(self) -> dict[str, object]:
        return {"model": self.model, "candidate": self.candidate, "state": self.state,
                "percent": self.percent, "step": self.step, "reason": self.reason,
                "step_started": self.step_started, "updated_at": self.updated_at}


class RolloutRepository(Protocol):
    def load(self, model: str) -> RolloutState | None: ...

    def save(self, state: RolloutState) -> bool:
        """Store ``state`` if the stored one is its previous revision (or there is none and
        it is the first); False if another change got there first."""
        ...

    def forget(self, models: set[str]) -> None:
        """Forget the rollouts of these groups (no longer rolling out)."""
        ...

    def hold_lease(self, name: str, holder: str, now: float, ttl: float) -> bool:
        """Take or renew the lease ``name`` for ``holder`` until ``now + ttl``; False if
        another holder has it and it has not expired."""
        ...


class SqlRolloutRepository:
    def __init__(self, store: SqlStore):
        self._engine = store.engine

    def load(self, model: str) -> RolloutState | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(rollouts).where(rollouts.c.model == model)).first()
        if row is None:
            return None
        m = row._mapping
        return RolloutState(m["model"], m["rollout_id"], m["candidate"], m["state"], m["step"],
                            m["percent"], m["step_started"], m["reason"], m["revision"],
                            m["updated_at"])

    def save(self, state: RolloutState) -> bool:
        values = {"rollout_id": state.rollout_id, "candidate": state.candidate,
                  "state": state.state, "step": state.step, "percent": state.percent,
                  "step_started": state.step_started, "reason": state.reason,
                  "revision": state.revision, "updated_at": state.updated_at}
        with self._engine.begin() as conn:
            if state.revision == 0:
                try:
                    conn.execute(insert(rollouts).values(model=state.model, **values))
                except IntegrityError:
                    return False
                return True
            done = conn.execute(update(rollouts).where(
                rollouts.c.model == state.model,
                rollouts.c.revision == state.revision - 1).values(**values))
            return done.rowcount == 1

    def forget(self, models: set[str]) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(rollouts).where(rollouts.c.model.in_(models)))

    def hold_lease(self, name: str, holder: str, now: float, ttl: float) -> bool:
        with self._engine.begin() as conn:
            renewed = conn.execute(update(leases).where(
                leases.c.name == name,
                (leases.c.holder == holder) | (leases.c.expires_at < now),
            ).values(holder=holder, expires_at=now + ttl))
            if renewed.rowcount == 1:
                return True
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(leases).values(name=name, holder=holder,
                                                   expires_at=now + ttl))
        except IntegrityError:
            return False  # another holder has it
        return True
