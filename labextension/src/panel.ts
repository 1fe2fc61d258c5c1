/**
 * The "Dataflow" side panel: a toolbar (flow picker, run and export buttons), the
 * lineage graph, the list of stages with their states, and the selected stage's
 * details: provenance, schema, partitions and a preview of its first records.
 *
 * Every view renders from the model and writes text through `textContent`, never
 * HTML, because stage code, errors and records come from users.
 */
import { CommandRegistry } from '@lumino/commands';
import {
  refreshIcon,
  runIcon,
  Toolbar,
  ToolbarButton
} from '@jupyterlab/ui-components';
import { Panel, Widget } from '@lumino/widgets';

import { IGraphNode, IPartitionInfo, IStageInfo } from './api';
import { GraphView } from './graph';
import { DataflowModel, ModelChange } from './model';

/** Command ids, shared with the plugin that registers them. */
export namespace CommandIDs {
  export const runFlow = 'dataflow:run-flow';
  export const runStage = 'dataflow:run-stage';
  export const exportFlow = 'dataflow:export-flow';
  export const refresh = 'dataflow:refresh';
  export const showPanel = 'dataflow:show-panel';
}

/** Partitions listed in the details before "… and N more". */
const MAX_PARTITIONS = 50;

export class DataflowPanel extends Panel {
  constructor(model: DataflowModel, commands: CommandRegistry) {
    super();
    this.id = 'jupyter-dataflow-panel';
    this.addClass('jp-Dataflow-panel');
    this.title.caption = 'Dataflow';
    this._model = model;

    const toolbar = new Toolbar();
    toolbar.addClass('jp-Dataflow-toolbar');
    toolbar.addItem('flow', new FlowPicker(model));
    toolbar.addItem('spacer', Toolbar.createSpacerItem());
    const button = (
      name: string,
      command: string,
      label: string,
      icon?: typeof runIcon
    ): void => {
      toolbar.addItem(
        name,
        new ToolbarButton({
          icon,
          label,
          tooltip: commands.label(command),
          className: `jp-Dataflow-button-${name}`,
          onClick: () => void commands.execute(command)
        })
      );
    };
    button('run-flow', CommandIDs.runFlow, 'Run flow', runIcon);
    button('run-stage', CommandIDs.runStage, 'Run stage');
    button('export', CommandIDs.exportFlow, 'Export');
    button('refresh', CommandIDs.refresh, '', refreshIcon);
    this.addWidget(toolbar);

    this.addWidget(new StatusView(model));
    this._graph = new GraphView(model);
    this.addWidget(this._graph);
    this.addWidget(new StageListView(model));
    this.addWidget(new StageDetailsView(model));
  }

  get model(): DataflowModel {
    return this._model;
  }

  get graph(): GraphView {
    return this._graph;
  }

  private _model: DataflowModel;
  private _graph: GraphView;
}

/** A <select> of the home's flows. */
class FlowPicker extends Widget {
  constructor(model: DataflowModel) {
    super({ node: document.createElement('select') });
    this.addClass('jp-Dataflow-flowPicker');
    this.node.title = 'Flow';
    this._model = model;
    this.node.addEventListener('change', () => {
      void this._model.setFlow((this.node as HTMLSelectElement).value);
    });
    model.changed.connect(this._onChanged, this);
    this._render();
  }

  private _onChanged(_: DataflowModel, change: ModelChange): void {
    if (change === 'flows' || change === 'graph') {
      this._render();
    }
  }

  private _render(): void {
    const select = this.node as HTMLSelectElement;
    const flows = this._model.flows;
    select.replaceChildren(
      ...flows.map(flow => {
        const option = document.createElement('option');
        option.value = flow;
        option.textContent = flow;
        return option;
      })
    );
    if (flows.length === 0) {
      const option = document.createElement('option');
      option.textContent = '(no flow)';
      option.disabled = true;
      select.appendChild(option);
    }
    select.value = this._model.flow ?? '';
  }

  private _model: DataflowModel;
}

/** One line: server errors, or the progress of the last run. */
class StatusView extends Widget {
  constructor(model: DataflowModel) {
    super();
    this.addClass('jp-Dataflow-status');
    this._model = model;
    model.changed.connect(this._onChanged, this);
    this._render();
  }

  private _onChanged(_: DataflowModel, change: ModelChange): void {
    if (change === 'run' || change === 'error' || change === 'flows') {
      this._render();
    }
  }

  private _render(): void {
    const node = this.node;
    node.replaceChildren();
    const error = this._model.error;
    if (error) {
      node.appendChild(el('div', 'jp-Dataflow-error', error));
    }
    const run = this._model.run;
    if (run) {
      const what = run.stage ? `stage ${run.stage}` : `flow ${run.flow}`;
      const exit = run.exit_code === null ? '' : ` (exit ${run.exit_code})`;
      const line = el(
        'div',
        `jp-Dataflow-run jp-Dataflow-run-${run.state}`,
        `${run.command} ${what}: ${run.state}${exit}`
      );
      line.dataset.state = run.state;
      node.appendChild(line);
      if (run.output && run.state !== 'running') {
        const details = document.createElement('details');
        details.open = run.state === 'failed';
        details.appendChild(el('summary', '', 'output'));
        details.appendChild(el('pre', 'jp-Dataflow-output', run.output));
        node.appendChild(details);
      }
    }
    if (!error && !run && this._model.flows.length === 0 && this._model.home) {
      node.appendChild(
        el('div', 'jp-Dataflow-hint', `No flow in ${this._model.home} yet.`)
      );
    }
  }

