"""What the trust stack costs: Ironhold bare, with the guard, with the durable audit log, with
both (the default config), and the peers LiteLLM and Portkey, side by side in one run, on one
core, in front of the same upstream.

    python bench/trust_stack.py [--seconds 8] [--rounds 3] [--concurrency 8]
                                [--litellm PATH/TO/litellm] [--portkey PATH/TO/gateway]

Layout on a 2-core machine: every gateway is pinned to CPU 0; the fixed-response upstream and
the load generator (separate processes) to CPU 1. The five Ironhold configurations and
Portkey's gateway run at once (idle but for the one under load) and take turns, in an order
that rotates each round.

Three measurements per gateway and round:

* the most requests/s, closed loop with ``--concurrency`` (64) requests in flight: the gateway's
  core is saturated, so this is what a request costs in CPU (the target);
* requests/s with ``--few`` (8) in flight: latency-bound rather than CPU-bound, shown because
  a durable audit log's fsync weighs most there;
* a lone client (one request in flight): its p50, from which the added latency over the bare
  gateway is taken.

A round first gives every gateway its saturated run, back to back, then the other two
measurements. A shared VM's speed drifts by ±20% over a minute, more than the differences
measured here, so the targets are judged on ratios taken within each round (default against
bare, default against Portkey, from runs seconds apart), medians over rounds; the table shows
medians of the absolute figures. Portkey is warmed up for 15 s first (Node's JIT keeps speeding
it up for several seconds). LiteLLM (~25x slower, far from its target) runs alone at the end,
its figures medians of ``--rounds`` runs after the same warm-up.

The disk's fsync time is measured in the same run, in the directory the audit databases live
in: the lone-client target for the default config is one fsync plus 1 ms over bare.
Results go to stdout and to bench/results/trust_stack.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from overhead import (
    free_port,
    load,
    machine,
    pinned,
    progress,
    save,
    serve_ironhold,
    start_litellm,
    start_upstream,
    stop,
    wait_http,
)

HERE = Path(__file__).resolve().parent
PY = sys.executable

#: Name -> the config sections that differ; everything else is Ironhold's default.
CONFIGS: dict[str, str] = {
    "bare": "audit: {enabled: false}\nguard: {enabled: false}\n",
    "+guard": "audit: {enabled: false}\nguard: {enabled: true}\n",
    "+audit": "audit: {enabled: true}\nguard: {enabled: false}\n",
    "default": "",
    "default, fsync off": "audit: {fsync: false}\n",
}


def fsync_ms(directory: Path, samples: int = 200) -> dict[str, float]:
    """The disk's time to make a 4 KiB write durable (write + fsync), in ``directory``."""
    path = directory / "fsync-probe"
    times: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        block = os.urandom(4096)
        for _ in range(samples):
            start = time.perf_counter()
            os.write(fd, block)
            os.fsync(fd)
            times.append((time.perf_counter() - start) * 1000)
    finally:
        os.close(fd)
        path.unlink()
    times.sort()
    return {"p50_ms": round(times[len(times) // 2], 3),
            "p90_ms": round(times[int(len(times) * 0.9)], 3)}


def start_portkey(start_server: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = (workdir / "portkey.log").open("wb")
    # Absolute: it runs in the work folder (``make bench`` passes a path relative to here).
    process = subprocess.Popen([*pinned(0), "node", str(Path(start_server).resolve()),
                                f"--port={port}",
                                "--headless"], stdout=log, stderr=log, cwd=workdir,
                               env={**os.environ, "NODE_ENV": "production"})
    try:
        wait_http(f"http://127.0.0.1:{port}/", seconds=60)
    except TimeoutError as exc:
        stop(process)
        tail = (workdir / "portkey.log").read_text(errors="replace")[-300:].strip()
        raise RuntimeError(f"{exc} (exit code {process.returncode}; log: {tail!r})") from None
    return process, f"http://127.0.0.1:{port}/v1/chat/completions"


#: A peer's warm-up before it is measured: Node's JIT (Portkey) keeps getting faster for
#: several seconds, as Ironhold does in its warm-up and earlier rounds.
PEER_WARMUP_SECONDS = 15


def measure_peer(url: str, key: str, headers: dict[str, str],
                 args: argparse.Namespace) -> dict[str, Any]:
    """A peer measured alone: a warm-up, then the same three measurements as in the rotation,
    each the median of ``--rounds`` runs one after the other."""
    load(url, key, concurrency=args.concurrency, seconds=PEER_WARMUP_SECONDS, headers=headers)
    busy, some, alone = [], [], []
    for _ in range(args.rounds):
        busy.append(load(url, key, concurrency=args.concurrency, seconds=args.seconds,
                         headers=headers))
        some.append(load(url, key, concurrency=args.few, seconds=args.seconds / 2,
                         headers=headers))
        alone.append(load(url, key, concurrency=1, seconds=args.seconds / 2, headers=headers))
    return {"rps": statistics.median(r["rps"] for r in busy),
            "rps_runs": [r["rps"] for r in busy],
            "few_rps": statistics.median(r["rps"] for r in some),
            "lone_p50_ms": statistics.median(r["p50_ms"] for r in alone),
            "errors": sum(r["errors"] for r in busy + some + alone)}


def measure_litellm(args: argparse.Namespace, workdir: Path, upstream: str) -> dict[str, Any]:
    progress("starting LiteLLM's proxy (one worker, pinned to CPU 0)")
    process, url, key = start_litellm(args.litellm, workdir, upstream)
    try:
        progress("LiteLLM")
        return measure_peer(url, key, {}, args)
    finally:
        stop(process)


def measure_or_explain(name: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A peer's row; if it cannot be measured (it would not start, say), a row saying why, so
    the rest of the run is still reported."""
    try:
        return measure()
    except Exception as exc:
        progress(f"{name} could not be measured: {exc}")
        return {"failed": f"{type(exc).__name__}: {exc}"}


def litellm_version(binary: str) -> str:
    return subprocess.run([str(Path(binary).parent / "python"), "-c",
                           "import importlib.metadata as m; print(m.version('litellm'))"],
                          capture_output=True, text=True).stdout.strip() or "unknown"


def package_version(start_server: str) -> str:
    package = Path(start_server).resolve().parent.parent / "package.json"
    try:
        return str(json.loads(package.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "unknown"


#: A gateway in the rotation: its chat URL, the key to send, and headers (Portkey's routing).
Gateway = tuple[str, str, dict[str, str]]


def rotate(gateways: dict[str, Gateway], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """``--rounds`` rounds over every gateway: in each, the saturated runs back to back (so the
    ratios of a round compare runs seconds apart), then the runs with a few in flight and the
    lone client's. Returns each gateway's runs, round by round."""
    runs: dict[str, dict[str, Any]] = {
        name: {"rps_runs": [], "few_rps_runs": [], "lone_p50_runs": [], "errors": 0}
        for name in gateways}
    names = list(gateways)
    for round_ in range(args.rounds):
        shift = round_ % len(names)
        order = names[shift:] + names[:shift]
        if round_ % 2:
            order.reverse()
        progress(f"round {round_ + 1}/{args.rounds}: {', '.join(order)}")
        for field, concurrency, seconds, value in (
                ("rps_runs", args.concurrency, args.seconds, "rps"),
                ("few_rps_runs", args.few, args.seconds / 2, "rps"),
                ("lone_p50_runs", 1, args.seconds / 2, "p50_ms")):
            for name in order:
                url, key, headers = gateways[name]
                result = load(url, key, concurrency=concurrency, seconds=seconds,
                              headers=headers)
                runs[name][field].append(result[value])
                runs[name]["errors"] += result["errors"]
    return runs


def summary(runs: dict[str, Any]) -> dict[str, Any]:
    """A gateway's row: the medians over rounds, and the runs they come from."""
    return {"rps": round(statistics.median(runs["rps_runs"]), 1),
            "few_rps": round(statistics.median(runs["few_rps_runs"]), 1),
            "lone_p50_ms": round(statistics.median(runs["lone_p50_runs"]), 3), **runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8, help="length of each load run")
    parser.add_argument("--rounds", type=int, default=3, help="turns each gateway takes")
    parser.add_argument("--concurrency", type=int, default=64,
                        help="requests in flight for the most requests/s")
    parser.add_argument("--few", type=int, default=8,
                        help="requests in flight for requests/s when latency-bound")
    parser.add_argument("--litellm", help="a `litellm` executable, to compare with")
    parser.add_argument("--portkey", help="Portkey's build/start-server.js, to compare with")
    args = parser.parse_args()

    results: dict[str, Any] = {"machine": machine(), "seconds": args.seconds,
                               "rounds": args.rounds, "concurrency": args.concurrency,
                               "few": args.few}
    with tempfile.TemporaryDirectory(prefix="ironhold-bench-") as tmp:
        workdir = Path(tmp)
        upstream_process, upstream = start_upstream()
        processes = [upstream_process]
        try:
            progress("measuring the disk's fsync time where the audit logs live")
            results["fsync"] = fsync_ms(workdir)
            gateways: dict[str, Gateway] = {}
            for number, (name, sections) in enumerate(CONFIGS.items()):
                progress(f"starting Ironhold '{name}' (pinned to CPU 0)")
                process, url, key = serve_ironhold(workdir / f"ironhold-{number}", upstream,
                                                   sections)
                processes.append(process)
                gateways[name] = (url, key, {})
            table: dict[str, dict[str, Any]] = {}
            portkey = f"Portkey {package_version(args.portkey)}" if args.portkey else None
            if args.portkey and portkey:
                try:
                    progress("starting Portkey's gateway (pinned to CPU 0)")
                    process, url = start_portkey(args.portkey, workdir)
                    processes.append(process)
                    gateways[portkey] = (url, "none", {"x-portkey-provider": "openai",
                                                       "x-portkey-custom-host": upstream})
                except Exception as exc:
                    progress(f"Portkey could not be measured: {exc}")
                    table[portkey] = {"failed": f"{type(exc).__name__}: {exc}",
                                      "peer": "portkey"}
            progress("warming up")
            for name, (url, key, headers) in gateways.items():
                load(url, key, concurrency=args.concurrency, headers=headers,
                     seconds=PEER_WARMUP_SECONDS if name == portkey else 2)
            for name, runs in rotate(gateways, args).items():
                table[name] = {**summary(runs), **({"peer": "portkey"} if name == portkey
                                                   else {})}
            for process in processes[1:]:
                stop(process)
            del processes[1:]
            progress("the upstream alone, one client")
            direct = load(upstream + "/chat/completions", "none", concurrency=1,
                          seconds=args.seconds / 2)
            results["direct_lone_p50_ms"] = direct["p50_ms"]
            if args.litellm:
                row = measure_or_explain("LiteLLM", lambda: measure_litellm(args, workdir,
                                                                            upstream))
                table[f"LiteLLM {litellm_version(args.litellm)}"] = {**row, "peer": "litellm"}
            results["table"] = table
        finally:
            for process in processes:
                stop(process)
    out = save(results, "trust_stack")
    report(results)
    print(f"\nfull results: {out}")


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def report(results: dict[str, Any]) -> None:
    table, fsync = results["table"], results["fsync"]
    bare = table["bare"]
    print(f"\nMachine: {results['machine']}")
    print(f"fsync of a 4 KiB write here: p50 {fsync['p50_ms']:.3f} ms, "
          f"p90 {fsync['p90_ms']:.3f} ms; the upstream alone, one client: p50 "
          f"{results['direct_lone_p50_ms']:.3f} ms")
    print(f"\nMost requests/s with {results['concurrency']} in flight, requests/s with "
          f"{results['few']} in flight, p50 of one client; median of {results['rounds']} "
          f"rounds of {results['seconds']:.0f} s (LiteLLM: alone, after a warm-up):\n")
    print(f"  {'':22} {'requests/s':>11} {'of bare':>8} {'at ' + str(results['few']):>9} "
          f"{'of bare':>8} {'lone p50':>9} {'added':>8} {'errors':>7}")
    for name, row in table.items():
        if "failed" in row:
            print(f"  {name:22} not measured: {row['failed']}")
            continue
        share = row["rps"] / bare["rps"] * 100
        few_share = row["few_rps"] / bare["few_rps"] * 100
        added = row["lone_p50_ms"] - bare["lone_p50_ms"]
        print(f"  {name:22} {row['rps']:11,.1f} {share:7.0f}% {row['few_rps']:9,.1f} "
              f"{few_share:7.0f}% {row['lone_p50_ms']:7.3f}ms {added:+8.3f} {row['errors']:7}")
    default, no_fsync = table["default"], table["default, fsync off"]
    added = default["lone_p50_ms"] - bare["lone_p50_ms"]
    added_no_fsync = no_fsync["lone_p50_ms"] - bare["lone_p50_ms"]
    share = paired(default, bare)
    print("\nTargets (ratios: the median of each round's own, from runs seconds apart):")
    print(f"  default keeps >= 70% of bare's requests/s: {share:.0%} ({verdict(share >= 0.7)}; "
          f"rounds: {rounds(default, bare, '.0%')}; "
          f"{default['few_rps'] / bare['few_rps']:.0%} with {results['few']} in flight)")
    print(f"  default adds <= one fsync + 1 ms for a lone client: {added:.3f} ms <= "
          f"{fsync['p50_ms'] + 1:.3f} ms ({verdict(added <= fsync['p50_ms'] + 1)})")
    print(f"  with audit.fsync false, <= 1 ms: {added_no_fsync:.3f} ms "
          f"({verdict(added_no_fsync <= 1)})")
    for peer, target in (("litellm", 20), ("portkey", 3)):
        row = next((r for r in table.values() if r.get("peer") == peer), None)
        if row is None or "failed" in row:
            continue
        if peer == "portkey":  # in the rotation: ratios round by round
            ratio = paired(default, row)
            how = f"rounds: {rounds(default, row, '.1f')}"
        else:  # alone, after the rotation: medians
            ratio = default["rps"] / max(row["rps"], 0.1)
            how = "medians; it ran alone after the rotation"
        print(f"  default >= {target}x {peer}'s requests/s: {ratio:.1f}x "
              f"({verdict(ratio >= target)}; {how})")


def ratios(row: dict[str, Any], other: dict[str, Any]) -> list[float]:
    """``row``'s saturated requests/s over ``other``'s, round by round."""
    return [a / max(b, 0.1) for a, b in zip(row["rps_runs"], other["rps_runs"], strict=True)]


def paired(row: dict[str, Any], other: dict[str, Any]) -> float:
    return float(statistics.median(ratios(row, other)))


def rounds(row: dict[str, Any], other: dict[str, Any], spec: str) -> str:
    return ", ".join(format(r, spec) for r in ratios(row, other))


if __name__ == "__main__":
    main()
