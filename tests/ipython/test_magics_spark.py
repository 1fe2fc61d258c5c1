"""The magics end to end on the shared local SparkSession."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.ipython.conftest import Cells, html_of, text_of, write_day

pytestmark = pytest.mark.spark

FLOW = [
    "%%source orders --format csv --path data/orders --partition-by date --option header=true inferSchema=true\n",
    "%%transform clean --expect 'amount >= 0'\nSELECT date, order_id, customer_id, amount FROM orders",
    "%%transform daily\nSELECT date, count(*) AS n, sum(amount) AS revenue FROM clean GROUP BY date",
    "%%transform by_customer --lang python\ndef by_customer(clean):\n"
    "    return with_total(clean.groupBy('customer_id'))\n",
    "%%sink daily_out --from daily --format csv --path out/daily --option header=true",
]


def build(cells: Cells) -> None:
    cells("def with_total(grouped):\n    from pyspark.sql import functions as F\n"
          "    return grouped.agg(F.sum('amount').alias('total'))\n")
    for cell in FLOW:
        cells(cell)


def test_run_status_query_promote(spark_cells: Cells, orders: Path, tmp_path: Path) -> None:
    cells = spark_cells
    build(cells)
    out = cells("%dataflow run")
    assert "executed, 0 reused, 0 failed" in out.stdout, out.stdout
    assert "orders: done" in out.stdout and "tasks" in out.stdout       # plain-text progress
    result = cells.ip.user_ns["_dataflow_run"]
    assert result.ok and {t.stage for t in result.executed} >= {"orders", "clean", "daily", "by_customer"}
    assert list((tmp_path / "out" / "daily").glob("*.csv"))

    status = cells("%dataflow status")
    html = html_of(status)
    assert html.count("fresh") >= 5 and "#1a7f37" in html            # state colour
    text = text_of(status)
    assert "daily" in text and "map" in text and "UTC" in text
    assert "nothing to do" in text_of(cells("%dataflow plan"))
    again = cells("%dataflow run")
    assert "0 executed, 0 reused, 0 failed" in again.stdout

    q = cells("%%query big --limit 2\nSELECT date, revenue FROM daily ORDER BY date")
    frame = cells.ip.user_ns["big"]
    assert isinstance(frame, pd.DataFrame) and len(frame) == 2
    assert "first 2 rows (limit 2; more rows exist)" in text_of(q) and "<table" in html_of(q)
    q = cells("%%query\nSELECT customer_id, total FROM by_customer ORDER BY customer_id")
    assert cells.ip.user_ns["_dataflow_query"].total.tolist() == [129.0, 63.0, 66.0]
    assert "3 rows" in text_of(q)

    cells("%%query big_days\nSELECT date, revenue FROM daily WHERE revenue > 50")
    out = cells("%dataflow promote big_days AS big_days_t")
    assert "transform big_days_t: added" in out.stdout
    assert cells.ip.rl_next_input.startswith("%%transform big_days_t\nSELECT date, revenue FROM daily")
    # Running the promoted cell registers nothing new.
    assert "unchanged" in cells(cells.ip.rl_next_input).stdout
    assert "big_days_t" in text_of(cells("%dataflow plan"))
    cells("%dataflow run big_days_t")
    assert cells.flow.table("big_days_t").count() == 2

    explain = text_of(cells("%dataflow explain daily date=2024-01-02"))
    assert "mode map" in explain and "clean/date=2024-01-02" in explain and "sum(amount)" in explain


def test_late_file_recomputes_one_partition(spark_cells: Cells, orders: Path) -> None:
    cells = spark_cells
    build(cells)
    cells("%dataflow run")
    write_day(orders, "2024-01-01", [(900, 1, 5.0)], name="late.csv")
    plan = text_of(cells("%dataflow plan"))
    assert "late_data" in plan and "date=2024-01-01" in plan and "date=2024-01-02" not in plan
    cells("%dataflow run")
    result = cells.ip.user_ns["_dataflow_run"]
    partitions = {(t.stage, t.partition) for t in result.executed if t.partition}
    assert ("orders", "date=2024-01-01") in partitions and ("daily", "date=2024-01-01") in partitions
    assert all(p == "date=2024-01-01" for s, p in partitions if s in ("orders", "clean", "daily"))


def test_errors_from_running_and_querying_are_short(spark_cells: Cells, orders: Path) -> None:
    cells = spark_cells
    build(cells)
    cells("%%transform broken --lang python\ndef broken(daily):\n    return 42\n")
    msg = cells.error("%dataflow run")
    assert "stage 'broken'" in msg and "must return a pyspark DataFrame" in msg
    assert cells.ip.user_ns["_dataflow_run"].failed
    status = text_of(cells("%dataflow status"))
    assert "failed" in status and "fresh" in status                 # unrelated stages completed

    msg = cells.error("%%query\nSELECT no_such_column FROM daily")
    assert "no_such_column" in msg
    msg = cells.error("%%query\nSELECT * FROM dayly")
    assert "did you mean 'daily'?" in msg
    msg = cells.error("%%query\nSELECT * FROM daily WHERE")
    assert "line 1" in msg and "^" in msg
    msg = cells.error("%dataflow explain daily date=1999-01-01")
    assert "no committed partition" in msg


def test_kernel_restart_finds_everything_fresh(spark_cells: Cells, orders: Path, tmp_path: Path) -> None:
    cells = spark_cells
    build(cells)
    cells("%dataflow run")
    first_flow = cells.flow
    # A restarted kernel: the extension is loaded again into a fresh namespace, same home.
    cells.ip.extension_manager.unload_extension("jupyter_dataflow")
    cells("%load_ext jupyter_dataflow")
    cells(f"%dataflow open --home {tmp_path / '.dataflow'} --spark _test_spark")
    assert cells.flow is not first_flow
    status = cells.flow.status()
    assert {s.name for s in status} == {"orders", "clean", "daily", "by_customer", "daily_out"}
    assert all(s.state == "fresh" for s in status), status
    cells("%dataflow run")
    result = cells.ip.user_ns["_dataflow_run"]
    assert result.executed == [] and result.reused == [] and result.failed == []
