/**
 * The panel's state: which flows exist, the selected flow's graph, the selected
 * stage's details and records preview, and the runs started from the panel.
 *
 * Views subscribe to `changed` and render; they never fetch. The model polls the
 * server (every few seconds while the panel is visible) and emits only when
 * something actually changed, so views can re-render without diffing.
 */
import { ServerConnection } from '@jupyterlab/services';
import { IDisposable } from '@lumino/disposable';
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import {
  apiPath,
  IFlowsReply,
  IGraphPayload,
  IRunStarted,
  IRunStatus,
  IStageInfo,
  parseJsonLines,
  requestAPI
} from './api';

/** What changed, so views can skip work they do not need. */
export type ModelChange =
  | 'flows'
  | 'graph'
  | 'selection'
  | 'stage'
  | 'preview'
  | 'run'
  | 'error';

/** How often the model asks the server for news, in milliseconds. */
export const POLL_INTERVAL = 3000;

/** Rows shown in the records preview. */
export const PREVIEW_ROWS = 20;

export class DataflowModel implements IDisposable {
  constructor(settings: ServerConnection.ISettings) {
    this._settings = settings;
    this._poll = new Poll({
      auto: false,
      factory: () => this.refresh(),
      frequency: { interval: POLL_INTERVAL, backoff: true, max: 30 * 1000 },
      name: 'jupyter-dataflow:model',
      standby: 'when-hidden'
    });
  }

  /** Emitted after any change of state, with what changed. */
  get changed(): ISignal<this, ModelChange> {
    return this._changed;
  }

  get flows(): readonly string[] {
    return this._flows;
  }

  /** The home directory the server reads, for display. */
  get home(): string {
    return this._home;
  }

  get flow(): string | null {
    return this._flow;
  }

  get graph(): IGraphPayload | null {
    return this._graph;
  }

  get selected(): string | null {
    return this._selected;
  }

  get stageInfo(): IStageInfo | null {
    return this._stageInfo;
  }

  get preview(): Record<string, unknown>[] | null {
    return this._preview;
  }

  get previewError(): string | null {
    return this._previewError;
  }

  /** The most recent run started from this panel, if any. */
  get run(): IRunStatus | null {
    return this._run;
  }

