"""Many partitions in one Spark job give what one job per partition gives.

A batch writes a stage's stale partitions together (execute/batch.py). Every partition
must end with the same data version (schema, rows, checksum) as when computed alone, so
downstream fingerprints cannot tell the paths apart, and a batch that cannot vouch for
its result leaves the partitions to the one-partition path.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest

import jupyter_dataflow as jd
from jupyter_dataflow.core import sql as sqlmod
from jupyter_dataflow.execute import batch, runner
from jupyter_dataflow.plan.planner import OUTPUT, PARTIAL

MAP_SQL = "SELECT day, id, k, v * 2 AS v2 FROM events WHERE v % 5 <> 0"
PARTIAL_SQL = "SELECT k, count(*) AS n, sum(v2) AS total, max(v2) AS top FROM clean GROUP BY k"
REDUCE_SQL = "SELECT count(*) AS keys, sum(n) AS n, sum(total) AS total FROM by_k"


def _write(path: Path, rows: list[tuple[int, int, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("id,k,v\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))


def _source(root: Path, key: str, values: list[str]) -> Path:
    src = root / "events"
    for i, value in enumerate(values):
        # Day 0 holds only rows the map filters out: an empty output partition.
        rows = [(i * 100 + j, j % 3, 5 if i == 0 else i * 7 + j) for j in range(20)]
        _write(src / f"{key}={value}" / "part-0.csv", rows)
    return src


def _flow(home: Path, src: Path, key: str, spark: Any, monkeypatch: pytest.MonkeyPatch, size: str) -> jd.Flow:
    monkeypatch.setenv("JUPYTER_DATAFLOW_BATCH", size)
    flow = jd.Flow.open(home=home, spark=spark)
    flow.source("events", path=str(src), format="csv", partition_by=key,
                options={"header": "true", "inferSchema": "true"})
    flow.transform("clean", MAP_SQL.replace("day", key))
    flow.transform("by_k", PARTIAL_SQL)
    flow.transform("summary", REDUCE_SQL)
    result = flow.run()
    assert result.ok, result.errors
    return flow


def _versions(flow: jd.Flow) -> dict[tuple[str, str, str], str]:
    return {(stage, role, c.partition): c.data_version
            for stage in ("events", "clean", "by_k", "summary") for role in (OUTPUT, PARTIAL)
            for c in flow.meta.current(flow.name, stage, role)}


def _starts(flow: jd.Flow, stage: str, role: str = OUTPUT) -> set[float]:
    current = flow.meta.current(flow.name, stage, role)
    return {o.started_at for o in flow.meta.objects([c.fingerprint for c in current]).values()}


@pytest.mark.spark
@pytest.mark.parametrize(("key", "values"), [
    ("day", [(datetime.date(2024, 1, 1) + datetime.timedelta(d)).isoformat() for d in range(5)]),
    ("city", ["New York", "a+b", "50%25off", "z"]),   # a space, a plus, an escaped percent sign
])
def test_a_batched_run_equals_one_job_per_partition(tmp_path: Path, spark: Any, monkeypatch: pytest.MonkeyPatch,
                                                    key: str, values: list[str]) -> None:
    src = _source(tmp_path, key, values)
    batched = _flow(tmp_path / "batched", src, key, spark, monkeypatch, "64")
    alone = _flow(tmp_path / "alone", src, key, spark, monkeypatch, "1")
    # The batch path ran: each stage's partitions were started together, by one job.
    for stage, role in (("events", OUTPUT), ("clean", OUTPUT), ("by_k", PARTIAL)):
        assert len(_starts(batched, stage, role)) == 1, stage
        assert len(_starts(alone, stage, role)) == len(values), stage
    assert _versions(batched) == _versions(alone)
    assert len(batched.meta.current(batched.name, "clean", OUTPUT)) == len(values)  # the empty one too
    current = batched.meta.current(batched.name, "clean", OUTPUT)
    assert all((Path(o.path) / "_SUCCESS").is_file()
               for o in batched.meta.objects([c.fingerprint for c in current]).values())
    assert sorted(batched.table("summary").collect()) == sorted(alone.table("summary").collect())
    # Objects from both paths read as one table, with and without Spark.
    rows = sorted(batched.table("clean").collect())
    assert rows == sorted(alone.table("clean").collect()) and len(rows) == sum(
        1 for i in range(len(values)) if i for j in range(20) if (i * 7 + j) % 5)
    assert sum(b.num_rows for b in batched.record_batches("clean")) == len(rows)


@pytest.mark.spark
def test_late_data_after_a_batched_run_recomputes_one_partition_alike(
        tmp_path: Path, spark: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    values = ["2024-01-01", "2024-01-02", "2024-01-03"]
    src = _source(tmp_path, "day", values)
    flow = _flow(tmp_path / "home", src, "day", spark, monkeypatch, "64")
    _write(src / "day=2024-01-02" / "part-1.csv", [(900, 1, 11), (901, 2, 12)])
    result = flow.run()
    assert result.ok
    assert {(t.stage, t.partition) for t in result.executed if t.stage in ("events", "clean")} == {
        ("events", "day=2024-01-02"), ("clean", "day=2024-01-02")}
    fresh = _flow(tmp_path / "fresh", src, "day", spark, monkeypatch, "1")
    assert _versions(flow) == _versions(fresh)
    assert sum(b.num_rows for b in flow.record_batches("clean")) == flow.table("clean").count()


@pytest.mark.spark
def test_a_failing_batch_leaves_its_partitions_to_one_job_each(tmp_path: Path, spark: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    src = _source(tmp_path, "day", ["2024-01-01", "2024-01-02", "2024-01-03"])
    flow = _flow(tmp_path / "home", src, "day", spark, monkeypatch, "64")
    before = _versions(flow)
    # A value that no longer fits the recorded schema in one of three changed partitions.
    _write(src / "day=2024-01-01" / "part-1.csv", [(800, 1, 1)])
    _write(src / "day=2024-01-02" / "part-1.csv", [(801, 1, "not a number")])  # type: ignore[list-item]
    _write(src / "day=2024-01-03" / "part-1.csv", [(802, 1, 3)])
    started: list[tuple[str, str]] = []
    flow.subscribe(lambda e: started.append((e.stage, e.partition)) if e.kind == "task_started" else None)
    result = flow.run()
    assert not result.ok
    assert [t.partition for t in result.failed] == ["day=2024-01-02"]   # the error names its partition
    # Tried in the batch, then alone: each partition is still announced as started once.
    assert sorted(started) == [("events", f"day=2024-01-0{d}") for d in (1, 2, 3)]
    assert "day=2024-01-02" in result.errors["events"]
    assert _versions(flow) == before   # the stage failed as a whole and kept its version


# -- pieces, without Spark ------------------------------------------------------------


def test_key_labels_are_spark_text_forms_or_unknown() -> None:
    assert batch.key_label("2024-01-05", "date") == "2024-01-05"
    assert batch.key_label("2024-1-5", "date") is None
    assert batch.key_label("-12", "integer") == "-12"
    assert batch.key_label("x", "long") is None
    assert batch.key_label("a b", "string") == "a b"
    assert batch.key_label("", "string") is None          # Spark writes an empty key as NULL
    assert batch.key_label("1.5", "double") is None
    assert batch.partition_value("city=50%25off") == "50%off"


def test_partitions_sharing_a_label_are_not_batched() -> None:
    assert batch.labels_for(["k=1", "k=2"], ["1", "2"], "integer") == {"1": "k=1", "2": "k=2"}
    with pytest.raises(batch.NotBatchable, match="k=-0"):
        batch.labels_for(["k=0", "k=-0"], ["0", "-0"], "integer")


def test_partial_queries_gain_the_key_only_when_grouped() -> None:
    grouped = sqlmod.group_also_by("SELECT k AS __k0, SUM(v) AS __p0 FROM t AS x JOIN d ON x.a = d.a GROUP BY k",
                                   "t", "day", "__key")
    assert grouped == ("SELECT k AS __k0, SUM(v) AS __p0, `x`.`day` AS `__key` FROM t AS x "
                       "JOIN d ON x.a = d.a GROUP BY k, `x`.`day`")
    assert sqlmod.group_also_by("SELECT COUNT(*) AS __p0 FROM t", "t", "day", "__key") is None
    assert sqlmod.group_also_by("SELECT a, COUNT(*) FROM t JOIN t AS u ON t.a = u.a GROUP BY a",
                                "t", "day", "__key") is None


@pytest.mark.spark
def test_nested_columns_batch_alike(tmp_path: Path, spark: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    nested = ("SELECT day, id, array(v, k) AS a, map('v', v, 'k', k) AS m, "
              "named_struct('x', v, 'd', CAST(v / 4 AS DECIMAL(10, 2)), 't', TIMESTAMP'2024-01-01 00:00:00' "
              "+ make_interval(0, 0, 0, 0, v)) AS s FROM events WHERE v % 5 <> 0")
    src = _source(tmp_path, "day", ["2024-01-01", "2024-01-02", "2024-01-03"])
    homes = []
    for size in ("64", "1"):
        flow = _flow(tmp_path / f"home{size}", src, "day", spark, monkeypatch, size)
        flow.transform("wide", nested)
        assert flow.run().ok
        homes.append({c.partition: c.data_version for c in flow.meta.current(flow.name, "wide", OUTPUT)})
        starts = _starts(flow, "wide")
        assert len(starts) == (1 if size == "64" else 3)
    assert homes[0] == homes[1] and len(homes[0]) == 3


def test_only_types_that_cross_arrow_unchanged_are_batched() -> None:
    from pyspark.sql import types as T

    nested = T.StructType([T.StructField("a", T.ArrayType(T.DecimalType(10, 2))),
                           T.StructField("m", T.MapType(T.StringType(), T.TimestampType()))])
    assert batch.arrow_safe(nested)
    assert not batch.arrow_safe(T.DayTimeIntervalType())
    assert not batch.arrow_safe(T.ArrayType(T.CalendarIntervalType()))


def test_row_hash_is_xxhash64_of_each_value_and_its_null_mark(spark: Any) -> None:
    """Pinned: data versions already stored stay valid only while every row hashes alike."""
    from pyspark.sql import functions as F

    df = spark.sql("SELECT * FROM VALUES (1, 'a', map('k', 2)), (NULL, NULL, NULL), (3, 'c', map()) "
                   "AS t(`n`, `we``ird`, `m`)")
    explicit = F.xxhash64(F.col("n"), F.isnull("n"), F.col("`we``ird`"), F.isnull(F.col("`we``ird`")),
                          F.to_json("m"), F.isnull("m"))
    got = df.select(runner.row_hash(df).alias("h"), explicit.alias("want")).collect()
    assert [r.h for r in got] == [r.want for r in got]
    assert len({r.h for r in got}) == 3
