"""The lineage widget: the flow's graph, live, with a detail pane.

`LineageWidget` (an ipywidgets `HBox`) draws `Flow.graph_payload()` through a
`GraphRenderer` (ipycytoscape by default): stages are nodes, shaped by kind and
coloured by state; with `columns=True` each stage holds its columns and clicking a
column highlights where it comes from. It subscribes to reconciler events and
restyles nodes while a run works, never rebuilding the graph for a state change,
and unsubscribes when closed. The detail pane shows a clicked stage's provenance
and first rows (read with Arrow, no Spark) and offers "Run stage" (a background
thread calling `Flow.run`) and "Query" (a `%%query` cell inserted below).

This module only calls `Flow`; it never reaches into the store or the executor.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets

from jupyter_dataflow.reconciler import events as ev
from jupyter_dataflow.widgets.graphview import (
    LAYERED,
    PRESET,
    STATE_COLOURS,
    CytoscapeRenderer,
    EdgeSpec,
    GraphRenderer,
    GraphSpec,
    NodeSpec,
)

PREVIEW_ROWS = 10
_CELL = "padding:0 10px 0 0;"
COLUMN_WIDTH, ROW_HEIGHT, STAGE_HEADER, STAGE_GAP, RANK_GAP = 150.0, 18.0, 26.0, 36.0, 260.0
KIND_LABELS = {"source": "source", "sql": "SQL transform", "python": "PySpark transform", "sink": "sink"}


def kind_class(node: Mapping[str, Any]) -> str:
    """`source`, `sql`, `python` or `sink`: what the node's shape shows."""
    if node.get("kind") == "transform":
        return "python" if node.get("lang") == "python" else "sql"
    return str(node.get("kind"))


def state_class(state: str | None) -> str:
    return "state-" + (state or "never run").replace(" ", "-")


def stage_label(node: Mapping[str, Any]) -> str:
    rows = node.get("rows")
    second = KIND_LABELS.get(kind_class(node), str(node.get("kind")))
    if rows is not None:
        second += f" · {rows:,} rows"
    return f"{node['id']}\n{second}"


def stage_classes(node: Mapping[str, Any], state: str | None = None) -> tuple[str, ...]:
    classes = ["stage", f"kind-{kind_class(node)}", state_class(state or node.get("state"))]
    if node.get("opaque"):
        classes.append("opaque")
    return tuple(classes)


def ranks(payload: Mapping[str, Any]) -> dict[str, int]:
    """Longest-path depth of every node (sources at 0)."""
    parents: dict[str, list[str]] = {}
    for e in payload["edges"]:
        parents.setdefault(e["target"], []).append(e["source"])
    depth: dict[str, int] = {}
    for n in payload["nodes"]:   # nodes come in dependency order
        depth[n["id"]] = 1 + max((depth.get(p, 0) for p in parents.get(n["id"], ())), default=-1)
    return depth


def _layered_positions(payload: Mapping[str, Any], heights: Mapping[str, float]) -> dict[str, tuple[float, float]]:
    """Top-left corners of stage boxes, left to right by depth, parents' barycentre order."""
    depth = ranks(payload)
    parents: dict[str, list[str]] = {}
    for e in payload["edges"]:
        parents.setdefault(e["target"], []).append(e["source"])
    columns: dict[int, list[str]] = {}
    for n in payload["nodes"]:
        columns.setdefault(depth[n["id"]], []).append(n["id"])
    centre: dict[str, float] = {}
    positions: dict[str, tuple[float, float]] = {}
    for rank in sorted(columns):
        names = columns[rank]
        if rank:
            def key(name: str) -> tuple[float, str]:
                ps = [centre[p] for p in parents.get(name, ()) if p in centre]
                return (sum(ps) / len(ps) if ps else 0.0, name)
            names = sorted(names, key=key)
        y = 0.0
        for name in names:
            positions[name] = (rank * RANK_GAP, y)
            centre[name] = y + heights[name] / 2
            y += heights[name] + STAGE_GAP
    return positions


