"""Rollouts: every model group's candidate, stepped up while its gates hold.

A group with ``rollout`` in its config has a ``Split`` the router applies. Once a second the
controller judges each progressing rollout (``routing.rollout.judge``): a failed gate rolls
the candidate back to 0% at once (or pauses it) and raises a signal; a step whose hold is over
with every gate passed moves to the next; the last one passed promotes the candidate to 100%.
Operators can ``start`` (or resume), ``pause``, ``promote`` and ``abort`` through the admin API.

State lives in the SQL store, so a restart goes on where it was. With several replicas, the
one holding the lease decides and saves; every replica loads the state each second and applies
it. A saved state has a revision: a decision made over an older one (an operator's command
landed meanwhile) is dropped. Each step and decision is audited and logged.

    progressing --gate failed--> rolled_back (or paused, with on_failure: pause)
    progressing --all steps passed--> promoted
    progressing <--start-- paused / rolled_back / promoted (start: from the first step)
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ironhold.config.changes import RolloutConfig
from ironhold.config.schema import Config, DeploymentConfig
from ironhold.core.errors import InvalidRequestError, ModelNotFoundError
from ironhold.core.exchange import Principal
from ironhold.core.tasks import Background
from ironhold.routing.rollout import Split, Verdict, judge
from ironhold.routing.rollout_repository import RolloutRepository, RolloutState, State

__all__ = ["ACTIONS", "Decision", "RolloutPlan", "Rollouts"]

log = logging.getLogger("ironhold.rollouts")

ACTIONS = ("start", "pause", "promote", "abort")
#: Seconds between judgements; the lease lasts a few of them.
_TICK = 1.0
_LEASE = "rollouts"
_LEASE_TTL = 5.0


@dataclass(frozen=True, slots=True)
class Decision:
    """A rollout's state changed: what to audit, log and signal."""

    state: RolloutState
    #: ``step``, ``promoted``, ``rolled_back``, ``paused``, ``started``, ``aborted``...
    action: str
    principal: Principal | None = None
    evidence: dict[str, object] | None = None


#: Told of every decision (audit, signals).
OnDecision = Callable[[Decision], Awaitable[None]]


@dataclass(slots=True)
class _Rollout:
    config: RolloutConfig
    rollout_id: str
    split: Split
    state: RolloutState | None = None


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    config: Config
    rollouts: dict[str, _Rollout]

    def split(self, model: str) -> Split | None:
        rollout = self.rollouts.get(model)
        return None if rollout is None else rollout.split


