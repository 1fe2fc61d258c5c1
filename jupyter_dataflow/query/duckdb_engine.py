"""Answer ad hoc Spark SQL over committed Parquet stages in DuckDB, only when that is safe.

Role: `run_duckdb` reads the stage files' Spark footers, translates the query with
`duckdb_translate` (Spark 4 semantics: ANSI mode, session time zone), runs it in-process
over local Parquet and returns Arrow with the column names and types Spark would return.
Anything it cannot do exactly like Spark yields a `DuckdbRefusal` naming the reason, and
the caller uses Spark.

This module must not import pyspark, write files, or raise for SQL it does not support;
and it must never return an answer Spark would not: where the engines could disagree
on data it cannot see at translation time, the translation plants a runtime check that
makes DuckDB fail, which again becomes a refusal.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from jupyter_dataflow.core.errors import SqlError
from jupyter_dataflow.core.sql import referenced_tables
from jupyter_dataflow.query.duckdb_translate import translate
from jupyter_dataflow.query.duckdb_types import (
    TS,
    DuckdbRefusal,
    Refuse,
    SparkType,
    arrow_type,
    spark_type,
)

__all__ = ["run_duckdb"]

_SPARK_SCHEMA_KEY = b"org.apache.spark.sql.parquet.row.metadata"
_RELATION_PREFIX = "__dataflow_stage_"


@dataclass(frozen=True)
class _Stage:
    files: tuple[str, ...]
    columns: tuple[tuple[str, SparkType], ...]
    zoneless: tuple[str, ...]  # Spark TIMESTAMP columns stored as INT96: DuckDB reads them zone-less
    zoned: tuple[str, ...]  # Spark TIMESTAMP columns stored as UTC-adjusted INT64


def _local_path(path: str) -> str:
    if path.startswith("file://"):
        path = path[len("file://"):]
    elif path.startswith("file:"):
        path = path[len("file:"):]
    elif re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", path):
        raise Refuse(f"{path!r} is not on the local file system")
    return path


def _data_files(path: str) -> Iterator[str]:
    local = _local_path(path)
    if os.path.isfile(local):
        yield local
        return
    if not os.path.isdir(local):
        raise Refuse(f"{path!r} does not exist")
    for entry in sorted(os.scandir(local), key=lambda e: e.name):
        if entry.name.startswith(("_", ".")):
            continue  # _SUCCESS, .crc files: Spark skips them too
        if entry.is_dir():
            raise Refuse(f"{path!r} has sub-directories (a partitioned layout is not checked)")
        yield entry.path


@lru_cache(maxsize=4096)
def _footer(path: str, mtime_ns: int, size: int) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """The Spark schema JSON and Arrow field types of one file (cached: committed files never change)."""
    schema = pq.read_schema(path)
    meta = (schema.metadata or {}).get(_SPARK_SCHEMA_KEY)
    return (meta.decode() if meta else None), tuple((f.name, str(f.type)) for f in schema)


def _load_stage(name: str, paths: Sequence[str]) -> _Stage:
    files = tuple(f for p in paths for f in _data_files(p))
    if not files:
        raise Refuse(f"stage {name!r} has no Parquet files")
    schema_json, arrow_fields = None, None
    for f in files:
        st = os.stat(f)
        meta, fields = _footer(f, st.st_mtime_ns, st.st_size)
        if meta is None:
            raise Refuse(f"{f!r} was not written by Spark (no Spark schema in its footer)")
        if schema_json is None:
            schema_json, arrow_fields = meta, fields
        elif [(x["name"], x["type"]) for x in json.loads(meta)["fields"]] != [
                (x["name"], x["type"]) for x in json.loads(schema_json)["fields"]] or fields != arrow_fields:
            raise Refuse(f"the files of stage {name!r} do not share one schema")
    assert schema_json is not None and arrow_fields is not None
    columns = tuple((f["name"], spark_type(f["type"])) for f in json.loads(schema_json)["fields"])
    if len({n.lower() for n, _ in columns}) != len(columns):
        raise Refuse(f"stage {name!r} has column names that differ only in case")
    arrow_types = dict(arrow_fields)
    zoned = tuple(n for n, t in columns if t == TS and "tz=" in arrow_types.get(n, ""))
    zoneless = tuple(n for n, t in columns if t == TS and n not in zoned)
    return _Stage(files, columns, zoneless, zoned)


_DATABASE_LOCK = threading.Lock()
_DATABASE: list[Any] = []


def _database() -> Any:
    """The process's in-memory DuckDB database (opening one costs ~50 ms; a cursor ~0)."""
    import duckdb

    with _DATABASE_LOCK:
        if not _DATABASE:
            database = duckdb.connect(":memory:")
            database.execute("SET parquet_metadata_cache = true")  # committed files never change
            _DATABASE.append(database)
        return _DATABASE[0]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _view_column(col: str, stage: _Stage, naive_utc: bool) -> str:
    """How a view exposes a stored column: Spark TIMESTAMPs become one consistent DuckDB type."""
    name = _quote(col)
    if naive_utc and col in stage.zoned:
        return f"CAST({name} AS TIMESTAMP) AS {name}"  # the session is UTC: exact
    if not naive_utc and col in stage.zoneless:
        return f"timezone('UTC', {name}) AS {name}"  # INT96 holds UTC wall time
    return name