def graph_spec(payload: Mapping[str, Any], columns: bool = False,
               states: Mapping[str, str] | None = None) -> GraphSpec:
    """What to draw for a payload.

    Args:
        payload: a `Flow.graph_payload()` result.
        columns: draw each stage's columns inside it, with the column edges.
        states: current states overriding the payload's (live updates).

    Returns:
        Nodes, edges and layout for a `GraphRenderer`.
    """
    states = states or {}
    nodes: list[NodeSpec] = []
    edges: list[EdgeSpec] = []
    if not columns:
        for n in payload["nodes"]:
            nodes.append(NodeSpec(n["id"], stage_label(n), stage_classes(n, states.get(n["id"]))))
        for e in payload["edges"]:
            edges.append(EdgeSpec(f"e:{e['source']}>{e['target']}", e["source"], e["target"], ("stage-edge",)))
        return GraphSpec(tuple(nodes), tuple(edges), LAYERED)
    heights = {n["id"]: STAGE_HEADER + ROW_HEIGHT * max(len(n.get("columns") or ()), 1) for n in payload["nodes"]}
    corners = _layered_positions(payload, heights)
    drawn: set[str] = set()
    for n in payload["nodes"]:
        x, y = corners[n["id"]]
        cols = n.get("columns") or ()
        classes = stage_classes(n, states.get(n["id"]))
        nodes.append(NodeSpec(n["id"], stage_label(n).replace("\n", " · ", 1), (*classes, "compound")))
        if not cols:
            # Every stage is a compound node: Cytoscape.js hides plain nodes among
            # compound ones under a preset layout (seen with ipycytoscape 1.3.3).
            nodes.append(NodeSpec(f"{n['id']}/columns", "columns not known yet", ("column", "placeholder"),
                                  parent=n["id"], position=(x + COLUMN_WIDTH / 2, y + STAGE_HEADER),
                                  data={"stage": n["id"]}))
            continue
        for i, c in enumerate(cols):
            ref = f"{n['id']}.{c['name']}"
            drawn.add(ref)
            label = f"{c['name']}: {c['type']}" if c.get("type") else c["name"]
            nodes.append(NodeSpec(ref, label, ("column",), parent=n["id"],
                                  position=(x + COLUMN_WIDTH / 2, y + STAGE_HEADER + i * ROW_HEIGHT),
                                  data={"stage": n["id"], "column": c["name"]}))
    for e in payload["edges"]:
        edges.append(EdgeSpec(f"e:{e['source']}>{e['target']}", e["source"], e["target"], ("stage-edge", "faint")))
    for e in payload.get("column_edges", ()):
        if e["source"] in drawn and e["target"] in drawn:
            edges.append(EdgeSpec(column_edge_id(e), e["source"], e["target"], ("column-edge", e["kind"])))
    return GraphSpec(tuple(nodes), tuple(edges), PRESET)


def column_edge_id(edge: Mapping[str, str]) -> str:
    return f"c:{edge['source']}>{edge['target']}"


def upstream_path(payload: Mapping[str, Any], ref: str) -> tuple[set[str], set[str]]:
    """Columns a column depends on (itself included) and the column edges between them."""
    into: dict[str, list[Mapping[str, str]]] = {}
    for e in payload.get("column_edges", ()):
        into.setdefault(e["target"], []).append(e)
    seen, edge_ids, todo = {ref}, set(), [ref]
    while todo:
        for e in into.get(todo.pop(), ()):
            edge_ids.add(column_edge_id(e))
            if e["source"] not in seen:
                seen.add(e["source"])
                todo.append(e["source"])
    return seen, edge_ids


