"""Planning a changed source: only the partitions whose files changed are fingerprinted.

No Spark: sources are committed the way a run records them (objects carrying the
tasks' fingerprints, parts and inputs), so what is checked is the planner against the
metadata database alone. Fast plans are compared with the plan made by fingerprinting
every partition, which is what a home written before the inputs parts were recorded
gets. One test runs the source on Spark, to check what a real run records.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import jupyter_dataflow as jd
from jupyter_dataflow.core import fingerprint as fpmod
from jupyter_dataflow.plan.planner import Plan, Task, source_version
from jupyter_dataflow.reconciler.view import MetaView
from jupyter_dataflow.store.listing import SourceFile, SourcePartition
from jupyter_dataflow.store.metadata import ObjectRecord, Publish, StageState
from tests.engine.conftest import make_rows, write_day

SCHEMA = json.dumps({"type": "struct", "fields": [{"name": "x", "type": "long", "nullable": True, "metadata": {}}]})
DAYS = 40


def _write(root: Path, day: int, text: str, name: str = "part-0.csv") -> Path:
    path = root / f"day={day:02d}" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _commit(flow: jd.Flow, stage: str) -> None:
    """Commit a source's planned tasks as a run records them, without reading a row."""
    sp = flow.plan().stage(stage)
    now = time.time()
    publishes = []
    for t in sp.tasks:
        obj = None if t.reason == "deleted" else ObjectRecord(
            t.fingerprint or "", "", 1, 1, "dv-" + (t.fingerprint or ""), SCHEMA, dict(t.parts),
            [[i.stage, i.partition, i.version] for i in t.inputs], "", stage, t.partition, now, now)
        publishes.append(Publish(stage, t.role, t.partition, obj, t.reason))
    flow.meta.commit(flow.name, publishes, StageState(stage, "fresh", None, sp.def_hash, sp.inputs_version,
                                                      "out", {}, now))
    assert not flow.plan().tasks


@pytest.fixture
def committed(tmp_path: Path) -> Iterator[tuple[jd.Flow, Path]]:
    """A flow whose CSV source of DAYS partitions is committed: the flow and the folder."""
    root = tmp_path / "orders"
    for d in range(DAYS):
        _write(root, d, f"x\n{d}\n")
    flow = jd.Flow.open(home=tmp_path / ".dataflow")
    flow.source("orders", path=str(root), format="csv", partition_by="day", options={"header": "true"})
    flow.meta.put_source_schema(flow.name, "orders", flow.graph["orders"].definition_hash(), SCHEMA, "int")
    _commit(flow, "orders")
    yield flow, root
    flow.close()


