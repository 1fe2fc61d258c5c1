"""Run one task on Spark: build its DataFrame, write it to staging with its checksum.

Every output is written once, by one Spark job that also computes (through an
`Observation`) the row count, an order-independent checksum of the rows, and the
expectation violations, so verifying a write costs no second pass. Only the
reconciler calls this module; it never touches the metadata database.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jupyter_dataflow.core import normalize_py
from jupyter_dataflow.core import sql as sqlmod
from jupyter_dataflow.core.errors import ExpectationError, SourceError, StageExecutionError
from jupyter_dataflow.core.fingerprint import digest
from jupyter_dataflow.core.stage import Sink, Source, Transform
from jupyter_dataflow.execute.boundary import boundary, short_message
from jupyter_dataflow.store.listing import SourcePartition, check_unchanged, settle
from jupyter_dataflow.store.objects import EXTERNAL, Location, ObjectStore, external_path, locate


@dataclass(frozen=True)
class Staged:
    """A complete, verified output waiting to be published."""

    path: str          # a local path or a URI under the store root
    rows: int
    bytes: int
    data_version: str
    schema: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExternalData:
    """A source partition read in place: where its files are and what they hold."""

    path: str
    rows: int
    bytes: int
    schema: str


def row_hash(df: Any) -> Any:
    """One 64-bit hash per row; NULLs marked so (1, NULL) and (NULL, 1) differ."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import MapType

    # One SQL expression, built as text: a Column per field would cost a round trip to
    # the JVM each, tens per task on a wide table.
    args = []
    for f in df.schema.fields:
        name = "`" + f.name.replace("`", "``") + "`"
        args += [f"to_json({name})" if _has_map(f.dataType, MapType) else name, f"isnull({name})"]
    if not args:
        return F.lit(0)
    return F.expr(f"xxhash64({', '.join(args)})")


def _has_map(dtype: Any, map_type: type) -> bool:
    if isinstance(dtype, map_type):
        return True
    for attr in ("elementType", "valueType"):
        if hasattr(dtype, attr) and _has_map(getattr(dtype, attr), map_type):
            return True
    return any(_has_map(f.dataType, map_type) for f in getattr(dtype, "fields", []))


def data_version(schema_json: str, rows: int, checksum: Any) -> str:
    """The content version of a written output: its schema, row count and row checksum."""
    return digest(schema_json, str(rows), str(checksum))


