"""`Flow`: the one facade over graph, store, planner and reconciler.

Magics, the CLI, the server extension, widgets and exporters call `Flow`; none of
them reaches into the store or the executor. Opening a flow never starts Spark:
only running, reading a table or querying does.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_dataflow.core import normalize_py
from jupyter_dataflow.core.errors import (
    ConfigError,
    DataflowError,
    StageDefinitionError,
)
from jupyter_dataflow.core.graph import Graph
from jupyter_dataflow.core.names import check_name
from jupyter_dataflow.core.stage import Sink, Source, Stage, Transform, from_json
from jupyter_dataflow.plan.planner import OUTPUT, ModeInfo, Plan
from jupyter_dataflow.plan.resolve import output_key, resolve_modes, stage_mode
from jupyter_dataflow.reconciler import events as ev
from jupyter_dataflow.reconciler.leases import Leases
from jupyter_dataflow.reconciler.loop import Reconciler, RunResult
from jupyter_dataflow.store.metadata import Metadata
from jupyter_dataflow.store.objects import ObjectStore

DEFAULT_HOME = ".dataflow"
DEFAULT_FLOW = "default"
DEFAULT_SPARK = "local[*]"


@dataclass(frozen=True)
class StageStatus:
    """One row of `Flow.status()`."""

    name: str
    kind: str
    state: str                 # fresh | stale | running | failed | never run
    partitions: int
    rows: int | None
    fingerprint: str | None
    updated: str | None
    error: str | None
    mode: str | None
    reasons: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "reasons": list(self.reasons)}


@dataclass(frozen=True)
class Change:
    """What registering a stage did."""

    stage: str
    action: str                  # added | replaced | unchanged
    stale: tuple[str, ...] = ()  # stages whose outputs are now out of date

    def __str__(self) -> str:
        if self.action == "unchanged":
            return f"{self.stage}: unchanged"
        text = f"{self.stage}: {self.action}"
        if self.stale:
            text += f"; now stale: {', '.join(self.stale)}"
        return text


def default_store(home: Path) -> str:
    """The data store root of a home that was given none: `<home>/store`."""
    return str(home / "store")


def _store_root(meta: Metadata, home: Path, store: str | None) -> str:
    """The home's store root: recorded the first time, and never silently changed after."""
    from jupyter_dataflow.store.fs import is_uri, normalize_root

    wanted = normalize_root(store) if store is not None and store.strip() else None
    stored = meta.store_root()
    if stored is None:
        # A home made before roots were recorded keeps its objects under <home>/store.
        # A root inside the home is recorded relative to it, so the home can be moved.
        root = wanted or default_store(home)
        inside = not is_uri(root) and Path(root).is_relative_to(home)
        stored = meta.record_store_root(str(Path(root).relative_to(home)) if inside else root)
    recorded = stored if is_uri(stored) else str(home / stored)
    if wanted is not None and wanted != recorded:
        raise ConfigError(f"home {str(home)!r} keeps its data in {recorded!r}, not {wanted!r}: its stored "
                          f"outputs are recorded there. Open it without a store setting (or with "
                          f"store={recorded!r}), or use another home for another store root")
    return recorded


def _batch_size() -> int:
    """Most partitions of one stage computed in one Spark job (1: one job per partition)."""
    text = os.environ.get("JUPYTER_DATAFLOW_BATCH", "64")
    try:
        size = int(text)
    except ValueError:
        raise ConfigError(f"JUPYTER_DATAFLOW_BATCH must be a whole number of partitions, not {text!r}") from None
    if size < 1:
        raise ConfigError(f"JUPYTER_DATAFLOW_BATCH must be at least 1, not {size}")
    return size


