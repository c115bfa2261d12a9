"""The rolling-restart drill (issue 20), longer than in the test suite: three replicas on one
PostgreSQL, Redis and NATS behind HAProxy, steady load (a third streaming), every replica
restarted in turn with ``--seconds`` between, then one killed with SIGKILL. It runs
``tests/e2e/test_rolling_restart.py`` (the same code checks the same things) and keeps its
figures.

    python bench/rolling_restart.py [--seconds 20]

Results go to stdout and to bench/results/rolling_restart.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from overhead import machine, save

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="seconds of load before, between and after the restarts")
    args = parser.parse_args()
    out = ROOT / "bench" / "results" / "rolling_restart.raw.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "IRONHOLD_DRILL_SECONDS": str(args.seconds),
           "IRONHOLD_DRILL_RESULTS": str(out)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/e2e/test_rolling_restart.py"], cwd=ROOT, env=env)
    results = {"machine": machine(), "passed": done.returncode == 0,
               **(json.loads(out.read_text()) if out.exists() else {})}
    print(json.dumps(results, indent=2))
    save(results, "rolling_restart")
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