  /** The last error talking to the server, or null after a good refresh. */
  get error(): string | null {
    return this._error;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Start polling (idempotent). */
  start(): void {
    void this._poll.start();
  }

  /** Refresh now instead of waiting for the next tick. */
  async refreshNow(): Promise<void> {
    await this._poll.refresh();
    await this._poll.tick;
  }

  /** Switch to another flow of the home. */
  async setFlow(flow: string): Promise<void> {
    if (flow === this._flow) {
      return;
    }
    this._flow = flow;
    this._graph = null;
    this._graphKey = '';
    this._select(null);
    this._changed.emit('graph');
    await this.refreshNow();
  }

  /** Select a stage (or clear the selection) and load its details. */
  async select(stage: string | null): Promise<void> {
    if (stage === this._selected) {
      return;
    }
    this._select(stage);
    if (stage !== null) {
      await this._loadStage();
    }
  }

  /**
   * Start reconciling the flow, or only what `stage` needs, in a server-side
   * subprocess. Resolves once the run is started; `run` then tracks it.
   */
  async startRun(stage?: string): Promise<IRunStatus> {
    const flow = this._requireFlow();
    const body = stage ? { stage } : {};
    const started = await requestAPI<IRunStarted>(
      apiPath('flows', flow, 'run'),
      { method: 'POST', body },
      this._settings
    );
    return this._track(flow, started.run);
  }

  /** Export the flow on the server; `run` tracks the export like a run. */
  async startExport(target: string, output: string): Promise<IRunStatus> {
    const flow = this._requireFlow();
    const started = await requestAPI<IRunStarted>(
      apiPath('flows', flow, 'export'),
      { method: 'POST', body: { to: target, output } },
      this._settings
    );
    return this._track(flow, started.run);
  }

  /**
   * One polling step: flows, graph, selected stage, active run. Throws on
   * network errors so the poll backs off; the message stays in `error`.
   */
  async refresh(): Promise<void> {
    if (this._isDisposed) {
      return;
    }
    try {
      await this._refreshFlows();
      await this._refreshGraph();
      await this._refreshRun();
      this._setError(null);
    } catch (error) {
      this._setError(errorMessage(error));
      throw error;
    }
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._poll.dispose();
    Signal.clearData(this);
  }

  private async _refreshFlows(): Promise<void> {
    const reply = await requestAPI<IFlowsReply>('flows', {}, this._settings);
    const flows = [...reply.flows].sort();
    const flowsChanged =
      flows.join('\u0000') !== this._flows.join('\u0000') ||
      reply.home !== this._home;
    this._flows = flows;
    this._home = reply.home;
    if (this._flow === null || !flows.includes(this._flow)) {
      const next = flows.includes('default') ? 'default' : (flows[0] ?? null);
      if (next !== this._flow) {
        this._flow = next;
        this._graph = null;
        this._graphKey = '';
        this._select(null);
        this._changed.emit('graph');
      }
    }
    if (flowsChanged) {
      this._changed.emit('flows');
    }
  }

  private async _refreshGraph(): Promise<void> {
    const flow = this._flow;
    if (flow === null) {
      return;
    }
    const graph = await requestAPI<IGraphPayload>(
      apiPath('flows', flow, 'graph'),
      {},
      this._settings
    );
    if (flow !== this._flow) {
      return; // the user switched flows while we were waiting
    }
    const key = JSON.stringify(graph);
    if (key === this._graphKey) {
      return;
    }
    this._graphKey = key;
    this._graph = graph;
    if (
      this._selected !== null &&
      !graph.nodes.some(node => node.id === this._selected)
    ) {
      this._select(null);
    }
    this._changed.emit('graph');
    // A changed graph may mean new commits of the selected stage.
    if (this._selected !== null) {
      await this._loadStage();
    }
  }

  private async _refreshRun(): Promise<void> {
    const run = this._run;
    if (run === null || run.state !== 'running') {
      return;
    }
    const status = await requestAPI<IRunStatus>(
      apiPath('flows', run.flow, 'runs', run.run),
      {},
      this._settings
    );
    const before = JSON.stringify(this._run);
    this._run = status;
    if (JSON.stringify(status) !== before) {
      this._changed.emit('run');
    }
  }

  private async _track(flow: string, id: string): Promise<IRunStatus> {
    const status = await requestAPI<IRunStatus>(
      apiPath('flows', flow, 'runs', id),
      {},
      this._settings
    );
    this._run = status;
    this._changed.emit('run');
    void this._poll.refresh();
    return status;
  }

  private _select(stage: string | null): void {
    this._selected = stage;
    this._stageInfo = null;
    this._preview = null;
    this._previewError = null;
    this._stageToken += 1;
    this._changed.emit('selection');
  }

  /** Load details and preview of the selected stage; drop stale replies. */
  private async _loadStage(): Promise<void> {
    const flow = this._flow;
    const stage = this._selected;
    if (flow === null || stage === null) {
      return;
    }
    const token = ++this._stageToken;
    try {
      const info = await requestAPI<IStageInfo>(
        apiPath('flows', flow, 'stages', stage),
        {},
        this._settings
      );
      if (token !== this._stageToken) {
        return;
      }
      this._stageInfo = info;
      this._changed.emit('stage');
    } catch (error) {
      if (token === this._stageToken) {
        this._setError(errorMessage(error));
      }
      return;
    }
    try {
      const text = await requestAPI(
        apiPath('flows', flow, 'stages', stage, 'records'),
        { query: { format: 'jsonl', limit: PREVIEW_ROWS } },
        this._settings,
        'text'
      );
      if (token !== this._stageToken) {
        return;
      }
      this._preview = parseJsonLines(text);
      this._previewError = null;
    } catch (error) {
      if (token !== this._stageToken) {
        return;
      }
      this._preview = null;
      this._previewError = errorMessage(error);
    }
    this._changed.emit('preview');
  }

  private _requireFlow(): string {
    if (this._flow === null) {
      throw new Error('No dataflow found in this server home.');
    }
    return this._flow;
  }

  private _setError(error: string | null): void {
    if (error !== this._error) {
      this._error = error;
      this._changed.emit('error');
    }
  }

  private _settings: ServerConnection.ISettings;
  private _poll: Poll;
  private _changed = new Signal<this, ModelChange>(this);
  private _flows: string[] = [];
  private _home = '';
  private _flow: string | null = null;
  private _graph: IGraphPayload | null = null;
  private _graphKey = '';
  private _selected: string | null = null;
  private _stageInfo: IStageInfo | null = null;
  private _preview: Record<string, unknown>[] | null = null;
  private _previewError: string | null = null;
  private _stageToken = 0;
  private _run: IRunStatus | null = null;
  private _error: string | null = null;
  private _isDisposed = false;
}

/** A short message for an error of any kind. */
export function errorMessage(error: unknown): string {
  if (error instanceof ServerConnection.ResponseError) {
    return error.message || `HTTP ${error.response.status}`;
  }
  if (error instanceof Error) {
    return error.message;
  }
  return String(error);
}
