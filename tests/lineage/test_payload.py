"""The graph payload and column trees, built without Spark."""

from __future__ import annotations

import json

import pytest

import jupyter_dataflow as jd
from jupyter_dataflow.lineage import (
    DIRECT,
    INDIRECT,
    ColumnRefError,
    UnknownColumnError,
    build_payload,
    column_tree,
    columns_of,
    split_ref,
)
from jupyter_dataflow.server.handlers import graph_payload as served_payload
from tests.lineage.conftest import fact, struct

NODE_KEYS = {"id", "kind", "lang", "mode", "state", "partitions", "rows", "fingerprint", "updated", "error",
             "reasons", "code", "columns", "opaque", "opaque_reason"}

FACTS = [
    fact("orders", "source", schema=struct(("order_id", "long"), ("amount", "double"), ("date", "string"))),
    fact("customers", "source", schema=struct(("order_id", "long"), ("name", "string"))),
    fact("daily", inputs=("orders",), sql="SELECT date, sum(amount) AS revenue FROM orders GROUP BY date",
         schema=struct(("date", "string"), ("revenue", "double"))),
    fact("named", inputs=("orders", "customers"),
         sql="SELECT o.*, c.name FROM orders o JOIN customers c ON o.order_id = c.order_id"),
    fact("scored", inputs=("named",), lang="python", schema=struct(("name", "string"), ("score", "double"))),
    fact("out", "sink", inputs=("daily",)),
]


def edges(payload: dict) -> set[tuple[str, str, str]]:
    return {(e["source"], e["target"], e["kind"]) for e in payload["column_edges"]}


def test_payload_shape_and_stage_edges() -> None:
    p = build_payload("f", FACTS)
    assert p["flow"] == "f"
    assert [n["id"] for n in p["nodes"]] == ["orders", "customers", "daily", "named", "scored", "out"]
    assert all(set(n) == NODE_KEYS for n in p["nodes"])
    assert {(e["source"], e["target"]) for e in p["edges"]} == {
        ("orders", "daily"), ("orders", "named"), ("customers", "named"), ("named", "scored"), ("daily", "out")}
    assert p["column_edges"] == []
    orders = p["nodes"][0]
    assert orders["columns"] == [{"name": "order_id", "type": "bigint"}, {"name": "amount", "type": "double"},
                                 {"name": "date", "type": "string"}]
    assert json.loads(json.dumps(p)) == p


def test_columns_trace_across_the_graph() -> None:
    p = build_payload("f", FACTS, columns=True)
    e = edges(p)
    assert ("orders.amount", "daily.revenue", DIRECT) in e
    assert ("orders.date", "daily.revenue", INDIRECT) in e
    # SELECT o.* expanded from orders' recorded schema; the join key is indirect.
    assert ("orders.amount", "named.amount", DIRECT) in e
    assert ("customers.order_id", "named.amount", INDIRECT) in e
    assert ("customers.name", "named.name", DIRECT) in e
    nodes = {n["id"]: n for n in p["nodes"]}
    assert [c["name"] for c in nodes["named"]["columns"]] == ["order_id", "amount", "date", "name"]
    assert nodes["named"]["columns"][0]["type"] == ""          # never ran: derived, untyped
    # The sink mirrors its input column for column.
    assert ("daily.revenue", "out.revenue", DIRECT) in e


def test_pyspark_stage_is_opaque_all_inputs_to_all_outputs() -> None:
    p = build_payload("f", FACTS, columns=True)
    scored = next(n for n in p["nodes"] if n["id"] == "scored")
    assert scored["opaque"] is True and "PySpark" in scored["opaque_reason"]
    into = {(s, k) for s, t, k in edges(p) if t == "scored.score"}
    assert into == {(f"named.{c}", INDIRECT) for c in ("order_id", "amount", "date", "name")}
    assert next(n for n in build_payload("f", FACTS)["nodes"] if n["id"] == "scored")["opaque"] is True


def test_sql_that_cannot_be_traced_is_opaque_with_a_reason() -> None:
    facts = [fact("raw", "source"), fact("copy", inputs=("raw",), sql="SELECT * FROM raw",
                                         schema=struct(("a", "long")))]
    node = build_payload("f", facts, columns=True)["nodes"][1]
    assert node["opaque"] is True
    assert "not known yet" in node["opaque_reason"]
    assert node["columns"] == [{"name": "a", "type": "bigint"}]


