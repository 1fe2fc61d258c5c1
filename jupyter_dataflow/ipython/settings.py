"""The `Dataflow` configurable: notebook settings as traitlets.

`%config Dataflow.spark = "sc://host:15002"` or `c.Dataflow.home = ...` in an IPython
profile set them. This module only declares and validates settings; opening flows
and running work belong to the magics and to `Flow`.
"""

from __future__ import annotations

from typing import Any

from traitlets import Any as AnyTrait
from traitlets import Dict, Enum, Float, Int, TraitError, Unicode, validate
from traitlets.config import Configurable

from jupyter_dataflow.flow import DEFAULT_FLOW, DEFAULT_HOME, DEFAULT_SPARK


class Dataflow(Configurable):
    """Where the notebook's flow lives and which Spark runs it."""

    home = Unicode(DEFAULT_HOME, help="Home directory holding the metadata database and the data store.").tag(
        config=True)
    flow = Unicode(DEFAULT_FLOW, help="Name of the flow (or branch) inside the home.").tag(config=True)
    spark = AnyTrait(DEFAULT_SPARK, help=(
        "Spark engine: local[*], spark://host:port, sc://host:port, k8s://https://host, "
        "or a SparkSession object (set it in Python or with `%dataflow open --spark VARIABLE`: "
        "%config copies values, which a SparkSession refuses).")).tag(config=True)
    store = Unicode(None, allow_none=True, help=(
        "Data store root: a path or a URI every executor can reach (s3a://bucket/prefix, hdfs://..., "
        "file:///mnt/shared/...). None: the home's recorded root (<home>/store for a new home).")).tag(
        config=True)
    conf = Dict(value_trait=Unicode(), default_value={},
                help="Spark settings passed through unchanged (key -> value).").tag(config=True)
    query_limit = Int(100, help="Rows fetched and shown by %%query (the limit runs in the engine).").tag(
        config=True)
    query_engine = Enum(("auto", "spark", "duckdb"), "auto", help=(
        "Engine for %%query: auto answers in DuckDB when that is exactly what Spark would answer "
        "and uses Spark otherwise.")).tag(config=True)
    watch_interval = Float(10.0, help="Seconds between source polls of `%dataflow watch on`.").tag(config=True)

    @validate("spark")
    def _check_spark(self, proposal: dict[str, Any]) -> Any:
        value = proposal["value"]
        if isinstance(value, str) or hasattr(value, "sql"):
            return value
        raise TraitError(f"Dataflow.spark must be an engine URL or a SparkSession, got {type(value).__name__}")

    @validate("query_limit")
    def _check_limit(self, proposal: dict[str, Any]) -> int:
        if proposal["value"] < 1:
            raise TraitError("Dataflow.query_limit must be at least 1")
        return int(proposal["value"])

    @validate("watch_interval")
    def _check_interval(self, proposal: dict[str, Any]) -> float:
        if proposal["value"] <= 0:
            raise TraitError("Dataflow.watch_interval must be a positive number of seconds")
        return float(proposal["value"])

    def flow_key(self) -> tuple[Any, ...]:
        """What identifies the open flow: a change of any part means reopening it."""
        spark = self.spark if isinstance(self.spark, str) else id(self.spark)
        return (self.home, self.flow, spark, tuple(sorted(self.conf.items())), self.store)
