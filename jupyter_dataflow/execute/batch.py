"""Write many partitions of one stage in one Spark job.

A Spark job costs about a tenth of a second on a small machine before it reads a row,
so a run over a hundred stale partitions, one job each, is mostly job overhead. A batch
computes them together: one scan, one write partitioned by a tag column naming each
row's output partition, and each partition's row count and checksum gathered in that
same job by a pass-through on the executors. Every partition ends with exactly the
files' contents, data version and schema the one-partition path gives, so which path
made an object never shows downstream.

Anything a batch cannot vouch for (an unexpected partition label, two labels sharing a
tag, a failed job) raises `NotBatchable`; the caller then computes those partitions one
by one, which also attributes any error to its partition.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jupyter_dataflow.core.errors import DataflowError, SourceError
from jupyter_dataflow.execute.runner import (
    Staged,
    check_parquet_columns,
    data_version,
    json_type,
    row_hash,
)
from jupyter_dataflow.store import fs as storefs
from jupyter_dataflow.store.listing import SourcePartition, check_unchanged, settle
from jupyter_dataflow.store.objects import ObjectStore

KEY = "__dataflow_key"
VALUE = "__dataflow_value"
TAG = "__dataflow_tag"
SPARK_SCHEMA = "org.apache.spark.sql.parquet.row.metadata"
LABEL = "__dataflow_label"
HASH = "__dataflow_hash"
MEASURES = "__dataflow_measures"

# Types that cross the Arrow pass-through unchanged. Others (intervals, variants,
# user-defined types) stay on the one-partition path.
_ATOMIC = {"boolean", "byte", "short", "integer", "long", "float", "double", "string", "binary", "date",
           "timestamp", "timestamp_ntz", "null"}


class NotBatchable(DataflowError):
    """These partitions must be computed one by one; the message says why."""


@dataclass(frozen=True)
class BatchWrite:
    """The partitions one job wrote, by partition id, and the directory holding them."""

    directory: str
    staged: Mapping[str, Staged]


def arrow_safe(dtype: Any) -> bool:
    """Whether values of `dtype` survive a round trip through Arrow unchanged."""
    name = dtype.typeName()
    if name in _ATOMIC or name.startswith("decimal"):
        return True
    if name == "array":
        return arrow_safe(dtype.elementType)
    if name == "map":
        return arrow_safe(dtype.keyType) and arrow_safe(dtype.valueType)
    if name == "struct":
        return all(arrow_safe(f.dataType) for f in dtype.fields)
    return False


def key_label(value: str | None, type_name: str) -> str | None:
    """How Spark prints a partition key value cast to string; None if it cannot tell."""
    import datetime

    if value is None or value == "":
        return None
    if type_name == "string":
        return value
    if type_name == "date":
        try:
            return value if datetime.date.fromisoformat(value).isoformat() == value else None
        except ValueError:
            return None
    if type_name in ("byte", "short", "integer", "long"):
        digits = value.lstrip("-")
        return str(int(value)) if digits.isdigit() else None
    return None


def _measurer() -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The executor side of a batch, built here so it is shipped by value (an executor
    need not have this package installed)."""
    tag, label, hash_, measures = TAG, LABEL, HASH, MEASURES

    def measure(batches: Iterator[Any]) -> Iterator[Any]:
        # Pass rows through without label and hash; the task's last batch gains one
        # value of measures: per tag, rows, checksum and the labels seen.
        import json

        import pyarrow as pa
        import pyarrow.compute as pc

        found: dict[int, list[Any]] = {}
        last = None
        for batch in batches:
            table = pa.Table.from_batches([batch])
            h = table.column(hash_)
            # Sum 64-bit hashes exactly: high and low 32 bits apart, joined in Python.
            table = table.append_column("__hi", pc.shift_right(h, 32)).append_column(
                "__lo", pc.bit_wise_and(h, pa.scalar(0xFFFFFFFF, pa.int64())))
            grouped = table.group_by(tag).aggregate([("__hi", "sum"), ("__lo", "sum"), ("__hi", "count"),
                                                     (label, "min"), (label, "max"), (label, "count")])
            for row in grouped.to_pylist():
                entry = found.setdefault(row[tag], [0, 0, set()])
                entry[0] += row["__hi_count"]
                entry[1] += (row["__hi_sum"] << 32) + row["__lo_sum"]
                entry[2].update({row[f"{label}_min"], row[f"{label}_max"]})
                if row[f"{label}_count"] < row["__hi_count"]:
                    entry[2].add(None)  # some rows had no label
            out = batch.select([n for n in batch.schema.names if n not in (label, hash_)])
            if last is not None:
                yield last.append_column(measures, pa.nulls(last.num_rows, pa.string()))
            last = out
        if last is not None:
            summary = json.dumps({str(t): [n, str(s), sorted(seen, key=lambda x: (x is None, x or ""))]
                                  for t, (n, s, seen) in found.items()})
            yield last.append_column(measures, pa.array([None] * (last.num_rows - 1) + [summary], pa.string()))

    return measure


