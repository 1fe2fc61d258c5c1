"""The example flow: daily CSV orders -> SQL and PySpark transforms -> a sink.

Run it twice: the second run finds everything fresh and executes nothing. Add a file
to an old day (`--late`) and only that day and what depends on it recompute.

    python examples/quickstart.py [--spark local[2]] [--late] [--fresh]
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from pathlib import Path

import jupyter_dataflow as jd

WORK = Path(__file__).resolve().parent / "work"


def make_data(root: Path, days: int = 7, rows_per_day: int = 2000) -> None:
    """Deterministic orders (one folder per day) and a small customers table."""
    rng = random.Random(7)
    orders = root / "data" / "orders"
    for d in range(days):
        day = orders / f"date=2024-01-{d + 1:02d}"
        day.mkdir(parents=True, exist_ok=True)
        lines = ["order_id,customer_id,amount"]
        lines += [f"{d * rows_per_day + i},{rng.randrange(50)},{rng.randrange(100, 100000) / 100}"
                  for i in range(rows_per_day)]
        (day / "part-0.csv").write_text("\n".join(lines) + "\n")
    customers = root / "data" / "customers"
    customers.mkdir(parents=True, exist_ok=True)
    segments = ["retail", "wholesale", "online"]
    (customers / "customers.csv").write_text(
        "customer_id,segment\n" + "".join(f"{c},{segments[c % 3]}\n" for c in range(50)))


def add_late_file(root: Path) -> None:
    day = root / "data" / "orders" / "date=2024-01-03"
    (day / "late-0.csv").write_text("order_id,customer_id,amount\n999001,7,123.45\n999002,8,10.00\n")


def by_segment(daily_customers, customers):  # noqa: ANN001 - PySpark DataFrames
    """Revenue per customer segment, in PySpark."""
    from pyspark.sql import functions as F

    joined = daily_customers.join(customers, "customer_id")
    return joined.groupBy("segment").agg(F.sum("revenue").alias("revenue"))


def build(flow: jd.Flow) -> None:
    flow.source("orders", path="data/orders", format="csv", partition_by="date",
                options={"header": "true", "inferSchema": "true"})
    flow.source("customers", path="data/customers", format="csv",
                options={"header": "true", "inferSchema": "true"})
    flow.transform("daily", """
        SELECT date, count(*) AS orders, round(sum(amount), 2) AS revenue
        FROM orders GROUP BY date
    """, expect=["revenue >= 0"])
    flow.transform("daily_customers", """
        SELECT date, customer_id, sum(amount) AS revenue
        FROM orders GROUP BY date, customer_id
    """)
    flow.transform("by_segment", python=by_segment)
    flow.sink("daily_out", source="daily", path="out/daily", format="csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spark", default="local[2]")
    parser.add_argument("--late", action="store_true", help="add a late file to 2024-01-03 first")
    parser.add_argument("--fresh", action="store_true", help="start from an empty home")
    args = parser.parse_args()
    if args.fresh and WORK.exists():
        shutil.rmtree(WORK)
    if not (WORK / "data").exists():
        make_data(WORK)
    if args.late:
        add_late_file(WORK)
    flow = jd.Flow.open(home=WORK / ".dataflow", spark=args.spark, conf={"spark.sql.shuffle.partitions": "4"})
    build(flow)
    print("plan:")
    print("  " + str(flow.plan()).replace("\n", "\n  "))
    started = time.time()
    result = flow.run()
    print(f"first run:  {result.summary()} (wall {time.time() - started:.1f}s)")
    started = time.time()
    again = flow.run()
    print(f"second run: {again.summary()} (wall {time.time() - started:.2f}s)")
    print()
    for s in flow.status():
        rows = "" if s.rows is None else s.rows
        print(f"  {s.name:16} {s.kind:9} {s.state:9} {s.mode or '':8} partitions={s.partitions:<3} rows={rows}")
    print()
    flow.query("SELECT segment, round(revenue, 2) AS revenue FROM by_segment ORDER BY segment").show()
    if not result.ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
