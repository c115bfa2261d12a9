"""Embedding drift: what prompts mean, not only how they look. A sample of each group's prompts
is embedded (through the gateway's own router, by a configured embeddings model group) off the
request path; a reference set of vectors is compared with the latest window by a kernel
two-sample test: the maximum mean discrepancy (MMD, Gretton et al. 2012) with a Gaussian kernel
whose width is the median pairwise distance, its p-value from a permutation test. The test runs
in a worker thread (numpy releases the GIL); memory is the reference and window vectors, fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ironhold.core.exchange import Exchange, Operation
from ironhold.core.ids import new_request_id
from ironhold.core.pipeline import Handler
from ironhold.core.tasks import Background

__all__ = ["Embedder", "EmbeddingDrift", "MmdResult", "mmd_test", "router_embedder"]

log = logging.getLogger("ironhold.signals")

Embed = Callable[[list[str]], Awaitable[list[list[float]]]]
#: Texts sent to the embeddings model in one request at most.
_BATCH = 32
#: Sampled texts waiting to be embedded at most (the rest are dropped: a sample).
_QUEUE = 256


@dataclass(frozen=True, slots=True)
class MmdResult:
    mmd2: float
    p_value: float
    permutations: int
    bandwidth: float


def mmd_test(x: np.ndarray, y: np.ndarray, permutations: int,
             rng: np.random.Generator) -> MmdResult:
    """Unbiased MMD² between samples ``x`` (n by d) and ``y`` (m by d) with a Gaussian kernel, and
    the share of ``permutations`` random relabellings of the pooled sample whose MMD² is at
    least as large (the p-value, with the observed labelling counted once)."""
    pooled = np.vstack([x, y]).astype(np.float64)
    n = len(x)
    total = len(pooled)
    squares = np.sum(pooled * pooled, axis=1)
    distances = np.maximum(squares[:, None] + squares[None, :] - 2 * pooled @ pooled.T, 0.0)
    upper = distances[np.triu_indices(total, k=1)]
    bandwidth = float(np.median(upper[upper > 0])) if np.any(upper > 0) else 1.0
    kernel = np.exp(-distances / bandwidth)
    np.fill_diagonal(kernel, 0.0)

    def statistic(first: np.ndarray) -> float:
        a = first
        b = ~first
        kxx = kernel[np.ix_(a, a)].sum() / (n * (n - 1))
        kyy = kernel[np.ix_(b, b)].sum() / ((total - n) * (total - n - 1))
        kxy = kernel[np.ix_(a, b)].sum() / (n * (total - n))
        return float(kxx + kyy - 2 * kxy)

    labels = np.zeros(total, dtype=bool)
    labels[:n] = True
    observed = statistic(labels)
    exceed = 0
    for _ in range(permutations):
        exceed += statistic(rng.permutation(labels)) >= observed
    return MmdResult(observed, (exceed + 1) / (permutations + 1), permutations, bandwidth)


class EmbeddingDrift:
    """One group's reference vectors and latest window."""

    def __init__(self, reference: int, window: int):
        self._reference_size = reference
        self.reference: list[list[float]] = []
        self.window: deque[list[float]] = deque(maxlen=window)
        self.firing = False
        #: Window vectors added since the last test: no new test without new evidence.
        self.fresh = 0

    def add(self, vector: list[float]) -> None:
        if len(self.reference) < self._reference_size:
            self.reference.append(vector)
        else:
            self.window.append(vector)
            self.fresh += 1

    def ready(self) -> bool:
        return (len(self.reference) >= self._reference_size
                and len(self.window) == self.window.maxlen and self.fresh > 0)

    def reset(self) -> None:
        self.reference.clear()
        self.window.clear()
        self.firing = False
        self.fresh = 0


class Embedder:
    """Takes sampled prompts on the request path (a deque append) and embeds them in batches
    on its own task, one request at a time, handing each vector to ``sink``."""

    def __init__(self, embed: Embed, sink: Callable[[str, list[float]], None]):
        self._embed = embed
        self._sink = sink
        self._waiting: deque[tuple[str, str]] = deque(maxlen=_QUEUE)
        self._wake = asyncio.Event()
        self._worker = Background(self._run, "embed-prompts")
        self.embedded = 0
        self.failures = 0

    def offer(self, group: str, text: str) -> None:
        self._waiting.append((group, text))
        if len(self._waiting) >= _BATCH:
            self._wake.set()

    def start(self) -> None:
        self._worker.start()

    async def stop(self) -> None:
        await self._worker.stop()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                batch = [self._waiting.popleft()
                         for _ in range(min(_BATCH, len(self._waiting)))]
                try:
                    vectors = await self._embed([text for _, text in batch])
                except Exception as exc:  # the model group failed: a lost sample, logged
                    self.failures += 1
                    if self.failures in (1, 10, 100) or self.failures % 1000 == 0:
                        log.warning("embedding prompts for drift failed", extra={
                            "error": type(exc).__name__, "failures": self.failures})
                    break
                for (group, _), vector in zip(batch, vectors, strict=False):
                    self._sink(group, vector)
                self.embedded += len(vectors)


def router_embedder(handler: Handler, group: str) -> Embed:
    """Embeddings from the gateway's own router (no identity, limits or audit: the prompts
    were already admitted and recorded with their requests)."""

    async def embed(texts: list[str]) -> list[list[float]]:
        exchange = Exchange(request_id=new_request_id(), operation=Operation.EMBEDDING,
                            model=group, body={"model": group, "input": texts}, stream=False)
        reply = await handler(exchange)
        answer: Any = reply.answer
        if not reply.ok or not isinstance(answer, dict) or not isinstance(
                answer.get("data"), list):
            raise ValueError(f"the embeddings group {group!r} answered {reply.status}")
        rows = sorted(answer["data"], key=lambda row: row.get("index", 0))
        return [_pooled(row["embedding"]) for row in rows]

    return embed


def cosine(a: list[float], b: list[float]) -> float:
    """How alike two vectors point: 1 the same way, 0 unrelated (0 for a zero vector)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norm = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y) / norm if norm else 0.0


def _pooled(embedding: Any) -> list[float]:
    """A text's vector. A model without a pooling head (llama.cpp serving a causal model such
    as SmolLM2) answers one vector per token: they are averaged."""
    array = np.asarray(embedding, dtype=np.float64)
    if array.ndim == 2:
        array = array.mean(axis=0)
    if array.ndim != 1 or not array.size:
        raise ValueError("an embedding that is not a vector")
    return [float(v) for v in array]


def sample(ratio: float) -> bool:
    return ratio >= 1 or random.random() < ratio
