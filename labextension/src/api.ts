/**
 * The one door to the server extension: every HTTP request of the panel goes
 * through `requestAPI`, which adds the base URL, the token and the XSRF header
 * (via `ServerConnection.makeRequest`) and turns error replies into exceptions
 * carrying the server's message.
 *
 * It must not hold state; the model owns state.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** Stage states, as the server reports them. */
export type StageState =
  | 'fresh'
  | 'stale'
  | 'running'
  | 'failed'
  | 'never run';

/** One column of a stage's output schema. */
export interface IColumn {
  name: string;
  type: string;
}

/** One node of the lineage payload. */
export interface IGraphNode {
  id: string;
  kind: string;
  lang?: string | null;
  state: StageState | string;
  mode?: string | null;
  partitions?: number | null;
  rows?: number | null;
  fingerprint?: string | null;
  updated?: string | null;
  error?: string | null;
  code?: string | null;
  columns?: IColumn[];
}

/** One edge of the lineage payload: `source` feeds `target`. */
export interface IGraphEdge {
  source: string;
  target: string;
}

/** `GET flows/{flow}/graph`. */
export interface IGraphPayload {
  flow: string;
  nodes: IGraphNode[];
  edges: IGraphEdge[];
}

/** One committed partition of a stage. */
export interface IPartitionInfo {
  partition: string;
  rows?: number | null;
  fingerprint?: string | null;
  committed_at?: string | null;
  reason?: string | null;
  [key: string]: unknown;
}

/** `GET flows/{flow}/stages/{stage}`. */
export interface IStageInfo {
  name: string;
  kind: string;
  state: StageState | string;
  partitions: IPartitionInfo[] | number;
  rows?: number | null;
  fingerprint?: string | null;
  updated?: string | null;
  error?: string | null;
  mode?: string | null;
  schema?: IColumn[] | null;
  provenance?: unknown;
  [key: string]: unknown;
}

/** `GET flows`. */
export interface IFlowsReply {
  flows: string[];
  home: string;
}

/** `POST flows/{flow}/run` and `POST flows/{flow}/export`. */
export interface IRunStarted {
  run: string;
}

/** `GET flows/{flow}/runs/{id}`. */
export interface IRunStatus {
  run: string;
  flow: string;
  stage: string | null;
  command: string;
  state: 'running' | 'succeeded' | 'failed';
  exit_code: number | null;
  started: string;
  finished: string | null;
  output: string;
}

/** Options of one request. */
export interface IRequestOptions {
  /** HTTP method, GET by default. */
  method?: 'GET' | 'POST' | 'DELETE';
  /** A JSON-serializable body. */
  body?: unknown;
  /** Query parameters, already strings. */
  query?: Record<string, string | number | undefined>;
  /** Abort the request, e.g. when the panel is disposed. */
  signal?: AbortSignal;
}

/** Path segments are identifiers, but encode them anyway. */
export function apiPath(...segments: string[]): string {
  return segments.map(s => encodeURIComponent(s)).join('/');
}

/**
 * Call the dataflow REST API.
 *
 * @param endpoint - path below `/dataflow/api/`, e.g. `flows/default/graph`.
 * @param options - method, JSON body, query parameters.
 * @param settings - the server settings of the application.
 * @param as - `json` (default) parses the reply; `text` returns it raw.
 */
export async function requestAPI<T>(
  endpoint: string,
  options: IRequestOptions,
  settings: ServerConnection.ISettings,
  as?: 'json'
): Promise<T>;
export async function requestAPI(
  endpoint: string,
  options: IRequestOptions,
  settings: ServerConnection.ISettings,
  as: 'text'
): Promise<string>;
export async function requestAPI<T>(
  endpoint: string,
  options: IRequestOptions,
  settings: ServerConnection.ISettings,
  as: 'json' | 'text' = 'json'
): Promise<T | string> {
  let url = URLExt.join(settings.baseUrl, 'dataflow', 'api', endpoint);
  if (options.query) {
    const query: Record<string, string> = {};
    for (const [key, value] of Object.entries(options.query)) {
      if (value !== undefined) {
        query[key] = String(value);
      }
    }
    url += URLExt.objectToQueryString(query);
  }
  const init: RequestInit = {
    method: options.method ?? 'GET',
    signal: options.signal
  };
  if (options.body !== undefined) {
    init.body = JSON.stringify(options.body);
    init.headers = { 'Content-Type': 'application/json' };
  }

  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  if (!response.ok) {
    let message = text;
    try {
      const parsed = JSON.parse(text) as { message?: string; reason?: string };
      message = parsed.message || parsed.reason || text;
    } catch {
      // Not JSON (e.g. a proxy error page): keep the raw text.
    }
    throw new ServerConnection.ResponseError(response, message);
  }
  if (as === 'text') {
    return text;
  }
  return (text.length ? JSON.parse(text) : {}) as T;
}

/** Parse newline-delimited JSON into objects, skipping blank lines. */
export function parseJsonLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter(line => line.trim().length > 0)
    .map(line => JSON.parse(line) as Record<string, unknown>);
}
