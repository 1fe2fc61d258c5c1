"""The graph payload: the one JSON shape of a flow's lineage.

`Flow.graph_payload` gathers `StageFacts` (definition, status, recorded schema) and
`build_payload` turns them into the payload that the server extension serves to the
lab panel and that the lineage widget draws:

    {"flow", "nodes": [{"id", "kind", "lang", "mode", "state", "partitions", "rows",
                        "fingerprint", "updated", "error", "reasons", "code",
                        "columns": [{"name", "type"}], "opaque", "opaque_reason"}],
     "edges": [{"source", "target"}],
     "column_edges": [{"source": "stage.col", "target": "stage.col",
                       "kind": "direct" | "indirect"}]}

With `columns=True` the column edges are traced: SQL transforms with sqlglot
(`sqlcolumns`), sinks column for column, PySpark transforms as opaque (every input
column feeds every output column, indirectly: their code is not analysed). Stages
that never ran get their output columns from their SQL when it can be resolved
(type ""). This module is pure: no Spark, no store, no Flow.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jupyter_dataflow.lineage.schema import Column, columns_of
from jupyter_dataflow.lineage.sqlcolumns import DIRECT, INDIRECT, LineageUnavailable, analyze

PYTHON_NOTE = "PySpark code is not analysed: every input column may feed every output column"
STATUS_KEYS = ("mode", "state", "partitions", "rows", "fingerprint", "updated", "error")


@dataclass(frozen=True)
class StageFacts:
    """What the payload needs to know about one stage."""

    name: str
    kind: str                                   # source | transform | sink
    inputs: tuple[str, ...] = ()                # registered names of the stages it reads
    lang: str | None = None                     # sql | python for transforms
    sql: str | None = None
    code: str = ""
    status: Mapping[str, Any] = field(default_factory=dict)   # `StageStatus.to_json()`
    schema: Any = None                          # recorded StructType JSON, if committed

    @classmethod
    def of(cls, stage: Any, inputs: Sequence[str], status: Mapping[str, Any], schema: Any) -> StageFacts:
        """Facts from a stage definition (`core.stage`), its status row and recorded schema."""
        text = getattr(stage, "text", None)
        return cls(name=stage.name, kind=stage.kind, inputs=tuple(inputs), lang=getattr(stage, "lang", None),
                   sql=getattr(stage, "sql", None),
                   code=text if isinstance(text, str) else json.dumps(stage.to_json(), sort_keys=True),
                   status=dict(status), schema=schema)


@dataclass
class ColumnGraph:
    """Columns of every stage and the column edges between them."""

    columns: dict[str, list[Column]] = field(default_factory=dict)
    edges: list[dict[str, str]] = field(default_factory=list)
    opaque: set[str] = field(default_factory=set)
    notes: dict[str, str] = field(default_factory=dict)   # stage -> why it is opaque


def _ref(stage: str, column: str) -> str:
    return f"{stage}.{column}"


def neighbourhood(facts: Sequence[StageFacts], stage: str) -> set[str]:
    """`stage` with everything upstream and downstream of it."""
    parents = {f.name: f.inputs for f in facts}
    children: dict[str, list[str]] = {f.name: [] for f in facts}
    for f in facts:
        for i in f.inputs:
            children.setdefault(i, []).append(f.name)
    keep = {stage}
    for links in (parents, children):
        todo = [stage]
        while todo:
            for nxt in links.get(todo.pop(), ()):
                if nxt not in keep:
                    keep.add(nxt)
                    todo.append(nxt)
    return keep


def _upstream_closure(facts: Sequence[StageFacts], names: set[str]) -> set[str]:
    parents = {f.name: f.inputs for f in facts}
    out, todo = set(names), list(names)
    while todo:
        for nxt in parents.get(todo.pop(), ()):
            if nxt not in out:
                out.add(nxt)
                todo.append(nxt)
    return out


def trace_columns(facts: Sequence[StageFacts], only: set[str] | None = None) -> ColumnGraph:
    """Columns and column edges of the stages in `only` (all when None).

    Args:
        facts: every stage, in dependency order (inputs before readers).
        only: stages whose columns are wanted; their upstream is traced too.

    Returns:
        A `ColumnGraph` over the traced stages.
    """
    wanted = _upstream_closure(facts, only) if only is not None else {f.name for f in facts}
    graph = ColumnGraph()
    for f in facts:
        if f.name not in wanted:
            continue
        recorded = columns_of(f.schema)
        inputs = {i: graph.columns.get(i) for i in f.inputs}
        if f.kind == "source":
            if recorded is not None:
                graph.columns[f.name] = recorded
        elif f.kind == "sink":
            upstream = inputs.get(f.inputs[0]) if f.inputs else None
            cols = recorded or upstream
            if cols is not None:
                graph.columns[f.name] = list(cols)
            by_lower = {u.name.lower(): u.name for u in upstream or ()}
            for c in cols or ():
                if c.name.lower() in by_lower:
                    graph.edges.append({"source": _ref(f.inputs[0], by_lower[c.name.lower()]),
                                        "target": _ref(f.name, c.name), "kind": DIRECT})
        elif f.lang == "sql" and f.sql is not None:
            _trace_sql(graph, f, recorded, inputs)
        else:
            graph.opaque.add(f.name)
            graph.notes[f.name] = PYTHON_NOTE
            if recorded is not None:
                graph.columns[f.name] = recorded
            _all_to_all(graph, f, inputs)
    return graph


def _trace_sql(graph: ColumnGraph, f: StageFacts, recorded: list[Column] | None,
               inputs: Mapping[str, list[Column] | None]) -> None:
    try:
        query = analyze(f.sql or "", {i: ([(c.name, c.type) for c in cols] if cols is not None else None)
                                      for i, cols in inputs.items()},
                        [c.name for c in recorded] if recorded is not None else None)
    except LineageUnavailable as why:
        graph.opaque.add(f.name)
        graph.notes[f.name] = str(why)
        if recorded is not None:
            graph.columns[f.name] = recorded
        _all_to_all(graph, f, inputs)
        return
    if recorded is not None and [c.name for c in recorded] == list(query.outputs):
        graph.columns[f.name] = recorded
    else:
        graph.columns[f.name] = [Column(name, "") for name in query.outputs]
    for output in query.outputs:
        deps = query.deps.get(output, {})
        for (stage, column), kind in sorted(deps.items(), key=lambda item: (item[1] != DIRECT, item[0])):
            graph.edges.append({"source": _ref(stage, column), "target": _ref(f.name, output), "kind": kind})


def _all_to_all(graph: ColumnGraph, f: StageFacts, inputs: Mapping[str, list[Column] | None]) -> None:
    outputs = graph.columns.get(f.name) or []
    for out in outputs:
        for stage in f.inputs:
            for c in inputs.get(stage) or ():
                graph.edges.append({"source": _ref(stage, c.name), "target": _ref(f.name, out.name),
                                    "kind": INDIRECT})


def build_payload(flow: str, facts: Sequence[StageFacts], stage: str | None = None,
                  columns: bool = False) -> dict[str, Any]:
    """The graph payload of a flow, or of one stage's upstream and downstream.

    Args:
        flow: the flow's name.
        facts: every stage of the flow, in dependency order.
        stage: a registered stage name to centre on, or None for the whole flow.
        columns: trace column lineage (`column_edges`, columns of stages that never
            ran, `opaque` for SQL that cannot be traced).

    Returns:
        The payload described in this module's docstring.
    """
    keep = neighbourhood(facts, stage) if stage is not None else {f.name for f in facts}
    traced = trace_columns(facts, keep) if columns else None
    nodes, edges = [], []
    for f in facts:
        if f.name not in keep:
            continue
        if traced is not None:
            cols = traced.columns.get(f.name) or []
            opaque = f.name in traced.opaque
        else:
            cols = columns_of(f.schema) or []
            opaque = f.kind == "transform" and f.lang == "python"
        node: dict[str, Any] = {"id": f.name, "kind": f.kind, "lang": f.lang}
        for key in STATUS_KEYS:
            node[key] = f.status.get(key)
        node["reasons"] = list(f.status.get("reasons") or ())
        node["code"] = f.code
        node["columns"] = [c.to_json() for c in cols]
        node["opaque"] = opaque
        node["opaque_reason"] = (traced.notes.get(f.name) if traced is not None
                                 else PYTHON_NOTE if opaque else None)
        nodes.append(node)
        edges += [{"source": i, "target": f.name} for i in dict.fromkeys(f.inputs) if i in keep]
    column_edges: list[dict[str, str]] = []
    if traced is not None:
        column_edges = [e for e in traced.edges
                        if e["source"].partition(".")[0] in keep and e["target"].partition(".")[0] in keep]
    return {"flow": flow, "nodes": nodes, "edges": edges, "column_edges": column_edges}


def node_index(payload: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Nodes of a payload by id."""
    return {n["id"]: n for n in payload.get("nodes", ())}


def column_refs(payload: Mapping[str, Any]) -> Iterable[str]:
    """Every "stage.column" of a payload, in node order."""
    for n in payload.get("nodes", ()):
        for c in n.get("columns") or ():
            yield _ref(n["id"], c["name"])
