/**
 * The lineage graph: a cytoscape.js view of the model's graph, laid out left to
 * right with dagre. Colour tells the state, shape tells the kind; clicking a node
 * selects the stage in the model.
 *
 * It re-lays out only when the set of nodes or edges changes; state changes only
 * restyle, so the picture does not jump while a run progresses.
 */
import { Widget } from '@lumino/widgets';
import cytoscape from 'cytoscape';
import dagre from 'cytoscape-dagre';

import { IGraphPayload } from './api';
import { DataflowModel, ModelChange } from './model';

cytoscape.use(dagre);

/** Fill colour per state; also used by the stage list badges (see CSS). */
export const STATE_COLORS: Record<string, string> = {
  fresh: '#2e7d32',
  stale: '#f9a825',
  running: '#1565c0',
  failed: '#c62828',
  'never run': '#9e9e9e'
};

/** Node shape per stage kind. */
export const KIND_SHAPES: Record<string, cytoscape.Css.NodeShape> = {
  source: 'barrel',
  transform: 'round-rectangle',
  sink: 'cut-rectangle',
  query: 'ellipse'
};

export class GraphView extends Widget {
  constructor(model: DataflowModel) {
    super();
    this.addClass('jp-Dataflow-graph');
    this._model = model;
    this._model.changed.connect(this._onModelChanged, this);
  }

  /** The cytoscape instance, created on first attach. */
  get cy(): cytoscape.Core | null {
    return this._cy;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._cy?.destroy();
    this._cy = null;
    super.dispose();
  }

  protected onAfterAttach(): void {
    if (this._cy === null) {
      this._cy = cytoscape({
        container: this.node,
        boxSelectionEnabled: false,
        autoungrabify: true,
        maxZoom: 1.6,
        minZoom: 0.2,
        style: graphStyle(uiFont())
      });
      this._cy.on('tap', 'node', event => {
        void this._model.select(event.target.id() as string);
      });
      this._cy.on('tap', event => {
        if (event.target === this._cy) {
          void this._model.select(null);
        }
      });
    }
    this._render();
  }

  protected onAfterShow(): void {
    this._fit();
  }

  protected onResize(): void {
    this._fit();
  }

  private _onModelChanged(_: DataflowModel, change: ModelChange): void {
    if (change === 'graph' || change === 'selection') {
      this._render();
    }
  }

  private _render(): void {
    const cy = this._cy;
    if (cy === null) {
      return;
    }
    const graph = this._model.graph;
    const shape = graph ? structureKey(graph) : '';
    cy.batch(() => {
      if (shape !== this._shape) {
        cy.elements().remove();
        if (graph) {
          cy.add(toElements(graph));
        }
      } else if (graph) {
        for (const node of graph.nodes) {
          cy.getElementById(node.id).data({
            state: node.state,
            label: nodeLabel(node.id, node.state)
          });
        }
      }
      cy.nodes().unselect();
      const selected = this._model.selected;
      if (selected !== null) {
        cy.getElementById(selected).select();
      }
    });
    if (shape !== this._shape) {
      this._shape = shape;
      this._runLayout();
    }
    // Summaries for people and tests inspecting the DOM (the graph is a canvas).
    this.node.dataset.nodes = String(cy.nodes().length);
    this.node.dataset.edges = String(cy.edges().length);
    this.node.setAttribute(
      'aria-label',
      `Lineage graph: ${cy.nodes().length} stages, ${cy.edges().length} edges`
    );
  }

  private _runLayout(): void {
    const cy = this._cy;
    if (cy === null || cy.nodes().length === 0) {
      return;
    }
    const options: cytoscape.LayoutOptions & Record<string, unknown> = {
      name: 'dagre',
      rankDir: 'LR',
      nodeSep: 12,
      rankSep: 28,
      fit: true,
      padding: 16,
      animate: false
    };
    cy.layout(options).run();
  }

  private _fit(): void {
    const cy = this._cy;
    if (cy === null || !this.isVisible) {
      return;
    }
    cy.resize();
    cy.fit(undefined, 16);
  }

  private _model: DataflowModel;
  private _cy: cytoscape.Core | null = null;
  private _shape = '';
}

/** Wide enough for the longer of the two label lines at 10px. */
function nodeWidth(node: cytoscape.NodeSingular): number {
  const id = String(node.data('id') ?? '');
  const state = String(node.data('state') ?? '');
  return Math.max(48, 6.2 * Math.max(id.length, state.length) + 14);
}

function nodeLabel(id: string, state: string): string {
  return `${id}\n${state}`;
}

/** Nodes and edges only: a change here needs a new layout. */
function structureKey(graph: IGraphPayload): string {
  const nodes = graph.nodes.map(n => `${n.id}:${n.kind}`).sort();
  const edges = graph.edges.map(e => `${e.source}>${e.target}`).sort();
  return `${graph.flow}|${nodes.join(',')}|${edges.join(',')}`;
}

function toElements(graph: IGraphPayload): cytoscape.ElementDefinition[] {
  const ids = new Set(graph.nodes.map(n => n.id));
  const nodes: cytoscape.ElementDefinition[] = graph.nodes.map(node => ({
    group: 'nodes',
    data: {
      id: node.id,
      kind: node.kind,
      state: node.state,
      label: nodeLabel(node.id, node.state)
    },
    classes: `kind-${node.kind}`
  }));
  const edges: cytoscape.ElementDefinition[] = graph.edges
    .filter(e => ids.has(e.source) && ids.has(e.target))
    .map(edge => ({
      group: 'edges',
      data: {
        id: `${edge.source}->${edge.target}`,
        source: edge.source,
        target: edge.target
      }
    }));
  return [...nodes, ...edges];
}

/** The lab's UI font: cytoscape draws on a canvas and cannot resolve CSS variables. */
function uiFont(): string {
  const value = getComputedStyle(document.body)
    .getPropertyValue('--jp-ui-font-family')
    .trim();
  return value || 'sans-serif';
}

function graphStyle(font: string): cytoscape.StylesheetJson {
  const styles: cytoscape.StylesheetJson = [
    {
      selector: 'node',
      style: {
        label: 'data(label)',
        'text-wrap': 'wrap',
        'text-valign': 'center',
        'text-halign': 'center',
        'font-size': 10,
        'font-family': font,
        color: '#ffffff',
        'text-outline-width': 0,
        width: (node: cytoscape.NodeSingular) => nodeWidth(node),
        height: 34,
        padding: '2px',
        shape: 'round-rectangle',
        'background-color': STATE_COLORS['never run'],
        'border-width': 1,
        'border-color': '#424242'
      }
    },
    {
      selector: 'node:selected',
      style: { 'border-width': 3, 'border-color': '#ff6f00' }
    },
    {
      selector: 'edge',
      style: {
        width: 2,
        'line-color': '#9e9e9e',
        'target-arrow-color': '#9e9e9e',
        'target-arrow-shape': 'triangle',
        'curve-style': 'bezier'
      }
    }
  ];
  for (const [state, color] of Object.entries(STATE_COLORS)) {
    styles.push({
      selector: `node[state = "${state}"]`,
      style: { 'background-color': color }
    });
  }
  // Amber needs dark text to stay readable.
  styles.push({ selector: 'node[state = "stale"]', style: { color: '#212121' } });
  for (const [kind, shape] of Object.entries(KIND_SHAPES)) {
    styles.push({ selector: `node.kind-${kind}`, style: { shape } });
  }
  return styles;
}