  private _model: DataflowModel;
}

/** The stages of the flow with their states; click to select. */
class StageListView extends Widget {
  constructor(model: DataflowModel) {
    super();
    this.addClass('jp-Dataflow-stages');
    this._model = model;
    model.changed.connect(this._onChanged, this);
    this._render();
  }

  private _onChanged(_: DataflowModel, change: ModelChange): void {
    if (change === 'graph' || change === 'selection') {
      this._render();
    }
  }

  private _render(): void {
    const graph = this._model.graph;
    this.node.replaceChildren();
    if (!graph) {
      return;
    }
    const table = document.createElement('table');
    const head = table.createTHead().insertRow();
    for (const title of ['stage', 'kind', 'state', 'parts', 'rows']) {
      head.appendChild(el('th', '', title));
    }
    const body = table.createTBody();
    for (const node of graph.nodes) {
      body.appendChild(this._row(node));
    }
    this.node.appendChild(table);
  }

  private _row(node: IGraphNode): HTMLTableRowElement {
    const row = document.createElement('tr');
    row.dataset.stage = node.id;
    row.dataset.state = node.state;
    if (node.id === this._model.selected) {
      row.classList.add('jp-mod-selected');
    }
    row.appendChild(el('td', 'jp-Dataflow-stageName', node.id));
    row.appendChild(el('td', '', node.kind));
    const state = el('td', '');
    state.appendChild(stateBadge(node.state));
    row.appendChild(state);
    row.appendChild(el('td', 'jp-Dataflow-num', fmt(node.partitions)));
    row.appendChild(el('td', 'jp-Dataflow-num', fmt(node.rows)));
    row.addEventListener('click', () => {
      void this._model.select(
        node.id === this._model.selected ? null : node.id
      );
    });
    return row;
  }

  private _model: DataflowModel;
}

/** Provenance, schema, partitions and first records of the selected stage. */
class StageDetailsView extends Widget {
  constructor(model: DataflowModel) {
    super();
    this.addClass('jp-Dataflow-details');
    this._model = model;
    model.changed.connect(this._onChanged, this);
    this._render();
  }

  private _onChanged(_: DataflowModel, change: ModelChange): void {
    if (change === 'selection' || change === 'stage' || change === 'preview') {
      this._render();
    }
  }

  private _render(): void {
    const node = this.node;
    node.replaceChildren();
    const stage = this._model.selected;
    if (stage === null) {
      node.appendChild(
        el('div', 'jp-Dataflow-hint', 'Select a stage to see its provenance.')
      );
      return;
    }
    node.appendChild(el('h3', 'jp-Dataflow-title', stage));
    const info = this._model.stageInfo;
    if (info === null) {
      node.appendChild(el('div', 'jp-Dataflow-hint', 'Loading…'));
      return;
    }
    node.appendChild(summary(info));
    if (info.error) {
      node.appendChild(el('pre', 'jp-Dataflow-error', info.error));
    }
    if (info.schema && info.schema.length) {
      node.appendChild(section('Schema', schemaTable(info)));
    }
    const provenance = asRecord(info.provenance);
    if (Array.isArray(info.partitions) && info.partitions.length) {
      node.appendChild(
        section('Partitions', partitionsTable(info.partitions, provenance))
      );
    }
    if (provenance) {
      node.appendChild(section('Provenance', provenanceView(provenance)));
    }
    node.appendChild(section('Records', this._previewNode()));
  }

  private _previewNode(): HTMLElement {
    const error = this._model.previewError;
    if (error) {
      return el('div', 'jp-Dataflow-hint', error);
    }
    const rows = this._model.preview;
    if (rows === null) {
      return el('div', 'jp-Dataflow-hint', 'Loading…');
    }
    if (rows.length === 0) {
      return el('div', 'jp-Dataflow-hint', 'No committed records.');
    }
    const columns: string[] = [];
    for (const row of rows) {
      for (const key of Object.keys(row)) {
        if (!columns.includes(key)) {
          columns.push(key);
        }
      }
    }
    const table = document.createElement('table');
    table.classList.add('jp-Dataflow-preview');
    const head = table.createTHead().insertRow();
    for (const column of columns) {
      head.appendChild(el('th', '', column));
    }
    const body = table.createTBody();
    for (const row of rows) {
      const tr = body.insertRow();
      for (const column of columns) {
        tr.appendChild(el('td', '', cell(row[column])));
      }
    }
    const wrap = el('div', 'jp-Dataflow-tableWrap');
    wrap.appendChild(table);
    return wrap;
  }

  private _model: DataflowModel;
}