class Watch:
    """Which partitions get fingerprinted and which stored objects get loaded."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fingerprinted: list[str] = []
        self.loaded: list[str] = []
        compute, object_parts = fpmod.compute, MetaView.object_parts

        def counting_compute(code: str, config: Any, inputs: Any) -> fpmod.Fingerprint:
            self.fingerprinted.append(config.get("partition"))
            return compute(code, config, inputs)

        def counting_parts(view: MetaView, fps: Any) -> Any:
            self.loaded += list(fps)
            return object_parts(view, fps)

        monkeypatch.setattr(fpmod, "compute", counting_compute)
        monkeypatch.setattr(MetaView, "object_parts", counting_parts)


def _full_plan(flow: jd.Flow, monkeypatch: pytest.MonkeyPatch) -> Plan:
    """The plan made without recorded inputs parts: every partition fingerprinted."""
    with monkeypatch.context() as m:
        recorded = MetaView.committed_inputs
        m.setattr(MetaView, "committed_inputs",
                  lambda view, stage: {p: (fp, None) for p, (fp, _part) in recorded(view, stage).items()})
        return flow.plan()


def _same(fast: Plan, full: Plan) -> None:
    """Same tasks, reasons, causes, fingerprints, inputs and fingerprint parts."""
    assert fast.tasks == full.tasks
    assert [dict(t.parts) for t in fast.tasks] == [dict(t.parts) for t in full.tasks]


def test_one_changed_partition_among_many_is_the_only_one_fingerprinted(
        committed: tuple[jd.Flow, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    flow, root = committed
    _write(root, 17, "x\n17\n999\n")
    watch = Watch(monkeypatch)
    plan = flow.plan()
    assert [str(t) for t in plan.tasks] == ["orders/day=17: late_data (changed file day=17/part-0.csv)"]
    # The changed partition, and one unchanged one that checks the schema and definition.
    assert sorted(watch.fingerprinted) == ["day=00", "day=17"]
    assert watch.loaded == [flow.meta.committed_inputs(flow.name, "orders")["day=17"][0]]
    _same(plan, _full_plan(flow, monkeypatch))
    assert len(watch.fingerprinted) == 2 + DAYS


def test_new_changed_and_removed_partitions_keep_their_reasons_and_causes(
        committed: tuple[jd.Flow, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    flow, root = committed
    _write(root, 3, "x\n3000\n", name="part-1.csv")
    _write(root, 5, "x\n5\n6\n")
    _write(root, 99, "x\n99\n")
    shutil.rmtree(root / "day=07")
    watch = Watch(monkeypatch)
    plan = flow.plan()
    assert [(t.partition, t.reason, t.cause) for t in plan.tasks] == [
        ("day=03", "late_data", "new file day=03/part-1.csv"),
        ("day=05", "late_data", "changed file day=05/part-0.csv"),
        ("day=99", "new", ""),
        ("day=07", "deleted", "files removed from the source"),
    ]
    assert sorted(watch.fingerprinted) == ["day=00", "day=03", "day=05", "day=99"]
    _same(plan, _full_plan(flow, monkeypatch))


def test_a_file_put_back_as_it_was_is_fresh_again(committed: tuple[jd.Flow, Path]) -> None:
    flow, root = committed
    path = root / "day=11" / "part-0.csv"
    before = path.stat()
    _write(root, 11, "x\n11\n12\n")
    _write(root, 12, "x\n12\n13\n")
    assert [t.partition for t in flow.plan().tasks] == ["day=11", "day=12"]
    _write(root, 11, "x\n11\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert [t.partition for t in flow.plan().tasks] == ["day=12"]


def test_a_changed_schema_is_seen_although_the_definition_is_the_same(
        committed: tuple[jd.Flow, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The inferred schema is not part of the definition: the one unchanged partition
    fingerprinted in full finds the configuration changed, and every partition follows."""
    flow, root = committed
    other = SCHEMA.replace('"long"', '"string"')
    flow.meta.put_source_schema(flow.name, "orders", flow.graph["orders"].definition_hash(), other, "int")
    _write(root, 17, "x\n17\n999\n")
    watch = Watch(monkeypatch)
    plan = flow.plan()
    assert len(plan.tasks) == DAYS
    assert {t.reason for t in plan.tasks} == {"config_changed"}
    assert len(watch.fingerprinted) == 1 + DAYS
    _same(plan, _full_plan(flow, monkeypatch))


