/**
 * The `jupyter_dataflow` comm target, registered on the kernel of every notebook.
 *
 * The kernel side opens a comm on this target and sends
 * `{"action": "insert_cell", "code": "...", "cell_id": "<requesting cell>"}`;
 * we insert a code cell with that code right below the requesting cell (or below
 * the active cell when the id is unknown) and answer with the new cell's id.
 * This is how `%dataflow promote` puts the new transform cell in the notebook.
 */
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { JSONObject } from '@lumino/coreutils';

export const COMM_TARGET = 'jupyter_dataflow';

/** A request from the kernel. */
export interface IInsertCellRequest {
  action: 'insert_cell';
  code: string;
  cell_id?: string | null;
}

/** Watch the tracker and register the comm target on each notebook's kernel. */
export function registerCommTargets(tracker: INotebookTracker): void {
  const watch = (panel: NotebookPanel): void => {
    const context = panel.sessionContext;
    const register = (kernel: Kernel.IKernelConnection | null | undefined) => {
      if (!kernel || kernel.isDisposed) {
        return;
      }
      kernel.registerCommTarget(COMM_TARGET, (comm, open) => {
        const reply = (data: JSONObject): void => {
          if (!comm.isDisposed) {
            comm.send(data);
          }
        };
        const handle = (data: unknown): void => {
          if (isInsertCell(data)) {
            reply(insertCell(panel, data));
          }
        };
        comm.onMsg = (msg: KernelMessage.ICommMsgMsg) => handle(msg.content.data);
        handle(open.content.data);
      });
    };
    register(context.session?.kernel);
    context.kernelChanged.connect((_, change) => register(change.newValue));
  };
  tracker.forEach(watch);
  tracker.widgetAdded.connect((_, panel) => watch(panel));
}

function isInsertCell(data: unknown): data is IInsertCellRequest {
  if (typeof data !== 'object' || data === null) {
    return false;
  }
  const message = data as Record<string, unknown>;
  return message.action === 'insert_cell' && typeof message.code === 'string';
}

/**
 * Insert a code cell below the requesting cell and return a reply for the kernel:
 * `{"status": "ok", "cell_id": <new id>, "index": n}` or `{"status": "error", ...}`.
 */
export function insertCell(
  panel: NotebookPanel,
  request: IInsertCellRequest
): JSONObject {
  const notebook = panel.content;
  const model = notebook.model;
  if (!model) {
    return { status: 'error', message: 'the notebook has no model' };
  }
  const cells = notebook.widgets;
  let anchor = request.cell_id
    ? cells.findIndex(cell => cell.model.id === request.cell_id)
    : -1;
  if (anchor < 0) {
    anchor = notebook.activeCellIndex;
  }
  const index = Math.min(anchor + 1, cells.length);
  const inserted = model.sharedModel.insertCell(index, {
    cell_type: 'code',
    source: request.code,
    metadata: {}
  });
  return { status: 'ok', cell_id: inserted.getId(), index };
}