def test_stage_filter_keeps_upstream_and_downstream_only() -> None:
    p = build_payload("f", FACTS, stage="daily", columns=True)
    assert {n["id"] for n in p["nodes"]} == {"orders", "daily", "out"}
    assert all(e["source"] in {"orders", "daily"} for e in p["edges"])
    assert all(e["source"].split(".")[0] in {"orders", "daily"} for e in p["column_edges"])


def test_column_tree_follows_edges_to_sources() -> None:
    p = build_payload("f", FACTS, columns=True)
    tree = column_tree(p, "out", "Revenue")
    assert tree.ref == "out.revenue"
    assert tree.sources() == {"orders.amount": DIRECT, "orders.date": INDIRECT}
    text = str(tree)
    assert text.splitlines()[0] == "out.revenue  (sink)"
    assert "direct   daily.revenue" in text and "indirect orders.date" in text
    data = tree.to_json()
    assert data["column"] == "out.revenue" and data["inputs"][0]["column"] == "daily.revenue"
    opaque = column_tree(p, "scored", "score")
    assert opaque.opaque and {c.ref for c in opaque.inputs} >= {"named.name", "named.amount"}


def test_unknown_columns_say_did_you_mean() -> None:
    p = build_payload("f", FACTS, columns=True)
    with pytest.raises(UnknownColumnError, match="did you mean 'revenue'"):
        column_tree(p, "daily", "revenu")
    with pytest.raises(jd.DataflowError, match=r"STAGE\.COLUMN"):
        split_ref("daily")
    assert issubclass(UnknownColumnError, ColumnRefError)
    assert split_ref("a.b.c") == ("a", "b.c")


def test_columns_of_reads_nested_spark_types() -> None:
    schema = json.dumps({"type": "struct", "fields": [
        {"name": "tags", "type": {"type": "array", "elementType": "string", "containsNull": True}},
        {"name": "kv", "type": {"type": "map", "keyType": "string", "valueType": "integer"}},
        {"name": "p", "type": {"type": "struct", "fields": [{"name": "x", "type": "short"}]}},
        {"name": "d", "type": "decimal(10,2)"}]})
    assert [c.type for c in columns_of(schema) or []] == [
        "array<string>", "map<string,int>", "struct<x:smallint>", "decimal(10,2)"]
    assert columns_of(None) is None
    assert columns_of([{"name": "a", "type": "int"}]) == [("a", "int")]


def test_never_run_flow_payload_from_the_facade(never_run: jd.Flow) -> None:
    p = never_run.graph_payload(columns=True)
    nodes = {n["id"]: n for n in p["nodes"]}
    assert {n: v["state"] for n, v in nodes.items()} == dict.fromkeys(nodes, "never run")
    assert [c["name"] for c in nodes["top"]["columns"]] == ["date", "revenue", "n"]
    assert nodes["enriched"]["opaque"] and nodes["enriched"]["columns"] == []
    assert nodes["daily"]["code"].startswith("SELECT date")
    assert json.loads(nodes["orders"]["code"])["kind"] == "source"
    tree = never_run.column_lineage("out.n")
    assert tree.sources() == {"orders.amount": INDIRECT, "orders.date": INDIRECT}


def test_facade_errors_and_server_compatibility(never_run: jd.Flow) -> None:
    with pytest.raises(jd.UnknownStageError, match="did you mean 'daily'"):
        never_run.column_lineage("dayly.revenue")
    with pytest.raises(UnknownColumnError, match="did you mean 'revenue'"):
        never_run.column_lineage("daily.revenu")
    with pytest.raises(UnknownColumnError, match="no known columns yet"):
        never_run.column_lineage("enriched.x")
    with pytest.raises(jd.UnknownStageError):
        never_run.graph_payload("nope")
    served = served_payload(never_run)
    assert served == never_run.graph_payload()
    assert {n["id"] for n in never_run.graph_payload("top")["nodes"]} == {"orders", "daily", "top", "out"}