def test_a_home_written_before_the_inputs_parts_plans_alike_and_fast_once_reopened(
        committed: tuple[jd.Flow, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    flow, root = committed
    home = flow.home
    flow.close()
    with sqlite3.connect(home / "metadata.db") as db:  # back to what version 1 wrote
        db.execute("DROP TABLE inputs_parts")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    _write(root, 17, "x\n17\n999\n")
    flow = jd.Flow.open(home=home)
    try:
        watch = Watch(monkeypatch)
        plan = flow.plan()
        assert [str(t) for t in plan.tasks] == ["orders/day=17: late_data (changed file day=17/part-0.csv)"]
        assert sorted(watch.fingerprinted) == ["day=00", "day=17"]
        _same(plan, _full_plan(flow, monkeypatch))
    finally:
        flow.close()


def test_partitions_without_a_recorded_inputs_part_are_fingerprinted_in_full(
        committed: tuple[jd.Flow, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """As committed by a process still running an older version, or not found by migration."""
    flow, root = committed
    gone = [flow.meta.committed_inputs(flow.name, "orders")[p][0] for p in ("day=00", "day=30")]
    flow.meta.query("DELETE FROM inputs_parts WHERE fingerprint IN (?, ?)", gone)
    _write(root, 17, "x\n17\n999\n")
    watch = Watch(monkeypatch)
    plan = flow.plan()
    assert [str(t) for t in plan.tasks] == ["orders/day=17: late_data (changed file day=17/part-0.csv)"]
    assert sorted(watch.fingerprinted) == ["day=00", "day=01", "day=17", "day=30"]
    _same(plan, _full_plan(flow, monkeypatch))


def test_committing_records_the_inputs_part_and_gc_forgets_it_with_the_object(
        committed: tuple[jd.Flow, Path]) -> None:
    flow, root = committed
    replaced = flow.meta.committed_inputs(flow.name, "orders")["day=17"][0]
    _write(root, 17, "x\n17\n999\n")
    task: Task = flow.plan().tasks[0]
    _commit(flow, "orders")
    recorded = flow.meta.committed_inputs(flow.name, "orders")
    assert recorded["day=17"] == (task.fingerprint, task.parts["inputs"])
    assert all(part is not None for _fp, part in recorded.values())

    def parts() -> set[str]:
        return {r[0] for r in flow.meta.query("SELECT fingerprint FROM inputs_parts")}

    assert replaced in parts()
    assert flow.gc(keep=0, grace=0).objects == [replaced]
    assert parts() == {fp for fp, _part in recorded.values()}


def test_the_listing_version_hashes_the_json_of_the_sorted_listing() -> None:
    """Pinned to its definition, so versions recorded by earlier releases stay valid."""
    def file(relpath: str, size: int, content_hash: str | None) -> SourceFile:
        return SourceFile("/data/" + relpath, relpath, size, 1_700_000_000_123_456_789 + size, content_hash)

    odd = ["d=é/naïve 文件.csv", 'd=x/quote".csv', "d=x/back\\slash.csv", "d=x/tab\tnew\nline\u0001.csv"]
    partitions = {
        "d=x": SourcePartition("d=x", "x", (file(odd[3], 3, "ab"), file(odd[1], 1, None), file(odd[2], 2, "cd"))),
        "d=é": SourcePartition("d=é", "é", (file(odd[0], 10, None),)),
        "d=empty": SourcePartition("d=empty", "empty", ()),
        "d=a": SourcePartition("d=a", "a", (file("d=a/part-0.csv", 0, "ef"),)),
    }
    listing = [[pid, [[f.relpath, f.size, f.mtime_ns, f.content_hash]
                      for f in sorted(partitions[pid].files, key=lambda f: f.relpath)]]
               for pid in sorted(partitions)]
    assert source_version(partitions) == fpmod.digest("listing", json.dumps(listing, separators=(",", ":")))
    assert source_version({}) == fpmod.digest("listing", "[]")


@pytest.mark.spark
def test_a_run_records_the_inputs_part_of_every_ingested_partition(open_flow, orders_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    flow = open_flow()
    flow.source("orders", path="data/orders", format="csv", partition_by="date", options={"header": "true"})
    assert flow.run().ok
    recorded = flow.meta.committed_inputs(flow.name, "orders")
    objects = flow.meta.objects(fp for fp, _part in recorded.values())
    assert len(recorded) == 3 and all(part == objects[fp].parts["inputs"] for fp, part in recorded.values())
    write_day(orders_dir, "2024-01-02", make_rows(99, 5, start=90000), name="late.csv")
    watch = Watch(monkeypatch)
    plan = flow.plan()
    assert [str(t) for t in plan.tasks] == ["orders/date=2024-01-02: late_data (new file date=2024-01-02/late.csv)"]
    assert sorted(watch.fingerprinted) == ["date=2024-01-01", "date=2024-01-02"]
