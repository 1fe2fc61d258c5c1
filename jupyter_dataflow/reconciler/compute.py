"""Build one task's output on Spark from the committed outputs of its inputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jupyter_dataflow.core.errors import DataflowError
from jupyter_dataflow.core.stage import Sink, Source, Transform
from jupyter_dataflow.execute.boundary import boundary
from jupyter_dataflow.execute.runner import ExternalData, Staged
from jupyter_dataflow.plan.planner import OUTPUT, PARTIAL, WHOLE, ModeInfo, Task

if TYPE_CHECKING:
    from jupyter_dataflow.reconciler.loop import Reconciler

PARTIAL_STAGE_SUFFIX = "#partial"


def committed_paths(rec: Reconciler, stage: str, role: str = OUTPUT) -> tuple[dict[str, str], str | None]:
    """Object paths of a stage's current partitions, and the schema they share."""
    current = rec.meta.current(rec.flow, stage, role)
    objects = rec.meta.objects([c.fingerprint for c in current])
    paths = {c.partition: objects[c.fingerprint].path for c in current if c.fingerprint in objects}
    schema = next((objects[c.fingerprint].schema for c in current if c.fingerprint in objects), None)
    if schema is None:
        schema = rec.meta.last_schema(stage + PARTIAL_STAGE_SUFFIX if role == PARTIAL else stage)
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


def _transform_frame(rec: Reconciler, runner: Any, stage: Transform, mode: ModeInfo, task: Task) -> Any:
    names = [rec.graph.resolve(i) for i in stage.inputs]
    keys = {n: _output_key(rec, n) for n in names}
    if mode.mode == "map":
        frames = {i: _input_frame(rec, runner, n, task.partition if keys[n] is not None else None)
                  for i, n in zip(stage.inputs, names, strict=False)}
        return runner.transform(stage, frames)
    if mode.mode == "partial":
        from jupyter_dataflow.core import modes

        assert stage.sql is not None
        lowered = {i.lower(): keys[n] for i, n in zip(stage.inputs, names, strict=False)}
        pp = modes.partial_plan(stage.sql, lowered, stage=stage.name)
        if task.role == PARTIAL:
            frames = {i: _input_frame(rec, runner, n, task.partition if n == mode.partitioned_input else None)
                      for i, n in zip(stage.inputs, names, strict=False)}
            return runner.run_sql(stage.name, pp.partial_sql, frames)
        assert task.partition == WHOLE
        paths, schema = committed_paths(rec, stage.name, PARTIAL)
        partials = runner.read_objects(sorted(paths.values()), schema)
        return runner.run_sql(stage.name, pp.combine_sql, {modes.PARTIALS_TABLE: partials})
    frames = {i: _input_frame(rec, runner, n, None) for i, n in zip(stage.inputs, names, strict=False)}
    return runner.transform(stage, frames)


def _output_key(rec: Reconciler, name: str) -> str | None:
    from jupyter_dataflow.plan.resolve import output_key

    return output_key(rec.graph[name], rec.modes[name])
