"""Rollups: the combine of a `partial` stage reads a rollup and the partials it leaves
out, not every partial, and still equals a from-scratch run exactly."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import jupyter_dataflow as jd
from jupyter_dataflow.execute.runner import TaskRunner
from jupyter_dataflow.plan.planner import PARTIAL, ROLLUP
from jupyter_dataflow.reconciler import rollup
from tests.engine.conftest import make_rows, write_day

pytestmark = pytest.mark.spark

# Integer sums, so the from-scratch comparison is exact whatever order partials add in.
BY_CUSTOMER = ("SELECT customer_id, count(*) AS n, sum(CAST(amount * 100 AS BIGINT)) AS cents, "
               "max(amount) AS top, min(order_id) AS first_order FROM orders GROUP BY customer_id")
TOTALS = "SELECT count(*) AS n, sum(CAST(amount * 100 AS BIGINT)) AS cents, max(amount) AS top FROM orders"


@pytest.fixture(autouse=True)
def slack_of_two(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollup, "SLACK", 2)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """The object paths of every read a task makes, in order."""
    calls: list[list[str]] = []
    original = TaskRunner.read_objects

    def spy(self: TaskRunner, paths: Any, schema_json: str | None) -> Any:
        calls.append(list(paths))
        return original(self, paths, schema_json)

    monkeypatch.setattr(TaskRunner, "read_objects", spy)
    yield calls


def _day(i: int) -> str:
    return f"2024-03-{i:02d}"


def _build(flow: jd.Flow) -> None:
    flow.source("orders", path="orders", format="csv", partition_by="date",
                options={"header": "true", "inferSchema": "true"})
    flow.transform("by_customer", BY_CUSTOMER)
    flow.transform("totals", TOTALS)


def _rows(flow: jd.Flow, name: str) -> list[tuple]:
    return sorted(tuple(r) for r in flow.table(name).collect())


def _rollup(flow: jd.Flow, stage: str = "by_customer") -> Any:
    rows = flow.meta.current(flow.name, stage, ROLLUP)
    if not rows:
        return None
    return flow.meta.objects([rows[0].fingerprint])[rows[0].fingerprint]


def _partial_paths(flow: jd.Flow, stage: str = "by_customer") -> dict[str, str]:
    current = flow.meta.current(flow.name, stage, PARTIAL)
    objects = flow.meta.objects([c.fingerprint for c in current])
    return {c.partition: objects[c.fingerprint].path for c in current}


def _read(reads: list[list[str]], *paths: str) -> bool:
    """Whether one read took exactly these objects."""
    return sorted(paths) in [sorted(r) for r in reads]


def _rollups_built(result: jd.RunResult, stage: str = "by_customer") -> list[str]:
    return [t.cause for t in result.executed if t.stage == stage and t.role == ROLLUP and t.reason != "deleted"]


def _rollup_tasks(tasks: list[Any]) -> list[tuple[str, str, str]]:
    return sorted((t.stage, t.reason, t.cause) for t in tasks if t.role == ROLLUP)


def _run(flow: jd.Flow) -> jd.RunResult:
    """Run `flow`, checking its plan named the rollups the run built, reused or dropped."""
    planned = _rollup_tasks(flow.plan().tasks)
    result = flow.run()
    assert result.ok, result.errors
    assert planned == _rollup_tasks(result.executed + result.reused), "the plan foretold other rollups"
    return result


def _assert_as_from_scratch(flow: jd.Flow, work: Path, spark: Any, tag: str) -> None:
    scratch = jd.Flow.open(home=work / f".scratch-{tag}", spark=spark)
    _build(scratch)
    assert scratch.run().ok
    for name in ("orders", "by_customer", "totals"):
        assert _rows(flow, name) == _rows(scratch, name), f"{tag}: {name} differs from a from-scratch run"
    scratch.close()


def _ran(tmp_path: Path, open_flow: Callable[..., jd.Flow], days: int, rows: int) -> tuple[Path, jd.Flow]:
    """The source folder and a flow that has reconciled `days` days of `rows` rows each."""
    orders = tmp_path / "orders"
    for i in range(1, days + 1):
        write_day(orders, _day(i), make_rows(i, rows, start=100 * i))
    flow = open_flow()
    _build(flow)
    _run(flow)
    return orders, flow


def test_appends_read_the_rollup_and_only_the_new_partials(
        tmp_path: Path, spark: Any, reads: list[list[str]], open_flow: Callable[..., jd.Flow]) -> None:
    orders = tmp_path / "orders"
    for i in range(1, 5):
        write_day(orders, _day(i), make_rows(i, 10 + i, start=100 * i))
    flow = open_flow()
    _build(flow)
    first = _run(flow)
    assert _rollups_built(first) == ["4 partials"]
    built = _rollup(flow)
    assert sorted(pid for _, pid, _ in built.inputs) == sorted(_partial_paths(flow))
    _assert_as_from_scratch(flow, tmp_path, spark, "full")

    # One new day: no new rollup; the combine reads the rollup and the new partial alone.
    write_day(orders, _day(5), make_rows(5, 7, start=500))
    reads.clear()
    result = _run(flow)
    assert _rollups_built(result) == []
    assert _rollup(flow).fingerprint == built.fingerprint
    assert _read(reads, built.path, _partial_paths(flow)[f"date={_day(5)}"])
    assert not any(len(paths) > 2 for paths in reads), reads
    _assert_as_from_scratch(flow, tmp_path, spark, "append")

    # Two more days leave three partials out, more than the slack: a new rollup is built
    # from the old one and those three, and the combine reads it alone.
    for i in (6, 7):
        write_day(orders, _day(i), make_rows(i, 5, start=100 * i))
    reads.clear()
    result = _run(flow)
    assert _rollups_built(result) == ["the rollup and 3 partials"]
    parts = _partial_paths(flow)
    assert _read(reads, built.path, *(parts[f"date={_day(i)}"] for i in (5, 6, 7)))
    rebuilt = _rollup(flow)
    assert sorted(pid for _, pid, _ in rebuilt.inputs) == sorted(parts)
    assert _read(reads, rebuilt.path)
    _assert_as_from_scratch(flow, tmp_path, spark, "rebuilt")


def test_late_data_in_a_covered_partition_rebuilds_from_all_partials(
        tmp_path: Path, spark: Any, reads: list[list[str]], open_flow: Callable[..., jd.Flow]) -> None:
    orders, flow = _ran(tmp_path, open_flow, days=5, rows=8)
    old = _rollup(flow)

    # A late file with a new maximum: a merged max cannot be taken back, so the rollup
    # is rebuilt from every partial, not patched.
    write_day(orders, _day(2), [(9001, 3, 99999.0)], name="late.csv")
    reads.clear()
    result = _run(flow)
    assert _rollups_built(result) == ["5 partials"]
    assert _read(reads, *_partial_paths(flow).values())
    assert old.path not in {p for paths in reads for p in paths}
    assert _rollup(flow).fingerprint != old.fingerprint
    assert max(r[3] for r in _rows(flow, "by_customer")) == 99999.0
    _assert_as_from_scratch(flow, tmp_path, spark, "late")

    # Deleting days until no more partials than the slack remain drops the stale rollup.
    for i in (3, 4, 5):
        shutil.rmtree(orders / f"date={_day(i)}")
    result = _run(flow)
    assert [t.reason for t in result.executed if t.role == ROLLUP] == ["deleted", "deleted"]
    assert _rollup(flow) is None
    _assert_as_from_scratch(flow, tmp_path, spark, "deleted")
    assert flow.plan().tasks == []


def test_a_rollup_is_reused_across_branches(
        tmp_path: Path, spark: Any, open_flow: Callable[..., jd.Flow]) -> None:
    orders, flow = _ran(tmp_path, open_flow, days=4, rows=6)
    dev = flow.branch("dev")
    dev.transform("totals", TOTALS.replace("count(*) AS n", "count(*) AS orders"))
    write_day(orders, _day(5), make_rows(5, 6, start=500))
    for i in (6, 7):
        write_day(orders, _day(i), make_rows(i, 6, start=100 * i))
    _run(flow)
    planned = _rollup_tasks(dev.plan().tasks)
    result = dev.run()
    assert result.ok, result.errors
    # A plan cannot know that totals' recomputed partials keep their data, so it foretells
    # a rollup of all seven; the run finds the copied rollup still valid.
    assert planned == [("by_customer", "input_changed", "the rollup and 3 partials"),
                       ("totals", "input_changed", "7 partials")]
    assert _rollup_tasks(result.executed + result.reused) == [
        ("by_customer", "input_changed", "the rollup and 3 partials"),
        ("totals", "input_changed", "the rollup and 3 partials")]
    assert _rollups_built(result) == []
    # Renaming an output column on the branch changes the combine, not the partials'
    # data: the copied rollup still stands for its four days.
    assert _rollups_built(result, "totals") == ["the rollup and 3 partials"]
    assert {t.stage for t in result.reused if t.role == ROLLUP} == {"by_customer"}
    assert _rollup(dev).fingerprint == _rollup(flow).fingerprint


def test_a_rollup_made_by_another_query_never_stands_in(
        tmp_path: Path, spark: Any, open_flow: Callable[..., jd.Flow]) -> None:
    orders = tmp_path / "orders"
    # One row per customer and day: a max and a min partial hold the very same data.
    for i in range(1, 5):
        write_day(orders, _day(i), [(100 * i + c, c, float(10 * i + c)) for c in range(3)])
    flow = open_flow()
    flow.source("orders", path="orders", format="csv", partition_by="date",
                options={"header": "true", "inferSchema": "true"})
    flow.transform("extremes", "SELECT customer_id, max(amount) AS x FROM orders GROUP BY customer_id")
    _run(flow)
    old = _rollup(flow, "extremes")
    assert old is not None
    flow.transform("extremes", "SELECT customer_id, min(amount) AS x FROM orders GROUP BY customer_id")
    result = _run(flow)
    assert _rows(flow, "extremes") == [(c, float(10 + c)) for c in range(3)]
    assert _rollups_built(result, "extremes") == ["4 partials"]
    assert _rollup(flow, "extremes").fingerprint != old.fingerprint
