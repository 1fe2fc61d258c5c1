"""The core promise: after any sequence of source changes, an incremental run yields
exactly what a from-scratch run of the same graph yields.

Hypothesis draws sequences of changes (new days, late files in old days, rewritten
files, deleted files and days); after each step the flow reconciles incrementally and
every stage is compared with a fresh home computed from scratch. Doubles are summed in
different orders by the two paths, so they are compared to 1e-9 relative tolerance.
The rollup slack is lowered so that the combine reads rollups, and they are rebuilt,
from two partials on.
"""

from __future__ import annotations

import math
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jupyter_dataflow as jd
from jupyter_dataflow.reconciler import rollup
from tests.engine.conftest import make_rows, write_day

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(autouse=True, scope="module")
def small_rollup_slack() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rollup, "SLACK", 1)
        yield

DAYS = [f"2024-02-{d:02d}" for d in range(1, 6)]

change = st.one_of(
    st.tuples(st.just("append"), st.sampled_from(DAYS), st.integers(1, 12)),
    st.tuples(st.just("late"), st.sampled_from(DAYS), st.integers(1, 5)),
    st.tuples(st.just("rewrite"), st.sampled_from(DAYS), st.integers(1, 8)),
    st.tuples(st.just("delete_file"), st.sampled_from(DAYS), st.just(0)),
    st.tuples(st.just("delete_day"), st.sampled_from(DAYS), st.just(0)),
)


def _build(flow: jd.Flow) -> None:
    flow.source("orders", path="orders", format="csv", partition_by="date",
                options={"header": "true", "inferSchema": "false"})
    flow.transform("clean", "SELECT date, CAST(order_id AS BIGINT) AS order_id, CAST(customer_id AS INT) AS "
                            "customer_id, CAST(amount AS DOUBLE) AS amount FROM orders WHERE CAST(amount AS DOUBLE) > 0")
    flow.transform("daily", "SELECT date, count(*) AS n, sum(amount) AS revenue FROM clean GROUP BY date")
    flow.transform("by_customer", "SELECT customer_id, count(*) AS n, sum(amount) AS revenue, max(amount) AS top "
                                  "FROM clean GROUP BY customer_id")
    flow.transform("ranked", "SELECT date, n, rank() OVER (ORDER BY n DESC, date) AS r FROM daily")


def _apply(root: Path, step: tuple[str, str, int], seed: int) -> None:
    kind, day, n = step
    folder = root / f"date={day}"
    files = sorted(folder.glob("*.csv")) if folder.exists() else []
    if kind == "append" and not folder.exists():
        write_day(root, day, make_rows(seed, n, start=seed * 1000))
    elif kind == "late" and folder.exists():
        write_day(root, day, make_rows(seed, n, start=seed * 1000), name=f"late-{uuid.uuid4().hex[:6]}.csv")
    elif kind == "rewrite" and files:
        write_day(root, day, make_rows(seed, n, start=seed * 1000), name=files[0].name)
    elif kind == "delete_file" and files:
        files[-1].unlink()
        if len(files) == 1:
            folder.rmdir()
    elif kind == "delete_day" and folder.exists():
        shutil.rmtree(folder)


def _rows(flow: jd.Flow, name: str) -> list[tuple]:
    try:
        df = flow.table(name)
    except jd.DataflowError:
        return []
    return sorted(tuple(r) for r in df.collect())


def _same(a: list[tuple], b: list[tuple]) -> bool:
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b, strict=False):
        for x, y in zip(ra, rb, strict=False):
            if isinstance(x, float) and isinstance(y, float):
                if not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9):
                    return False
            elif x != y:
                return False
    return True


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=st.lists(change, min_size=2, max_size=4))
def test_incremental_equals_from_scratch(tmp_path_factory: pytest.TempPathFactory, spark,
                                         steps: list[tuple[str, str, int]]) -> None:
    work = tmp_path_factory.mktemp("prop")
    orders = work / "orders"
    write_day(orders, DAYS[0], make_rows(1, 6))
    write_day(orders, DAYS[1], make_rows(2, 4, start=100))
    flow = jd.Flow.open(home=work / ".dataflow", spark=spark)
    _build(flow)
    assert flow.run().ok
    for i, step in enumerate(steps):
        _apply(orders, step, seed=10 + i)
        result = flow.run()
        assert result.ok, result.errors
        scratch = jd.Flow.open(home=work / f".scratch{i}", spark=spark)
        _build(scratch)
        assert scratch.run().ok
        for name in ("orders", "clean", "daily", "by_customer", "ranked"):
            inc, full = _rows(flow, name), _rows(scratch, name)
            assert _same(inc, full), f"after {steps[:i + 1]}: {name} differs\nincremental={inc}\nscratch={full}"
        assert flow.plan().tasks == []
        scratch.close()
    flow.close()
