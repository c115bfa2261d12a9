"""Chaos experiments: state a steady-state hypothesis, drive load, inject faults, check it held.

An experiment runs three phases against a running gateway: ``steady`` (no faults: is the
hypothesis true to begin with?), ``inject`` (the experiment's faults, sent with the
``x-ironhold-fault`` header on every request, so the key must be an admin key), and ``recover``
(faults off again: does the system come back?). Load is open-loop at ``load.rate`` requests a
second, capped at ``load.concurrency`` in flight (requests over the cap count as failures: a
gateway that stalls must not hide behind a slower load generator). During ``inject`` the run
stops early when the success rate falls below ``abort.success_percent_below``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field

from ironhold.config.durations import Seconds
from ironhold.config.schema import FaultConfig
from ironhold.core.codec import SseDecoder
from ironhold.core.errors import BadGatewayError
from ironhold.core.events import Done, Event, StreamError

Phase = Literal["steady", "inject", "recover"]
PHASES: tuple[Phase, ...] = ("steady", "inject", "recover")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Strict):
    base_url: str = "http://127.0.0.1:8080/v1"
    api_key: str
    model: str


class Load(_Strict):
    rate: float = Field(20.0, gt=0, le=100_000)
    concurrency: int = Field(64, ge=1, le=10_000)
    stream: bool = False
    max_tokens: int = Field(8, ge=1)
    prompt: str = "Say hello."
    timeout: Seconds = 30.0


class Phases(_Strict):
    steady: Seconds = 5.0
    inject: Seconds = 20.0
    recover: Seconds = 5.0


class Hypothesis(_Strict):
    #: Share of requests that must succeed (a 200 and, for streams, a clean end).
    success_percent: float = Field(99.9, ge=0, le=100)
    #: 99th percentile of time to first byte (streams: first chunk) and of the whole request.
    p99_ttft: Seconds | None = None
    p99_latency: Seconds | None = None


class Abort(_Strict):
    success_percent_below: float = Field(50.0, ge=0, le=100)
    min_requests: int = Field(50, ge=1)


class Experiment(_Strict):
    name: str
    description: str = ""
    target: Target
    load: Load = Field(default_factory=Load)
    phases: Phases = Field(default_factory=Phases)
    faults: list[FaultConfig] = Field(min_length=1)
    hypothesis: Hypothesis = Field(default_factory=Hypothesis)
    abort: Abort = Field(default_factory=Abort)


@dataclass
class Sample:
    ok: bool
    status: int
    latency: float
    ttft: float | None
    error: str | None = None


@dataclass
class PhaseResult:
    phase: Phase
    seconds: float = 0.0
    samples: list[Sample] = field(default_factory=list)

    def summary(self, hypothesis: Hypothesis) -> dict[str, Any]:
        n = len(self.samples)
        ok = sum(s.ok for s in self.samples)
        success = 100.0 * ok / n if n else 0.0
        ttfts = sorted(s.ttft for s in self.samples if s.ok and s.ttft is not None)
        latencies = sorted(s.latency for s in self.samples if s.ok)
        p99_ttft = _percentile(ttfts, 99)
        p99_latency = _percentile(latencies, 99)
        broken = []
        if n == 0:
            broken.append("no requests completed")
        if success < hypothesis.success_percent:
            broken.append(f"success {success:.2f}% < {hypothesis.success_percent}%")
        if hypothesis.p99_ttft is not None and p99_ttft is not None \
                and p99_ttft > hypothesis.p99_ttft:
            broken.append(f"p99 ttft {p99_ttft * 1000:.0f} ms > "
                          f"{hypothesis.p99_ttft * 1000:.0f} ms")
        if hypothesis.p99_latency is not None and p99_latency is not None \
                and p99_latency > hypothesis.p99_latency:
            broken.append(f"p99 latency {p99_latency * 1000:.0f} ms > "
                          f"{hypothesis.p99_latency * 1000:.0f} ms")
        statuses = Counter(str(s.status) if s.status else (s.error or "error")
                           for s in self.samples)
        return {
            "phase": self.phase, "seconds": round(self.seconds, 2), "requests": n,
            "succeeded": ok, "success_percent": round(success, 3),
            "rps": round(n / self.seconds, 1) if self.seconds else 0.0,
            "p50_ttft_ms": _ms(_percentile(ttfts, 50)), "p99_ttft_ms": _ms(p99_ttft),
            "p50_latency_ms": _ms(_percentile(latencies, 50)),
            "p99_latency_ms": _ms(p99_latency),
            "outcomes": dict(statuses.most_common()),
            "held": not broken, "broken": broken,
        }


def _percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, max(0, math.ceil(p / 100 * len(values)) - 1))]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


class Runner:
    def __init__(self, experiment: Experiment, progress: Any = None):
        self.experiment = experiment
        self._progress = progress or (lambda message: None)
        self.aborted: str | None = None

    async def run(self) -> dict[str, Any]:
        e = self.experiment
        headers = {"Authorization": f"Bearer {e.target.api_key}",
                   "Content-Type": "application/json"}
        fault_header = orjson.dumps(
            [f.model_dump(exclude_none=True) for f in e.faults]).decode()
        body = orjson.dumps({"model": e.target.model, "stream": e.load.stream,
                             "max_tokens": e.load.max_tokens,
                             "messages": [{"role": "user", "content": e.load.prompt}]})
        results = []
        connector = aiohttp.TCPConnector(limit=e.load.concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            for phase in PHASES:
                seconds = getattr(e.phases, phase)
                extra = {"x-ironhold-fault": fault_header} if phase == "inject" else {}
                self._progress(f"{phase}: {seconds:g} s at {e.load.rate:g} req/s"
                               + (f", injecting {len(e.faults)} fault(s)" if extra else ""))
                result = await self._phase(session, phase, seconds, {**headers, **extra}, body)
                results.append(result)
                summary = result.summary(e.hypothesis)
                self._progress(f"{phase}: {summary['requests']} requests, "
                               f"{summary['success_percent']}% ok, p99 latency "
                               f"{summary['p99_latency_ms']} ms")
                if self.aborted:
                    break
        phases = [r.summary(e.hypothesis) for r in results]
        held = not self.aborted and len(phases) == len(PHASES) and all(p["held"] for p in phases)
        return {"experiment": e.name, "description": e.description, "target": e.target.base_url,
                "model": e.target.model, "faults": [f.model_dump(exclude_none=True)
                                                    for f in e.faults],
                "hypothesis": e.hypothesis.model_dump(), "aborted": self.aborted,
                "held": held, "phases": phases}

    async def _phase(self, session: aiohttp.ClientSession, phase: Phase, seconds: float,
                     headers: dict[str, str], body: bytes) -> PhaseResult:
        e = self.experiment
        result = PhaseResult(phase)
        in_flight: set[asyncio.Task[None]] = set()
        url = e.target.base_url.rstrip("/") + "/chat/completions"
        interval = 1.0 / e.load.rate
        started = time.monotonic()
        next_at = started
        next_check = started + 1.0
        while (now := time.monotonic()) - started < seconds:
            if now < next_at:
                await asyncio.sleep(next_at - now)
                continue
            next_at += interval
            if len(in_flight) >= e.load.concurrency:
                result.samples.append(Sample(False, 0, 0.0, None, "over_concurrency"))
            else:
                task = asyncio.ensure_future(self._one(session, url, headers, body, result))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            if phase == "inject" and now >= next_check:
                next_check = now + 1.0
                if self._should_abort(result):
                    break
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)
        result.seconds = time.monotonic() - started
        return result

    def _should_abort(self, result: PhaseResult) -> bool:
        rule = self.experiment.abort
        n = len(result.samples)
        if n < rule.min_requests:
            return False
        success = 100.0 * sum(s.ok for s in result.samples) / n
        if success < rule.success_percent_below:
            self.aborted = (f"success fell to {success:.1f}% "
                            f"(< {rule.success_percent_below}%) after {n} requests")
            self._progress(f"stopping early: {self.aborted}")
            return True
        return False

    async def _one(self, session: aiohttp.ClientSession, url: str, headers: dict[str, str],
                   body: bytes, result: PhaseResult) -> None:
        started = time.monotonic()
        ttft = None
        try:
            async with session.post(url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(
                    total=self.experiment.load.timeout)) as response:
                if not self.experiment.load.stream or response.status != 200:
                    await response.read()
                    ttft = time.monotonic() - started
                    result.samples.append(Sample(response.status == 200, response.status,
                                                 time.monotonic() - started, ttft))
                    return
                decoder = SseDecoder()
                last: Event | None = None
                async for chunk in response.content.iter_any():
                    if ttft is None:
                        ttft = time.monotonic() - started
                    events = decoder.feed(chunk)
                    last = events[-1] if events else last
                    if isinstance(last, StreamError):
                        break
                clean = isinstance(last, Done)
                result.samples.append(Sample(clean, 200, time.monotonic() - started, ttft,
                                             None if clean else "stream_error"))
        except (TimeoutError, aiohttp.ClientError, OSError, BadGatewayError) as exc:
            result.samples.append(Sample(False, 0, time.monotonic() - started, ttft,
                                         type(exc).__name__))
