"""Maximum requests/s of two revisions of Ironhold side by side, in one run, on one machine.

    python bench/before_after.py --base REV [--seconds 8] [--rounds 3]

The base revision is checked out into a temporary git worktree and run from its ``src`` with
this virtual environment; the working tree is the other side. Both serve the same fixed-response
upstream, pinned as in ``overhead.py`` (gateway on CPU 0; upstream and load generator on CPU 1),
closed loop with 64 requests in flight. Both sides are started at once and take turns under
load in ABBA order, so the machine's drift falls on both alike. Two configurations: everything
on (audit with fsync, guard, a key with rpm, tpm and concurrency limits), and the same without
the audit log (whose fsync dominates).
Results go to stdout and bench/results/before_after.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from overhead import free_port, load, machine, pinned, progress, save, serve_ironhold, stop

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable

CONFIGS = {
    "all on": "audit: {enabled: true, fsync: true}\nguard: {enabled: true}\n",
    "no audit": "audit: {enabled: false}\nguard: {enabled: true}\n",
}


def start(src: Path, workdir: Path, upstream: str, sections: str
          ) -> tuple[subprocess.Popen[bytes], str, str]:
    return serve_ironhold(
        workdir, upstream, "logging: {level: warning, access: false}\n" + sections,
        env={**os.environ, "PYTHONPATH": str(src)},
        key_args=("--rpm", "10000000", "--tpm", "1000000000", "--concurrency", "100000"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the revision to compare against")
    parser.add_argument("--head", help="compare this revision instead of the working tree")
    parser.add_argument("--config", choices=sorted(CONFIGS), action="append",
                        help="run only this configuration (repeatable; default: all)")
    parser.add_argument("--seconds", type=float, default=6, help="length of each run")
    parser.add_argument("--rounds", type=int, default=6, help="alternating runs per side")
    parser.add_argument("--stream", action="store_true",
                        help="streamed answers (8 content events, usage, [DONE]) instead of whole")
    args = parser.parse_args()
    base_rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.base],
                              capture_output=True, text=True, check=True).stdout.strip()
    head_rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short",
                               args.head or "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    if not args.head:
        head_rev += " + working tree"
    results: dict[str, Any] = {"machine": machine(), "base": base_rev, "head": head_rev,
                               "seconds": args.seconds, "rounds": args.rounds, "configs": {}}
    with tempfile.TemporaryDirectory(prefix="ironhold-ab-") as tmp:
        work = Path(tmp)
        trees = {"base": args.base, **({"head": args.head} if args.head else {})}
        for side, rev in trees.items():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach",
                            str(work / side), rev], check=True, capture_output=True)
        up_port = free_port()
        upstream_process = subprocess.Popen([*pinned(1), PY, str(HERE / "fixed_upstream.py"),
                                             str(up_port)])
        upstream = f"http://127.0.0.1:{up_port}/v1"
        sides = {"base": work / "base" / "src",
                 "head": (work / "head" if args.head else ROOT) / "src"}
        try:
            for name in args.config or list(CONFIGS):
                sections = CONFIGS[name]
                runs: dict[str, list[float]] = {side: [] for side in sides}
                # Both sides run at once (an idle gateway costs nothing) and take turns under
                # load, in ABBA order, so drift in the machine's speed falls on both alike.
                started = {side: start(src, work / f"{name}-{side}", upstream, sections)
                           for side, src in sides.items()}
                try:
                    for _, url, key in started.values():
                        load(url, key, rate=300, seconds=3, stream=args.stream)  # warm up
                    for round_ in range(args.rounds):
                        order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
                        for side in order:
                            progress(f"{name}: round {round_ + 1}/{args.rounds}, {side}")
                            _, url, key = started[side]
                            out = load(url, key, concurrency=64, seconds=args.seconds,
                                       stream=args.stream)
                            assert out["errors"] == 0, out
                            runs[side].append(out["rps"])
                finally:
                    for process, _, _ in started.values():
                        stop(process)
                base, head = (statistics.median(runs[s]) for s in ("base", "head"))
                results["configs"][name] = {"runs": runs, "base_rps": round(base, 1),
                                            "head_rps": round(head, 1),
                                            "change_percent": round((head / base - 1) * 100, 1)}
        finally:
            stop(upstream_process)
            for side in trees:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(work / side)], capture_output=True)
    saved = save(results, "before_after")
    print(f"\nMachine: {results['machine']}")
    kind = "streamed" if args.stream else "whole"
    print(f"Maximum requests/s ({kind} answers), {base_rev} (base) against {head_rev} (head), "
          f"median of {args.rounds} alternating runs of {args.seconds:.0f} s:")
    for name, row in results["configs"].items():
        print(f"  {name:10} base {row['base_rps']:8.1f}   head {row['head_rps']:8.1f}   "
              f"change {row['change_percent']:+.1f}%   runs {row['runs']}")
    print(f"\nfull results: {saved}")


if __name__ == "__main__":
    main()
