"""Factories for engine tests: deterministic partitioned CSV data and open flows."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import jupyter_dataflow as jd


def write_day(root: Path, day: str, rows: list[tuple[int, int, float]], name: str = "part-0.csv") -> Path:
    folder = root / f"date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("order_id,customer_id,amount\n" + "".join(f"{o},{c},{a}\n" for o, c, a in rows))
    return path


def make_rows(seed: int, n: int, start: int = 0) -> list[tuple[int, int, float]]:
    rng = random.Random(seed)
    return [(start + i, rng.randrange(8), rng.randrange(-500, 10000) / 100) for i in range(n)]


@pytest.fixture
def orders_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data" / "orders"
    for d in range(1, 4):
        write_day(root, f"2024-01-0{d}", make_rows(d, 20 * d, start=1000 * d))
    customers = tmp_path / "data" / "customers"
    customers.mkdir(parents=True)
    (customers / "customers.csv").write_text(
        "customer_id,segment\n" + "".join(f"{c},{['a', 'b', 'c'][c % 3]}\n" for c in range(8)))
    return root


@pytest.fixture
def open_flow(tmp_path: Path, spark: Any) -> Iterator[Callable[..., jd.Flow]]:
    opened: list[jd.Flow] = []

    def factory(name: str = "default", home: Path | None = None) -> jd.Flow:
        flow = jd.Flow.open(home=home or tmp_path / ".dataflow", name=name, spark=spark)
        opened.append(flow)
        return flow

    yield factory
    for f in opened:
        f.close()


def read_orders_pandas(root: Path) -> pd.DataFrame:
    frames = []
    for day in sorted(root.glob("date=*")):
        for f in sorted(day.glob("*.csv")):
            df = pd.read_csv(f)
            df["date"] = day.name.split("=", 1)[1]
            frames.append(df)
    return pd.concat(frames, ignore_index=True)


def build_standard(flow: jd.Flow) -> None:
    """orders (by date) -> clean (map) -> daily (map) ; by_customer (reduce/partial) ; enriched (python)."""
    flow.source("orders", path="data/orders", format="csv", partition_by="date",
                options={"header": "true", "inferSchema": "true"})
    flow.source("customers", path="data/customers", format="csv", options={"header": "true", "inferSchema": "true"})
    flow.transform("clean", "SELECT date, order_id, customer_id, amount FROM orders WHERE amount > 0")
    flow.transform("daily", "SELECT date, count(*) AS n, sum(amount) AS revenue FROM clean GROUP BY date")
    flow.transform("by_customer", "SELECT customer_id, count(*) AS n, sum(amount) AS revenue "
                                  "FROM clean GROUP BY customer_id")
    flow.transform("enriched", python=ENRICHED)


ENRICHED = '''
def enriched(by_customer, customers):
    return by_customer.join(customers, "customer_id").select("customer_id", "segment", "revenue")
'''