def _conform(table: pa.Table, names: Sequence[str], types: Sequence[SparkType], timezone: str) -> pa.Table:
    """Arrow with Spark's column names and types (a failing cast refuses, as Spark would fail)."""
    if table.num_columns != len(names):
        raise Refuse("internal: DuckDB returned an unexpected number of columns")
    columns = []
    for column, t in zip(table.columns, types, strict=True):
        target = arrow_type(t, timezone)
        if target is not None and column.type != target:
            try:
                column = column.cast(target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                raise Refuse(f"result does not convert to Spark's {t}: {err}") from None
        columns.append(column)
    return pa.Table.from_arrays(columns, names=list(names))


def run_duckdb(sql: str, tables: Mapping[str, Sequence[str]], *, limit: int | None = None,
               timezone: str = "UTC") -> pa.Table | DuckdbRefusal:
    """Run a Spark SQL query over committed stages in DuckDB, or say why it must go to Spark.

    Args:
        sql: one Spark SQL query over stage names.
        tables: stage name -> local Parquet directories (or files) whose union is the stage.
        limit: at most this many rows, applied inside the engine.
        timezone: the Spark session time zone.

    Returns:
        An Arrow table with Spark's column names and types, or a `DuckdbRefusal`. Runtime
        failures (overflow, division by zero, a guard that detects data the engines treat
        differently) are refusals too: Spark then runs the query and reports its own error.
    """
    if limit is not None and limit < 0:
        return DuckdbRefusal("a negative limit")
    if not re.fullmatch(r"[A-Za-z0-9_+\-/:]+", timezone):
        return DuckdbRefusal(f"time zone {timezone!r} is not checked")
    try:
        read = {name.lower() for name in referenced_tables(sql)}  # only these stages are opened
        stages = {name: _load_stage(name, paths) for name, paths in tables.items() if name.lower() in read}
        relations = {name: _RELATION_PREFIX + name.lower() for name in stages}
        naive_utc = timezone in ("UTC", "Etc/UTC")
        translation = translate(sql, relations, {n: s.columns for n, s in stages.items()}, limit=limit,
                                 naive_utc=naive_utc)
    except Refuse as refusal:
        return DuckdbRefusal(refusal.reason)
    except SqlError as err:
        return DuckdbRefusal(f"Spark SQL does not parse: {err}")
    except (OSError, ValueError, pa.ArrowException) as err:
        return DuckdbRefusal(f"stage files could not be read: {err}")
    import duckdb

    con = _database().cursor()  # a private connection: its settings and temp views are its own
    try:
        con.execute(f"SET SESSION TimeZone = {_string(timezone)}")
        con.execute("SET SESSION default_null_order = 'nulls_last'")  # what generated ORDER BY assumes
        for name, stage in stages.items():
            select = ", ".join(_view_column(col, stage, naive_utc) for col, _ in stage.columns)
            files = ", ".join(_string(f) for f in stage.files)
            con.execute(f"CREATE TEMP VIEW {_quote(relations[name])} AS SELECT {select} "
                        f"FROM read_parquet([{files}], hive_partitioning = false)")
        result = con.sql(translation.sql).to_arrow_table()
        return _conform(result, translation.names, translation.types, timezone)
    except Refuse as refusal:
        return DuckdbRefusal(refusal.reason)
    except duckdb.Error as err:
        return DuckdbRefusal(f"DuckDB failed, Spark decides: {str(err).splitlines()[0]}")
    finally:
        con.close()
