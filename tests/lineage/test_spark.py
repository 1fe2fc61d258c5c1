"""Lineage of flows that really ran on the shared local SparkSession: recorded schemas,
opaque PySpark stages, failed stages, the preview and the widget's Run button."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import jupyter_dataflow as jd
from jupyter_dataflow.lineage import DIRECT, INDIRECT
from jupyter_dataflow.server.handlers import graph_payload as served_payload

pytestmark = pytest.mark.spark


def write_data(root: Path) -> None:
    for i, day in enumerate(["2024-01-01", "2024-01-02"]):
        folder = root / "orders" / f"date={day}"
        folder.mkdir(parents=True)
        pq.write_table(pa.table({"order_id": pa.array([i * 10 + j for j in range(5)], type=pa.int64()),
                                 "customer_id": pa.array([j % 3 for j in range(5)], type=pa.int64()),
                                 "Amount": pa.array([2.5 * j for j in range(5)])}), folder / "part-0.parquet")
    (root / "customers").mkdir()
    pq.write_table(pa.table({"customer_id": pa.array([0, 1, 2], type=pa.int64()),
                             "name": ["ann", "bob", "cy"]}), root / "customers" / "c.parquet")


def scored(named: Any) -> Any:
    return named.withColumn("score", named.Amount * 2)


def boom(daily: Any) -> Any:
    raise ValueError("no good")


@pytest.fixture(scope="module")
def ran(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[jd.Flow]:
    root = tmp_path_factory.mktemp("lineage")
    write_data(root)
    flow = jd.Flow.open(home=root / ".dataflow", spark=spark)
    flow.source("orders", path=str(root / "orders"), partition_by="date")
    flow.source("customers", path=str(root / "customers"))
    flow.transform("daily", "SELECT date, sum(amount) AS revenue, count(*) FROM orders GROUP BY date")
    flow.transform("named", "SELECT o.*, c.name FROM orders o JOIN customers c USING (customer_id)")
    flow.transform("big", "WITH t AS (SELECT * FROM named WHERE amount > 5) "
                          "SELECT t.order_id AS id, upper(t.name) AS who FROM t")
    flow.transform("scored", python=scored)
    flow.transform("boom", python=boom)
    flow.sink("out", source="daily", path=str(root / "out"))
    flow.run()
    yield flow
    flow.close()


def test_recorded_schemas_and_states(ran: jd.Flow) -> None:
    p = ran.graph_payload(columns=True)
    nodes = {n["id"]: n for n in p["nodes"]}
    assert nodes["daily"]["state"] == "fresh" and nodes["boom"]["state"] == "failed"
    assert "no good" in nodes["boom"]["error"]
    types = {c["name"]: c["type"] for c in nodes["named"]["columns"]}
    assert types["order_id"] == "bigint" and types["name"] == "string"
    assert [c["name"] for c in nodes["daily"]["columns"]] == ["date", "revenue", "count(1)"]
    assert nodes["out"]["columns"] == nodes["daily"]["columns"]
    e = {(x["source"], x["target"], x["kind"]) for x in p["column_edges"]}
    assert ("orders.Amount", "daily.revenue", DIRECT) in e
    assert ("orders.date", "daily.count(1)", INDIRECT) in e
    assert ("orders.customer_id", "named.customer_id", DIRECT) in e      # o.* with the join key
    assert ("customers.customer_id", "named.customer_id", INDIRECT) in e
    assert ("daily.revenue", "out.revenue", DIRECT) in e


def test_pyspark_stage_is_opaque_with_its_recorded_columns(ran: jd.Flow) -> None:
    node = next(n for n in ran.graph_payload(columns=True)["nodes"] if n["id"] == "scored")
    assert node["opaque"] is True
    assert [c["name"] for c in node["columns"]][-1] == "score"
    tree = ran.column_lineage("scored.score")
    assert tree.opaque
    assert tree.sources()["customers.name"] == INDIRECT


def test_column_tree_through_cte_star_join_and_where(ran: jd.Flow) -> None:
    tree = ran.column_lineage("big.WHO")
    assert tree.ref == "big.who"
    assert tree.sources() == {"customers.customer_id": INDIRECT, "customers.name": DIRECT,
                              "orders.Amount": INDIRECT, "orders.customer_id": INDIRECT}
    assert "direct   named.name" in str(tree)


def test_server_payload_is_the_facade_payload(ran: jd.Flow) -> None:
    served = served_payload(ran)
    assert served == ran.graph_payload()
    assert served["column_edges"] == []


def test_widget_preview_and_run_button(ran: jd.Flow) -> None:
    w = ran.lineage()
    try:
        w.select("daily")
        assert "first rows of daily" in w.preview.value and "revenue" in w.preview.value
        w.select("out")
        assert "first rows of daily" in w.preview.value    # a sink previews what it writes
        w.select("boom")
        assert "no good" in w.detail.value
        w.select("named")
        assert "fingerprint" in w.detail.value and "o.*" in w.detail.value
        seen: list[str] = []
        unsubscribe = ran.subscribe(lambda e: seen.append(e.kind))
        try:
            thread = w.run_selected()
            assert thread is not None
            thread.join(300)
        finally:
            unsubscribe()
        assert "run_finished" in seen
        if w._refresher is not None:
            w._refresher.join(60)
        assert "state-fresh" in w.renderer.classes("named")
        assert not w.run_button.disabled
    finally:
        w.close()
