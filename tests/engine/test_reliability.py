"""Reliability: expectations, concurrent reconcilers, leases and garbage collection."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import jupyter_dataflow as jd
from jupyter_dataflow.store.metadata import Metadata
from tests.engine.conftest import build_standard

pytestmark = pytest.mark.spark


def test_failed_expectation_blocks_the_commit_and_keeps_the_old_version(open_flow, orders_dir) -> None:
    flow = open_flow()
    build_standard(flow)
    flow.transform("checked", "SELECT date, order_id, amount FROM orders", expect=["amount > 0"])
    result = flow.run()
    err = result.errors["checked"]
    assert "expectation 'amount > 0' failed for" in err and "sample:" in err
    assert "checked" in {s.name for s in flow.status() if s.state == "failed"}
    with pytest.raises(jd.DataflowError, match="no committed output"):
        flow.table("checked")
    # The same stage with a passing expectation commits; a later violation keeps it.
    flow.transform("checked", "SELECT date, order_id, amount FROM orders WHERE amount > 0",
                   expect=["amount > 0"])
    assert flow.run().ok
    good = flow.table("checked").count()
    flow.transform("checked", "SELECT date, order_id, amount - 100 AS amount FROM orders WHERE amount > 0",
                   expect=["amount > 0"])
    assert "checked" in flow.run().errors
    assert flow.table("checked").count() == good
    assert min(r["amount"] for r in flow.table("checked").collect()) > 0


def test_expectation_warn_and_drop(open_flow, orders_dir) -> None:
    flow = open_flow()
    build_standard(flow)
    flow.transform("warned", "SELECT date, order_id, amount FROM orders", expect=["amount > 0"],
                   expect_action="warn")
    flow.transform("dropped", "SELECT date, order_id, amount FROM orders", expect=["amount > 0"],
                   expect_action="drop")
    assert flow.run().ok
    all_rows = flow.table("orders").count()
    positive = flow.table("orders").filter("amount > 0").count()
    assert positive < all_rows
    assert flow.table("warned").count() == all_rows
    assert flow.table("dropped").count() == positive


def test_two_reconcilers_on_one_home_never_compute_a_task_twice(orders_dir, tmp_path: Path, spark) -> None:
    home = tmp_path / ".dataflow"
    first = jd.Flow.open(home=home, spark=spark)
    build_standard(first)
    second = jd.Flow.open(home=home, spark=spark)  # another reconciler, same graph and store
    assert first.leases.owner != second.leases.owner
    results: dict[str, jd.RunResult] = {}

    def run(name: str, flow: jd.Flow) -> None:
        results[name] = flow.run()

    threads = [threading.Thread(target=run, args=(n, f)) for n, f in (("a", first), ("b", second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert results["a"].ok and results["b"].ok
    executed = [(t.stage, t.partition, t.role) for r in results.values() for t in r.executed]
    assert len(executed) == len(set(executed)), "a task was computed twice"
    assert first.plan().tasks == [] and second.plan().tasks == []
    assert min(len(results["a"].executed), len(results["b"].executed)) == 0


def test_identical_flows_running_at_once_share_each_task(orders_dir, tmp_path: Path, spark) -> None:
    home = tmp_path / ".dataflow"
    a, b = jd.Flow.open(home=home, name="a", spark=spark), jd.Flow.open(home=home, name="b", spark=spark)
    build_standard(a)
    build_standard(b)
    results: dict[str, jd.RunResult] = {}
    threads = [threading.Thread(target=lambda f=f: results.__setitem__(f.name, f.run())) for f in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert results["a"].ok and results["b"].ok
    computed = [t.fingerprint for r in results.values() for t in r.executed]
    assert len(computed) == len(set(computed)), "the same output was computed by both flows"
    assert {t.fingerprint for t in results["a"].executed + results["a"].reused} == {
        t.fingerprint for t in results["b"].executed + results["b"].reused}


def test_expired_lease_of_a_crashed_holder_is_taken_over(tmp_path: Path) -> None:
    meta = Metadata(tmp_path / "metadata.db")
    assert meta.acquire("flow:default", "dead-process", ttl=-1) is None  # already expired
    assert meta.acquire("flow:default", "alive", ttl=60) is None
    assert meta.acquire("flow:default", "other", ttl=60) == "alive"


def test_gc_removes_only_unreferenced_versions(open_flow, orders_dir) -> None:
    flow = open_flow()
    build_standard(flow)
    assert flow.run().ok
    first_paths = {p["path"] for p in flow.explain("daily")["partitions"]}
    flow.transform("daily", "SELECT date, count(*) AS n, max(amount) AS revenue FROM clean GROUP BY date")
    assert flow.run().ok
    kept = flow.gc(keep=2, grace=0)
    assert kept.objects == [] and all(os.path.isdir(p) for p in first_paths)
    dry = flow.gc(keep=1, grace=0, dry_run=True)
    assert len(dry.objects) == len(first_paths) and all(os.path.isdir(p) for p in first_paths)
    report = flow.gc(keep=1, grace=0)
    assert len(report.objects) == len(first_paths) and report.bytes > 0
    assert not any(os.path.isdir(p) for p in first_paths)
    assert flow.table("daily").count() == 3 and flow.plan().tasks == []
    branch_safe = flow.gc(keep=0, grace=0)  # current versions are never collected
    assert branch_safe.objects == [] and flow.table("clean").count() > 0
