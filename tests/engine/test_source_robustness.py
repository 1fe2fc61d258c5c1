"""Awkward source files: empty, still being written, unreadable, corrupt, of another schema.

Each either follows the documented policy (docs/bad-inputs.md) or fails its stage with
a message naming the stage, the partition and the file, and keeps the previous version.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import jupyter_dataflow as jd
from jupyter_dataflow.store import listing


def _csv(path: Path, rows: list[tuple[int, int]], header: str = "id,v") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(f"{a},{b}\n" for a, b in rows))
    return path


def _rows(flow: jd.Flow, stage: str) -> list[dict[str, Any]]:
    """Committed rows, read from the store without Spark, sorted by id."""
    table = pa.Table.from_batches(list(flow.record_batches(stage)))
    return sorted(table.to_pylist(), key=lambda r: r["id"])


def _old(days: Path) -> None:
    _csv(days / "day=2024-01-01" / "part-0.csv", [(1, 10), (2, 20)])
    _csv(days / "day=2024-01-02" / "part-0.csv", [(3, 30)])


def _committed_old(open_flow: Any, tmp_path: Path) -> tuple[Path, jd.Flow, list[dict[str, Any]]]:
    """The two-day CSV source, run once: its folder, the flow and the committed rows."""
    days = tmp_path / "data" / "orders"
    _old(days)
    flow = _flow(open_flow)
    assert flow.run().ok
    return days, flow, _rows(flow, "orders")


def _flow(open_flow: Any, fmt: str = "csv") -> jd.Flow:
    flow = open_flow()
    options = {"header": "true", "inferSchema": "true"} if fmt == "csv" else {}
    flow.source("orders", path="data/orders", format=fmt, partition_by="day", options=options)
    flow.transform("total", "SELECT count(*) AS n, sum(v) AS v FROM orders", mode="reduce")
    return flow


def _fails_keeping_old(flow: jd.Flow, before: list[dict[str, Any]], *needles: str, listed: bool = True) -> str:
    result = flow.run()
    assert "orders" in result.errors, result.summary()
    message = result.errors["orders"]
    for needle in ("'orders'", *needles):
        assert needle in message, message
    assert "total" in {t.stage for t in result.skipped}
    assert _rows(flow, "orders") == before, "the previous version must stay"
    if listed:
        assert [s.state for s in flow.status() if s.name == "orders"] == ["failed"]
    else:  # the source cannot even be listed: planning says why
        with pytest.raises(jd.SourceError, match=needles[-1]):
            flow.plan()
    return message


# listing policy (no Spark) ----------------------------------------------------------------
def test_empty_files_hold_no_rows_and_are_not_listed(tmp_path: Path) -> None:
    root = tmp_path / "orders"
    _csv(root / "day=1" / "part-0.csv", [(1, 1)])
    (root / "day=1" / "part-1.csv").write_bytes(b"")
    (root / "day=2").mkdir()
    (root / "day=2" / "part-0.parquet").write_bytes(b"")
    parts = listing.partitions(str(root), "day", "orders")
    assert list(parts) == ["day=1"]
    assert [f.relpath for f in parts["day=1"].files] == [os.path.join("day=1", "part-0.csv")]


def test_broken_link_and_pipe_are_errors_naming_the_file(tmp_path: Path) -> None:
    root = tmp_path / "orders"
    _csv(root / "day=1" / "part-0.csv", [(1, 1)])
    (root / "day=1" / "part-1.csv").symlink_to(tmp_path / "gone.csv")
    with pytest.raises(jd.SourceError, match=r"source 'orders': cannot read day=1/part-1.csv: broken symbolic link"):
        listing.partitions(str(root), "day", "orders")
    (root / "day=1" / "part-1.csv").unlink()
    os.mkfifo(root / "day=1" / "part-2.csv")
    with pytest.raises(jd.SourceError, match=r"cannot read day=1/part-2.csv: not a regular file"):
        listing.partitions(str(root), "day", "orders")


def test_a_change_between_listing_and_read_fails_the_partition(tmp_path: Path) -> None:
    root = tmp_path / "orders"
    path = _csv(root / "day=1" / "part-0.csv", [(1, 1)])
    part = listing.partitions(str(root), "day", "orders")["day=1"]
    listing.check_unchanged("orders", part)
    with path.open("a") as f:
        f.write("2,2\n")
    with pytest.raises(jd.SourceError, match=r"partition 'day=1': day=1/part-0.csv changed while the partition "
                                             r"was read \(size 9 -> 13 bytes\)"):
        listing.check_unchanged("orders", part)
    path.unlink()
    with pytest.raises(jd.SourceError, match=r"part-0\.csv was removed while the partition was read"):
        listing.check_unchanged("orders", part)


def test_settle_waits_for_a_young_file_and_fails_if_it_is_still_written(tmp_path: Path) -> None:
    root = tmp_path / "orders"
    path = _csv(root / "day=1" / "part-0.csv", [(1, 1)])
    part = listing.partitions(str(root), "day", "orders")["day=1"]
    listing.settle("orders", part, quiet=0.3)  # quiet long enough: fine
    path.write_text("id,v\n1,1\n")
    part = listing.partitions(str(root), "day", "orders")["day=1"]
    writer = threading.Timer(0.3, lambda: path.write_text("id,v\n1,1\n2,"))
    writer.start()
    try:
        with pytest.raises(jd.SourceError, match="still being written"):
            listing.settle("orders", part, quiet=1.5)
    finally:
        writer.join()


# runs on Spark ----------------------------------------------------------------------------
def _write_format(path: Path, fmt: str, rows: list[tuple[int, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        _csv(path, rows)
    elif fmt == "json":
        path.write_text("".join(json.dumps({"id": a, "v": b}) + "\n" for a, b in rows))
    else:
        pq.write_table(pa.table({"id": [a for a, _ in rows], "v": [b for _, b in rows]}), path)


@pytest.mark.spark
@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_empty_files_in_a_partition_are_skipped(open_flow, tmp_path: Path, fmt: str) -> None:
    days = tmp_path / "data" / "orders"
    _write_format(days / "day=2024-01-01" / f"part-0.{fmt}", fmt, [(1, 10), (2, 20)])
    (days / "day=2024-01-01" / f"part-1.{fmt}").write_bytes(b"")
    (days / "day=2024-01-02").mkdir()
    (days / "day=2024-01-02" / f"part-0.{fmt}").write_bytes(b"")
    flow = _flow(open_flow, fmt)
    result = flow.run()
    assert result.ok, result.errors
    assert [(r["id"], r["v"]) for r in _rows(flow, "orders")] == [(1, 10), (2, 20)]
    assert flow.plan().tasks == []
    _write_format(days / "day=2024-01-02" / f"part-0.{fmt}", fmt, [(3, 30)])  # the empty file gets content
    assert flow.run().ok
    assert [(r["id"], r["v"]) for r in _rows(flow, "orders")] == [(1, 10), (2, 20), (3, 30)]


@pytest.mark.spark
def test_a_file_written_during_the_run_fails_its_partition_then_is_read_whole(
        open_flow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    days, flow, before = _committed_old(open_flow, tmp_path)
    monkeypatch.setenv("JUPYTER_DATAFLOW_SOURCE_SETTLE", "4")
    path = _csv(days / "day=2024-01-02" / "part-1.csv", [(4, 40)])   # young: ingest waits for it to settle
    writer = threading.Timer(1.5, lambda: path.write_text(path.read_text() + "5,50\n"))
    writer.start()
    try:
        _fails_keeping_old(flow, before, "partition 'day=2024-01-02'", "day=2024-01-02/part-1.csv changed while "
                           "the partition was read", "still being written")
    finally:
        writer.join()
    time.sleep(0.1)
    result = flow.run()
    assert result.ok, result.errors
    assert [r["id"] for r in _rows(flow, "orders")] == [1, 2, 3, 4, 5]


@pytest.mark.spark
def test_broken_link_fails_the_source_and_keeps_its_version(open_flow, tmp_path: Path) -> None:
    days, flow, before = _committed_old(open_flow, tmp_path)
    (days / "day=2024-01-02" / "part-1.csv").symlink_to(tmp_path / "elsewhere.csv")
    _fails_keeping_old(flow, before, "day=2024-01-02/part-1.csv", "broken symbolic link", listed=False)


@pytest.mark.spark
def test_corrupt_parquet_footer_names_partition_and_file(open_flow, tmp_path: Path) -> None:
    days = tmp_path / "data" / "orders"
    for day, rows in (("2024-01-01", [(1, 10)]), ("2024-01-02", [(2, 20)])):
        _write_format(days / f"day={day}" / "part-0.parquet", "parquet", rows)
    flow = _flow(open_flow, "parquet")
    assert flow.run().ok
    before = _rows(flow, "orders")
    good = (days / "day=2024-01-02" / "part-0.parquet").read_bytes()
    (days / "day=2024-01-02" / "part-1.parquet").write_bytes(good[:-12] + b"\0" * 12)   # footer smashed
    _fails_keeping_old(flow, before, "partition 'day=2024-01-02'", "cannot read day=2024-01-02/part-1.parquet")


@pytest.mark.spark
def test_corrupt_csv_value_fails_its_partition(open_flow, tmp_path: Path) -> None:
    days, flow, before = _committed_old(open_flow, tmp_path)
    (days / "day=2024-01-02" / "part-1.csv").write_text("id,v\n4,forty\n")
    message = _fails_keeping_old(flow, before, "partition 'day=2024-01-02'", "day=2024-01-02/part-1.csv")
    assert "forty" in message or "Malformed" in message, message


@pytest.mark.spark
def test_csv_with_another_header_fails_its_partition(open_flow, tmp_path: Path) -> None:
    days, flow, before = _committed_old(open_flow, tmp_path)
    _csv(days / "day=2024-01-03" / "part-0.csv", [(4, 40)], header="id,value")
    message = _fails_keeping_old(flow, before, "partition 'day=2024-01-03'", "day=2024-01-03/part-0.csv")
    assert "header does not conform to the schema" in message, message


@pytest.mark.spark
def test_parquet_with_another_schema_fails_its_partition(open_flow, tmp_path: Path) -> None:
    days = tmp_path / "data" / "orders"
    _write_format(days / "day=2024-01-01" / "part-0.parquet", "parquet", [(1, 10)])
    flow = _flow(open_flow, "parquet")
    assert flow.run().ok
    before = _rows(flow, "orders")
    path = days / "day=2024-01-02" / "part-0.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"id": [2], "v": [20], "extra": ["x"]}), path)
    _fails_keeping_old(flow, before, "partition 'day=2024-01-02'",
                       "schema changed in day=2024-01-02/part-0.parquet: new columns ['extra']")
