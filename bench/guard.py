"""The runtime guard's cost on the CPU: every input scanner on 1,000-token prompts, the output
scan of a whole answer, a short prompt and answer, and the time a guarded stream adds to each
chunk.

    taskset -c 0 python bench/guard.py [--prompts 300] [--rounds 5] [--seed 7]

Prompts are made from data/guard/train.jsonl: benign and attack lines, with personal data and
secrets spliced into some, concatenated to 1,000 tokens. A token here is a word or punctuation
mark as the classifier splits text (`guard.features.tokens`), which is more text than 1,000 BPE
tokens of an OpenAI-style tokenizer. Every scanner runs with action `flag`, so none stops early.
The stream benchmark feeds a real `GuardedStream` the events of 4-character pieces (an
answer of 1,000 tokens), decoded from memory before the clock starts; the time of each
chunk is the guard's own.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson

from ironhold.config.guard import GuardConfig
from ironhold.core.codec import SseDecoder
from ironhold.core.events import Event
from ironhold.core.exchange import Exchange, Operation
from ironhold.guard import InjectionModel
from ironhold.guard.content import Segment, input_segments, output_segments
from ironhold.guard.engine import Guard, RequestGuard
from ironhold.guard.features import tokens
from ironhold.guard.injection import InjectionScanner
from ironhold.guard.pii import PII_KINDS, scan_pii
from ironhold.guard.secrets import scan_secrets
from ironhold.guard.stream import GuardedStream

ROOT = Path(__file__).resolve().parent.parent
SPLICE = ["Contact jane.doe@example.com or +1 415 555 0100 for access.",
          "Card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00.",
          "The deploy key is AKIAIOSFODNN7EXAMPLE with token ghp_abcdefghijklmnopqrstuvwxyz012345.",
          "Server 10.20.30.40 answered; SSN 078-05-1120 was in the log."]


def prompts(n: int, length: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    lines = [orjson.loads(x)["text"] for x in
             (ROOT / "data/guard/train.jsonl").read_bytes().splitlines() if x.strip()]
    out = []
    for _ in range(n):
        parts: list[str] = []
        count = 0
        while count < length:
            text = rng.choice(lines) if rng.random() > 0.1 else rng.choice(SPLICE)
            parts.append(text)
            count += len(tokens(text))
        words = "\n\n".join(parts)
        # Trim to the length in tokens (approximately: by characters of the last part).
        while len(tokens(words)) > length:
            words = words[: int(len(words) * 0.98)]
        out.append(words)
    return out


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(name: str, samples_ns: list[int]) -> dict[str, float]:
    ms = [s / 1e6 for s in samples_ns]
    row = {"p50": pct(ms, 0.50), "p99": pct(ms, 0.99), "max": max(ms),
           "mean": statistics.fmean(ms)}
    print(f"{name:38} n={len(ms):6d}  p50 {row['p50']:7.3f}  p99 {row['p99']:7.3f}  "
          f"max {row['max']:7.3f}  mean {row['mean']:7.3f} ms", flush=True)
    return row


def bench_input(guard: Guard, texts: list[str], rounds: int) -> None:
    plan = guard.plan("chat")
    injection = next(s for s in plan.input_scanners if isinstance(s, InjectionScanner))
    total: list[int] = []
    parts: dict[str, list[int]] = {"injection": [], "pii": [], "secrets": []}
    for _ in range(rounds):
        for text in texts:
            seg = Segment("messages[0].content", text, "user", lambda _: None)
            t0 = time.perf_counter_ns()
            guard.scan_input(RequestGuard(plan), [seg])
            total.append(time.perf_counter_ns() - t0)
            t0 = time.perf_counter_ns()
            injection.scan(text, "m")
            t1 = time.perf_counter_ns()
            scan_pii(text, kinds=PII_KINDS, region=None, where="m")
            t2 = time.perf_counter_ns()
            scan_secrets(text, entropy=True, where="m")
            t3 = time.perf_counter_ns()
            parts["injection"].append(t1 - t0)
            parts["pii"].append(t2 - t1)
            parts["secrets"].append(t3 - t2)
    report("input, all scanners, 1,000 tokens", total)
    for name, samples in parts.items():
        report(f"  {name} alone", samples)


def bench_output(guard: Guard, texts: list[str], rounds: int) -> None:
    plan = guard.plan("chat")
    total: list[int] = []
    for _ in range(rounds):
        for text in texts:
            seg = Segment("choices[0].message.content", text, "assistant", lambda _: None)
            t0 = time.perf_counter_ns()
            guard.scan_output(RequestGuard(plan), [seg])
            total.append(time.perf_counter_ns() - t0)
    report("output, whole answer, 1,000 tokens", total)


SHORT = ["What is the capital of France?", "How do I reverse a list in Python?",
         "Summarise this meeting in three bullet points please.",
         "Write a haiku about the sea and the wind at night."]


def bench_short(guard: Guard, rounds: int) -> None:
    """A short chat request and answer, as most are: the whole guard path of each (finding
    the texts, every input scanner; every output scanner on a one-line answer)."""
    plan = guard.plan("chat")
    answer = {"choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": "The capital of France is Paris."}}]}
    into: list[int] = []
    out: list[int] = []
    for i in range(rounds * 500):
        body = {"model": "chat", "messages": [{"role": "user", "content": SHORT[i % 4]}]}
        t0 = time.perf_counter_ns()
        state = RequestGuard(plan)
        guard.scan_input(state, list(input_segments(Operation.CHAT, body)))
        t1 = time.perf_counter_ns()
        guard.scan_output(state, list(output_segments(answer)))
        out.append(time.perf_counter_ns() - t1)
        into.append(t1 - t0)
    report("input, short prompt (6-9 words)", into)
    report("output, one-line answer", out)


class Events:
    """A stream's events, decoded before the clock starts (decoding is the router's work)."""

    def __init__(self, chunks: list[bytes]):
        decoder = SseDecoder()
        self._chunks = iter([event for chunk in chunks for event in decoder.feed(chunk)])

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        try:
            return next(self._chunks)
        except StopIteration:
            raise StopAsyncIteration from None

    def ready(self) -> bool:
        return False  # one event a write, as a slow model server sends them

    async def aclose(self) -> None:
        pass


def sse(text: str) -> list[bytes]:
    out = []
    for i in range(0, len(text), 4):
        event = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                 "choices": [{"index": 0, "delta": {"content": text[i:i + 4]},
                              "finish_reason": None}]}
        out.append(b"data: " + orjson.dumps(event) + b"\n\n")
    out.append(b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
               b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')
    out.append(b"data: [DONE]\n\n")
    return out


async def bench_stream(guard: Guard, texts: list[str], rounds: int) -> None:
    plan = guard.plan("chat")
    per_chunk: list[int] = []
    scanned: list[int] = []
    for _ in range(rounds):
        for text in texts:
            chunks = sse(text)
            exchange = Exchange("r", Operation.CHAT, "chat", {}, True)
            stream = GuardedStream(Events(chunks), guard, RequestGuard(plan), exchange, True)
            n = 0
            while True:
                t0 = time.perf_counter_ns()
                try:
                    await stream.__anext__()
                except StopAsyncIteration:
                    break
                per_chunk.append(time.perf_counter_ns() - t0)
                n += 1
            scanned.append(n)
    report("stream, added time per chunk sent", per_chunk)
    print(f"  ({statistics.fmean(scanned):.0f} chunks sent per answer of "
          f"{statistics.fmean(len(sse(t)) for t in texts):.0f} received)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=300, help="distinct 1,000-token prompts")
    parser.add_argument("--rounds", type=int, default=5, help="passes over the prompts")
    parser.add_argument("--tokens", type=int, default=1000, help="prompt length in tokens")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    flag = {"action": "flag"}
    config = GuardConfig(input={"injection": flag, "pii": flag, "secrets": flag},
                         output={"pii": flag, "secrets": flag, "leaks": flag})
    guard = Guard(config, {}, InjectionModel.load())
    print(f"Python {sys.version.split()[0]}; building {args.prompts} prompts of "
          f"{args.tokens} tokens ...", flush=True)
    texts = prompts(args.prompts, args.tokens, args.seed)
    print(f"mean {statistics.fmean(len(t) for t in texts):.0f} characters per prompt", flush=True)
    bench_input(guard, texts[:20], 1)  # warm-up
    bench_input(guard, texts, args.rounds)
    bench_output(guard, texts, args.rounds)
    bench_short(guard, args.rounds)
    asyncio.run(bench_stream(guard, texts[: max(1, args.prompts // 5)], args.rounds))


if __name__ == "__main__":
    main()
