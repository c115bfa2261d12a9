"""The drift drill: a gateway in front of a simulated model, 10,000 steady requests (short
English questions: no drift may be signalled), then the prompts switch, and the drill counts
the requests until a ``drift`` signal comes (target: within 500). Two switches: to long source
code, and (after an admin resets the reference) to questions in Russian.

    python bench/drift_drill.py [--steady 10000] [--rate 200]

During the steady phase the signal list is read every second while requests flow at
``--rate``; after a switch, requests go in batches of 25 and the list is read after each
batch once the gateway has judged it (its detectors run every 2 s).
Results go to stdout and to bench/results/drift_drill.json.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from overhead import PY, free_port, machine, progress, save, serve_ironhold, stop, wait_http

SUBJECTS = ["my invoice", "the refund policy", "a password reset", "the delivery date",
            "the premium plan", "an API key", "two-factor login", "the data export",
            "my account email", "the mobile app", "a team invite", "the monthly report"]
ASKS = ["How do I change {}?", "What is {}?", "Can you explain {} briefly?",
        "Where can I find {}?", "Why did {} fail today?", "Who handles {} questions?",
        "Is there a limit on {}?", "When does {} take effect?"]
CODE = ["def {0}(items):\n    total = 0\n    for item in items:\n        total += item.price * "
        "item.count  # {1}\n    return {{'total': total, 'n': len(items)}}\n",
        "```js\nexport function {0}(xs) {{\n  return xs.filter((x) => x.ok).map((x) => x.{1});"
        "\n}}\n```\n",
        "class {0}:\n    def __init__(self, {1}):\n        self.{1} = {1}\n"
        "    def run(self):\n        return [x for x in self.{1} if x]\n"]
RUSSIAN = ["Как изменить {}?", "Что такое {}?", "Где найти {}?", "Почему не работает {}?",
           "Можно ли отменить {}?"]
RUSSIAN_SUBJECTS = ["мой счёт", "возврат денег", "пароль", "дату доставки", "тариф",
                    "ключ API", "приложение"]


def english(rng: random.Random) -> str:
    return rng.choice(ASKS).format(rng.choice(SUBJECTS))


def code(rng: random.Random) -> str:
    name = rng.choice(["total", "price", "load", "fetch", "build", "check"])
    body = rng.choice(CODE).format(name, rng.choice(["rows", "orders", "items", "lines"]))
    return "Review this code:\n" + body * rng.randint(2, 6)


def russian(rng: random.Random) -> str:
    return rng.choice(RUSSIAN).format(rng.choice(RUSSIAN_SUBJECTS))


class Drill:
    def __init__(self, chat: str, key: str, session: aiohttp.ClientSession):
        self.chat, self.key, self.session = chat, key, session
        self.base = chat.removesuffix("/v1/chat/completions")
        self.headers = {"Authorization": f"Bearer {key}"}
        self.sent = 0

    async def ask(self, prompt: str) -> None:
        body = {"model": "bench", "messages": [{"role": "user", "content": prompt}]}
        async with self.session.post(self.chat, json=body, headers=self.headers) as response:
            await response.read()
        self.sent += 1

    async def drifts(self) -> list[dict[str, Any]]:
        async with self.session.get(self.base + "/admin/signals",
                                    headers=self.headers) as response:
            signals: list[dict[str, Any]] = (await response.json())["signals"]
        return [s for s in signals if s["kind"] == "drift" and s["active"]]

    async def steady(self, n: int, rate: float, prompt: Callable[[], str]) -> list[Any]:
        """``n`` requests at ``rate``/s, reading the signals every second meanwhile."""
        raised: list[dict[str, Any]] = []
        done = asyncio.Event()

        async def watch() -> None:
            while not done.is_set():
                raised.extend(s for s in await self.drifts() if s not in raised)
                await asyncio.sleep(1.0)

        watcher = asyncio.create_task(watch())
        start = time.perf_counter()
        tasks = []
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.ask(prompt())))
        await asyncio.gather(*tasks)
        await asyncio.sleep(2.5)  # one more judgement of the last window
        done.set()
        await watcher
        return raised

    async def until_drift(self, prompt: Callable[[], str], limit: int = 2000) -> dict[str, Any]:
        """Batches of 25 of the new prompts until a drift signal is raised."""
        sent = 0
        while sent < limit:
            await asyncio.gather(*(self.ask(prompt()) for _ in range(25)))
            sent += 25
            await asyncio.sleep(2.2)  # the detectors judge every 2 s
            found = await self.drifts()
            if found:
                return {"requests": sent, "signal": found[0]}
        return {"requests": None, "signal": None}

    async def reset(self) -> None:
        async with self.session.post(self.base + "/admin/signals/drift/reset",
                                     json={"model": "bench"}, headers=self.headers) as response:
            assert response.status == 200, await response.text()


async def drill(chat: str, key: str, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(1)
    results: dict[str, Any] = {}
    connector = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(connector=connector) as session:
        d = Drill(chat, key, session)
        progress(f"{args.steady} steady requests at {args.rate:g}/s")
        results["steady_false_signals"] = await d.steady(args.steady, args.rate,
                                                         lambda: english(rng))
        progress(f"steady: {len(results['steady_false_signals'])} drift signals (want 0)")
        progress("switch: English questions -> source code")
        results["to_code"] = await d.until_drift(lambda: code(rng))
        progress(f"drift after {results['to_code']['requests']} requests")
        await d.reset()
        progress("reference reset; 1,300 English requests to rebuild it")
        results["after_reset_false_signals"] = await d.steady(1300, args.rate,
                                                              lambda: english(rng))
        progress("switch: English questions -> Russian questions")
        results["to_russian"] = await d.until_drift(lambda: russian(rng))
        progress(f"drift after {results['to_russian']['requests']} requests")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steady", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200.0)
    args = parser.parse_args()
    port = free_port()
    sim = subprocess.Popen([PY, "-m", "ironhold", "simulate", "--port", str(port)],
                           stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models")
        with tempfile.TemporaryDirectory(prefix="ironhold-drift-") as tmp:
            gateway, chat, key = serve_ironhold(Path(tmp), f"http://127.0.0.1:{port}/v1",
                                                key_args=("--admin",))
            try:
                results = {"machine": machine(), "steady": args.steady, "rate": args.rate,
                           **asyncio.run(drill(chat, key, args))}
            finally:
                stop(gateway)
    finally:
        stop(sim)
    for name in ("to_code", "to_russian"):
        found = results[name]
        detail = found["signal"]["detail"] if found["signal"] else {}
        print(f"{name}: drift after {found['requests']} requests; feature "
              f"{detail.get('feature')}, p = {detail.get('p_value')}")
    print(f"false drift signals: steady {len(results['steady_false_signals'])}, after reset "
          f"{len(results['after_reset_false_signals'])}")
    print(f"saved {save(results, 'drift_drill')}")


if __name__ == "__main__":
    main()
