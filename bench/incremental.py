"""Incremental vs full recompute, and vs plain PySpark, measured side by side.

A Parquet source of ROWS rows in DAYS daily partitions feeds a map transform
(filter and projection), an aggregate grouped by a non-partition column (inferred
`partial`) and a global aggregate over it. We time a full run, then append one day
and time the incremental run (median over --appends appended days), in one process
and one SparkSession. The same three steps as a plain PySpark script that recomputes
everything are timed too (median over --repeat runs), and the answers are compared.
Each incremental run's Spark jobs are counted and set against one plain job that reads an
appended day and writes it: the least a job costs here.

The first full run is also the JVM's first work on this flow, so it is cold while the
incremental runs and the plain script run warm. A second full run in a fresh home, once
everything else ran, gives the warm figure too (--no-warm-full skips it). A last full
run with one Spark job per partition shows what batching partitions into shared jobs
saves (--no-unbatched skips it).

    python bench/incremental.py [--rows 5000000] [--days 100] [--appends 3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

# The bench writes each appended day completely before running; a settle wait for young
# files (a real writer's safety net) would only add a fixed sleep to the incremental run.
os.environ.setdefault("JUPYTER_DATAFLOW_SOURCE_SETTLE", "0")

import jupyter_dataflow as jd
from jupyter_dataflow.execute.session import get_session

MAP_SQL = "SELECT date, customer, amount * qty AS value FROM events WHERE qty > 1"
AGG_SQL = "SELECT customer, sum(value) AS total, count(*) AS n, max(value) AS top FROM valued GROUP BY customer"
TOP_SQL = "SELECT count(*) AS customers, sum(total) AS total, sum(n) AS n, max(top) AS top FROM per_customer"


def generate(spark, folder: Path, rows: int, days: int, first_day: int = 0) -> None:
    per_day = rows // days
    df = spark.range(per_day * days).selectExpr(
        f"date_add(DATE'2024-01-01', CAST({first_day} + id % {days} AS INT)) AS date",
        "CAST((id * 7919) % 10000 AS INT) AS customer",
        "CAST((id % 9973) / 100.0 AS DOUBLE) AS amount",
        "CAST(id % 5 AS INT) AS qty",
    )
    df.write.mode("append").partitionBy("date").parquet(str(folder))


def plain(spark, src: Path, out: Path) -> tuple[float, tuple]:
    started = time.perf_counter()
    spark.read.parquet(str(src)).createOrReplaceTempView("events")
    spark.sql(MAP_SQL).write.mode("overwrite").parquet(str(out / "valued"))
    spark.read.parquet(str(out / "valued")).createOrReplaceTempView("valued")
    spark.sql(AGG_SQL).write.mode("overwrite").parquet(str(out / "per_customer"))
    spark.read.parquet(str(out / "per_customer")).createOrReplaceTempView("per_customer")
    spark.sql(TOP_SQL).write.mode("overwrite").parquet(str(out / "top"))
    answer = tuple(spark.read.parquet(str(out / "top")).collect()[0])
    return time.perf_counter() - started, answer


def last_job(spark) -> int:
    """The id of the latest Spark job this session started (-1 before any)."""
    return max(spark.sparkContext.statusTracker().getJobIdsForGroup(), default=-1)


def one_job(spark, day: Path, out: Path, repeat: int) -> float:
    """Median wall time of one plain job reading a day's files and writing them as Parquet:
    what a task of an incremental run costs at the least."""
    times = []
    for i in range(repeat + 2):  # two to warm this exact query up
        t = time.perf_counter()
        spark.read.parquet(str(day)).write.parquet(str(out / f"job-{i}"))
        times.append(time.perf_counter() - t)
    return statistics.median(times[2:])


def build(home: Path, spark, src: Path) -> jd.Flow:
    flow = jd.Flow.open(home=home, spark=spark)
    flow.source("events", path=str(src), format="parquet", partition_by="date")
    flow.transform("valued", MAP_SQL)
    flow.transform("per_customer", AGG_SQL)
    flow.transform("top", TOP_SQL)
    return flow


def full_run(spark, src: Path, home: Path, batch: str | None = None) -> float:
    """A full run of the same flow in a fresh home; `batch` sets JUPYTER_DATAFLOW_BATCH."""
    if batch is not None:
        os.environ["JUPYTER_DATAFLOW_BATCH"] = batch
    try:
        flow = build(home, spark, src)
        t = time.perf_counter()
        result = flow.run()
        assert result.ok, result.errors
        return time.perf_counter() - t
    finally:
        if batch is not None:
            del os.environ["JUPYTER_DATAFLOW_BATCH"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--days", type=int, default=100)
    ap.add_argument("--appends", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--spark", default="local[2]")
    ap.add_argument("--warm-full", action=argparse.BooleanOptionalAction, default=True,
                    help="also time a second full run in a fresh home, with the JVM warm")
    ap.add_argument("--unbatched", action=argparse.BooleanOptionalAction, default=True,
                    help="also time a full run with one Spark job per partition (JUPYTER_DATAFLOW_BATCH=1)")
    args = ap.parse_args()
    spark = get_session(args.spark, {"spark.sql.shuffle.partitions": "4", "spark.driver.memory": "4g"})
    root = Path(tempfile.mkdtemp(prefix="bench-incremental-"))
    try:
        src = root / "events"
        generate(spark, src, args.rows, args.days)
        print(f"source: {args.rows:,} rows in {args.days} daily partitions ({src})")
        flow = build(root / ".dataflow", spark, src)
        modes = {s.name: s.mode for s in flow.status()}
        print(f"modes: {modes}")

        t = time.perf_counter()
        result = flow.run()
        full_s = time.perf_counter() - t
        assert result.ok, result.errors
        print(f"full run: {len(result.executed)} tasks in {full_s:.1f}s")

        inc_times, inc_jobs = [], []
        for i in range(args.appends):
            generate(spark, src, args.rows // args.days, 1, first_day=args.days + i)
            before = last_job(spark)
            t = time.perf_counter()
            result = flow.run()
            inc_times.append(time.perf_counter() - t)
            inc_jobs.append(last_job(spark) - before)
            assert result.ok, result.errors
            by_stage: dict[str, int] = {}
            for task in result.executed:
                by_stage[task.stage] = by_stage.get(task.stage, 0) + 1
            print(f"append day {i + 1}: {inc_times[-1]:.2f}s, {inc_jobs[-1]} Spark jobs, tasks by stage {by_stage}")
        inc_s = statistics.median(inc_times)
        last_day = sorted(p for p in src.iterdir() if p.name.startswith("date="))[-1]
        job_s = one_job(spark, last_day, root / "one-job", args.repeat)
        ours = tuple(flow.table("top").collect()[0])

        plain_times = []
        for _ in range(args.repeat):
            secs, answer = plain(spark, src, root / "plain")
            plain_times.append(secs)
        plain_s = statistics.median(plain_times)
        warm_s = full_run(spark, src, root / ".dataflow-warm") if args.warm_full else None
        unbatched_s = full_run(spark, src, root / ".dataflow-unbatched", "1") if args.unbatched else None
        same = len(ours) == len(answer) and all(
            abs(a - b) <= 1e-6 * max(1.0, abs(b)) if isinstance(a, float) else a == b for a, b in zip(ours, answer, strict=False))

        print()
        print(f"{'measure':44} {'seconds':>9}")
        print(f"{'our full run':44} {full_s:9.2f}")
        print(f"{'our incremental run, one day appended (median)':44} {inc_s:9.2f}")
        print(f"{'plain PySpark full recompute (median)':44} {plain_s:9.2f}")
        print(f"{'incremental / our full':44} {inc_s / full_s:9.3f}   (target <= 0.05)")
        print(f"{'incremental / plain full recompute':44} {inc_s / plain_s:9.3f}")
        print(f"{'our full / plain full recompute':44} {full_s / plain_s:9.2f}")
        jobs = statistics.median(inc_jobs)
        print(f"{'Spark jobs per incremental run (median)':44} {jobs:9.0f}")
        print(f"{'one plain job: read a day, write it (median)':44} {job_s:9.2f}")
        print(f"{'incremental / (its jobs x one plain job)':44} {inc_s / (jobs * job_s):9.3f}")
        if warm_s is not None:
            print(f"{'our full run again, fresh home, warm JVM':44} {warm_s:9.2f}   (source has {args.appends} more days)")
            print(f"{'incremental / our warm full':44} {inc_s / warm_s:9.3f}")
        if unbatched_s is not None:
            print(f"{'our full run, one job per partition':44} {unbatched_s:9.2f}   (source has {args.appends} more days)")
            print(f"{'full run batched / one job per partition':44} {full_s / unbatched_s:9.3f}")
        print(f"answers identical: {same}  ours={ours} plain={answer}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
