"""What an export is made from: a flow's blueprint as plain, redacted, ordered data.

`FlowSpec` holds every stage's definition (as `Stage.to_json` gives it, credential-like
options redacted), its definition hash and partition mode, in the flow's deterministic
topological order, plus the engine settings. Writers for each target turn a
`FlowSpec` into files; none of them opens a store or starts Spark, and this module
never writes files.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_dataflow.core.errors import DataflowError
from jupyter_dataflow.core.graph import Graph
from jupyter_dataflow.core.stage import Sink, Source, Transform
from jupyter_dataflow.export import secrets

# Settings the engine always applies (see execute/session.py); exported targets need
# the ones that change results, so that they compute what the flow computes.
RESULT_SETTINGS = {"spark.sql.session.timeZone": "UTC"}


@dataclass(frozen=True)
class StageSpec:
    """One stage as exported."""

    name: str
    kind: str                     # source | transform | sink
    definition: dict[str, Any]    # Stage.to_json(), options redacted
    definition_hash: str
    mode: str | None
    inputs: tuple[str, ...]       # resolved input stage names

    @property
    def lang(self) -> str | None:
        return self.definition.get("lang") if self.kind == "transform" else None

    @property
    def code(self) -> str | None:
        """The transform's code as the user wrote it (SQL) or as captured (Python module)."""
        if self.kind != "transform":
            return None
        if "sql" in self.definition:
            return str(self.definition["sql"])
        return str(self.definition["python"]["module"])

    @property
    def code_file(self) -> str | None:
        """Where the code lives inside an export (`stages/<name>.sql|py`)."""
        if self.kind != "transform":
            return None
        return f"stages/{self.name}.{'sql' if self.lang == 'sql' else 'py'}"

    @property
    def options(self) -> dict[str, str]:
        return {k: v for k, v in self.definition.get("options") or []}

    @property
    def path(self) -> str | None:
        return self.definition.get("path")


@dataclass(frozen=True)
class FlowSpec:
    """A flow's blueprint, ready to be written out."""

    name: str
    stages: tuple[StageSpec, ...]
    spark: str | None = None
    conf: dict[str, str] = field(default_factory=dict)
    secrets: tuple[secrets.SecretRef, ...] = ()
    data_root: Path | None = None  # what relative source and sink paths resolve against
    store: str | None = None       # data store root to run with (None: the home's own)

    def stage(self, name: str) -> StageSpec:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def of_kind(self, kind: str) -> list[StageSpec]:
        return [s for s in self.stages if s.kind == kind]

    def relative_paths(self) -> list[str]:
        """Relative source and sink paths, which resolve against the data root."""
        return [s.path for s in self.stages if s.path and not is_absolute(s.path)]


def is_absolute(path: str) -> bool:
    return "://" in path or os.path.isabs(path)


def _code_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def build(graph: Graph, name: str, *, spark: Any = None, conf: Mapping[str, str] | None = None,
          data_root: Path | None = None, store: str | None = None) -> FlowSpec:
    """Turn a flow's graph and settings into a `FlowSpec`.

    Args:
        graph: the flow's blueprint (`Flow.graph`).
        name: the flow's name.
        spark: the flow's engine setting; only a URL is exported (a session object is not).
        conf: the flow's Spark settings; credential-like values are redacted.
        data_root: the folder relative source and sink paths resolve against.
        store: the data store root the export runs with (None: the running home's).

    Raises:
        DataflowError: the flow has no stages, or modes cannot be resolved.
    """
    from jupyter_dataflow.plan.resolve import resolve_modes

    if not graph.stages:
        raise DataflowError(f"flow {name!r} has no stages to export")
    modes = resolve_modes(graph)
    refs: list[secrets.SecretRef] = []
    stages = []
    for stage_name in graph.order():
        stage = graph[stage_name]
        definition = stage.to_json()
        if isinstance(stage, (Source, Sink)) and stage.options:
            redacted, found = secrets.redact(dict(stage.options), f"stage {stage_name!r} option",
                                             prefix=f"DATAFLOW_{stage_name}")
            definition["options"] = [[k, v] for k, v in sorted(redacted.items())]
            refs.extend(found)
        if isinstance(stage, Transform):
            definition["canonical_sha256"] = _code_digest(stage.canonical_code)
        stages.append(StageSpec(stage_name, stage.kind, definition, stage.definition_hash(),
                                modes[stage_name].mode, graph.inputs(stage_name)))
    url = spark if isinstance(spark, str) else None
    settings, conf_refs = secrets.redact(dict(conf or {}), "spark conf")
    return FlowSpec(name, tuple(stages), url, settings, tuple(conf_refs + refs), data_root, store)