def _when(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def list_flows(home: str | os.PathLike[str] = DEFAULT_HOME) -> list[str]:
    """Names of the flows (branches included) stored in a home."""
    db = Path(home) / "metadata.db"
    if not db.exists():
        return []
    meta = Metadata(db)
    try:
        return meta.flows()
    finally:
        meta.close()


class Flow:
    """A named dataflow inside a home directory."""

    def __init__(self, home: Path, name: str, spark: Any, conf: Mapping[str, str] | None,
                 store: str | None = None) -> None:
        self.home = home
        self.name = name
        self._spark_setting = spark
        self._conf = dict(conf or {})
        self._session: Any = None
        self._session_lock = threading.Lock()
        self.meta = Metadata(home / "metadata.db")
        try:
            root = _store_root(self.meta, home, store)
        except BaseException:
            self.meta.close()
            raise
        self.store = ObjectStore(root, self._store_fs)
        self.events = ev.EventBus()
        self.meta.ensure_flow(name)
        self._graph = self._load_graph()
        self._modes = self._load_modes()
        self._runner: Any = None
        self.leases = Leases(self.meta)
        self._running: set[str] = set()
        self.events.subscribe(self._track_running)

    # opening ----------------------------------------------------------------------
    @classmethod
    def open(cls, home: str | os.PathLike[str] = DEFAULT_HOME, name: str = DEFAULT_FLOW,
             spark: Any = None, conf: Mapping[str, str] | None = None, store: str | None = None) -> Flow:
        """Open (or create) flow `name` in `home`.

        Args:
            home: the home directory (metadata database; by default also the data store).
            name: the flow or branch name.
            spark: an engine URL or a SparkSession.
            conf: Spark settings.
            store: the data store root: a path, or a URI every executor can reach
                (`s3a://bucket/prefix`, `hdfs://...`, `file:///mnt/shared/...`). A new home
                records it (default `<home>/store`); None reopens a home with its recorded
                root, and a different root is refused.

        Raises:
            ConfigError: a bad setting, or `store` differs from the home's recorded root.
        """
        check_name(name, "flow")
        if spark is not None and not isinstance(spark, str) and not hasattr(spark, "sql"):
            raise ConfigError(f"spark must be an engine URL or a SparkSession, got {type(spark).__name__}")
        if isinstance(spark, str):
            from jupyter_dataflow.execute.session import check_engine

            check_engine(spark)
        path = Path(home).expanduser().absolute()
        if path.exists() and not path.is_dir():
            raise ConfigError(f"home {str(path)!r} exists and is not a directory")
        if store is not None and not isinstance(store, (str, os.PathLike)):
            raise ConfigError(f"store must be a path or a URI, got {type(store).__name__}")
        return cls(path, name, spark, conf, os.fspath(store) if store is not None else None)

    def _load_graph(self) -> Graph:
        stages: dict[str, Stage] = {}
        for d in self.meta.stage_definitions(self.name):
            st = from_json(d)
            stages[st.name] = st
        return Graph(stages)

    def _load_modes(self) -> dict[str, ModeInfo]:
        """Modes recorded at registration; resolved again only if some are missing."""
        stored = self.meta.stage_modes(self.name)
        if set(stored) >= set(self._graph.stages):
            return {n: ModeInfo(**stored[n]) for n in self._graph.stages}
        modes = resolve_modes(self._graph)
        self.meta.put_stage_modes(self.name, {n: dataclasses.asdict(m) for n, m in modes.items()})
        return modes

    @property
    def graph(self) -> Graph:
        return self._graph

    @property
    def spark(self) -> Any:
        """The SparkSession, started on first use."""
        with self._session_lock:
            if self._session is None:
                from jupyter_dataflow.execute.session import get_session

                setting = self._spark_setting
                if setting is None or isinstance(setting, str):
                    self._session = get_session(setting or DEFAULT_SPARK, self._conf)
                else:
                    self._session = setting
            return self._session

    def _store_fs(self) -> Any:
        """The filesystem of a URI store root: Hadoop's through the session, or pyarrow's on Connect."""
        from jupyter_dataflow.store.fs import for_root

        return for_root(self.store.root, self.spark)

    @property
    def store_root(self) -> str:
        """Where this home keeps its data: a local path or a URI."""
        return self.store.root

    @property
    def exported_store(self) -> str | None:
        """The store root an export records: None for the home's default `<home>/store`."""
        return None if self.store.root == default_store(self.home) else self.store.root

    def _task_runner(self) -> Any:
        if self._runner is None:
            from jupyter_dataflow.execute.runner import TaskRunner

            self._runner = TaskRunner(self.spark, self.store)
        return self._runner

    def _resolved(self) -> Graph:
        """The graph with relative source and sink paths resolved against the home's folder."""
        base = self.home.parent
        stages: dict[str, Stage] = {}
        for n, st in self._graph.stages.items():
            if isinstance(st, (Source, Sink)) and "://" not in st.path and not os.path.isabs(st.path):
                st = dataclasses.replace(st, path=str(base / st.path))
            stages[n] = st
        return Graph(stages)

    def _reconciler(self) -> Reconciler:
        return Reconciler(self.name, self._resolved(), self.meta, self.store, self.events, self._task_runner,
                          modes=self._modes, leases=self.leases, batch_size=_batch_size())

    # registering ------------------------------------------------------------------
    def _register(self, stage: Stage) -> Change:
        old = self._graph.stages.get(stage.name)
        if old is not None and old.kind != stage.kind:
            raise StageDefinitionError(f"a {old.kind} with this name exists; drop it first", stage.name)
        graph = self._graph.with_stage(stage)
        modes = self._modes_with(graph, stage)  # refuses impossible modes before anything is stored
        if old is not None and old.definition_hash() == stage.definition_hash():
            return Change(stage.name, "unchanged")
        self.meta.put_stage(self.name, stage.name, stage.kind, stage.to_json(), stage.definition_hash())
        changed = {n: dataclasses.asdict(m) for n, m in modes.items() if self._modes.get(n) != m}
        self.meta.put_stage_modes(self.name, changed)
        self._graph = graph
        self._modes = modes
        stale = tuple([stage.name, *graph.downstream(stage.name)]) if old is not None else ()
        return Change(stage.name, "replaced" if old is not None else "added", stale)

    def _modes_with(self, graph: Graph, stage: Stage) -> dict[str, ModeInfo]:
        """Modes after adding `stage`: only it is inferred, unless its output key changed."""
        keys = {n: output_key(graph[n], m) for n, m in self._modes.items() if n in graph.stages}
        mode = stage_mode(graph, stage, keys)
        old = self._modes.get(stage.name)
        if old is not None and output_key(stage, mode) != keys.get(stage.name) and graph.downstream(stage.name):
            return resolve_modes(graph)
        return {**self._modes, stage.name: mode}

    def source(self, name: str, *, path: str, format: str = "parquet", partition_by: str | None = None,
               options: Mapping[str, Any] | None = None, ingest: bool = True) -> Change:
        """Register a source: files in csv, json or parquet, by file or by directory key."""
        return self._register(Source.create(name, path=path, format=format, partition_by=partition_by,
                                            options=options, ingest=ingest))

    def transform(self, name: str, sql: str | None = None, *, python: Any = None, partition_by: str | None = None,
                  mode: str | None = None, expect: Sequence[str] | str = (), expect_action: str = "fail",
                  namespace: Mapping[str, Any] | None = None) -> Change:
        """Register a Spark SQL transform (`sql=`) or a PySpark one (`python=`: function or its source)."""
        if (sql is None) == (python is None):
            raise StageDefinitionError("give exactly one of sql= or python=", name if isinstance(name, str) else None)
        expects = (expect,) if isinstance(expect, str) else tuple(expect)
        if sql is not None:
            st = Transform.from_sql(name, sql, partition_by=partition_by, mode=mode, expect=expects,
                                    expect_action=expect_action)
            st = dataclasses.replace(st, inputs=tuple(self._graph.resolve(i) if i in self._graph or
                                                      i.lower() in {k.lower() for k in self._graph.stages} else i
                                                      for i in st.inputs))
        else:
            check_name(name)
            code = normalize_py.capture(python, name, namespace)
            st = Transform.from_python(name, code, partition_by=partition_by, mode=mode, expect=expects,
                                       expect_action=expect_action)
        return self._register(st)

    def sink(self, name: str, *, source: str, path: str, format: str = "parquet",
             options: Mapping[str, Any] | None = None) -> Change:
        """Register a sink that writes `source`'s committed output to `path`."""
        return self._register(Sink.create(name, source=source, path=path, format=format, options=options))

    def drop(self, name: str) -> None:
        """Remove a stage from the flow (its stored outputs stay until garbage collected)."""
        graph = self._graph.without(name)
        self.meta.drop_stage(self.name, self._graph.resolve(name))
        self._graph = graph
        self._modes = {n: m for n, m in self._modes.items() if n in graph.stages}

    def promote(self, sql: str, name: str, **options: Any) -> Change:
        """Turn an ad hoc query into a permanent transform."""
        return self.transform(name, sql, **options)

    def branch(self, name: str) -> Flow:
        """A new flow with this blueprint that shares every stored output."""
        check_name(name, "branch")
        if name in self.meta.flows():
            raise StageDefinitionError(f"a flow or branch named {name!r} already exists")
        self.meta.copy_flow(self.name, name)
        return Flow(self.home, name, self._spark_setting if self._session is None else self._session, self._conf,
                    self.store.root)

    # reconciling ------------------------------------------------------------------
    def plan(self, stage: str | None = None) -> Plan:
        """What `run` would do now and why; executes nothing."""
        return self._reconciler().plan(stage)

    def run(self, stage: str | None = None) -> RunResult:
        """Reconcile the flow (or one stage and its upstream) and return what happened."""
        self._sweep_staging()
        return self._reconciler().run(stage)

    def _sweep_staging(self) -> None:
        """Remove what killed or failed writers left in staging, if no reconciler runs now.

        Spares entries touched in the last STAGING_SETTLE seconds: a remote engine may
        still be finishing a write whose driver died.
        """
        import time

        from jupyter_dataflow.store.gc import STAGING_SETTLE, sweep_staging

        with self.leases.hold_if_free(f"flow:{f}" for f in self.meta.flows()) as free:
            if free:
                sweep_staging(self.store, time.time() - STAGING_SETTLE)

    def subscribe(self, listener: Callable[[ev.Event], None]) -> Callable[[], None]:
        """Receive reconciler events; returns a function that unsubscribes."""
        return self.events.subscribe(listener)

    def _track_running(self, event: ev.Event) -> None:
        if event.kind == ev.STAGE_PLANNED and event.total:
            self._running.add(event.stage)
        elif event.kind in (ev.STAGE_FINISHED, ev.TASK_SKIPPED):
            self._running.discard(event.stage)
        elif event.kind == ev.RUN_FINISHED:
            self._running.clear()

    # reading ----------------------------------------------------------------------
    def _paths(self, name: str) -> tuple[list[str], str | None]:
        current = self.meta.current(self.name, name, OUTPUT)
        objects = self.meta.objects([c.fingerprint for c in current])
        paths = sorted(objects[c.fingerprint].path for c in current if c.fingerprint in objects)
        schema = next((objects[c.fingerprint].schema for c in current if c.fingerprint in objects), None)
        return paths, schema

    def table(self, name: str) -> Any:
        """The committed output of a stage as a pyspark DataFrame."""
        name = self._graph.resolve(name)
        if self._graph[name].kind == "sink":
            name = self._graph.resolve(self._graph[name].inputs[0])
        paths, schema = self._paths(name)
        if not paths and schema is None:
            raise DataflowError(f"stage {name!r} has no committed output yet; run the flow first")
        return self._task_runner().read_objects(paths, schema)

    def _query_stages(self, sql: str) -> list[str]:
        from jupyter_dataflow.core import sql as sqlmod

        refs = sqlmod.referenced_tables(sql, "query")
        for ref in refs:
            self._graph.resolve(ref)  # unknown names: UnknownStageError with "did you mean"
        return refs

    def query(self, sql: str) -> Any:
        """Run Spark SQL where every stage name reads that stage's committed output."""
        frames = {ref: self.table(ref) for ref in self._query_stages(sql)}
        return self._task_runner().run_sql("query", sql, frames)

    def query_result(self, sql: str, engine: str = "auto", limit: int | None = None) -> Any:
        """Answer an ad hoc query fast: DuckDB over the committed Parquet when that is
        exactly what Spark would answer, Spark otherwise. Returns a `QueryResult`
        (`.arrow`, `.to_pandas()`, `.engine`, `.seconds`, `.reason`)."""
        from jupyter_dataflow.query.dispatch import answer
        from jupyter_dataflow.store.fs import is_uri
        from jupyter_dataflow.store.objects import EXTERNAL

        refs = self._query_stages(sql)
        stage_paths: dict[str, list[str] | None] = {}
        for ref in refs:
            name = self._graph.resolve(ref)
            if self._graph[name].kind == "sink":
                name = self._graph.resolve(self._graph[name].inputs[0])
            paths, schema = self._paths(name)
            if not paths and schema is None:
                raise DataflowError(f"stage {name!r} has no committed output yet; run the flow first")
            # DuckDB reads plain local objects only; external sources and URI roots go to Spark.
            stage_paths[ref] = None if not paths or any(p.startswith(EXTERNAL) or is_uri(p) for p in paths) \
                else paths

        def on_spark(limit: int | None) -> Any:
            df = self.query(sql)
            return (df.limit(limit) if limit is not None else df).toArrow()

        setting = self._spark_setting
        local = setting is None or (isinstance(setting, str) and setting.startswith("local")) or (
            not isinstance(setting, str) and _is_local_session(setting))
        return answer(sql, engine=engine, local_engine=local, stage_paths=stage_paths, spark_answer=on_spark,
                      limit=limit, timezone=self._session_timezone())

    def _session_timezone(self) -> str:
        """Spark's session time zone, without starting Spark to ask for it."""
        from jupyter_dataflow.execute.session import DEFAULT_CONF

        key = "spark.sql.session.timeZone"
        session = self._session if self._session is not None else (
            self._spark_setting if not isinstance(self._spark_setting, str | None) else None)
        if session is not None:
            try:
                return str(session.conf.get(key))
            except Exception:
                pass
        return self._conf.get(key, DEFAULT_CONF[key])

    def status(self) -> list[StageStatus]:
        """Per-stage state, partitions, rows, fingerprint and last update."""
        plan = self.plan() if self._graph.stages else Plan(self.name, ())
        states = self.meta.states(self.name)
        out = []
        for name in self._graph.order():
            st = self._graph[name]
            current = self.meta.current(self.name, name, "sink" if st.kind == "sink" else OUTPUT)
            objects = self.meta.objects([c.fingerprint for c in current])
            sp = plan.stage(name)
            state = states.get(name)
            if name in self._running:
                label = "running"
            elif state is not None and state.state == "failed":
                label = "failed"
            elif not current and state is None:
                label = "never run"
            elif sp.tasks:
                label = "stale"
            else:
                label = "fresh"
            rows = sum(o.rows for o in objects.values()) if st.kind != "sink" else None
            fp = (current[0].fingerprint if len(current) == 1 else state.output_version if state else None)
            updated = max((c.committed_at for c in current), default=None)
            out.append(StageStatus(name, st.kind, label, len(current) if st.kind != "sink" else 0,
                                   rows if current else None, fp, _when(updated),
                                   state.error if state and label == "failed" else None, sp.mode.mode,
                                   tuple(str(t) for t in sp.tasks[:20])))
        return out

    def explain(self, stage: str, partition: str | None = None) -> dict[str, Any]:
        """Provenance of what is stored for a stage: fingerprint parts, inputs, code, timings."""
        name = self._graph.resolve(stage)
        st = self._graph[name]
        modes = self._modes
        current = self.meta.current(self.name, name)
        if partition is not None:
            current = [c for c in current if c.partition == partition]
            if not current:
                known = [c.partition for c in self.meta.current(self.name, name)]
                raise DataflowError(f"stage {name!r} has no committed partition {partition!r}"
                                    + (f"; it has {', '.join(known[:5])}" if known else ""))
        objects = self.meta.objects([c.fingerprint for c in current])
        parts = []
        for c in current:
            o = objects.get(c.fingerprint)
            if o is None:
                continue
            parts.append({"partition": c.partition, "role": c.role, "fingerprint": c.fingerprint,
                          "parts": o.parts, "rows": o.rows, "bytes": o.bytes, "data_version": o.data_version,
                          "inputs": [{"stage": s, "partition": p, "version": v} for s, p, v in o.inputs],
                          "committed": _when(c.committed_at), "reason": c.reason,
                          "seconds": round(o.finished_at - o.started_at, 3), "path": o.path})
        m = modes[name]
        return {"stage": name, "kind": st.kind, "mode": m.mode, "mode_reason": m.reason, "key": m.key,
                "code": st.text if isinstance(st, Transform) else st.to_json(), "definition_hash": st.definition_hash(),
                "inputs": list(st.inputs), "partitions": parts}

    def gc(self, keep: int = 1, grace: float = 3600.0, dry_run: bool = False) -> Any:
        """Remove stored outputs no flow or branch of the home references any more.

        Keeps the last `keep` versions of every partition and anything used within
        `grace` seconds; waits for running reconcilers of every flow first.
        """
        from contextlib import ExitStack

        from jupyter_dataflow.store.gc import collect

        if not isinstance(keep, int) or keep < 0:
            raise ConfigError(f"keep must be a whole number >= 0, got {keep!r}")
        with ExitStack() as stack:
            if not dry_run:
                for flow in self.meta.flows():
                    stack.enter_context(self.leases.hold(f"flow:{flow}", wait=600))
            return collect(self.meta, self.store, keep=keep, grace=grace, dry_run=dry_run)

    def close(self) -> None:
        """Release the metadata connection (the shared SparkSession stays up)."""
        self.meta.close()

    def __enter__(self) -> Flow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Flow(home={str(self.home)!r}, name={self.name!r}, stages={len(self._graph)})"

    # payloads for other front ends (server, widgets) --------------------------------
    def stage_info(self, name: str) -> dict[str, Any]:
        name = self._graph.resolve(name)
        status = next(s for s in self.status() if s.name == name)
        _, schema = self._paths(name)
        info = status.to_json()
        from jupyter_dataflow.lineage.schema import columns_of

        columns = columns_of(schema) if schema else None
        info["schema"] = [c.to_json() for c in columns] if columns is not None else None
        current = self.meta.current(self.name, name, OUTPUT)
        objects = self.meta.objects([c.fingerprint for c in current])
        info["partitions"] = [{"partition": c.partition, "fingerprint": c.fingerprint,
                               "rows": objects[c.fingerprint].rows if c.fingerprint in objects else None,
                               "committed_at": _when(c.committed_at), "reason": c.reason}
                              for c in current]
        info["provenance"] = self.explain(name)
        return info

    def record_batches(self, stage: str, partition: str | None = None,
                       batch_size: int = 65536) -> Iterator[Any]:
        """Committed records as pyarrow RecordBatches, read from Parquet without Spark."""
        import pyarrow.parquet as pq

        from jupyter_dataflow.store.fs import open_input

        name = self._graph.resolve(stage)
        current = self.meta.current(self.name, name, OUTPUT)
        if partition is not None:
            current = [c for c in current if c.partition == partition]
        objects = self.meta.objects([c.fingerprint for c in current])
        for c in current:
            o = objects.get(c.fingerprint)
            if o is None:
                continue
            loc = self.store.locate(o.path)
            for f in loc.files:
                with open_input(f) as handle:
                    for batch in pq.ParquetFile(handle).iter_batches(batch_size=batch_size):
                        yield _nullable(_with_constants(batch, loc.constants))

    def arrow_schema(self, stage: str) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from jupyter_dataflow.store.fs import open_input

        name = self._graph.resolve(stage)
        for path in self._paths(name)[0]:
            loc = self.store.locate(path)
            for f in loc.files:
                with open_input(f) as handle:
                    schema = pq.read_schema(handle)
                for column, _value, spark_type in loc.constants:
                    schema = schema.append(pa.field(column, _constant_array(None, spark_type, 0).type))
                return pa.schema([f.with_nullable(True) for f in schema], metadata=schema.metadata)
        raise DataflowError(f"stage {name!r} has no committed output yet")

    # exporting ----------------------------------------------------------------------
    def export(self, directory: str | os.PathLike[str], to: str = "bundle", **options: Any) -> Path:
        """Write this flow as a `spark-pipelines` project, a `bundle` or a `k8s` deployment.

        Credential-like Spark settings are replaced by `${ENV}` references; see
        `jupyter_dataflow.export.write` for the target options. Returns the directory.
        """
        from jupyter_dataflow.export import export_flow

        spark = self._spark_setting if isinstance(self._spark_setting, str) else None
        return export_flow(self, directory, to, conf=self._conf, spark=spark, **options)

    # lineage ------------------------------------------------------------------------
    def graph_payload(self, stage: str | None = None, columns: bool = False) -> dict[str, Any]:
        """The lineage payload (nodes, edges, column edges) that the panel and widget draw.

        Args:
            stage: centre on this stage: only it, its upstream and its downstream.
            columns: also trace column-level lineage (`column_edges`).

        Returns:
            The payload described in `jupyter_dataflow.lineage.payload`.
        """
        from jupyter_dataflow.lineage import StageFacts, build_payload

        centre = self._graph.resolve(stage) if stage is not None else None
        facts = [StageFacts.of(self._graph[s.name], self._graph.inputs(s.name), s.to_json(),
                               self._paths(s.name)[1] if s.kind != "sink" and s.partitions else None)
                 for s in self.status()]
        return build_payload(self.name, facts, stage=centre, columns=columns)

    def lineage(self, stage: str | None = None, columns: bool = False) -> Any:
        """A live lineage widget of the flow (or of one stage's upstream and downstream)."""
        from jupyter_dataflow.widgets.lineage import LineageWidget

        return LineageWidget(self, stage=self._graph.resolve(stage) if stage is not None else None,
                             columns=columns)

    def column_lineage(self, column: str) -> Any:
        """Where `"stage.column"` comes from: a `jupyter_dataflow.lineage.ColumnLineage` tree."""
        from jupyter_dataflow.lineage import column_tree, split_ref

        stage, name = split_ref(column)
        stage = self._graph.resolve(stage)
        return column_tree(self.graph_payload(stage, columns=True), stage, name)


def _constant_array(value: str | None, spark_type: str, length: int) -> Any:
    """A pyarrow array repeating a directory key's value, typed like Spark would read it."""
    import datetime

    import pyarrow as pa

    if spark_type == "int":
        return pa.array([None if value is None else int(value)] * length, pa.int32())
    if spark_type == "bigint":
        return pa.array([None if value is None else int(value)] * length, pa.int64())
    if spark_type == "date":
        day = None if value is None else datetime.date.fromisoformat(value)
        return pa.array([day] * length, pa.date32())
    return pa.array([value] * length, pa.string())


def _nullable(batch: Any) -> Any:
    """`batch` with every column nullable, as Spark reads Parquet.

    Spark marks a column NOT NULL in the files it writes when it can prove no value is
    null, which depends on how the output was computed (one partition at a time or a
    batch of them): readers of several objects must not see that as a schema change.
    """
    import pyarrow as pa

    schema = batch.schema
    if all(f.nullable for f in schema):
        return batch
    relaxed = pa.schema([f.with_nullable(True) for f in schema], metadata=schema.metadata)
    return pa.RecordBatch.from_arrays(batch.columns, schema=relaxed)


def _with_constants(batch: Any, constants: Sequence[tuple[str, str | None, str]]) -> Any:
    import pyarrow as pa

    if not constants:
        return batch
    arrays = list(batch.columns)
    names = list(batch.schema.names)
    for column, value, spark_type in constants:
        arrays.append(_constant_array(value, spark_type, batch.num_rows))
        names.append(column)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _is_local_session(session: Any) -> bool:
    try:
        return str(session.conf.get("spark.master", "")).startswith("local")
    except Exception:
        return False