class TaskRunner:
    """Builds and writes task outputs on one SparkSession."""

    def __init__(self, spark: Any, store: ObjectStore) -> None:
        self.spark = spark
        self.store = store
        # Temp views live until the task that made them has written its output (Spark
        # Connect resolves them when the plan executes); tasks run on threads at once,
        # so each thread releases only its own.
        self._views = threading.local()
        _list_on_driver(spark)

    # reading ----------------------------------------------------------------------
    def read_objects(self, paths: Sequence[str], schema_json: str | None) -> Any:
        """A DataFrame over committed objects (empty, with the schema, when none)."""
        from pyspark.sql.types import StructType

        schema = StructType.fromJson(json.loads(schema_json)) if schema_json is not None else None
        if not paths:
            return self.spark.createDataFrame([], schema or StructType([]))
        own = [p for p in paths if not p.startswith(EXTERNAL)]
        frames = []
        if own:
            reader = self.spark.read if schema is None else self.spark.read.schema(schema)
            frames.append(reader.parquet(*[ObjectStore.uri(p) for p in own]))
        for p in paths:
            if p.startswith(EXTERNAL):
                frames.append(self._read_external(locate(p), schema))
        result = frames[0]
        for f in frames[1:]:
            result = result.unionByName(f)
        return result

    def _read_external(self, loc: Location, schema: Any) -> Any:
        from pyspark.sql import functions as F
        from pyspark.sql.types import StructType

        constants = {c for c, _, _ in loc.constants}
        file_schema = StructType([f for f in schema.fields if f.name not in constants]) if schema else None
        reader = self.spark.read if file_schema is None else self.spark.read.schema(file_schema)
        df = reader.parquet(*["file://" + f for f in loc.files])
        for column, value, dtype in loc.constants:
            df = df.withColumn(column, F.lit(value).cast(dtype))
        return df.select(*[f"`{f.name}`" for f in schema.fields]) if schema else df

    # sources ----------------------------------------------------------------------
    def infer_source_schema(self, source: Source, parts: Mapping[str, SourcePartition]) -> tuple[str, str | None]:
        """Infer a source's schema once, over its current files, and the key's type."""
        files = [f.path for p in parts.values() for f in p.files]
        if not files:
            raise SourceError("no data files to infer a schema from", source.name)
        with boundary(source.name, ""):
            try:
                df = self.reader(source).load(files)
                schema = df.schema
            except Exception as err:
                raise SourceError(f"cannot read: {short_message(err)}", source.name) from err
        key_type = None
        if source.partition_by:
            if source.partition_by.lower() in {f.name.lower() for f in schema.fields}:
                raise SourceError(f"files already contain a column named {source.partition_by!r}; "
                                  "it cannot also be the directory key", source.name)
            key_type = _key_type([p.value for p in parts.values()])
        return schema.json(), key_type

    def reader(self, source: Source, schema_json: str | None = None) -> Any:
        from pyspark.sql.types import StructType

        reader = self.spark.read.format(source.format)
        opts = dict(source.options)
        if source.format in ("csv", "json") and schema_json is not None:
            # A value that does not fit the recorded schema fails the read instead of
            # silently becoming NULL.
            opts.setdefault("mode", "FAILFAST")
            if source.format == "csv" and opts.get("header", "false").lower() == "true":
                opts.setdefault("enforceSchema", "false")  # header names must match, not just positions
        reader = reader.options(**opts)
        if schema_json is not None:
            reader = reader.schema(StructType.fromJson(json.loads(schema_json)))
        return reader

    def reference(self, source: Source, part: SourcePartition, schema_json: str, key_type: str | None) -> ExternalData:
        """Record a Parquet source partition to be read in place (`ingest=False`): footers only."""
        import pyarrow.parquet as pq

        check_parquet_columns(source.name, part, schema_json)
        rows = sum(pq.ParquetFile(f.path).metadata.num_rows for f in part.files)
        path = external_path([f.path for f in part.files], source.partition_by, part.value, key_type)
        schema = json.loads(schema_json)
        if source.partition_by:
            schema["fields"].append({"name": source.partition_by, "type": json_type(key_type or "string"),
                                     "nullable": True, "metadata": {}})
        return ExternalData(path, rows, sum(f.size for f in part.files), json.dumps(schema))

    def ingest(self, source: Source, part: SourcePartition, schema_json: str, key_type: str | None) -> Staged:
        """Copy one source partition into the store as Parquet."""
        from pyspark.sql import functions as F

        with boundary(source.name, part.partition):
            if source.format == "parquet":
                check_parquet_columns(source.name, part, schema_json)
            settle(source.name, part)  # a file written moments ago may not be complete yet
            df = self.reader(source, schema_json).load([f.path for f in part.files])
            if source.partition_by:
                df = df.withColumn(source.partition_by, F.lit(part.value).cast(key_type or "string"))
            try:
                staged = self.write(df, source.name)
            except StageExecutionError as err:
                raise SourceError(f"cannot read partition files: {err.reason}", source.name, part.partition) from err
            try:
                check_unchanged(source.name, part)  # a file changed during the read: never a partial copy
            except SourceError:
                self.store.discard(staged.path)
                raise
            return staged

    # transforms -------------------------------------------------------------------
    def run_sql(self, stage: str, sql: str, inputs: Mapping[str, Any]) -> Any:
        """Run `sql` with each input name bound to a DataFrame, via private temp views."""
        tag = uuid.uuid4().hex[:10]
        views = {name: f"__dataflow_{tag}_{i}" for i, name in enumerate(inputs)}
        for name, df in inputs.items():
            df.createOrReplaceTempView(views[name])
        pending = getattr(self._views, "names", None)
        if pending is None:
            pending = self._views.names = []
        pending.extend(views.values())
        return self.spark.sql(sqlmod.rename_tables(sql, views, stage))

    def release_views(self) -> None:
        """Drop the temp views this thread created for its task."""
        for v in getattr(self._views, "names", None) or []:
            with contextlib.suppress(Exception):
                self.spark.catalog.dropTempView(v)
        self._views.names = []

    def run_python(self, stage: Transform, inputs: Mapping[str, Any]) -> Any:
        from pyspark.sql import DataFrame

        assert stage.python is not None
        func = normalize_py.load(stage.python, stage.name)
        result = func(**{p: inputs[p] for p in stage.python.params})
        if not isinstance(result, DataFrame):
            raise StageExecutionError(stage.name, "", f"the function must return a pyspark DataFrame, "
                                                      f"got {type(result).__name__}")
        return result

    def transform(self, stage: Transform, inputs: Mapping[str, Any]) -> Any:
        if stage.sql is not None:
            return self.run_sql(stage.name, stage.sql, inputs)
        return self.run_python(stage, inputs)

    # writing ----------------------------------------------------------------------
    def write(self, df: Any, stage: str, expect: Sequence[str] = (), action: str = "fail",
              partition: str = "") -> Staged:
        """Write `df` to a fresh staging directory, measuring it in the same job."""
        from pyspark.sql import Observation
        from pyspark.sql import functions as F

        staged = self.store.new_staging(stage)
        warnings: list[str] = []
        metrics = [F.count(F.lit(1)).alias("rows"),
                   F.coalesce(F.sum(row_hash(df).cast("decimal(38,0)")), F.lit(0)).alias("checksum")]
        if expect and action == "drop":
            keep = " AND ".join(f"coalesce(({e}), true)" for e in expect)
            dropped = Observation(f"dropped_{uuid.uuid4().hex[:8]}")
            df = df.observe(dropped, F.count_if(~F.expr(keep)).alias("dropped")).filter(F.expr(keep))
        else:
            dropped = None
        for i, e in enumerate(expect if action != "drop" else ()):
            metrics.append(F.count_if(~F.coalesce(F.expr(f"({e})"), F.lit(True))).alias(f"violations_{i}"))
        obs = Observation(f"write_{uuid.uuid4().hex[:8]}")
        schema_json = df.schema.json()
        df.observe(obs, *metrics).write.mode("error").parquet(ObjectStore.uri(staged))
        got = obs.get
        rows = int(got["rows"])
        for i, e in enumerate(expect if action != "drop" else ()):
            bad = int(got.get(f"violations_{i}", 0))
            if bad:
                if action == "fail":
                    sample = self._sample_violations(staged, e)
                    self.store.discard(staged)
                    raise ExpectationError(stage, partition, f"expectation {e!r} failed for {bad} of {rows} rows; "
                                                             f"sample: {sample}")
                warnings.append(f"expectation {e!r} failed for {bad} of {rows} rows")
        if dropped is not None:
            n = int(dropped.get.get("dropped", 0))
            if n:
                warnings.append(f"dropped {n} rows failing expectations")
        size = self.store.verify(staged)
        return Staged(staged, rows, size, data_version(schema_json, rows, got["checksum"]), schema_json,
                      tuple(warnings))

    def _sample_violations(self, staged: str, predicate: str, n: int = 5) -> str:
        try:
            df = self.spark.read.parquet(ObjectStore.uri(staged))
            rows = df.filter(f"NOT coalesce(({predicate}), true)").limit(n).collect()
            return "; ".join(str(r.asDict()) for r in rows)
        except Exception as err:  # the sample is a courtesy; the count is the verdict
            return f"(unavailable: {short_message(err, 1)})"

    def write_sink(self, sink: Sink, df: Any) -> int:
        """Replace the sink's path with `df`: write beside it, then swap directories."""
        import os
        import shutil

        target = sink.path[len("file://"):] if sink.path.startswith("file://") else sink.path
        target = os.path.abspath(target)
        tmp = f"{target}.__dataflow_tmp_{uuid.uuid4().hex[:8]}"
        old = f"{target}.__dataflow_old_{uuid.uuid4().hex[:8]}"
        with boundary(sink.name, ""):
            writer = df.write.format(sink.format).options(**dict(sink.options))
            if sink.format == "csv":
                writer = writer.option("header", dict(sink.options).get("header", "true"))
            writer.mode("error").save("file://" + tmp)
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        if os.path.exists(target):
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
        return 0


