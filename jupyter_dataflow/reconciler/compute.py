"""Build one task's output on Spark from the committed outputs of its inputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from jupyter_dataflow.core.errors import DataflowError
from jupyter_dataflow.core.stage import Sink, Source, Transform
from jupyter_dataflow.execute import batch as batchmod
from jupyter_dataflow.execute.boundary import boundary
from jupyter_dataflow.execute.runner import ExternalData, Staged
from jupyter_dataflow.plan.planner import OUTPUT, PARTIAL, ROLLUP, WHOLE, ModeInfo, Task
from jupyter_dataflow.reconciler import rollup as rollupmod
from jupyter_dataflow.store.objects import EXTERNAL

if TYPE_CHECKING:
    from jupyter_dataflow.reconciler.loop import Reconciler

def committed_paths(rec: Reconciler, stage: str) -> tuple[dict[str, str], str | None]:
    """Object paths of a stage's current partitions, and the schema they share."""
    current = rec.meta.current(rec.flow, stage, OUTPUT)
    objects = rec.meta.objects([c.fingerprint for c in current])
    paths = {c.partition: objects[c.fingerprint].path for c in current if c.fingerprint in objects}
    schema = next((objects[c.fingerprint].schema for c in current if c.fingerprint in objects), None)
    if schema is None:
        schema = rec.meta.last_schema(stage)
    return paths, schema


def _input_frame(rec: Reconciler, runner: Any, name: str, partition: str | None) -> Any:
    paths, schema = committed_paths(rec, name)
    chosen = list(paths.values()) if partition is None else [paths[partition]] if partition in paths else []
    if partition is None and schema is None and not paths:
        raise DataflowError(f"stage {name!r} has no committed output yet")
    return runner.read_objects(sorted(chosen), schema)


def compute_task(rec: Reconciler, stage: Any, mode: ModeInfo, task: Task) -> Staged | ExternalData | None:
    """Compute and stage one task; `None` for sinks, which write outside the store."""
    runner = rec._runner()
    try:
        if isinstance(stage, Source):
            part = rec._listings[stage.name][task.partition]
            found = rec.meta.source_schema(rec.flow, stage.name, stage.definition_hash())
            assert found is not None
            if not stage.ingest:
                return runner.reference(stage, part, found[0], found[1])
            return runner.ingest(stage, part, found[0], found[1])
        if isinstance(stage, Sink):
            source = rec.graph.resolve(stage.source)
            with boundary(stage.name, ""):
                runner.write_sink(stage, _input_frame(rec, runner, source, None))
            return None
        assert isinstance(stage, Transform)
        with boundary(stage.name, task.partition):
            df = _transform_frame(rec, runner, stage, mode, task)
            return runner.write(df, stage.name, stage.expect, stage.expect_action, task.partition)
    finally:
        runner.release_views()


def batchable(stage: Any, mode: ModeInfo, tasks: Sequence[Task]) -> bool:
    """Whether `tasks` of `stage` may share one Spark job (see execute/batch.py).

    Ingesting a directory-partitioned source, SQL `map` transforms and the per-partition
    aggregates of `partial` ones: their partitions are independent by construction, and
    a key column tells each output row's partition. Not stages with expectations, whose
    failures name one partition; and never a Python function, which is opaque (it might
    count or sample its input), so it always sees one partition at a time.
    """
    if isinstance(stage, Source):
        return stage.ingest and stage.partition_by is not None and all(t.role == OUTPUT for t in tasks)
    if not isinstance(stage, Transform) or stage.sql is None or stage.expect:
        return False
    if mode.mode == "map":
        return mode.key is not None and all(t.role == OUTPUT for t in tasks)
    return mode.mode == "partial" and all(t.role == PARTIAL for t in tasks)


def compute_batch(rec: Reconciler, stage: Any, mode: ModeInfo, tasks: Sequence[Task]) -> batchmod.BatchWrite:
    """Compute and stage several partitions of one stage in one Spark job."""
    runner = rec._runner()
    pids = [t.partition for t in tasks]
    try:
        with boundary(stage.name, ""):
            if isinstance(stage, Source):
                found = rec.meta.source_schema(rec.flow, stage.name, stage.definition_hash())
                assert found is not None
                parts = [rec._listings[stage.name][p] for p in pids]
                return batchmod.ingest(runner, stage, parts, found[0], found[1])
            if mode.mode == "partial":
                return _partial_batch(rec, runner, stage, mode, pids)
            return _map_batch(rec, runner, stage, mode, pids)
    finally:
        runner.release_views()