def event_state(event: ev.Event) -> str | None:
    """The state a reconciler event puts its stage in, or None when it changes nothing."""
    if event.kind == ev.STAGE_PLANNED:
        return "running" if event.total else None
    if event.kind in (ev.TASK_QUEUED, ev.TASK_STARTED):
        return "running"
    if event.kind == ev.TASK_FAILED:
        return "failed"
    if event.kind == ev.TASK_SKIPPED:
        return "stale"
    if event.kind == ev.STAGE_FINISHED:
        return event.state or "fresh"
    return None


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def detail_html(node: Mapping[str, Any], state: str | None = None, error: str | None = None) -> str:
    """The detail pane's text for one stage (everything but the row preview)."""
    state = state or node.get("state") or "never run"
    colour = STATE_COLOURS.get(state.replace(" ", "-"), "#9e9e9e")
    fp = node.get("fingerprint")
    rows = node.get("rows")
    facts = [
        ("kind", KIND_LABELS.get(kind_class(node), node.get("kind"))),
        ("mode", node.get("mode")),
        ("fingerprint", fp[:12] if fp else "none yet"),
        ("partitions", node.get("partitions")),
        ("rows", f"{rows:,}" if isinstance(rows, int) else "none yet"),
        ("last run", node.get("updated") or "never"),
    ]
    out = [f"<div style='line-height:1.35'><h4 style='margin:4px 0'>{_esc(node['id'])} "
           f"<span style='background:{colour};color:#fff;border-radius:3px;padding:1px 6px;"
           f"font-size:11px'>{_esc(state)}</span></h4>",
           "<table style='font-size:12px;border-collapse:collapse'>"]
    out += [f"<tr><td style='{_CELL}color:#616161'>{k}</td><td style='{_CELL}'>{_esc(v)}</td></tr>"
            for k, v in facts]
    out.append("</table>")
    reasons = node.get("reasons") or ()
    if reasons and state != "fresh":
        shown = "".join(f"<li>{_esc(r)}</li>" for r in list(reasons)[:5])
        more = f"<li>… {len(reasons) - 5} more</li>" if len(reasons) > 5 else ""
        out.append(f"<div style='font-size:12px'><b>why stale</b><ul style='margin:2px 0'>{shown}{more}</ul></div>")
    err = error or node.get("error")
    if err and state == "failed":
        out.append(f"<div style='font-size:12px;color:#c62828'><b>error</b><pre style='white-space:pre-wrap'>"
                   f"{_esc(err)}</pre></div>")
    cols = node.get("columns") or ()
    if cols:
        rows_html = "".join(f"<tr><td style='{_CELL}'>{_esc(c['name'])}</td>"
                            f"<td style='{_CELL}color:#616161'>{_esc(c.get('type'))}</td></tr>" for c in cols)
        out.append(f"<div style='font-size:12px'><b>schema</b>"
                   f"<table style='border-collapse:collapse'>{rows_html}</table></div>")
    if node.get("opaque") and node.get("opaque_reason"):
        out.append(f"<div style='font-size:11px;color:#616161'>column lineage: {_esc(node['opaque_reason'])}</div>")
    if node.get("code"):
        out.append(f"<div style='font-size:12px'><b>code</b><pre style='white-space:pre-wrap;max-height:160px;"
                   f"overflow:auto;background:#f5f5f5;padding:4px'>{_esc(node['code'])}</pre></div>")
    out.append("</div>")
    return "".join(out)


def legend_html() -> str:
    """Colours and shapes, once, above the details."""
    chips = "".join(f"<span style='background:{colour};color:#fff;border-radius:3px;padding:0 5px;"
                    f"margin-right:3px'>{state.replace('-', ' ')}</span>" for state, colour in STATE_COLOURS.items())
    return (f"<div style='font-size:11px;line-height:1.5;color:#616161'>{chips}<br>"
            "barrel: source · rounded: SQL · cut corners: PySpark · arrow tag: sink · "
            "dashed border: columns not traced</div>")