DISCOVERY_THRESHOLD = "spark.sql.sources.parallelPartitionDiscovery.threshold"


def _list_on_driver(spark: Any) -> None:
    """List object directories on the driver, not in a Spark job of one task per path.

    A combine or reduce reads one object per partition; past 32 paths Spark would start
    a listing job costing about a second, more than the read. A value the user set wins.
    """
    with contextlib.suppress(Exception):
        if spark.conf.get(DISCOVERY_THRESHOLD, "32") == "32":
            spark.conf.set(DISCOVERY_THRESHOLD, "100000")


def check_parquet_columns(stage: str, part: SourcePartition, schema_json: str) -> None:
    """Refuse Parquet files whose columns differ from the recorded schema (footers only)."""
    import pyarrow.parquet as pq

    expected = {f["name"].lower() for f in json.loads(schema_json)["fields"]}
    for f in part.files:
        try:
            names = {n.lower() for n in pq.read_schema(f.path).names}
        except Exception as err:
            raise SourceError(f"cannot read {f.relpath}: {short_message(err, 2)}", stage, part.partition) from err
        if names != expected:
            added, missing = sorted(names - expected), sorted(expected - names)
            raise SourceError(f"schema changed in {f.relpath}: new columns {added or 'none'}, "
                              f"missing columns {missing or 'none'}", stage, part.partition)


def json_type(spark_type: str) -> str:
    return {"int": "integer", "bigint": "long"}.get(spark_type, spark_type)


def _key_type(values: Sequence[str | None]) -> str:
    """The narrowest Spark type all partition values fit: int, date or string."""
    import datetime

    vals = [v for v in values if v is not None]
    if vals and all(_is_int(v) for v in vals):
        return "int" if all(-(2**31) <= int(v) < 2**31 for v in vals) else "bigint"
    try:
        if vals:
            for v in vals:
                if len(v) != 10:
                    raise ValueError(v)
                datetime.date.fromisoformat(v)
            return "date"
    except ValueError:
        pass
    return "string"


def _is_int(v: str) -> bool:
    return v.lstrip("-").isdigit() and not (len(v.lstrip("-")) > 1 and v.lstrip("-").startswith("0"))

