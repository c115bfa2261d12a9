"""Trying a change on live traffic: a model group's ``shadow`` (copies of requests to a
deployment that answers no client) and its ``rollout`` (a candidate deployment's share of
traffic stepped up while its gates hold, rolled back at once when one fails)."""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ironhold.config.durations import Seconds

__all__ = ["GatesConfig", "RolloutConfig", "ShadowConfig"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ShadowConfig(_Strict):
    #: One of the group's deployments: it takes no client traffic, only the copies.
    deployment: str = Field(min_length=1)
    #: Share of the group's requests copied to it.
    percent: float = Field(gt=0, le=100)
    #: Copies in flight at most; past it a copy is skipped (counted), never queued: the
    #: shadow cannot build up load or memory when it is slow.
    max_in_flight: int = Field(32, ge=1, le=4096)


class GatesConfig(_Strict):
    """What the candidate must hold to, against the stable side over the same window."""

    #: The candidate's attempts that failed (5xx, connection errors, timeouts), percent.
    error_rate_max_percent: float = Field(1.0, ge=0, le=100)
    #: The candidate's p95 time to first token over the stable side's.
    ttft_p95_max_ratio: float | None = Field(1.5, gt=0)
    #: The stable side's p95 counts as at least this: 3 ms against 1 ms is noise on a
    #: loopback, not a slow model.
    ttft_floor: Seconds = 0.05
    #: The candidate's share of refused answers over the stable side's (each at least 1%,
    #: so a stable side that never refuses does not make one refusal a failure).
    refusal_rate_max_ratio: float | None = Field(2.0, gt=0)
    #: Answers on each side before a step's gates decide; a step holds until it has them.
    min_samples: int = Field(50, ge=1, le=1_000_000)


class RolloutConfig(_Strict):
    #: The group's deployment being rolled out; the others are the stable side.
    candidate: str = Field(min_length=1)
    #: The candidate's share of the group's traffic at each step, percent, rising.
    steps: list[float] = Field(default_factory=lambda: [5.0, 25.0, 50.0, 100.0],
                               min_length=1, max_length=20)
    #: How long each step lasts before the next (once the gates have enough samples).
    hold: Seconds = 30.0
    gates: GatesConfig = Field(default_factory=GatesConfig)
    #: ``rollback``: a failed gate sends the candidate to 0% at once. ``pause``: it stays at
    #: its step, paused, for an operator to decide.
    on_failure: Literal["rollback", "pause"] = "rollback"

    @field_validator("steps")
    @classmethod
    def _rising(cls, steps: list[float]) -> list[float]:
        if any(not 0 < s <= 100 for s in steps):
            raise ValueError("each step is a percent of traffic, above 0 and at most 100")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError("steps must rise")
        return steps
