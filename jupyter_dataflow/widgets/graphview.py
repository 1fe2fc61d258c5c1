"""The graph drawing behind the lineage widget, kept replaceable.

`GraphSpec` says what to draw as plain data (nodes with classes, optional parents
and positions; edges; a layout name). A `GraphRenderer` draws it and later changes
classes or data of single elements, so live updates never rebuild the graph.
`CytoscapeRenderer` is the ipycytoscape implementation; another renderer only has
to honour the same protocol and class names (`kind-*`, `state-*`, `column`,
`direct`, `indirect`, `highlight`, `selected`). This module knows nothing of flows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

STATE_COLOURS = {
    "fresh": "#2e7d32",
    "stale": "#f9a825",
    "running": "#1565c0",
    "failed": "#c62828",
    "never-run": "#9e9e9e",
}
KIND_SHAPES = {"source": "barrel", "sql": "round-rectangle", "python": "cut-rectangle", "sink": "tag"}
LAYERED = "layered"   # left-to-right DAG layout done by the renderer
PRESET = "preset"     # positions given in the spec


@dataclass(frozen=True)
class NodeSpec:
    """A node: a stage, or a column inside its stage (`parent`)."""

    id: str
    label: str
    classes: tuple[str, ...] = ()
    parent: str | None = None
    position: tuple[float, float] | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EdgeSpec:
    id: str
    source: str
    target: str
    classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class GraphSpec:
    nodes: tuple[NodeSpec, ...]
    edges: tuple[EdgeSpec, ...]
    layout: str = LAYERED


class GraphRenderer(Protocol):
    """What the lineage widget needs from a graph drawing library."""

    @property
    def widget(self) -> Any:
        """The ipywidget to place in the layout."""

    def draw(self, graph: GraphSpec) -> None:
        """Replace whatever is drawn with `graph` and lay it out."""

    def set_classes(self, element_id: str, classes: Sequence[str]) -> None:
        """Restyle one node or edge."""

    def set_data(self, element_id: str, data: Mapping[str, Any]) -> None:
        """Update one element's data (e.g. its label)."""

    def classes(self, element_id: str) -> tuple[str, ...]:
        """The classes an element has now."""

    def counts(self) -> tuple[int, int]:
        """How many nodes and edges are drawn."""

    def on_click(self, callback: Callable[[str], None]) -> None:
        """Call `callback(element_id)` when a node is clicked."""

    def close(self) -> None:
        """Release the drawing widget."""


def cytoscape_style() -> list[dict[str, Any]]:
    """The Cytoscape.js style sheet: shape by kind, colour by state."""
    style: list[dict[str, Any]] = [
        {"selector": "node", "style": {
            "label": "data(label)", "text-wrap": "wrap", "text-valign": "center", "text-halign": "center",
            "font-size": "11px", "color": "#ffffff", "width": "label", "height": "label", "padding": "10px",
            "background-color": STATE_COLOURS["never-run"], "border-width": 2, "border-color": "#37474f",
            "shape": "round-rectangle"}},
        {"selector": "edge", "style": {
            "curve-style": "bezier", "target-arrow-shape": "triangle", "width": 2,
            "line-color": "#78909c", "target-arrow-color": "#78909c"}},
    ]
    for state, colour in STATE_COLOURS.items():
        style.append({"selector": f"node.state-{state}", "style": {"background-color": colour}})
    style.append({"selector": "node.state-stale", "style": {"color": "#212121"}})
    for kind, shape in KIND_SHAPES.items():
        style.append({"selector": f"node.kind-{kind}", "style": {"shape": shape}})
    style += [
        {"selector": ":parent", "style": {
            "text-valign": "top", "text-halign": "center", "background-opacity": 0.25, "color": "#212121",
            "font-weight": "bold", "padding": "8px", "shape": "round-rectangle"}},
        {"selector": "node.column", "style": {
            "background-color": "#ffffff", "color": "#212121", "border-width": 1, "border-color": "#90a4ae",
            "font-size": "10px", "padding": "4px", "shape": "round-rectangle", "width": 150, "height": 14}},
        {"selector": "node.placeholder", "style": {"color": "#757575", "font-style": "italic",
                                                   "border-style": "dotted"}},
        {"selector": "node.kind-sink", "style": {"padding": "16px"}},
        {"selector": "edge.column-edge", "style": {"width": 1.5, "line-color": "#5c6bc0",
                                                   "target-arrow-color": "#5c6bc0", "arrow-scale": 0.7}},
        {"selector": "edge.indirect", "style": {"line-style": "dashed", "line-color": "#b0bec5",
                                                "target-arrow-color": "#b0bec5"}},
        {"selector": "edge.faint", "style": {"opacity": 0.35}},
        {"selector": "node.opaque", "style": {"border-style": "dashed"}},
        {"selector": "node.selected", "style": {"border-width": 4, "border-color": "#000000"}},
        {"selector": "node.column.highlight", "style": {"background-color": "#e1bee7",
                                                        "border-color": "#6a1b9a", "border-width": 2}},
        {"selector": "edge.highlight", "style": {"line-color": "#6a1b9a", "target-arrow-color": "#6a1b9a",
                                                 "width": 3, "opacity": 1, "z-index": 10}},
    ]
    return style