def query_cell(stage: str) -> str:
    """The `%%query` cell the Query button inserts."""
    return f"%%query\nSELECT * FROM {stage} LIMIT 100\n"


def _notebook_frontend() -> Any:
    """A frontend that inserts cells below the cell that displayed the widget, if in a kernel."""
    try:
        from IPython import get_ipython

        from jupyter_dataflow.ipython.frontend import Frontend
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None:
        return None

    class _Pinned(Frontend):
        """Widget callbacks run outside the displaying cell: remember its id."""

        pinned: str | None = None

        def cell_id(self) -> str | None:
            return self.pinned

    frontend = _Pinned(shell)
    frontend.pinned = Frontend.cell_id(frontend)
    return frontend


class LineageWidget(ipywidgets.HBox):
    """The flow's lineage graph beside a detail pane, kept live by reconciler events."""

    def __init__(self, flow: Any, stage: str | None = None, columns: bool = False,
                 renderer: GraphRenderer | None = None, frontend: Any = None, **kwargs: Any) -> None:
        """Build the widget.

        Args:
            flow: an open `Flow`.
            stage: show only this stage, its upstream and its downstream.
            columns: draw columns inside stages and highlight a clicked column's sources.
            renderer: the graph drawing (default: ipycytoscape).
            frontend: what inserts the Query cell (`insert_cell(code)`); default: the
                notebook frontend of the running kernel.
        """
        self.flow = flow
        self.stage = stage
        self.columns = columns
        self.renderer: GraphRenderer = renderer if renderer is not None else CytoscapeRenderer()
        self.frontend = frontend if frontend is not None else _notebook_frontend()
        self.payload: dict[str, Any] = flow.graph_payload(stage, columns=columns)
        self.nodes = {n["id"]: n for n in self.payload["nodes"]}
        self.states = {name: n.get("state") or "never run" for name, n in self.nodes.items()}
        self.errors: dict[str, str] = {}
        self.selected: str | None = None
        self.highlighted: tuple[set[str], set[str]] = (set(), set())
        self._lock = threading.RLock()
        self._refresher: threading.Thread | None = None
        self._runner: threading.Thread | None = None
        self._draw()

        self.header = ipywidgets.HTML(self._summary())
        self.detail = ipywidgets.HTML("<i>click a stage to see its details</i>")
        self.run_button = ipywidgets.Button(description="Run stage", icon="play", disabled=True,
                                            tooltip="reconcile this stage and its upstream in the background")
        self.query_button = ipywidgets.Button(description="Query", icon="search", disabled=True,
                                              tooltip="insert a %%query cell over this stage")
        self.message = ipywidgets.HTML("")
        self.preview = ipywidgets.HTML("")
        self.run_button.on_click(lambda _b: self.run_selected())
        self.query_button.on_click(lambda _b: self.query_selected())
        self.legend = ipywidgets.HTML(legend_html())
        parts = [self.header, self.legend, ipywidgets.HBox([self.run_button, self.query_button]), self.message,
                 self.detail, self.preview]
        for part in parts:
            part.layout.flex = "0 0 auto"   # let the pane scroll instead of squeezing its parts
        pane = ipywidgets.VBox(
            parts, layout=ipywidgets.Layout(width="38%", max_height="480px", overflow="auto", padding="0 0 0 8px"))
        graph_box = ipywidgets.Box([self.renderer.widget], layout=ipywidgets.Layout(width="62%"))
        super().__init__([graph_box, pane], **kwargs)
        self._pane = pane
        self._graph_box = graph_box
        self.renderer.on_click(self._clicked)
        self._unsubscribe: Callable[[], None] | None = flow.subscribe(self._on_event)

    # drawing ----------------------------------------------------------------------
    def _draw(self) -> None:
        self.spec = graph_spec(self.payload, self.columns, self.states)
        self._base = {n.id: n.classes for n in self.spec.nodes}
        self._base.update({e.id: e.classes for e in self.spec.edges})
        self.renderer.draw(self.spec)

    def _summary(self) -> str:
        counts: dict[str, int] = {}
        for state in self.states.values():
            counts[state] = counts.get(state, 0) + 1
        parts = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        scope = f" around {self.stage}" if self.stage else ""
        return (f"<b>flow {_esc(self.payload['flow'])}{_esc(scope)}</b>: "
                f"{len(self.nodes)} stages ({_esc(parts)})")

    def _restyle(self, element_id: str) -> None:
        classes = list(self._base.get(element_id, ()))
        if element_id in self.nodes:
            classes = [c for c in classes if not c.startswith("state-")] + [state_class(self.states[element_id])]
        if element_id == self.selected:
            classes.append("selected")
        if element_id in self.highlighted[0] or element_id in self.highlighted[1]:
            classes.append("highlight")
        self.renderer.set_classes(element_id, classes)

    def set_state(self, stage: str, state: str, error: str | None = None) -> None:
        """Recolour one stage (no-op for stages not drawn)."""
        with self._lock:
            if stage not in self.nodes:
                return
            if error:
                self.errors[stage] = error
            changed = self.states.get(stage) != state
            self.states[stage] = state
            if changed:
                self._restyle(stage)
            self.header.value = self._summary()
            if stage == self.selected:
                self._show(stage)

    # live updates -----------------------------------------------------------------
    def _on_event(self, event: ev.Event) -> None:
        if event.flow != self.flow.name:
            return
        if event.kind == ev.RUN_FINISHED:
            self._refresher = threading.Thread(target=self.refresh, name="lineage-refresh", daemon=True)
            self._refresher.start()
            return
        state = event_state(event)
        if state is not None and event.stage:
            self.set_state(event.stage, state, event.detail if state == "failed" else None)

    def refresh(self) -> None:
        """Re-read the payload; restyle and relabel nodes, redraw only if the shape changed."""
        try:
            payload = self.flow.graph_payload(self.stage, columns=self.columns)
        except Exception as err:   # the flow may have been closed or changed under us
            self.message.value = f"<span style='color:#c62828'>refresh failed: {_esc(err)}</span>"
            return
        with self._lock:
            old_shape = _shape(self.payload, self.columns)
            self.payload = payload
            self.nodes = {n["id"]: n for n in payload["nodes"]}
            self.states = {name: n.get("state") or "never run" for name, n in self.nodes.items()}
            if _shape(payload, self.columns) != old_shape:
                self.highlighted = (set(), set())
                self._draw()
            else:
                for name, node in self.nodes.items():
                    label = stage_label(node)
                    if self.columns and node.get("columns"):
                        label = label.replace("\n", " · ", 1)
                    self.renderer.set_data(name, {"label": label})
                    self._restyle(name)
            self.header.value = self._summary()
            if self.selected is not None and self.selected in self.nodes:
                self._show(self.selected)

    # clicks and buttons -----------------------------------------------------------
    def _clicked(self, element_id: str) -> None:
        if element_id in self.nodes:
            self.select(element_id)
            return
        stage = element_id.partition("/")[0].partition(".")[0]
        if self.columns and "." in element_id and "/" not in element_id:
            self.highlight_column(element_id)
        self.select(stage)

    def select(self, stage: str) -> None:
        """Show one stage in the detail pane."""
        with self._lock:
            if stage not in self.nodes:
                return
            previous, self.selected = self.selected, stage
            if previous and previous != stage:
                self._restyle(previous)
            self._restyle(stage)
            self._show(stage)
            self.preview.value = self._preview(stage)
        self.run_button.disabled = self._runner is not None and self._runner.is_alive()
        self.query_button.disabled = self.nodes[stage].get("kind") == "sink"

    def _show(self, stage: str) -> None:
        self.detail.value = detail_html(self.nodes[stage], self.states.get(stage), self.errors.get(stage))

    def highlight_column(self, ref: str) -> None:
        """Highlight a column and every column it comes from."""
        with self._lock:
            old_nodes, old_edges = self.highlighted
            self.highlighted = upstream_path(self.payload, ref)
            for element_id in old_nodes | old_edges | self.highlighted[0] | self.highlighted[1]:
                self._restyle(element_id)
        sources = sorted(self.highlighted[0] - {ref})
        self.message.value = (f"<b>{_esc(ref)}</b> comes from: {_esc(', '.join(sources) or 'nothing upstream')}")

    def _preview(self, stage: str) -> str:
        node = self.nodes[stage]
        target = stage
        if node.get("kind") == "sink":
            inputs = [e["source"] for e in self.payload["edges"] if e["target"] == stage]
            if not inputs:
                return ""
            target = inputs[0]
        batches, rows = [], 0
        try:
            for batch in self.flow.record_batches(target, batch_size=PREVIEW_ROWS):
                batches.append(batch.slice(0, PREVIEW_ROWS - rows))
                rows += batches[-1].num_rows
                if rows >= PREVIEW_ROWS:
                    break
        except Exception as err:
            return f"<i>no preview: {_esc(err)}</i>"
        if not batches:
            return "<i>no committed rows yet</i>"
        import pyarrow as pa

        frame = pa.Table.from_batches(batches).to_pandas()
        table = frame.to_html(index=False, max_rows=PREVIEW_ROWS, border=0)
        return (f"<div style='font-size:11px;line-height:1.3'><b>first rows of {_esc(target)}</b>"
                f"<div style='overflow:auto'>{table}</div></div>")

    def run_selected(self) -> threading.Thread | None:
        """Run the selected stage (and its upstream) in a background thread."""
        stage = self.selected
        if stage is None or (self._runner is not None and self._runner.is_alive()):
            return None
        self.run_button.disabled = True
        self.message.value = f"running {_esc(stage)}…"

        def work() -> None:
            try:
                result = self.flow.run(stage)
                summary = getattr(result, "summary", None)
                self.message.value = _esc(summary() if callable(summary) else result)
            except Exception as err:   # shown in the pane: a widget thread has nowhere else to report
                self.message.value = f"<span style='color:#c62828'>{_esc(err)}</span>"
            finally:
                self.run_button.disabled = False

        self._runner = threading.Thread(target=work, name=f"lineage-run-{stage}", daemon=True)
        self._runner.start()
        return self._runner

    def query_selected(self) -> str | None:
        """Insert a `%%query` cell over the selected stage below the widget's cell."""
        stage = self.selected
        if stage is None:
            return None
        code = query_cell(stage)
        if self.frontend is None:
            self.message.value = f"no notebook to insert into; run:<pre>{_esc(code)}</pre>"
            return None
        how = self.frontend.insert_cell(code)
        self.message.value = f"inserted a %%query cell over {_esc(stage)}"
        return str(how)

    # lifetime ---------------------------------------------------------------------
    def close(self) -> None:
        """Stop listening to the flow and close every part of the widget."""
        if getattr(self, "_unsubscribe", None) is not None:
            assert self._unsubscribe is not None
            self._unsubscribe()
            self._unsubscribe = None
        if hasattr(self, "_pane"):
            parts = (self.header, self.legend, self.detail, self.run_button, self.query_button, self.message, self.preview,
                     *self._pane.children, self._pane, self._graph_box)
            for part in parts:
                part.close()
            self.renderer.close()
        super().close()


def _shape(payload: Mapping[str, Any], columns: bool) -> tuple[Any, ...]:
    nodes = tuple((n["id"], tuple(c["name"] for c in n.get("columns") or ()) if columns else ())
                  for n in payload["nodes"])
    edges = tuple(sorted((e["source"], e["target"]) for e in payload["edges"]))
    column_edges = tuple(sorted((e["source"], e["target"], e["kind"]) for e in payload.get("column_edges", ())))
    return nodes, edges, column_edges

