"""A stage's stale partitions share one Spark job, and nothing about the result shows it.

Each partition is still computed from its own inputs, measured on its own and stored
as its own object, byte-for-byte what a job per partition would store: same data
version, same fingerprint. Errors still name their partition.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import jupyter_dataflow as jd
from jupyter_dataflow.plan.planner import OUTPUT, PARTIAL
from tests.engine.conftest import make_rows, write_day

pytestmark = pytest.mark.spark

DAYS = [f"2024-03-0{d}" for d in range(1, 9)]


def _build(flow: jd.Flow, root: Path) -> None:
    flow.source("orders", path=str(root), format="csv", partition_by="date", options={"header": "true", "inferSchema": "true"})
    flow.transform("clean", "SELECT date, customer_id, amount FROM orders WHERE amount > 0")
    flow.transform("by_customer", "SELECT customer_id, count(*) AS n, sum(amount) AS total "
                                  "FROM clean GROUP BY customer_id")
    flow.transform("overall", "SELECT count(*) AS customers, sum(total) AS total FROM by_customer")


def _jobs(spark: Any) -> int:
    return len(spark.sparkContext.statusTracker().getJobIdsForGroup(None))


def _versions(flow: jd.Flow, stage: str, role: str = OUTPUT) -> dict[str, tuple[str, str, int]]:
    current = flow.meta.current(flow.name, stage, role)
    objects = flow.meta.objects([c.fingerprint for c in current])
    return {c.partition: (c.fingerprint, c.data_version, objects[c.fingerprint].rows) for c in current}


def test_a_full_run_needs_a_few_jobs_per_stage_not_one_per_partition(tmp_path: Path, spark) -> None:
    root = tmp_path / "orders"
    for i, day in enumerate(DAYS):
        write_day(root, day, make_rows(i, 30, start=100 * i))
    flow = jd.Flow.open(home=tmp_path / ".dataflow", spark=spark)
    _build(flow, root)
    before = _jobs(spark)
    result = flow.run()
    jobs = _jobs(spark) - before
    assert result.ok, result.errors
    partition_tasks = [t for t in result.executed if t.partition]
    assert len(partition_tasks) == 3 * len(DAYS)  # ingest, map and partial, per day
    # One job per partition would be 24 write jobs; shared jobs are a handful per stage
    # (schema inference, and the query stages adaptive execution submits as jobs).
    assert jobs < len(partition_tasks), f"{jobs} Spark jobs for {len(partition_tasks)} partition tasks"
    flow.close()


def test_shared_job_outputs_equal_one_job_per_partition(tmp_path: Path, spark) -> None:
    together, one_by_one = tmp_path / "together", tmp_path / "one_by_one"
    for i, day in enumerate(DAYS[:4]):
        write_day(together, day, make_rows(i, 25, start=100 * i))
    batched = jd.Flow.open(home=tmp_path / ".batched", spark=spark)
    _build(batched, together)
    assert batched.run().ok

    single = jd.Flow.open(home=tmp_path / ".single", spark=spark)
    _build(single, one_by_one)
    for i, day in enumerate(DAYS[:4]):
        write_day(one_by_one, day, make_rows(i, 25, start=100 * i))
        result = single.run()
        assert result.ok, result.errors
        assert len([t for t in result.executed if t.stage == "clean"]) == 1
    for stage, role in (("orders", OUTPUT), ("clean", OUTPUT), ("by_customer", PARTIAL)):
        got, want = _versions(batched, stage, role), _versions(single, stage, role)
        assert set(got) == {f"date={d}" for d in DAYS[:4]}
        if stage == "orders":  # the two sources live in different folders: compare contents
            got = {p: v[1:] for p, v in got.items()}
            want = {p: v[1:] for p, v in want.items()}
        # Same data versions: the same rows, measured the same way, in a shared job or
        # not; downstream, the same fingerprints, as each task saw the same inputs.
        assert got == want, stage
    assert sorted(batched.table("overall").collect()) == sorted(single.table("overall").collect())
    batched.close()
    single.close()


def test_a_partition_filtered_to_nothing_still_gets_its_empty_output(tmp_path: Path, spark) -> None:
    root = tmp_path / "orders"
    write_day(root, DAYS[0], make_rows(1, 10))
    write_day(root, DAYS[1], [(900 + i, i, -5.0) for i in range(6)])  # every row filtered out
    write_day(root, DAYS[2], make_rows(3, 10, start=300))
    flow = jd.Flow.open(home=tmp_path / ".dataflow", spark=spark)
    _build(flow, root)
    assert flow.run().ok
    clean = _versions(flow, "clean")
    assert set(clean) == {f"date={d}" for d in DAYS[:3]}
    assert clean[f"date={DAYS[1]}"][2] == 0
    empty_path = flow.meta.object(clean[f"date={DAYS[1]}"][0]).path
    assert spark.read.parquet(empty_path).columns == ["date", "customer_id", "amount"]
    assert flow.table("clean").count() == sum(1 for r in make_rows(1, 10) + make_rows(3, 10) if r[2] > 0)
    assert flow.plan().tasks == []
    flow.close()


def test_a_bad_partition_in_a_shared_job_is_named_and_nothing_is_published(tmp_path: Path, spark) -> None:
    root = tmp_path / "orders"
    for i, day in enumerate(DAYS[:3]):
        write_day(root, day, make_rows(i, 10, start=100 * i))
    flow = jd.Flow.open(home=tmp_path / ".dataflow", spark=spark)
    _build(flow, root)
    assert flow.run().ok  # records the schema: amount is a double
    for i, day in enumerate(DAYS[3:6]):
        write_day(root, day, make_rows(10 + i, 10, start=1000 * i))
    (root / f"date={DAYS[4]}" / "part-0.csv").write_text("order_id,customer_id,amount\n1,2,not-a-number\n")
    before = {s: _versions(flow, s) for s in ("orders", "clean")}
    result = flow.run()
    assert "orders" in result.errors
    assert f"date={DAYS[4]}" in result.errors["orders"]
    assert [t.partition for t in result.failed] == [f"date={DAYS[4]}"]
    # The stage keeps its previous version: the good partitions of the failed run are
    # not published without the bad one.
    assert {s: _versions(flow, s) for s in ("orders", "clean")} == before
    flow.close()


def test_an_expectation_failing_in_one_partition_of_a_shared_job(tmp_path: Path, spark) -> None:
    root = tmp_path / "orders"
    for i, day in enumerate(DAYS[:3]):
        write_day(root, day, [(100 * i + j, j, 10.0 + j) for j in range(5)])
    (root / f"date={DAYS[1]}" / "part-1.csv").write_text("order_id,customer_id,amount\n77,1,5000.0\n")
    flow = jd.Flow.open(home=tmp_path / ".dataflow", spark=spark)
    flow.source("orders", path=str(root), format="csv", partition_by="date", options={"header": "true", "inferSchema": "true"})
    flow.transform("checked", "SELECT date, order_id, amount FROM orders", expect=["amount < 1000"])
    result = flow.run()
    assert [t.partition for t in result.failed] == [f"date={DAYS[1]}"]
    message = result.errors["checked"]
    assert "amount < 1000" in message and "1 of 6 rows" in message and "5000.0" in message
    assert _versions(flow, "checked") == {}
    assert len(_versions(flow, "orders")) == 3
    assert not os.listdir(flow.store.staging), "a failed shared job leaves nothing in staging"
    flow.close()