class CytoscapeRenderer:
    """`GraphRenderer` on ipycytoscape (dagre for layered layouts)."""

    def __init__(self, height: str = "480px") -> None:
        import ipywidgets
        from ipycytoscape import CytoscapeWidget

        self._cy = CytoscapeWidget(layout=ipywidgets.Layout(width="100%", height=height))
        self._cy.max_zoom = 1.6   # a flow of two stages should not fill the view
        self._cy.set_style(cytoscape_style())
        self._elements: dict[str, Any] = {}
        self._callbacks: list[Callable[[str], None]] = []
        self._cy.on("node", "click", self._clicked)

    @property
    def widget(self) -> Any:
        return self._cy

    def draw(self, graph: GraphSpec) -> None:
        from ipycytoscape import Edge, Node

        self._cy.graph.clear()
        self._elements = {}
        if graph.layout == LAYERED:
            self._cy.cytoscape_layout = {"name": "dagre", "rankDir": "LR", "nodeSep": 24, "rankSep": 80,
                                         "fit": True, "padding": 16, "animate": False}
        else:
            self._cy.cytoscape_layout = {"name": "preset", "fit": True, "padding": 16, "animate": False}
        # Compound parents first: Cytoscape needs a parent before its children.
        ordered = sorted(graph.nodes, key=lambda n: n.parent is not None)
        nodes = []
        for spec in ordered:
            data: dict[str, Any] = {**spec.data, "id": spec.id, "label": spec.label}
            if spec.parent is not None:
                data["parent"] = spec.parent
            extra: dict[str, Any] = {}
            if spec.position is not None:
                extra["position"] = {"x": spec.position[0], "y": spec.position[1]}
            node = Node(data=data, classes=" ".join(spec.classes), **extra)
            self._elements[spec.id] = node
            nodes.append(node)
        edges: list[Any] = []
        adjacency: dict[str, dict[str, int]] = {}
        for e in graph.edges:
            edge = Edge(data={"id": e.id, "source": e.source, "target": e.target},
                        classes=" ".join((*e.classes, "directed")))
            self._elements[e.id] = edge
            edges.append(edge)
            adjacency.setdefault(e.source, {})[e.target] = 1
        # One assignment per list: `add_nodes`/`add_edges` sync the model once per element.
        with self._cy.graph.hold_sync():
            self._cy.graph.nodes = nodes
            self._cy.graph.edges = edges
            self._cy.graph._adj = adjacency

    def set_classes(self, element_id: str, classes: Sequence[str]) -> None:
        element = self._elements.get(element_id)
        if element is not None:
            extra = " directed" if "directed" in element.classes.split() else ""
            element.classes = " ".join(classes) + extra

    def set_data(self, element_id: str, data: Mapping[str, Any]) -> None:
        element = self._elements.get(element_id)
        if element is not None:
            element.data = {**element.data, **data}

    def classes(self, element_id: str) -> tuple[str, ...]:
        element = self._elements.get(element_id)
        return tuple(element.classes.split()) if element is not None else ()

    def counts(self) -> tuple[int, int]:
        return len(self._cy.graph.nodes), len(self._cy.graph.edges)

    def on_click(self, callback: Callable[[str], None]) -> None:
        self._callbacks.append(callback)

    def _clicked(self, event: Mapping[str, Any]) -> None:
        element_id = (event.get("data") or {}).get("id")
        if isinstance(element_id, str):
            for callback in list(self._callbacks):
                callback(element_id)

    def close(self) -> None:
        for element in self._elements.values():
            element.close()
        self._cy.graph.close()
        self._cy.close()