def write_tagged(df: Any, label: Any, labels: Mapping[str, str], stage: str, store: ObjectStore,
                 hidden: Sequence[str] = ()) -> BatchWrite:
    """Write `df` once, split by `label` (a Column) into the partitions `labels` names.

    `labels` maps each expected label to its partition id; `hidden` columns of `df`
    serve the label only and are not written. A partition without rows gets an empty
    file of the schema on a local store; on a URI store it is absent from the result,
    and the caller computes it alone.
    """
    from pyspark.sql import Observation
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    data = df.drop(*hidden)
    if not all(arrow_safe(f.dataType) for f in data.schema.fields):
        raise NotBatchable("a column type does not cross Arrow unchanged")
    schema_json = data.schema.json()
    tagged = df.select(*[F.col(f"`{c}`") for c in data.columns], F.xxhash64(label).alias(TAG),
                       label.cast("string").alias(LABEL), row_hash(data).alias(HASH))
    out_schema = StructType([*data.schema.fields, StructField(TAG, LongType(), False),
                             StructField(MEASURES, StringType(), True)])
    directory = store.new_staging(stage)
    obs = Observation(f"batch_{uuid.uuid4().hex[:8]}")
    try:
        written = tagged.mapInArrow(_measurer(), out_schema).observe(obs, F.collect_list(MEASURES).alias("m"))
        written.drop(MEASURES).write.partitionBy(TAG).mode("error").parquet(ObjectStore.uri(directory))
        found = _merge(obs.get["m"])
        staged = _split(found, labels, schema_json, directory, store)
        if not storefs.is_uri(directory):
            for i, pid in enumerate(sorted(set(labels.values()) - set(staged))):
                staged[pid] = _empty(storefs.join(directory, f"{TAG}=empty{i}"), data.schema, schema_json)
    except Exception:
        store.discard(directory)
        raise
    return BatchWrite(directory, staged)


def _empty(path: str, schema: Any, schema_json: str) -> Staged:
    """A partition the batch gave no rows: one Parquet file of no rows, the schema Spark
    records in its own files, so readers see what an empty one-partition write gives."""
    import os

    import pyarrow.parquet as pq
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow = to_arrow_schema(schema, timezone="UTC").with_metadata({SPARK_SCHEMA: schema_json})
    os.makedirs(path)
    file = os.path.join(path, "part-00000-empty.snappy.parquet")
    pq.write_table(arrow.empty_table(), file, compression="snappy")
    open(os.path.join(path, "_SUCCESS"), "wb").close()
    return Staged(path, 0, os.path.getsize(file), data_version(schema_json, 0, 0), schema_json)


def _merge(summaries: list[str]) -> dict[int, tuple[int, int, set[str | None]]]:
    found: dict[int, tuple[int, int, set[str | None]]] = {}
    for text in summaries:
        for tag, (rows, checksum, seen) in json.loads(text).items():
            n, s, labels = found.get(int(tag), (0, 0, set()))
            found[int(tag)] = (n + rows, s + int(checksum), labels | set(seen))
    return found


