"""The metadata database: what a commit records, and homes written by older versions."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from jupyter_dataflow.store.metadata import SCHEMA_VERSION, Metadata, ObjectRecord, Publish


def _object(fingerprint: str, stage: str, partition: str, inputs: str) -> ObjectRecord:
    now = time.time()
    return ObjectRecord(fingerprint, "", 1, 1, "dv-" + fingerprint, "{}", {"code": "c", "config": "k", "inputs": inputs},
                        [], "", stage, partition, now, now)


def _publish(stage: str, partition: str, fingerprint: str, inputs: str) -> Publish:
    return Publish(stage, "output", partition, _object(fingerprint, stage, partition, inputs), "new")


def _home(path: Path) -> Metadata:
    """A home with a committed source of two partitions and a transform reading it."""
    meta = Metadata(path)
    meta.ensure_flow("default")
    meta.put_stage("default", "orders", "source", {"kind": "source"}, "h-orders")
    meta.put_stage("default", "daily", "transform", {"kind": "transform"}, "h-daily")
    meta.commit("default", [_publish("orders", "d=1", "fp-1", "in-1"), _publish("orders", "d=2", "fp-2", "in-2")])
    meta.commit("default", [_publish("daily", "d=1", "fp-daily", "in-daily")])
    return meta


def _version(meta: Metadata) -> str:
    return str(meta.query("SELECT value FROM meta WHERE key = 'schema_version'")[0][0])


def test_a_commit_records_the_inputs_part_of_each_source_partition(tmp_path: Path) -> None:
    meta = _home(tmp_path / "metadata.db")
    assert _version(meta) == str(SCHEMA_VERSION) == "2"
    assert meta.committed_inputs("default", "orders") == {"d=1": ("fp-1", "in-1"), "d=2": ("fp-2", "in-2")}
    assert meta.committed_inputs("default", "daily") == {"d=1": ("fp-daily", None)}, "read for sources only"
    meta.commit("default", [_publish("orders", "d=2", "fp-new", "in-new")])
    assert meta.committed_inputs("default", "orders")["d=2"] == ("fp-new", "in-new")
    meta.commit("default", [Publish("orders", "output", "d=1", None, "deleted")])
    assert meta.committed_inputs("default", "orders") == {"d=2": ("fp-new", "in-new")}
    meta.copy_flow("default", "branch")
    assert meta.committed_inputs("branch", "orders") == {"d=2": ("fp-new", "in-new")}


def test_a_home_written_before_the_inputs_parts_is_filled_in_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    _home(path).close()
    with sqlite3.connect(path) as db:  # back to what version 1 wrote
        db.execute("DROP TABLE inputs_parts")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        # A partition whose object record is missing: nothing to read its inputs part from.
        db.execute("INSERT INTO current VALUES ('default', 'orders', 'output', 'd=3', 'fp-gone', 'dv', 0, 'new')")

    meta = Metadata(path)
    assert _version(meta) == "2"
    assert meta.committed_inputs("default", "orders") == {
        "d=1": ("fp-1", "in-1"), "d=2": ("fp-2", "in-2"), "d=3": ("fp-gone", None)}
    assert meta.committed_inputs("default", "daily") == {"d=1": ("fp-daily", None)}
    meta.close()


def test_a_process_running_the_older_version_still_commits_to_a_new_home(tmp_path: Path) -> None:
    """Version 1 inserted `current` rows by position: the table keeps its columns."""
    meta = _home(tmp_path / "metadata.db")
    meta.query("INSERT OR REPLACE INTO current VALUES ('default', 'orders', 'output', 'd=2', 'fp-old', 'dv', 0, 'x')")
    assert meta.committed_inputs("default", "orders") == {"d=1": ("fp-1", "in-1"), "d=2": ("fp-old", None)}
