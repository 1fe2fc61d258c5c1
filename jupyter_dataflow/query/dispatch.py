"""Choose the engine for an ad hoc query and return its answer with provenance.

`auto` answers in DuckDB when every stage the query reads is committed as local
Parquet in the store and the checked translation accepts the SQL; otherwise, and
always when the engine is a cluster, Spark answers. The result says which engine
answered, why, and how long it took. Nothing here registers or writes anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jupyter_dataflow.core.errors import ConfigError, DataflowError

ENGINES = ("auto", "spark", "duckdb")


@dataclass(frozen=True)
class QueryResult:
    """An ad hoc query's answer (Arrow), the engine that gave it, and why."""

    arrow: Any
    engine: str
    seconds: float
    reason: str = ""

    def to_pandas(self) -> Any:
        return self.arrow.to_pandas()

    @property
    def num_rows(self) -> int:
        return int(self.arrow.num_rows)

    def __repr__(self) -> str:
        why = f", {self.reason}" if self.reason else ""
        return f"<QueryResult {self.num_rows} rows by {self.engine} in {self.seconds * 1000:.0f} ms{why}>"


def answer(sql: str, *, engine: str, local_engine: bool, stage_paths: Mapping[str, Sequence[str] | None],
           spark_answer: Callable[[int | None], Any], limit: int | None, timezone: str = "UTC") -> QueryResult:
    """Answer `sql` on the chosen engine.

    Args:
        sql: Spark SQL over stage names.
        engine: "auto", "spark" or "duckdb".
        local_engine: whether Spark runs in this machine (local mode); clusters use Spark in auto.
        stage_paths: stage name -> its committed Parquet directories, or None if they are not
            plain local store objects (DuckDB cannot read them as they are).
        spark_answer: runs the query on Spark with a row limit and returns Arrow.
        limit: rows to return at most, applied inside the engine.
        timezone: the Spark session time zone, which DuckDB must use too.
    """
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ConfigError(f"limit must be a whole number >= 0, got {limit!r}")
    reason = ""
    if engine == "auto" and not local_engine:
        reason = "the engine is a cluster"
    elif engine in ("auto", "duckdb"):
        unreadable = sorted(n for n, p in stage_paths.items() if p is None)
        if unreadable:
            reason = f"{', '.join(unreadable)} not stored as local Parquet"
        else:
            from jupyter_dataflow.query.duckdb_engine import run_duckdb
            from jupyter_dataflow.query.duckdb_types import DuckdbRefusal

            started = time.perf_counter()
            got = run_duckdb(sql, {n: list(p or ()) for n, p in stage_paths.items()}, limit=limit,
                             timezone=timezone)
            if not isinstance(got, DuckdbRefusal):
                return QueryResult(got, "duckdb", time.perf_counter() - started)
            reason = got.reason
        if engine == "duckdb":
            raise DataflowError(f"DuckDB cannot answer this query exactly like Spark: {reason}")
    started = time.perf_counter()
    table = spark_answer(limit)
    return QueryResult(table, "spark", time.perf_counter() - started, reason)
