"""Exported flows, run outside Jupyter: a bundle (incremental) against a Spark pipeline (full).

Exports examples/quickstart.py's flow as a bundle and as a Spark Declarative Pipelines
project, then times, each in a fresh process: the first run, an unchanged second run,
and a run after a late file lands in one day. Prints the wall times and the ratio of
pipeline time to bundle time for each step.

    python bench/export_runs.py [--days 7] [--rows 2000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--rows", type=int, default=2000, help="orders per day")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "examples"))
    sys.path.insert(0, str(ROOT))
    import quickstart

    import jupyter_dataflow as jd

    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": str(ROOT),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("SPARK_CONF_DIR", None)
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        work = Path(tmp) / "work"
        quickstart.make_data(work, days=args.days, rows_per_day=args.rows)
        with jd.Flow.open(home=work / ".dataflow", conf={"spark.sql.shuffle.partitions": "4"}) as flow:
            quickstart.build(flow)
            bundle = flow.export(Path(tmp) / "bundle", to="bundle")
            pipeline = flow.export(Path(tmp) / "pipeline", to="spark-pipelines")
        shutil.copytree(work / "data", bundle / "data")  # the bundle's paths resolve against its folder
        run_bundle = [sys.executable, "-m", "jupyter_dataflow.cli", "run", str(bundle), "--spark", "local[2]",
                      "--quiet"]
        run_pipeline = [str(pipeline / "run.sh")]
        rows = []
        for step in ("first run", "unchanged rerun", "after a late file"):
            if step == "after a late file":
                quickstart.add_late_file(bundle)
                quickstart.add_late_file(work)
            b, b_out = timed(run_bundle, Path(tmp), env)
            p, _ = timed(run_pipeline, Path(tmp), env)
            rows.append((step, b, p, b_out))
        print(f"{'step':20} {'bundle s':>9} {'pipeline s':>11} {'pipeline/bundle':>16}  bundle summary")
        for step, b, p, summary in rows:
            print(f"{step:20} {b:9.1f} {p:11.1f} {p / b:16.2f}  {summary}")


if __name__ == "__main__":
    main()
