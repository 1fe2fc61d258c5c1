"""End-to-end behaviour of the engine on real local Spark."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import jupyter_dataflow as jd
from tests.engine.conftest import build_standard, make_rows, read_orders_pandas, write_day

pytestmark = pytest.mark.spark


def _frame(flow: jd.Flow, name: str, order: list[str]) -> pd.DataFrame:
    df = flow.table(name).toPandas()
    return df.sort_values(order).reset_index(drop=True)


def _jobs(spark: Any) -> int:
    tracker = spark.sparkContext.statusTracker()
    return len(tracker.getJobIdsForGroup(None))


def test_results_match_an_independent_pandas_computation(open_flow, orders_dir, tmp_path: Path) -> None:
    flow = open_flow()
    build_standard(flow)
    flow.sink("daily_out", source="daily", path="out/daily", format="csv")
    result = flow.run()
    assert result.ok, result.errors
    orders = read_orders_pandas(orders_dir)
    clean = orders[orders.amount > 0]
    expected_daily = clean.groupby("date").agg(n=("order_id", "count"), revenue=("amount", "sum")).reset_index()
    got_daily = _frame(flow, "daily", ["date"])
    assert list(got_daily.columns) == ["date", "n", "revenue"]
    assert [str(d) for d in got_daily.date] == list(expected_daily.date)
    assert list(got_daily.n) == list(expected_daily.n)
    assert got_daily.revenue.round(6).tolist() == expected_daily.revenue.round(6).tolist()

    expected_cust = clean.groupby("customer_id").agg(n=("order_id", "count"), revenue=("amount", "sum")).reset_index()
    got_cust = _frame(flow, "by_customer", ["customer_id"])
    assert got_cust.customer_id.tolist() == expected_cust.customer_id.tolist()
    assert got_cust.n.tolist() == expected_cust.n.tolist()
    assert got_cust.revenue.round(6).tolist() == expected_cust.revenue.round(6).tolist()

    segments = {c: ["a", "b", "c"][c % 3] for c in range(8)}
    got_enriched = _frame(flow, "enriched", ["customer_id"])
    assert got_enriched.segment.tolist() == [segments[c] for c in got_enriched.customer_id]
    assert got_enriched.revenue.round(6).tolist() == expected_cust.revenue.round(6).tolist()

    sink_files = list((tmp_path / "out" / "daily").glob("*.csv"))
    assert sink_files, "the sink wrote no CSV"
    sunk = pd.concat(pd.read_csv(f) for f in sink_files).sort_values("date")
    assert sunk.n.tolist() == expected_daily.n.tolist()


def test_second_run_does_nothing_and_starts_no_spark_job(open_flow, orders_dir, spark) -> None:
    flow = open_flow()
    build_standard(flow)
    assert flow.run().ok
    before = _jobs(spark)
    again = flow.run()
    assert again.executed == [] and again.reused == [] and again.failed == []
    assert _jobs(spark) == before
    assert all(s.state == "fresh" for s in flow.status())


def test_reopening_in_a_new_process_finds_everything_fresh(open_flow, orders_dir, tmp_path: Path) -> None:
    flow = open_flow()
    build_standard(flow)
    assert flow.run().ok
    code = ("import jupyter_dataflow as jd, json; f = jd.Flow.open(home={!r}); p = f.plan(); "
            "print(json.dumps({{'tasks': len(p.tasks), 'states': sorted({{s.state for s in f.status()}})}}))".format(str(tmp_path / ".dataflow")))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip().splitlines()[-1] == '{"tasks": 0, "states": ["fresh"]}'


def test_cosmetic_sql_edit_runs_nothing(open_flow, orders_dir) -> None:
    flow = open_flow()
    build_standard(flow)
    assert flow.run().ok
    change = flow.transform("daily", "select date,\n  COUNT(*) as n, -- rows\n  SUM(amount) as revenue\n"
                                     "from clean\ngroup by date")
    assert change.action == "unchanged"
    assert flow.plan().tasks == []
    assert flow.run().executed == []


def test_semantic_edit_in_the_middle_recomputes_it_and_downstream_only(open_flow, orders_dir) -> None:
    flow = open_flow()
    build_standard(flow)
    assert flow.run().ok
    change = flow.transform("clean", "SELECT date, order_id, customer_id, amount FROM orders WHERE amount > 10")
    assert change.action == "replaced" and set(change.stale) >= {"clean", "daily", "by_customer", "enriched"}
    plan = flow.plan()
    assert {t.stage for t in plan.tasks} == {"clean", "daily", "by_customer", "enriched"}
    assert {t.reason for t in plan.tasks if t.stage == "clean"} == {"code_changed"}
    result = flow.run()
    assert result.ok
    assert {t.stage for t in result.executed} == {"clean", "daily", "by_customer", "enriched"}
    assert min(flow.table("clean").toPandas().amount) > 10


def test_late_file_recomputes_only_its_partition(open_flow, orders_dir) -> None:
    flow = open_flow()
    build_standard(flow)
    assert flow.run().ok
    write_day(orders_dir, "2024-01-02", make_rows(99, 5, start=90000), name="late.csv")
    plan = flow.plan()
    source_tasks = [t for t in plan.tasks if t.stage == "orders"]
    assert [(t.partition, t.reason) for t in source_tasks] == [("date=2024-01-02", "late_data")]
    assert "late.csv" in source_tasks[0].cause
    result = flow.run()
    assert result.ok
    per_stage = {}
    for t in result.executed:
        per_stage.setdefault(t.stage, set()).add(t.partition)
    assert per_stage["orders"] == {"date=2024-01-02"}
    assert per_stage["clean"] == {"date=2024-01-02"}
    assert per_stage["daily"] == {"date=2024-01-02"}


def test_a_deleted_partition_is_planned_deleted_downstream_as_the_run_deletes_it(open_flow, orders_dir) -> None:
    flow = open_flow()
    build_standard(flow)
    assert flow.run().ok
    for f in (orders_dir / "date=2024-01-02").iterdir():
        f.unlink()
    (orders_dir / "date=2024-01-02").rmdir()

    def removals(tasks: list[Any]) -> set[tuple[str, str, str]]:
        return {(t.stage, t.role, t.partition) for t in tasks if t.reason == "deleted"}

    planned = flow.plan().tasks
    gone = "date=2024-01-02"
    assert removals(planned) == {("orders", "output", gone), ("clean", "output", gone),
                                 ("daily", "output", gone), ("by_customer", "partial", gone)}
    assert not [t for t in planned if t.partition == gone and t.reason != "deleted"]
    result = flow.run()
    assert result.ok, result.errors
    assert removals(result.executed) == removals(planned)
    assert gone not in {r["date"].isoformat() for r in flow.table("daily").collect()}


def test_identical_stage_elsewhere_is_reused_with_zero_spark_jobs(open_flow, orders_dir, spark) -> None:
    flow = open_flow()
    build_standard(flow)
    assert flow.run().ok
    other = open_flow("other")
    build_standard(other)
    before = _jobs(spark)
    result = other.run()
    assert result.ok and result.executed == [] and len(result.reused) > 0
    assert _jobs(spark) == before
    pd.testing.assert_frame_equal(_frame(flow, "daily", ["date"]), _frame(other, "daily", ["date"]))


def test_failing_python_stage_is_named_and_other_branches_finish(open_flow, orders_dir) -> None:
    flow = open_flow()
    build_standard(flow)
    flow.transform("boom", python="def boom(clean):\n    raise ValueError('bad input row')\n")
    flow.transform("after_boom", "SELECT * FROM boom")
    result = flow.run()
    assert "boom" in result.errors and "bad input row" in result.errors["boom"]
    assert "stage 'boom'" in result.errors["boom"]
    assert {t.stage for t in result.skipped} == {"after_boom"}
    states = {s.name: s.state for s in flow.status()}
    assert states["boom"] == "failed" and states["daily"] == "fresh" and states["enriched"] == "fresh"


def test_python_stage_must_return_a_dataframe(open_flow, orders_dir) -> None:
    flow = open_flow()
    build_standard(flow)
    flow.transform("notdf", python="def notdf(clean):\n    return clean.count()\n")
    result = flow.run()
    assert "must return a pyspark DataFrame" in result.errors["notdf"]


def test_missing_source_path_is_a_clear_error(open_flow, tmp_path: Path) -> None:
    flow = open_flow()
    flow.source("ghost", path="data/nowhere", format="csv")
    with pytest.raises(jd.SourceError, match="does not exist"):
        flow.plan()
    result = flow.run()
    assert "does not exist" in result.errors["ghost"]


def test_corrupt_parquet_source_fails_its_stage(open_flow, tmp_path: Path, spark) -> None:
    folder = tmp_path / "data" / "pq"
    spark.range(5).write.parquet(str(folder))
    bad = folder / "part-corrupt.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    flow = open_flow()
    flow.source("pq", path="data/pq", format="parquet")
    flow.transform("pq_all", "SELECT * FROM pq")
    result = flow.run()
    assert "pq" in result.errors
    assert {t.stage for t in result.skipped} == {"pq_all"}


def test_query_and_explain(open_flow, orders_dir) -> None:
    flow = open_flow()
    build_standard(flow)
    assert flow.run().ok
    rows = flow.query("SELECT count(*) AS c FROM daily d JOIN by_customer b ON true").collect()
    assert rows[0]["c"] == 3 * 8
    info = flow.explain("daily", "date=2024-01-01")
    part = info["partitions"][0]
    assert set(part["parts"]) == {"code", "config", "inputs"}
    assert part["inputs"][0]["stage"] == "clean" and part["rows"] == 1
    with pytest.raises(jd.UnknownStageError, match="did you mean 'daily'"):
        flow.query("SELECT * FROM dailly")


def test_branch_shares_outputs_and_recomputes_only_the_change(open_flow, orders_dir) -> None:
    flow = open_flow()
    build_standard(flow)
    assert flow.run().ok
    dev = flow.branch("dev")
    assert dev.plan().tasks == []
    dev.transform("daily", "SELECT date, count(*) AS n, max(amount) AS revenue FROM clean GROUP BY date")
    result = dev.run()
    assert {t.stage for t in result.executed} == {"daily"}
    assert flow.plan().tasks == []
    main_rev = _frame(flow, "daily", ["date"]).revenue.tolist()
    dev_rev = _frame(dev, "daily", ["date"]).revenue.tolist()
    assert main_rev != dev_rev


def test_bad_input_changes_nothing(open_flow, orders_dir) -> None:
    flow = open_flow()
    build_standard(flow)
    before = {n: flow.graph[n].definition_hash() for n in flow.graph}
    bad_calls = [
        lambda: flow.transform("x", "SELECT * FROM nowhere"),
        lambda: flow.transform("../x", "SELECT * FROM clean"),
        lambda: flow.transform("clean", "SELECT * FROM daily"),
        lambda: flow.transform("y", "SELEC * FROM clean"),
        lambda: flow.source("orders", path="x", format="xml"),
        lambda: flow.drop("clean"),
    ]
    for call in bad_calls:
        with pytest.raises(jd.DataflowError):
            call()
    reopened = jd.Flow.open(home=flow.home, name=flow.name)
    assert {n: reopened.graph[n].definition_hash() for n in reopened.graph} == before
    assert os.path.isdir(flow.home)


def test_schema_change_in_a_new_file_is_reported(open_flow, orders_dir) -> None:
    flow = open_flow()
    build_standard(flow)
    assert flow.run().ok
    day = orders_dir / "date=2024-01-04"
    day.mkdir()
    (day / "part-0.csv").write_text("order_id,client,amount\n1,2,3.0\n")
    result = flow.run()
    assert "orders" in result.errors
    assert "date=2024-01-04" in result.errors["orders"]
    assert flow.table("daily").count() == 3, "the previous version must stay readable"


def test_parquet_source_read_in_place(open_flow, tmp_path: Path, spark) -> None:
    folder = tmp_path / "data" / "events"
    for day in ("2024-03-01", "2024-03-02"):
        spark.range(10).selectExpr("id", "id * 2 AS v").write.parquet(str(folder / f"day={day}"))
    flow = open_flow()
    flow.source("events", path="data/events", format="parquet", partition_by="day", ingest=False)
    flow.transform("per_day", "SELECT day, count(*) AS n, sum(v) AS v FROM events GROUP BY day")
    assert flow.run().ok
    assert not any(Path(p["path"]).is_dir() for p in flow.explain("events")["partitions"])
    got = sorted((str(r["day"]), r["n"], r["v"]) for r in flow.table("per_day").collect())
    assert got == [("2024-03-01", 10, 90), ("2024-03-02", 10, 90)]
    batches = list(flow.record_batches("events"))
    assert sum(b.num_rows for b in batches) == 20 and "day" in batches[0].schema.names
    report = flow.gc(keep=0, grace=0)
    assert all(p.exists() for p in folder.rglob("*.parquet")) and report.objects == []
    spark.range(5).selectExpr("id", "id AS v").write.parquet(str(folder / "day=2024-03-03"))
    result = flow.run()
    assert {(t.stage, t.partition) for t in result.executed} == {("events", "day=2024-03-03"),
                                                                  ("per_day", "day=2024-03-03")}


def test_recomputed_partition_with_unchanged_rows_stops_propagation(open_flow, orders_dir) -> None:
    flow = open_flow()
    build_standard(flow)
    assert flow.run().ok
    # A late file whose rows `clean` filters out entirely: orders and clean recompute
    # that day, clean's rows are identical, so nothing downstream runs.
    write_day(orders_dir, "2024-01-02", [(777001, 1, -5.0), (777002, 2, -1.5)], name="refunds.csv")
    result = flow.run()
    assert result.ok
    assert {(t.stage, t.partition) for t in result.executed} == {("orders", "date=2024-01-02"),
                                                                  ("clean", "date=2024-01-02")}
    assert flow.plan().tasks == []


def test_a_source_found_fresh_partition_by_partition_records_its_listing(open_flow, orders_dir) -> None:
    import dataclasses

    from jupyter_dataflow.plan.planner import source_version

    flow = open_flow()
    build_standard(flow)
    assert flow.run().ok
    state = flow.meta.states(flow.name)["orders"]
    flow.meta.put_state(flow.name, dataclasses.replace(state, inputs_version="recorded-in-an-older-form"))
    assert flow.plan().tasks == []          # fresh, found partition by partition
    result = flow.run()
    assert result.executed == [] and result.ok
    listing = flow._reconciler().listings(["orders"])["orders"]
    assert flow.meta.states(flow.name)["orders"].inputs_version == source_version(listing)