def _split(found: Mapping[int, tuple[int, int, set[str | None]]], labels: Mapping[str, str], schema_json: str,
           directory: str, store: ObjectStore) -> dict[str, Staged]:
    staged: dict[str, Staged] = {}
    for tag, (rows, checksum, seen) in sorted(found.items()):
        if len(seen) != 1:
            raise NotBatchable(f"labels {sorted(map(str, seen))} share one tag")
        (text,) = seen
        pid = labels.get(text) if text is not None else None
        if pid is None:
            raise NotBatchable(f"rows labelled {text!r} belong to no partition of the batch")
        if pid in staged:
            raise NotBatchable(f"partition {pid} has two tags")
        part = storefs.join(directory, f"{TAG}={tag}")
        size = store.verify(directory, part)
        store.fs_for(part).touch(storefs.join(part, "_SUCCESS"))  # a complete output, like any object
        staged[pid] = Staged(part, rows, size, data_version(schema_json, rows, checksum), schema_json)
    return staged


def partition_value(pid: str) -> str:
    """The key value a `key=value` partition id stands for (as the source listing reads it)."""
    from urllib.parse import unquote

    return unquote(pid.partition("=")[2])


def labels_for(pids: Sequence[str], values: Sequence[str | None], type_name: str) -> dict[str, str]:
    """Each partition's label as Spark prints its key; NotBatchable if any is unknown or shared."""
    labels: dict[str, str] = {}
    for pid, value in zip(pids, values, strict=True):
        text = key_label(value, type_name)
        if text is None or text in labels:
            raise NotBatchable(f"partition {pid} has no label of its own")
        labels[text] = pid
    return labels


def ingest(runner: Any, source: Any, parts: Sequence[SourcePartition], schema_json: str,
           key_type: str | None) -> BatchWrite:
    """Copy several partitions of a directory-partitioned source into the store at once.

    Spark reads each row's key from its file's `key=value` directory (partition
    discovery, typed by the recorded key type), a constant per file rather than work per
    row. Its reading of a directory name must give the value the listing gave: a row
    whose key matches no partition of the batch fails the batch instead of being filed
    under another partition.
    """
    from pyspark.sql import functions as F

    key = source.partition_by
    kind = key_type or "string"
    if key is None or any(p.value is None for p in parts):
        raise NotBatchable("the source is not partitioned by directory")
    labels = labels_for([p.partition for p in parts], [p.value for p in parts],
                        {"int": "integer", "bigint": "long"}.get(kind, kind))
    for p in parts:
        if source.format == "parquet":
            check_parquet_columns(source.name, p, schema_json)
        settle(source.name, p)
    first = parts[0].files[0]
    root = first.path[: len(first.path) - len(first.relpath)]
    files = [f.path for p in parts for f in p.files]
    keyed = json.loads(schema_json)
    keyed["fields"].append({"name": key, "type": json_type(kind), "nullable": True, "metadata": {}})
    read = runner.reader(source, json.dumps(keyed)).option("basePath", root).load(files)
    # What the one-partition path writes: the same columns, the key a cast literal.
    expected = runner.reader(source, schema_json).load(files[:1]).withColumn(
        key, F.lit(parts[0].value).cast(kind)).schema
    found = read[f"`{key}`"]
    value = found if expected[key].nullable else F.coalesce(found, F.lit(parts[0].value).cast(kind))
    data = [F.col(f"`{f.name}`") for f in expected.fields if f.name != key]
    df = read.select(*data, value.alias(key), found.cast("string").alias(VALUE))
    if df.drop(VALUE).schema != expected:
        raise NotBatchable("the batch would not write the schema a partition alone writes")
    written = write_tagged(df, F.col(VALUE), labels, source.name, runner.store, hidden=(VALUE,))
    staged = dict(written.staged)
    for p in parts:
        try:
            check_unchanged(source.name, p)  # a file changed during the read: never a partial copy
        except SourceError:
            staged.pop(p.partition, None)  # left to the one-partition path, which says so
    return BatchWrite(written.directory, staged)
