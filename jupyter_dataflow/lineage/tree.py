"""Where one column comes from: a tree over the column edges of a graph payload.

`column_tree(payload, stage, column)` starts at `stage.column` and follows
`column_edges` upstream to source columns. Each node says how it feeds its parent
(direct or indirect); `sources()` folds the paths into "which source columns, and
is there an all-direct path". Unknown columns raise `UnknownColumnError` with a
"did you mean". This module is pure: it reads payload dicts only.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jupyter_dataflow.core.errors import DataflowError
from jupyter_dataflow.lineage.payload import node_index
from jupyter_dataflow.lineage.sqlcolumns import DIRECT, INDIRECT

ROOT = "root"


class ColumnRefError(DataflowError):
    """A column reference that is not of the form STAGE.COLUMN."""


class UnknownColumnError(ColumnRefError):
    """A STAGE.COLUMN whose column the stage does not have (or not yet)."""

    def __init__(self, stage: str, column: str, known: Sequence[str]) -> None:
        self.stage = stage
        self.column = column
        self.known = list(known)
        if not self.known:
            message = (f"stage {stage!r} has no known columns yet (it has not run and its "
                       "columns cannot be derived from its code); run the flow first")
        else:
            message = f"stage {stage!r} has no column {column!r}{_did_you_mean(column, self.known)}"
        super().__init__(message)


def _did_you_mean(name: str, known: Sequence[str]) -> str:
    lowered = {k.lower(): k for k in known}
    if name.lower() in lowered:
        return f"; did you mean {lowered[name.lower()]!r}?"
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    shown = ", ".join(list(known)[:8])
    return f"; it has {shown}{', ...' if len(known) > 8 else ''}"


def split_ref(ref: str) -> tuple[str, str]:
    """Split "stage.column" (the column may itself contain dots).

    Raises:
        ColumnRefError: `ref` is not a string with a stage and a column.
    """
    if not isinstance(ref, str) or "." not in ref.strip(".") or ref.startswith("."):
        raise ColumnRefError(f"give a column as STAGE.COLUMN, e.g. daily.revenue; got {ref!r}")
    stage, _, column = ref.partition(".")
    return stage, column


@dataclass(frozen=True)
class ColumnLineage:
    """One column and the upstream columns it depends on.

    Attributes:
        stage: the stage that outputs the column.
        column: the column's name.
        stage_kind: source, transform or sink.
        kind: how this column feeds its parent in the tree: "direct", "indirect",
            or "root" for the column asked about.
        opaque: the stage's code is not analysed; its inputs are all listed.
        inputs: the columns this one depends on.
    """

    stage: str
    column: str
    stage_kind: str
    kind: str = ROOT
    opaque: bool = False
    inputs: tuple[ColumnLineage, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.stage}.{self.column}"

    def walk(self) -> Iterator[ColumnLineage]:
        """This node and every node below it, depth first."""
        yield self
        for child in self.inputs:
            yield from child.walk()

    def sources(self) -> dict[str, str]:
        """Leaf columns ("stage.column") and "direct" when some path to them is all direct."""
        out: dict[str, str] = {}

        def visit(node: ColumnLineage, direct: bool) -> None:
            if not node.inputs and node is not self and (direct or out.get(node.ref) != DIRECT):
                out[node.ref] = DIRECT if direct else INDIRECT
            for child in node.inputs:
                visit(child, direct and child.kind == DIRECT)

        visit(self, True)
        return dict(sorted(out.items()))

    def to_json(self) -> dict[str, Any]:
        return {"column": self.ref, "stage": self.stage, "name": self.column, "stage_kind": self.stage_kind,
                "kind": self.kind, "opaque": self.opaque, "inputs": [c.to_json() for c in self.inputs]}

    def _lines(self, prefix: str, last: bool, top: bool) -> Iterator[str]:
        notes = [self.stage_kind] + (["opaque"] if self.opaque else [])
        label = f"{self.ref}  ({', '.join(notes)})"
        if top:
            yield label
            child_prefix = ""
        else:
            yield f"{prefix}{'└── ' if last else '├── '}{self.kind:<8} {label}"
            child_prefix = prefix + ("    " if last else "│   ")
        for i, child in enumerate(self.inputs):
            yield from child._lines(child_prefix, i == len(self.inputs) - 1, False)

    def __str__(self) -> str:
        return "\n".join(self._lines("", True, True))

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


def column_tree(payload: Mapping[str, Any], stage: str, column: str) -> ColumnLineage:
    """The lineage tree of `stage.column` from a payload built with `columns=True`.

    Args:
        payload: a graph payload holding `stage` and its upstream.
        stage: the stage's registered name.
        column: the column's name (matched case-insensitively, like Spark).

    Returns:
        The tree rooted at the column.

    Raises:
        UnknownColumnError: the stage has no such column (with a "did you mean").
    """
    nodes = node_index(payload)
    node = nodes.get(stage)
    known = [c["name"] for c in (node.get("columns") or ())] if node else []
    match = next((k for k in known if k == column), None) or next(
        (k for k in known if k.lower() == column.lower()), None)
    if match is None:
        raise UnknownColumnError(stage, column, known)
    parents: dict[str, list[tuple[str, str]]] = {}
    for e in payload.get("column_edges", ()):
        parents.setdefault(e["target"], []).append((e["source"], e["kind"]))
    built: dict[tuple[str, str], ColumnLineage] = {}

    def build(ref: str, kind: str) -> ColumnLineage:
        if (ref, kind) in built:   # shared upstream (diamonds) is built once
            return built[(ref, kind)]
        st, _, col = ref.partition(".")
        info = nodes.get(st, {})
        children = tuple(build(src, k) for src, k in parents.get(ref, ()))
        tree = ColumnLineage(st, col, str(info.get("kind", "")), kind, bool(info.get("opaque")), children)
        built[(ref, kind)] = tree
        return tree

    return build(f"{stage}.{match}", ROOT)