class Rollouts:
    def __init__(self, repository: RolloutRepository, on_decision: OnDecision | None = None,
                 clock: Callable[[], float] = time.time, holder: str | None = None,
                 tick: float = _TICK):
        self._repository = repository
        #: Told of every decision (set again by each gateway built: its audit log, its board).
        self.on_decision = on_decision
        self._clock = clock
        self._holder = holder or uuid.uuid4().hex
        self._tick = tick
        self._rollouts: dict[str, _Rollout] = {}
        self._dropped: set[str] = set()
        self._task = Background(self._run, "rollouts")
        self._lock = asyncio.Lock()
        #: Whether this replica held the lease at the last judgement.
        self.leader = False

    # -- config ------------------------------------------------------------------------------

    def configure(self, config: Config) -> None:
        self.adopt(self.plan(config))

    def plan(self, config: Config) -> RolloutPlan:
        """The rollouts of a (re)loaded config, to ``adopt`` once it serves: one whose
        candidate is unchanged keeps its split and state; a new one starts at 0% until its
        state is loaded."""
        wanted: dict[str, _Rollout] = {}
        for group in config.models:
            if group.rollout is None:
                continue
            candidate = next(d for i, d in enumerate(group.deployments)
                             if (d.name or f"{group.name}-{i}") == group.rollout.candidate)
            rollout_id = _rollout_id(candidate)
            current = self._rollouts.get(group.name)
            if current is None or current.rollout_id != rollout_id:
                current = _Rollout(group.rollout, rollout_id, Split(group.rollout.candidate))
            wanted[group.name] = current
        return RolloutPlan(config, wanted)

    def adopt(self, plan: RolloutPlan) -> None:
        # A rollout taken out of the config is forgotten: put back, it starts afresh.
        self._dropped |= set(self._rollouts) - set(plan.rollouts)
        for group in plan.config.models:
            rollout = plan.rollouts.get(group.name)
            if rollout is not None and group.rollout is not None:
                rollout.config = group.rollout
        self._rollouts = plan.rollouts

    def answered(self, model: str | None, deployment: str | None, refused: bool) -> None:
        """A request of ``model`` was answered by ``deployment`` (refusing, or not)."""
        rollout = self._rollouts.get(model or "")
        if rollout is not None and deployment is not None:
            rollout.split.answered(deployment, refused)

    def split(self, model: str) -> Split | None:
        rollout = self._rollouts.get(model)
        return None if rollout is None else rollout.split

    # -- running ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Judge now and then every tick, in a task of its own (the first judgement may
        record a start in the audit log, which the gateway starts after this)."""
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()

    async def _run(self) -> None:
        while True:
            try:
                await self.step()
            except Exception:  # a database hiccup: the next tick tries again
                log.exception("judging rollouts failed")
            await asyncio.sleep(self._tick)

    async def step(self) -> None:
        """Load every rollout's state; if this replica holds the lease, judge and decide."""
        if self._dropped:
            dropped, self._dropped = self._dropped, set()
            await asyncio.to_thread(self._repository.forget, dropped)
        if not self._rollouts:
            return  # nothing to judge: no lease taken, no database touched
        async with self._lock:
            now = self._clock()
            self.leader = await asyncio.to_thread(self._repository.hold_lease, _LEASE,
                                                  self._holder, now, _LEASE_TTL)
            for model, rollout in list(self._rollouts.items()):
                stored = await asyncio.to_thread(self._repository.load, model)
                if stored is None or stored.rollout_id != rollout.rollout_id:
                    if not self.leader:
                        continue  # the leader starts it
                    first = RolloutState(model, rollout.rollout_id, rollout.config.candidate,
                                         "progressing", 0, rollout.config.steps[0], now,
                                         "started by the config", stored.revision + 1
                                         if stored is not None else 0, now)
                    if await self._save(first):
                        await self._decided(Decision(first, "started"))
                    stored = await asyncio.to_thread(self._repository.load, model)
                    if stored is None:
                        continue
                self._apply(rollout, stored)
                if self.leader and stored.state == "progressing":
                    await self._judge(rollout, stored, now)

    def _apply(self, rollout: _Rollout, state: RolloutState) -> None:
        previous = rollout.state
        rollout.state = state
        if previous is None or (previous.step, previous.state, previous.rollout_id,
                                previous.step_started) != (state.step, state.state,
                                                           state.rollout_id,
                                                           state.step_started):
            rollout.split.new_window(state.percent, f"{state.rollout_id}:{state.step}:"
                                                    f"{state.step_started}")
        else:
            rollout.split.percent = state.percent

    async def _judge(self, rollout: _Rollout, state: RolloutState, now: float) -> None:
        config = rollout.config
        hold_over = now - state.step_started >= config.hold
        verdict = judge(rollout.split, config.gates, hold_over)
        if verdict.outcome == "fail":
            await self._failed(rollout, state, verdict, now)
        elif verdict.outcome == "pass":
            if state.step + 1 < len(config.steps):
                step = state.step + 1
                moved = state.moved(now, step=step, percent=config.steps[step],
                                    step_started=now,
                                    reason=f"step {state.step + 1} passed its gates")
                await self._commit(rollout, moved, "step", evidence=verdict.evidence)
            else:
                moved = state.moved(now, state="promoted", percent=100.0,
                                    reason="every step passed its gates")
                await self._commit(rollout, moved, "promoted", evidence=verdict.evidence)

    async def _failed(self, rollout: _Rollout, state: RolloutState, verdict: Verdict,
                      now: float) -> None:
        if rollout.config.on_failure == "pause":
            moved = state.moved(now, state="paused", reason=f"gate failed: {verdict.reason}")
            await self._commit(rollout, moved, "paused", evidence=verdict.evidence)
            return
        moved = state.moved(now, state="rolled_back", percent=0.0,
                            reason=f"gate failed: {verdict.reason}")
        await self._commit(rollout, moved, "rolled_back", evidence=verdict.evidence)

    async def _commit(self, rollout: _Rollout, state: RolloutState, action: str,
                      principal: Principal | None = None,
                      evidence: dict[str, object] | None = None) -> bool:
        if not await self._save(state):
            return False  # a newer change (an operator's) won: it stands
        self._apply(rollout, state)
        await self._decided(Decision(state, action, principal, evidence))
        return True

    async def _save(self, state: RolloutState) -> bool:
        return await asyncio.to_thread(self._repository.save, state)

    async def _decided(self, decision: Decision) -> None:
        state = decision.state
        log.info("rollout_" + decision.action, extra={
            "model": state.model, "candidate": state.candidate, "percent": state.percent,
            "step": state.step, "reason": state.reason})
        if self.on_decision is None:
            return
        try:
            await self.on_decision(decision)
        except Exception:  # recorded or not, the decision stands
            log.exception("recording a rollout decision failed")

    # -- operators ----------------------------------------------------------------------------

    async def command(self, model: str, action: str, principal: Principal | None) -> RolloutState:
        """``start`` (resume a paused rollout; restart one that ended), ``pause``,
        ``promote`` (to 100% now) or ``abort`` (roll back now)."""
        rollout = self._rollouts.get(model)
        if rollout is None:
            raise ModelNotFoundError(f"The model '{model}' has no rollout in the config.",
                                     param="model", code="rollout_not_found")
        if action not in ACTIONS:
            raise InvalidRequestError(f"Unknown rollout action '{action}' (one of "
                                      f"{', '.join(ACTIONS)}).", code="invalid_action")
        async with self._lock:
            now = self._clock()
            state = await asyncio.to_thread(self._repository.load, model)
            if state is None or state.rollout_id != rollout.rollout_id:
                raise InvalidRequestError(f"The rollout of '{model}' has not started yet; "
                                          "try again in a second.", code="rollout_not_ready")
            who = principal.describe().get("id") if principal is not None else None
            moved = _commanded(state, action, rollout.config, now, f"{action} by {who}")
            if moved is None:
                raise InvalidRequestError(
                    f"The rollout of '{model}' is {state.state}: it cannot {action}.",
                    code="invalid_state")
            if not await self._commit(rollout, moved, _PAST[action], principal):
                raise InvalidRequestError("The rollout changed meanwhile; look again.",
                                          code="conflict")
            return moved

    def shares(self) -> list[tuple[str, str, str, float]]:
        """Each rollout's ``(model, candidate, state, percent)``, for the metrics."""
        return [(model, r.config.candidate, r.state.state, r.state.percent)
                for model, r in self._rollouts.items() if r.state is not None]

    def listing(self) -> list[dict[str, Any]]:
        out = []
        for model, rollout in self._rollouts.items():
            state = rollout.state
            entry: dict[str, Any] = {
                "model": model, "candidate": rollout.config.candidate,
                "state": state.state if state else "progressing",
                "percent": state.percent if state else 0.0,
                "reason": state.reason if state else "starting (its state is being loaded)",
                "step": state.step if state else 0, "steps": rollout.config.steps,
                "step_started": state.step_started if state else None,
                "hold_seconds": rollout.config.hold,
                "window": {side: stats.as_json()
                           for side, stats in rollout.split.stats.items()},
            }
            out.append(entry)
        return out


_PAST = {"start": "started", "pause": "paused", "promote": "promoted", "abort": "rolled_back"}


def _commanded(state: RolloutState, action: str, config: RolloutConfig, now: float,
               reason: str) -> RolloutState | None:
    current: State = state.state
    if action == "start":
        if current == "paused":
            return state.moved(now, state="progressing", step_started=now, reason=reason)
        if current in ("rolled_back", "promoted"):
            return state.moved(now, state="progressing", step=0, percent=config.steps[0],
                               step_started=now, reason=reason)
        return None
    if action == "pause":
        return state.moved(now, state="paused", reason=reason) \
            if current == "progressing" else None
    if action == "promote":
        return state.moved(now, state="promoted", percent=100.0, reason=reason) \
            if current != "promoted" else None
    return state.moved(now, state="rolled_back", percent=0.0, reason=reason) \
        if current != "rolled_back" else None


def _rollout_id(candidate: DeploymentConfig) -> str:
    """Which rollout this is: the candidate, by what it is (not its weight). Changing the
    steps, hold or gates changes the running rollout; a new candidate starts a new one."""
    what = candidate.model_dump(mode="json", exclude={"weight", "max_concurrent", "api_key"})
    return hashlib.sha256(orjson.dumps(what, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