function summary(info: IStageInfo): HTMLElement {
  const dl = el('dl', 'jp-Dataflow-summary');
  const add = (term: string, value: Node | string): void => {
    dl.appendChild(el('dt', '', term));
    const dd = el('dd', '');
    dd.append(value);
    dl.appendChild(dd);
  };
  add('kind', info.kind);
  add('state', stateBadge(info.state));
  if (info.mode) {
    add('mode', info.mode);
  }
  const partitions = Array.isArray(info.partitions)
    ? info.partitions.length
    : info.partitions;
  add('partitions', fmt(partitions));
  add('rows', fmt(info.rows));
  if (info.fingerprint) {
    const fp = el('code', '', info.fingerprint.slice(0, 16));
    fp.title = info.fingerprint;
    add('fingerprint', fp);
  }
  if (info.updated) {
    add('updated', info.updated);
  }
  return dl;
}

function schemaTable(info: IStageInfo): HTMLElement {
  const table = document.createElement('table');
  const body = table.createTBody();
  for (const column of info.schema ?? []) {
    const row = body.insertRow();
    row.appendChild(el('td', '', column.name));
    row.appendChild(el('td', 'jp-Dataflow-type', column.type));
  }
  return table;
}

/** Committed partitions, with rows, reason and timing from the provenance. */
function partitionsTable(
  partitions: IPartitionInfo[],
  provenance: Record<string, unknown> | null
): HTMLElement {
  const made = new Map<string, Record<string, unknown>>();
  const provParts = provenance?.partitions;
  if (Array.isArray(provParts)) {
    for (const part of provParts) {
      const record = asRecord(part);
      if (record && typeof record.partition === 'string') {
        made.set(record.partition, record);
      }
    }
  }
  const table = document.createElement('table');
  const head = table.createTHead().insertRow();
  for (const title of ['partition', 'rows', 'why', 'committed']) {
    head.appendChild(el('th', '', title));
  }
  const body = table.createTBody();
  for (const part of partitions.slice(0, MAX_PARTITIONS)) {
    const prov = made.get(part.partition);
    const row = body.insertRow();
    row.dataset.partition = part.partition;
    row.title = `fingerprint ${part.fingerprint ?? ''}`;
    row.appendChild(el('td', '', part.partition || '(whole)'));
    const rows = part.rows ?? (prov?.rows as number | undefined);
    row.appendChild(el('td', 'jp-Dataflow-num', fmt(rows)));
    const seconds = prov?.seconds;
    const why = [part.reason ?? prov?.reason, seconds !== undefined ? `${seconds}s` : '']
      .filter(Boolean)
      .join(', ');
    row.appendChild(el('td', '', String(why)));
    row.appendChild(el('td', '', part.committed_at ?? ''));
  }
  const wrap = el('div', 'jp-Dataflow-tableWrap');
  wrap.appendChild(table);
  if (partitions.length > MAX_PARTITIONS) {
    wrap.appendChild(
      el(
        'div',
        'jp-Dataflow-hint',
        `… and ${partitions.length - MAX_PARTITIONS} more`
      )
    );
  }
  return wrap;
}

/** How the stored output was made: mode, inputs, code; the raw record folded. */
function provenanceView(provenance: Record<string, unknown>): HTMLElement {
  const box = el('div', 'jp-Dataflow-provenance');
  const dl = el('dl', 'jp-Dataflow-summary');
  const add = (term: string, value: unknown): void => {
    if (value === undefined || value === null || value === '') {
      return;
    }
    dl.appendChild(el('dt', '', term));
    dl.appendChild(
      el('dd', '', Array.isArray(value) ? value.join(', ') : String(value))
    );
  };
  add('mode', provenance.mode);
  add('because', provenance.mode_reason);
  add('key', provenance.key);
  add('inputs', provenance.inputs);
  const hash = provenance.definition_hash;
  add('definition', typeof hash === 'string' ? hash.slice(0, 16) : hash);
  box.appendChild(dl);
  const code = provenance.code;
  if (code !== undefined && code !== null) {
    box.appendChild(
      el(
        'pre',
        'jp-Dataflow-code',
        typeof code === 'string' ? code.trim() : JSON.stringify(code, null, 2)
      )
    );
  }
  const raw = document.createElement('details');
  raw.appendChild(el('summary', '', 'full record'));
  raw.appendChild(
    el('pre', 'jp-Dataflow-raw', JSON.stringify(provenance, null, 2))
  );
  box.appendChild(raw);
  return box;
}

function asRecord(value: unknown): Record<string, unknown> | null {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : null;
}

function section(title: string, content: HTMLElement): HTMLElement {
  const details = document.createElement('details');
  details.open = true;
  details.classList.add('jp-Dataflow-section');
  details.appendChild(el('summary', '', title));
  details.appendChild(content);
  return details;
}

function stateBadge(state: string): HTMLElement {
  const badge = el('span', 'jp-Dataflow-badge', state);
  badge.dataset.state = state;
  return badge;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

function fmt(value: number | null | undefined): string {
  return value === null || value === undefined ? '' : value.toLocaleString();
}

function cell(value: unknown): string {
  if (value === null || value === undefined) {
    return 'null';
  }
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}
