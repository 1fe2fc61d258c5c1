"""The second, unchanged run of the example flow in a fresh process.

Runs examples/quickstart.py's flow once (to fill the home), then starts a new Python
process that opens the home and runs again, and reports: Spark session start, the
rerun's wall time, tasks executed and Spark jobs started (median over --repeat).

    python bench/rerun.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[2])
t0 = time.perf_counter()
from jupyter_dataflow.execute.session import get_session
spark = get_session("local[2]", {"spark.sql.shuffle.partitions": "4"})
session_s = time.perf_counter() - t0
import jupyter_dataflow as jd
import quickstart
tracker = spark.sparkContext.statusTracker()
jobs_before = len(tracker.getJobIdsForGroup(None))
t1 = time.perf_counter()
flow = jd.Flow.open(home=sys.argv[1], spark=spark)
quickstart.build(flow)
result = flow.run()
run_s = time.perf_counter() - t1
print(json.dumps({"session_s": session_s, "run_s": run_s, "executed": len(result.executed),
                  "jobs": len(tracker.getJobIdsForGroup(None)) - jobs_before}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    examples = Path(__file__).resolve().parent.parent / "examples"
    with tempfile.TemporaryDirectory(prefix="bench-rerun-") as tmp:
        home = Path(tmp) / ".dataflow"
        sys.path.insert(0, str(examples))
        import quickstart

        quickstart.make_data(Path(tmp))
        first = subprocess.run([sys.executable, "-c", CHILD, str(home), str(examples)], capture_output=True,
                               text=True, check=True, cwd=tmp)
        print("first run (fills the home):", first.stdout.strip().splitlines()[-1])
        runs = []
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, "-c", CHILD, str(home), str(examples)], capture_output=True,
                                 text=True, check=True, cwd=tmp)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"{'measure (fresh process, median of ' + str(args.repeat) + ')':44} {'value':>9}")
        print(f"{'Spark session start':44} {statistics.median(r['session_s'] for r in runs):8.2f}s")
        print(f"{'unchanged run() incl. opening the home':44} {statistics.median(r['run_s'] for r in runs):8.3f}s")
        print(f"{'tasks executed':44} {max(r['executed'] for r in runs):9d}")
        print(f"{'Spark jobs started':44} {max(r['jobs'] for r in runs):9d}")
        print("target: session start plus < 1 s, zero stage jobs")


if __name__ == "__main__":
    main()
