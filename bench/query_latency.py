"""Ad hoc query latency over a committed stage: the checked DuckDB path versus warm Spark.

Builds a committed-style stage with Spark (snappy Parquet, one directory per committed
partition) of 1,000,000 rows (10,000,000 with --big) plus a small dimension stage, then
times ten representative queries on both paths in the same process, after warm-up:
`run_duckdb` (translation and all) against `spark.sql(...).toArrow()`. It checks that both
answers are identical and prints p50/p95 latencies and the speed-up.

    python bench/query_latency.py [--big] [--rows N] [--repeat 15] [--dir PATH]

Targets: p50 <= 150 ms on DuckDB for 1M rows, and >= 5x faster than Spark.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from jupyter_dataflow.query.duckdb_engine import run_duckdb
from jupyter_dataflow.query.duckdb_types import DuckdbRefusal

QUERIES: list[tuple[str, str]] = [
    ("count", "SELECT count(*) AS n FROM orders"),
    ("group by status",
     "SELECT status, count(*) AS n, sum(amount) AS revenue FROM orders GROUP BY status ORDER BY status"),
    ("daily revenue",
     "SELECT day, sum(amount) AS revenue, avg(price) AS avg_price FROM orders GROUP BY day ORDER BY day"),
    ("point filter", "SELECT * FROM orders WHERE customer_id = 4242 ORDER BY order_id"),
    ("top 20", "SELECT order_id, amount FROM orders ORDER BY amount DESC, order_id LIMIT 20"),
    ("distinct count",
     "SELECT region, count(DISTINCT customer_id) AS customers FROM orders GROUP BY region ORDER BY region"),
    ("join + group",
     "SELECT c.segment, sum(o.amount) AS revenue, count(*) AS n FROM orders o "
     "JOIN customers c ON o.customer_id = c.customer_id GROUP BY c.segment ORDER BY c.segment"),
    ("monthly (timestamps)",
     "SELECT date_trunc('MONTH', ts) AS month, count(*) AS n, max(price) AS top FROM orders "
     "GROUP BY date_trunc('MONTH', ts) ORDER BY month"),
    ("filter + 2 keys",
     "SELECT status, qty, sum(price * qty) AS gross FROM orders WHERE day >= '2024-03-01' "
     "GROUP BY status, qty ORDER BY status, qty"),
    ("window top 10",
     "SELECT customer_id, revenue, r FROM (SELECT customer_id, sum(amount) AS revenue, "
     "rank() OVER (ORDER BY sum(amount) DESC) AS r FROM orders GROUP BY customer_id) t "
     "WHERE r <= 10 ORDER BY r, customer_id"),
]


def build_stages(spark: Any, root: str, rows: int) -> dict[str, list[str]]:
    """Write `orders` as two committed partitions and `customers` as one, like the store does."""
    orders = []
    half = rows // 2
    for k, (start, end) in enumerate([(0, half), (half, rows)]):
        path = os.path.join(root, "orders", f"partition={k}-committed")
        spark.range(start, end).selectExpr(
            "id AS order_id",
            "CAST(pmod(hash(id, 1), 100000) AS INT) AS customer_id",
            "date_add(DATE '2024-01-01', CAST(pmod(hash(id, 2), 180) AS INT)) AS day",
            "timestamp_seconds(1704067200 + pmod(hash(id, 3), 15552000)) AS ts",
            "CAST(pmod(hash(id, 4), 1000000) / 100 AS DECIMAL(12,2)) AS amount",
            "CAST(pmod(hash(id, 5), 10) + 1 AS INT) AS qty",
            "pmod(hash(id, 6), 100000) / 100.0D AS price",
            "element_at(array('new','paid','shipped','returned','cancelled'), pmod(hash(id, 7), 5) + 1) AS status",
            "element_at(array('north','south','east','west'), pmod(hash(id, 8), 4) + 1) AS region",
        ).write.parquet(path)
        orders.append(path)
    customers = os.path.join(root, "customers", "partition=0-committed")
    spark.range(0, 100000).selectExpr(
        "CAST(id AS INT) AS customer_id",
        "element_at(array('consumer','corporate','home office','small business'), pmod(hash(id), 4) + 1) AS segment",
    ).coalesce(1).write.parquet(customers)
    return {"orders": orders, "customers": [customers]}


def same_answer(a: pa.Table, b: pa.Table) -> bool:
    """Identical names, types and rows (doubles to 1e-12 relative)."""
    if a.column_names != b.column_names or a.schema.types != b.schema.types or a.num_rows != b.num_rows:
        return False
    for x, y in zip(a.to_pylist(), b.to_pylist(), strict=True):
        for u, v in zip(x.values(), y.values(), strict=True):
            if isinstance(u, float) and isinstance(v, float):
                if not (u == v or math.isclose(u, v, rel_tol=1e-12) or (math.isnan(u) and math.isnan(v))):
                    return False
            elif u != v:
                return False
    return True


def timings(fn: Callable[[], object], warmup: int, repeat: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big", action="store_true", help="10,000,000 rows instead of 1,000,000")
    parser.add_argument("--rows", type=int, help="explicit row count")
    parser.add_argument("--repeat", type=int, help="timed runs per query and engine (15; 5 with --big)")
    parser.add_argument("--warmup", type=int, help="untimed runs first (3; 1 with --big)")
    parser.add_argument("--dir", help="where to write the stages (kept); default: a temp dir (removed)")
    args = parser.parse_args(argv)
    rows = args.rows or (10_000_000 if args.big else 1_000_000)
    repeat = args.repeat or (5 if args.big else 15)
    warmup = args.warmup if args.warmup is not None else (1 if args.big else 3)

    os.environ.setdefault("TZ", "UTC")
    from jupyter_dataflow.execute.session import get_session

    spark = get_session("local[2]", {"spark.sql.shuffle.partitions": "2"})
    root = args.dir or tempfile.mkdtemp(prefix="dataflow-bench-")
    try:
        started = time.perf_counter()
        stages = build_stages(spark, root, rows)
        print(f"stages written in {time.perf_counter() - started:.1f} s: orders {rows:,} rows "
              f"in {len(stages['orders'])} committed directories, customers 100,000 rows")
        for name, paths in stages.items():
            spark.read.parquet(*paths).createOrReplaceTempView(name)

        header = f"{'query':<22} {'duck p50':>9} {'duck p95':>9} {'spark p50':>10} {'spark p95':>10} {'speed-up':>9}  same"
        print(header)
        print("-" * len(header))
        duck_p50s, spark_p50s, all_same = [], [], True
        for name, sql in QUERIES:
            duck = run_duckdb(sql, stages)
            if isinstance(duck, DuckdbRefusal):
                print(f"{name:<22} refused: {duck.reason}")
                all_same = False
                continue
            spark_answer = spark.sql(sql).toArrow()
            same = same_answer(duck, spark_answer)
            all_same &= same
            d = timings(lambda sql=sql: run_duckdb(sql, stages), warmup, repeat)
            s = timings(lambda sql=sql: spark.sql(sql).toArrow(), warmup, repeat)
            duck_p50s.append(p(d, 0.5))
            spark_p50s.append(p(s, 0.5))
            print(f"{name:<22} {p(d, 0.5):>7.1f}ms {p(d, 0.95):>7.1f}ms {p(s, 0.5):>8.1f}ms "
                  f"{p(s, 0.95):>8.1f}ms {p(s, 0.5) / p(d, 0.5):>8.1f}x  {'yes' if same else 'NO'}")
        print("-" * len(header))
        if duck_p50s:
            ratio = statistics.median(s / d for s, d in zip(spark_p50s, duck_p50s, strict=True))
            print(f"median of p50s: DuckDB {statistics.median(duck_p50s):.1f} ms, Spark "
                  f"{statistics.median(spark_p50s):.1f} ms; median speed-up {ratio:.1f}x; "
                  f"worst DuckDB p50 {max(duck_p50s):.1f} ms; answers identical: {'yes' if all_same else 'NO'}")
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            print(f"(rows={rows:,}, {repeat} timed runs after {warmup} warm-up, cpus={os.cpu_count()}, "
                  f"load average {load:.1f})")
        return 0 if all_same else 1
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
