"""The lineage widget's model: elements drawn, live restyling from events, clicks, buttons."""

from __future__ import annotations

from typing import Any

import jupyter_dataflow as jd
from jupyter_dataflow.reconciler import events as ev
from jupyter_dataflow.widgets.graphview import LAYERED, PRESET, CytoscapeRenderer
from jupyter_dataflow.widgets.lineage import LineageWidget, graph_spec, query_cell, upstream_path


class Inserter:
    """Records the cells a widget asks to insert (what the lab extension would get)."""

    def __init__(self) -> None:
        self.cells: list[str] = []

    def insert_cell(self, code: str) -> str:
        self.cells.append(code)
        return "comm"


def test_stage_graph_counts_shapes_and_colours(never_run: jd.Flow) -> None:
    w = never_run.lineage()
    try:
        assert isinstance(w, LineageWidget) and isinstance(w.renderer, CytoscapeRenderer)
        assert w.renderer.counts() == (5, 4)
        assert w.spec.layout == LAYERED
        assert w.renderer.widget.cytoscape_layout["name"] == "dagre"
        assert w.renderer.widget.cytoscape_layout["rankDir"] == "LR"
        assert w.renderer.classes("orders") == ("stage", "kind-source", "state-never-run")
        assert "kind-python" in w.renderer.classes("enriched") and "opaque" in w.renderer.classes("enriched")
        assert "kind-sink" in w.renderer.classes("out")
        assert "kind-sql" in w.renderer.classes("daily")
        assert "5 never run" in w.header.value
    finally:
        w.close()


def test_events_recolour_nodes_without_redrawing(never_run: jd.Flow) -> None:
    w = never_run.lineage()
    try:
        nodes_before = list(w.renderer.widget.graph.nodes)
        bus = never_run.events
        bus.emit(ev.Event(ev.STAGE_PLANNED, never_run.name, "daily", total=2))
        assert "state-running" in w.renderer.classes("daily")
        bus.emit(ev.Event(ev.TASK_STARTED, never_run.name, "top", "p1"))
        assert "state-running" in w.renderer.classes("top")
        bus.emit(ev.Event(ev.STAGE_FINISHED, never_run.name, "daily", state="fresh"))
        assert "state-fresh" in w.renderer.classes("daily")
        assert "state-running" not in w.renderer.classes("daily")
        bus.emit(ev.Event(ev.TASK_FAILED, never_run.name, "top", "p1", detail="boom: no column x", state="failed"))
        assert "state-failed" in w.renderer.classes("top")
        bus.emit(ev.Event(ev.TASK_SKIPPED, never_run.name, "out", reason="skipped"))
        assert "state-stale" in w.renderer.classes("out")
        bus.emit(ev.Event(ev.TASK_STARTED, "another_flow", "orders"))
        assert "state-never-run" in w.renderer.classes("orders")
        assert list(w.renderer.widget.graph.nodes) == nodes_before   # same node widgets, restyled
        w.select("top")
        assert "boom: no column x" in w.detail.value and "failed" in w.detail.value
        assert "selected" in w.renderer.classes("top")
    finally:
        w.close()
    never_run.events.emit(ev.Event(ev.TASK_STARTED, never_run.name, "orders"))
    assert "state-running" not in w.renderer.classes("orders")   # unsubscribed on close


def test_run_finished_refreshes_from_the_flow(never_run: jd.Flow) -> None:
    w = never_run.lineage()
    try:
        never_run.events.emit(ev.Event(ev.STAGE_PLANNED, never_run.name, "daily", total=1))
        never_run.events.emit(ev.Event(ev.RUN_FINISHED, never_run.name))
        assert w._refresher is not None
        w._refresher.join(30)
        assert "state-never-run" in w.renderer.classes("daily")   # what the store says
    finally:
        w.close()


def test_stage_filter_and_columns_mode(never_run: jd.Flow) -> None:
    w = never_run.lineage("top", columns=True)
    try:
        ids = {n.id for n in w.spec.nodes}
        assert {"orders", "daily", "top", "out", "top.revenue", "daily.n"} <= ids
        assert "enriched" not in ids
        assert w.spec.layout == PRESET
        cols = [n for n in w.spec.nodes if n.parent == "top"]
        assert [n.id for n in cols] == ["top.date", "top.revenue", "top.n"]
        assert all(n.position is not None for n in cols)
        xs = {n.parent: n.position[0] for n in w.spec.nodes if n.parent and n.position}
        assert xs["daily"] < xs["top"] < xs["out"]   # left to right
        w._clicked("out.revenue")
        assert w.selected == "out"
        assert "highlight" in w.renderer.classes("daily.revenue")
        assert "highlight" in w.renderer.classes("c:daily.revenue>top.revenue")
        assert "highlight" not in w.renderer.classes("daily.date")
        assert "orders.amount" in w.message.value
        w._clicked("top.date")   # reads daily.revenue too, in its WHERE
        assert "highlight" not in w.renderer.classes("out.revenue")
        assert "highlight" not in w.renderer.classes("top.revenue")
        assert "highlight" in w.renderer.classes("daily.revenue")
    finally:
        w.close()


def test_query_button_inserts_a_query_cell(never_run: jd.Flow) -> None:
    inserter = Inserter()
    w = LineageWidget(never_run, frontend=inserter)
    try:
        assert w.query_button.disabled
        w.select("daily")
        assert not w.query_button.disabled and not w.run_button.disabled
        w.query_button.click()
        assert inserter.cells == [query_cell("daily")] == ["%%query\nSELECT * FROM daily LIMIT 100\n"]
        assert "no committed rows yet" in w.preview.value
    finally:
        w.close()


def test_graph_spec_and_paths_are_pure() -> None:
    payload: dict[str, Any] = {
        "flow": "f",
        "nodes": [{"id": "a", "kind": "source", "state": "fresh", "columns": [{"name": "x", "type": "int"}]},
                  {"id": "b", "kind": "transform", "lang": "sql", "state": "stale",
                   "columns": [{"name": "y", "type": ""}]}],
        "edges": [{"source": "a", "target": "b"}],
        "column_edges": [{"source": "a.x", "target": "b.y", "kind": "direct"}],
    }
    spec = graph_spec(payload, columns=True)
    assert [n.id for n in spec.nodes] == ["a", "a.x", "b", "b.y"]
    assert [e.id for e in spec.edges] == ["e:a>b", "c:a.x>b.y"]
    assert graph_spec(payload, states={"b": "running"}).nodes[1].classes[-1] == "state-running"
    assert upstream_path(payload, "b.y") == ({"b.y", "a.x"}, {"c:a.x>b.y"})
