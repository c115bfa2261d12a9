"""The audit log: durable appends per second through the group-commit writer (SQLite with
synchronous=FULL, and PostgreSQL), the latency of one lone append, and the time to verify a
log of 1,000,000 records offline.

    taskset -c 0 python bench/audit.py [--appenders 64] [--seconds 10] [--records 1000000]
                                       [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

Records are realistic: the record a chat request with a passport chain, policy and limit
decisions makes (about 900 bytes of canonical JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import uvloop
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ironhold.audit.log import AuditLog
from ironhold.audit.record import encode_record
from ironhold.audit.store import AuditStore
from ironhold.audit.verify import verify_log
from ironhold.store.sql import open_durable_engine, open_sql_store


@dataclass(frozen=True)
class Sample:
    """A realistic record's fields, as the log takes them (an ``AuditRecord``)."""

    request_id: str
    data: dict[str, Any]

    def fields(self) -> dict[str, Any]:
        return self.data


def sample_record(i: int) -> Sample:
    fields = sample_fields(i)
    return Sample(fields["request_id"], fields)


def sample_fields(i: int) -> dict[str, Any]:
    return {
        "v": 1, "time": 1795400000.0 + i / 1000, "request_id": uuid.uuid4().hex,
        "principal": {"id": "agent:planner", "kind": "agent", "name": "planner",
                      "tenant": "acme", "chain": ["key_9f2c1e0d4b7a6e53", "agent:planner"],
                      "passport": "pp_" + uuid.uuid4().hex[:24],
                      "scopes": ["models:chat", "tools:search"]},
        "client_ip": "10.1.2.3", "action": "chat", "model": "chat", "group": "chat",
        "deployment": "chat-0", "model_digest": "sha256:" + "ab" * 32, "stream": False,
        "policy": {"allowed": True, "policies": ["tenant-models"], "errors": []},
        "limits": {"allowed": True, "counters": ["key:key_9f2c1e0d4b7a6e53", "pp:x",
                                                 "tenant:acme"],
                   "refused_by": None, "reserved_tokens": 612, "reserved_cost_micros": 1100},
        "usage": {"prompt_tokens": 356, "completion_tokens": 128}, "cost_micros": 612,
        "status": 200, "outcome": "ok", "attempts": 1, "latency_ms": 231.402,
        "request_sha256": "cd" * 32, "response_sha256": "ef" * 32,
    }


def open_store(url: str, base: Path) -> AuditStore:
    sql = open_sql_store(url, base)
    store = AuditStore(open_durable_engine(sql))
    sql.close()
    return store


async def appends(store: AuditStore, appenders: int, seconds: float) -> dict[str, float]:
    log = AuditLog(store, Ed25519PrivateKey.generate(), "bench", 3600, max_batch=512)
    await log.start()
    # One lone append at a time: the latency a request pays when the gateway is idle.
    lone = []
    for i in range(200):
        t = time.perf_counter()
        await log.append(sample_record(i))
        lone.append(time.perf_counter() - t)
    lone.sort()
    done = 0
    stop = time.perf_counter() + seconds
    batches_before = log.batches

    async def appender() -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < stop:
            await log.append(sample_record(i))
            i += 1
            done += 1

    t = time.perf_counter()
    await asyncio.gather(*(appender() for _ in range(appenders)))
    elapsed = time.perf_counter() - t
    batches = log.batches - batches_before
    await log.close()
    return {"lone_p50_ms": lone[100] * 1000, "lone_p99_ms": lone[197] * 1000,
            "appends_per_s": done / elapsed, "mean_batch": done / max(1, batches)}


def fill(store: AuditStore, records: int) -> float:
    t = time.perf_counter()
    batch = 5000
    for start in range(0, records, batch):
        store.append([sample_record(i) for i in range(start, min(records, start + batch))],
                     time.time())
        if start % 100_000 == 0:
            print(f"  filled {start:,}", flush=True)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--appenders", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    print(f"record size: {len(encode_record(sample_fields(0), 123456))} bytes")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        store = open_store(f"sqlite:///{base / 'audit.db'}", base)
        result = uvloop.run(appends(store, args.appenders, args.seconds))
        print("sqlite (synchronous=FULL):", {k: round(v, 2) for k, v in result.items()})
        store.engine.dispose()

        name = f"ironhold_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            url = args.postgres.rsplit("/", 1)[0] + "/" + name
            store = open_store(url, base)
            result = uvloop.run(appends(store, args.appenders, args.seconds))
            print("postgresql:", {k: round(v, 2) for k, v in result.items()})
            store.engine.dispose()
        finally:
            with psycopg.connect(args.postgres, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        big = open_store(f"sqlite:///{base / 'big.db'}", base)
        print(f"filling a log of {args.records:,} records ...", flush=True)
        filled = fill(big, args.records)
        size_mb = (base / "big.db").stat().st_size / 2**20
        print(f"filled in {filled:.1f} s ({args.records / filled:,.0f} records/s in batches "
              f"of 5000); database {size_mb:,.0f} MiB")
        key = Ed25519PrivateKey.generate()
        runs = []
        for _ in range(2):
            t = time.perf_counter()
            report = verify_log(big, key.public_key())
            runs.append(time.perf_counter() - t)
            assert report.ok and report.records == args.records
        print(f"verify {args.records:,} records: {statistics.mean(runs):.1f} s "
              f"(runs: {', '.join(f'{r:.1f}' for r in runs)}; "
              f"{args.records / min(runs):,.0f} records/s)")
        big.engine.dispose()


if __name__ == "__main__":
    main()