def _batch_frames(rec: Reconciler, runner: Any, stage: Transform, pids: Sequence[str],
                  split: Callable[[str], bool]) -> dict[str, Any]:
    """Each input's frame: the batch's partitions of the inputs `split` names, all of the others."""
    frames = {}
    for i in stage.inputs:
        name = rec.graph.resolve(i)
        paths, schema = committed_paths(rec, name)
        chosen = [paths[p] for p in pids if p in paths] if split(name) else list(paths.values())
        if split(name) and any(p.startswith(EXTERNAL) for p in chosen):
            raise batchmod.NotBatchable(f"{name} is read from the source's files in place")
        if not paths and schema is None:
            raise DataflowError(f"stage {name!r} has no committed output yet")
        frames[i] = runner.read_objects(sorted(chosen), schema)
    return frames


def _map_batch(rec: Reconciler, runner: Any, stage: Transform, mode: ModeInfo,
               pids: Sequence[str]) -> batchmod.BatchWrite:
    from pyspark.sql import functions as F

    assert mode.key is not None
    frames = _batch_frames(rec, runner, stage, pids, lambda n: _output_key(rec, n) is not None)
    df = runner.transform(stage, frames)
    field = next((f for f in df.schema.fields if f.name.lower() == mode.key.lower()), None)
    if field is None:
        raise batchmod.NotBatchable(f"the output has no column {mode.key!r}")
    labels = batchmod.labels_for(pids, [batchmod.partition_value(p) for p in pids], field.dataType.typeName())
    return batchmod.write_tagged(df, F.col(f"`{field.name}`"), labels, stage.name, rec.store)


def _partial_batch(rec: Reconciler, runner: Any, stage: Transform, mode: ModeInfo,
                   pids: Sequence[str]) -> batchmod.BatchWrite:
    from pyspark.sql import functions as F

    from jupyter_dataflow.core import sql as sqlmod

    pp = partial_plan(rec, stage)
    key = _output_key(rec, rec.graph.resolve(pp.partitioned_input))
    grouped = sqlmod.group_also_by(pp.partial_sql, pp.partitioned_input, key, batchmod.KEY) if key else None
    if grouped is None:
        raise batchmod.NotBatchable("a global aggregate has a row even for an empty partition")
    frames = _batch_frames(rec, runner, stage, pids, lambda n: n == mode.partitioned_input)
    df = runner.run_sql(stage.name, grouped, frames)
    key_type = df.schema[batchmod.KEY].dataType.typeName()
    labels = batchmod.labels_for(pids, [batchmod.partition_value(p) for p in pids], key_type)
    return batchmod.write_tagged(df, F.col(batchmod.KEY), labels, stage.name, rec.store, hidden=(batchmod.KEY,))


def _transform_frame(rec: Reconciler, runner: Any, stage: Transform, mode: ModeInfo, task: Task) -> Any:
    names = [rec.graph.resolve(i) for i in stage.inputs]
    keys = {n: _output_key(rec, n) for n in names}
    if mode.mode == "map":
        frames = {i: _input_frame(rec, runner, n, task.partition if keys[n] is not None else None)
                  for i, n in zip(stage.inputs, names, strict=False)}
        return runner.transform(stage, frames)
    if mode.mode == "partial":
        from jupyter_dataflow.core import modes

        pp = partial_plan(rec, stage)
        if task.role == PARTIAL:
            frames = {i: _input_frame(rec, runner, n, task.partition if n == mode.partitioned_input else None)
                      for i, n in zip(stage.inputs, names, strict=False)}
            return runner.run_sql(stage.name, pp.partial_sql, frames)
        assert task.partition == WHOLE
        # The combine, or a new rollup: over the valid rollup and the partials it leaves out.
        state = rollupmod.partials(rec, stage, mode, pp.rollup_sql)
        merged = runner.read_objects(state.combine_paths(), state.schema)
        sql = pp.rollup_sql if task.role == ROLLUP else pp.combine_sql
        return runner.run_sql(stage.name, sql, {modes.PARTIALS_TABLE: merged})
    frames = {i: _input_frame(rec, runner, n, None) for i, n in zip(stage.inputs, names, strict=False)}
    return runner.transform(stage, frames)


def partial_plan(rec: Reconciler, stage: Transform) -> Any:
    """The partial, combine and rollup queries of a `partial` transform."""
    from jupyter_dataflow.core import modes

    assert stage.sql is not None
    keys = {i.lower(): _output_key(rec, rec.graph.resolve(i)) for i in stage.inputs}
    return modes.partial_plan(stage.sql, keys, stage=stage.name)


def _output_key(rec: Reconciler, name: str) -> str | None:
    from jupyter_dataflow.plan.resolve import output_key

    return output_key(rec.graph[name], rec.modes[name])
