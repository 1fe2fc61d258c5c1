"""Stage definitions and the graph: bad input is refused with a precise error."""

from __future__ import annotations

import pytest

from jupyter_dataflow.core import sql
from jupyter_dataflow.core.errors import (
    CycleError,
    SqlError,
    StageDefinitionError,
    UnknownStageError,
)
from jupyter_dataflow.core.graph import Graph
from jupyter_dataflow.core.stage import Sink, Source, Transform, from_json


def _graph() -> Graph:
    g = Graph().with_stage(Source.create("orders", path="data/orders", format="csv", partition_by="date"))
    g = g.with_stage(Source.create("customers", path="data/c.csv", format="csv"))
    return g.with_stage(Transform.from_sql("daily", "SELECT date, sum(amount) AS r FROM orders GROUP BY date"))


@pytest.mark.parametrize("name", ["../x", "a-b", "1abc", "", "x y", "select", "__dataflow_x", "ä"])
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(StageDefinitionError, match="name"):
        Source.create(name, path="x")


def test_references_exclude_ctes_and_subquery_aliases() -> None:
    q = """WITH recent AS (SELECT * FROM orders WHERE date > '2024-01-01')
           SELECT r.*, s.n FROM recent r JOIN (SELECT customer_id, count(*) n FROM customers GROUP BY 1) s
           ON r.customer_id = s.customer_id"""
    assert sql.referenced_tables(q) == ["orders", "customers"]


def test_sql_error_has_line_column_and_caret() -> None:
    with pytest.raises(SqlError) as info:
        Transform.from_sql("daily", "SELECT date,\n  sum(amount AS r\nFROM orders")
    err = info.value
    assert err.stage == "daily" and err.line is not None and err.column is not None
    assert "^" in str(err)


def test_unknown_reference_suggests_a_name() -> None:
    with pytest.raises(UnknownStageError, match="did you mean 'orders'"):
        _graph().with_stage(Transform.from_sql("x", "SELECT * FROM ordrs"))


def test_cycle_is_named() -> None:
    g = _graph().with_stage(Transform.from_sql("weekly", "SELECT * FROM daily"))
    with pytest.raises(CycleError) as info:
        g.with_stage(Transform.from_sql("daily", "SELECT * FROM weekly"))
    assert "daily" in str(info.value) and "weekly" in str(info.value) and "->" in str(info.value)


def test_self_reference_is_a_cycle() -> None:
    with pytest.raises(CycleError):
        _graph().with_stage(Transform.from_sql("loop", "SELECT * FROM loop"))


def test_case_insensitive_duplicates_are_refused() -> None:
    with pytest.raises(StageDefinitionError, match="already exists"):
        _graph().with_stage(Transform.from_sql("Daily", "SELECT * FROM orders"))


def test_reading_a_sink_is_refused() -> None:
    g = _graph().with_stage(Sink.create("out", source="daily", path="out"))
    with pytest.raises(StageDefinitionError, match="sink"):
        g.with_stage(Transform.from_sql("x", "SELECT * FROM out"))


@pytest.mark.parametrize("kwargs,match", [
    ({"format": "xlsx"}, "format"),
    ({"partition_by": "a/b"}, "partition"),
    ({"options": {"header": object()}}, "option"),
    ({"format": "csv", "ingest": False}, "parquet"),
])
def test_bad_source_options(kwargs: dict, match: str) -> None:
    with pytest.raises(StageDefinitionError, match=match):
        Source.create("s", path="x", **kwargs)


def test_bad_transform_options() -> None:
    with pytest.raises(StageDefinitionError, match="mode"):
        Transform.from_sql("t", "SELECT * FROM orders", mode="fancy")
    with pytest.raises(SqlError):
        Transform.from_sql("t", "SELECT * FROM orders", expect=("revenue >",))
    with pytest.raises(StageDefinitionError, match="reads no stage"):
        Transform.from_sql("t", "SELECT 1 AS x")
    with pytest.raises(SqlError, match="one SQL statement"):
        Transform.from_sql("t", "SELECT * FROM a; SELECT * FROM b")
    with pytest.raises(SqlError, match="query"):
        Transform.from_sql("t", "DROP TABLE orders")


def test_definitions_round_trip_through_json() -> None:
    g = _graph()
    for name in g:
        st = g[name]
        assert from_json(st.to_json()) == st
        assert from_json(st.to_json()).definition_hash() == st.definition_hash()


def test_graph_order_is_deterministic_and_drop_checks_dependents() -> None:
    g = _graph()
    assert g.order() == ["customers", "orders", "daily"]
    with pytest.raises(StageDefinitionError, match="daily"):
        g.without("orders")
    assert "daily" not in g.without("daily")
