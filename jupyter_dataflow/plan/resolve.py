"""Resolve every stage's partitioning mode from the graph: pure, cached by the caller."""

from __future__ import annotations

from jupyter_dataflow.core.errors import StageDefinitionError
from jupyter_dataflow.core.graph import Graph
from jupyter_dataflow.core.stage import Sink, Source, Stage, Transform
from jupyter_dataflow.plan.planner import ModeInfo


def output_key(stage: Stage, mode: ModeInfo) -> str | None:
    """The partition key downstream stages see for this stage's output."""
    if isinstance(stage, Source):
        return stage.partition_by
    if isinstance(stage, Transform) and mode.mode == "map":
        return mode.key
    return None


def stage_mode(graph: Graph, stage: Stage, keys: dict[str, str | None]) -> ModeInfo:
    """The mode of one stage given the output keys of its inputs."""
    if isinstance(stage, Source):
        by = stage.partition_by
        return ModeInfo("source", by, f"partitioned by directory key {by!r}" if by else "partitioned by file")
    if isinstance(stage, Sink):
        return ModeInfo("sink", None, "writes the whole input")
    inputs = {graph.resolve(i).lower(): keys[graph.resolve(i)] for i in stage.inputs}
    if stage.sql is not None:
        from jupyter_dataflow.core import modes

        d = modes.infer_mode(stage.sql, inputs, stage=stage.name, requested=stage.mode)
        partitioned = None
        if d.mode == "partial":
            partitioned = graph.resolve(modes.partial_plan(stage.sql, inputs, stage=stage.name).partitioned_input)
        return ModeInfo(d.mode, d.key, d.reason, partitioned)
    return _python_mode(stage, inputs)


def _python_mode(stage: Transform, inputs: dict[str, str | None]) -> ModeInfo:
    keyed = {k for k in inputs.values() if k is not None}
    if stage.mode in (None, "reduce"):
        why = "Python transform: declared reduce" if stage.mode else "Python transform: mode not declared"
        return ModeInfo("reduce", None, why)
    if stage.mode == "partial":
        raise StageDefinitionError("mode 'partial' needs a SQL aggregation; a Python transform can be map or reduce",
                                   stage.name)
    if len(keyed) != 1:
        raise StageDefinitionError(
            "mode 'map' needs every partitioned input to share one partition key; "
            f"inputs have {sorted(keyed) or 'none'}", stage.name)
    key = next(iter(keyed))
    return ModeInfo("map", key, f"declared map over partition key {key!r}")


def resolve_modes(graph: Graph) -> dict[str, ModeInfo]:
    modes: dict[str, ModeInfo] = {}
    keys: dict[str, str | None] = {}
    for name in graph.order():
        stage = graph[name]
        modes[name] = stage_mode(graph, stage, keys)
        keys[name] = output_key(stage, modes[name])
    return modes
