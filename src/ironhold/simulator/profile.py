"""Simulator profiles: latency distributions and faults, from YAML.

```yaml
ttft: {distribution: lognormal, median_ms: 40, sigma: 0.5}
token_latency: {distribution: fixed, ms: 5}
completion_tokens: 16
context_window: 4096                     # longer prompts: 400 context_length_exceeded
slow: {rate: 0.02, factor: 50}           # heavy tail: 2% of requests 50x slower
faults:
  - {kind: status, status: 503, rate: 0.01}
  - {kind: status, status: 429, rate: 0.01, retry_after: 1}
  - {kind: hang, rate: 0.001}            # accept, never answer
  - {kind: cut, rate: 0.01, after_chunks: 3}   # end a stream mid-way
```
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ironhold.core.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Latency(_Strict):
    distribution: Literal["fixed", "uniform", "normal", "lognormal", "exponential"] = "fixed"
    ms: float = Field(0.0, ge=0)  # fixed
    min_ms: float = Field(0.0, ge=0)  # uniform
    max_ms: float = Field(0.0, ge=0)
    mean_ms: float = Field(0.0, ge=0)  # normal, exponential
    stddev_ms: float = Field(0.0, ge=0)
    median_ms: float = Field(0.0, ge=0)  # lognormal
    sigma: float = Field(0.5, ge=0)

    def sample(self, rng: random.Random) -> float:
        """One draw, in seconds."""
        if self.distribution == "fixed":
            ms = self.ms
        elif self.distribution == "uniform":
            ms = rng.uniform(self.min_ms, max(self.min_ms, self.max_ms))
        elif self.distribution == "normal":
            ms = rng.gauss(self.mean_ms, self.stddev_ms)
        elif self.distribution == "exponential":
            ms = rng.expovariate(1 / self.mean_ms) if self.mean_ms > 0 else 0.0
        else:
            ms = self.median_ms * math.exp(rng.gauss(0, self.sigma))
        return max(ms, 0.0) / 1000.0


class Slow(_Strict):
    rate: float = Field(0.0, ge=0, le=1)
    factor: float = Field(10.0, ge=1)


class Fault(_Strict):
    kind: Literal["status", "hang", "cut", "reset"]
    rate: float = Field(ge=0, le=1)
    status: int = Field(500, ge=400, le=599)
    retry_after: float | None = None
    after_chunks: int = Field(2, ge=0)


class SimulatorProfile(_Strict):
    ttft: Latency = Field(default_factory=Latency)
    token_latency: Latency = Field(default_factory=Latency)
    completion_tokens: int = Field(8, ge=1, le=100_000)
    embedding_dimensions: int = Field(16, ge=1, le=8192)
    #: Prompts longer than this many (whitespace-separated) tokens get the 400
    #: ``context_length_exceeded`` that OpenAI and vLLM send.
    context_window: int | None = Field(None, ge=1)
    slow: Slow = Field(default_factory=Slow)
    faults: list[Fault] = Field(default_factory=list)
    seed: int | None = None
    #: What the answer says: filler words (``lorem``), the prompt's text repeated back
    #: (``echo``: every message, the system prompt included, as a leaking model would), or only
    #: the last message (``echo_last``). Echoes are cut at ``completion_tokens`` words.
    reply: Literal["lorem", "echo", "echo_last"] = "lorem"
    #: Streams end with a usage event when asked (``stream_options.include_usage``), as OpenAI
    #: and vLLM do, or ``never``, as llama-cpp-python's server does.
    stream_usage: Literal["when_asked", "never"] = "when_asked"
    #: Each streamed event is sent in two writes a moment apart, so it reaches the client in
    #: two reads (as events split across TCP segments by a proxy or a busy server do).
    split_events: bool = False


def load_profile(path: str | Path) -> SimulatorProfile:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the profile: {exc}") from exc
    try:
        return SimulatorProfile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from exc
