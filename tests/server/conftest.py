"""Fixtures for the REST API tests: a real Jupyter server (pytest-jupyter) serving a
dataflow home whose flows were built and run on the shared local SparkSession."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

# The server fixtures (jp_fetch, jp_serverapp, ...) and the hook that runs
# coroutine tests, scoped to this directory instead of the whole suite.
from pytest_jupyter.jupyter_server import *  # noqa: F403

import jupyter_dataflow as jd

DAYS = ("2024-01-01", "2024-01-02", "2024-01-03")
ROWS_PER_DAY = 40
BIG_ROWS = 1_000_000
BIG_FILES = 4
PAYLOAD = 150
# The data's size in Arrow: two 8-byte columns and a string of 15 + PAYLOAD bytes.
BIG_ARROW_BYTES = BIG_ROWS * (8 + 8 + 15 + PAYLOAD)


def order_rows(day_index: int, day: str) -> dict[str, list[Any]]:
    """Deterministic orders with the values exports get wrong: separators, quotes,
    newlines, unicode, nulls, NaN-free floats, timestamps."""
    notes = ["plain", "comma, inside", 'quote " inside', "new\nline", "ünïcødé ✓", None]
    n = ROWS_PER_DAY
    base = dt.datetime(2024, 1, 1 + day_index, 8, 0, 0)
    return {
        "order_id": [day_index * 1000 + i for i in range(n)],
        "customer": [f"c{i % 7}" for i in range(n)],
        "amount": [None if i % 13 == 5 else round(1.25 * i + day_index, 2) for i in range(n)],
        "note": [notes[i % len(notes)] for i in range(n)],
        "placed_at": [base + dt.timedelta(minutes=i) for i in range(n)],
    }


def write_orders(root: Path) -> Path:
    orders = root / "orders"
    schema = pa.schema(
        [
            ("order_id", pa.int64()),
            ("customer", pa.string()),
            ("amount", pa.float64()),
            ("note", pa.string()),
            ("placed_at", pa.timestamp("us")),
        ]
    )
    for i, day in enumerate(DAYS):
        folder = orders / f"date={day}"
        folder.mkdir(parents=True)
        pq.write_table(pa.table(order_rows(i, day), schema=schema), folder / "part-0.parquet")
    return orders


def write_events(root: Path) -> Path:
    """BIG_ROWS rows, about 190 bytes each as CSV, in BIG_FILES partitions."""
    events = root / "events"
    per_file = BIG_ROWS // BIG_FILES
    for f in range(BIG_FILES):
        folder = events / f"part={f}"
        folder.mkdir(parents=True)
        start = f * per_file
        ids = pa.array(range(start, start + per_file), type=pa.int64())
        payload = pa.array(
            [f"event-{i:09d}-" + "x" * PAYLOAD for i in range(start, start + per_file)]
        )
        value = pa.array([i * 0.5 for i in range(start, start + per_file)], type=pa.float64())
        table = pa.table({"event_id": ids, "payload": payload, "value": value})
        pq.write_table(table, folder / "data.parquet", row_group_size=per_file)
    return events


@pytest.fixture(scope="module")
def dataflow_home(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with flow `default`: source `orders` (3 daily partitions), transform
    `daily` (both run) and transform `later` (never run)."""
    root = tmp_path_factory.mktemp("server-home")
    orders = write_orders(root / "data")
    home = root / ".dataflow"
    flow = jd.Flow.open(home=home, name="default", spark=spark)
    try:
        flow.source("orders", path=str(orders), format="parquet", partition_by="date")
        flow.transform(
            "daily",
            "SELECT date, count(*) AS orders, round(sum(amount), 2) AS revenue "
            "FROM orders GROUP BY date",
        )
        result = flow.run()
        assert result.ok, result
        flow.transform("later", "SELECT date, revenue FROM daily WHERE revenue > 100")
    finally:
        flow.close()
    return home


@pytest.fixture(scope="module")
def big_home(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with flow `big`: source `events` of BIG_ROWS committed rows."""
    root = tmp_path_factory.mktemp("server-big")
    events = write_events(root / "data")
    home = root / ".dataflow"
    flow = jd.Flow.open(home=home, name="big", spark=spark)
    try:
        flow.source("events", path=str(events), format="parquet", partition_by="part")
        result = flow.run()
        assert result.ok, result
    finally:
        flow.close()
    return home


def server_config(home: Path) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_dataflow.server": True}},
        "Dataflow": {"home": str(home)},
    }
