"""Lineage: the graph payload and column-level lineage of a flow.

`payload` builds the one JSON shape of a flow's graph (nodes, edges, column edges)
from facts `Flow` gathers; `sqlcolumns` traces columns through Spark SQL with
sqlglot; `tree` answers "where does this column come from". Everything here is
pure: it never imports Spark, reads the store or calls `Flow`.
"""

from __future__ import annotations

from jupyter_dataflow.lineage.payload import StageFacts, build_payload, neighbourhood, trace_columns
from jupyter_dataflow.lineage.schema import Column, columns_of
from jupyter_dataflow.lineage.sqlcolumns import (
    DIRECT,
    INDIRECT,
    LineageUnavailable,
    QueryColumns,
    analyze,
)
from jupyter_dataflow.lineage.tree import (
    ColumnLineage,
    ColumnRefError,
    UnknownColumnError,
    column_tree,
    split_ref,
)

__all__ = [
    "DIRECT",
    "INDIRECT",
    "Column",
    "ColumnLineage",
    "ColumnRefError",
    "LineageUnavailable",
    "QueryColumns",
    "StageFacts",
    "UnknownColumnError",
    "analyze",
    "build_payload",
    "column_tree",
    "columns_of",
    "neighbourhood",
    "split_ref",
    "trace_columns",
]
