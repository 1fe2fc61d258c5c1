"""Does the layout a batched first run leaves slow down later incremental runs?

One source, two homes of the same flow as bench/incremental.py: the first reconciled
with batches (the default), the second with one Spark job per partition
(JUPYTER_DATAFLOW_BATCH=1). Both full runs happen first, so the JVM is equally warm for
what follows. Then each appended day is reconciled in both homes, alternating which
goes first, and the paired differences are reported (median).

    python bench/layout.py [--rows 1000000] [--days 100] [--appends 8]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("JUPYTER_DATAFLOW_SOURCE_SETTLE", "0")

from incremental import build, generate  # the same flow and data

from jupyter_dataflow.execute.session import get_session

LAYOUTS = {"batched": "64", "one job per partition": "1"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=100)
    ap.add_argument("--appends", type=int, default=8)
    ap.add_argument("--spark", default="local[2]")
    args = ap.parse_args()
    spark = get_session(args.spark, {"spark.sql.shuffle.partitions": "4", "spark.driver.memory": "4g"})
    root = Path(tempfile.mkdtemp(prefix="bench-layout-"))
    saved = os.environ.get("JUPYTER_DATAFLOW_BATCH")
    try:
        src = root / "events"
        generate(spark, src, args.rows, args.days)
        print(f"source: {args.rows:,} rows in {args.days} daily partitions")
        flows = {}
        for i, (name, batch) in enumerate(LAYOUTS.items()):
            os.environ["JUPYTER_DATAFLOW_BATCH"] = batch
            flows[name] = build(root / f".home{i}", spark, src)
            t = time.perf_counter()
            assert flows[name].run().ok
            print(f"full run, {name}: {time.perf_counter() - t:.1f}s")
        times: dict[str, list[float]] = {name: [] for name in LAYOUTS}
        for i in range(args.appends):
            generate(spark, src, args.rows // args.days, 1, first_day=args.days + i)
            order = list(LAYOUTS) if i % 2 == 0 else list(reversed(LAYOUTS))
            for name in order:
                os.environ["JUPYTER_DATAFLOW_BATCH"] = LAYOUTS[name]
                t = time.perf_counter()
                result = flows[name].run()
                times[name].append(time.perf_counter() - t)
                assert result.ok, result.errors
            print(f"append day {i + 1}: " + ", ".join(f"{n} {v[-1]:.2f}s" for n, v in times.items()))
        a, b = (times[n] for n in LAYOUTS)
        print()
        for name, values in times.items():
            print(f"incremental run after a {name} first run (median): {statistics.median(values):.3f}s")
        print(f"paired difference, batched minus one job per partition (median): "
              f"{statistics.median(x - y for x, y in zip(a, b, strict=True)):+.3f}s")
        first, second = (tuple(f.table("top").collect()[0]) for f in flows.values())
        same = all(math.isclose(x, y, rel_tol=1e-9) if isinstance(x, float) else x == y
                   for x, y in zip(first, second, strict=True))
        print(f"answers identical (doubles to 1e-9): {same}")
    finally:
        if saved is None:
            os.environ.pop("JUPYTER_DATAFLOW_BATCH", None)
        else:
            os.environ["JUPYTER_DATAFLOW_BATCH"] = saved
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
