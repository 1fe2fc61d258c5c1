/**
 * The jupyter-dataflow JupyterLab plugin: the "Dataflow" side panel, its
 * commands (run flow, run stage, export flow) and the `jupyter_dataflow` comm
 * target on notebook kernels.
 *
 * Wiring only: state is in `DataflowModel`, views in `panel.ts`, HTTP in `api.ts`.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  InputDialog,
  showErrorMessage
} from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { LabIcon } from '@jupyterlab/ui-components';

import { registerCommTargets } from './comm';
import { DataflowModel, errorMessage } from './model';
import { CommandIDs, DataflowPanel } from './panel';

const dataflowIcon = new LabIcon({
  name: 'jupyter-dataflow:icon',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16" height="16">' +
    '<g class="jp-icon3" fill="#616161">' +
    '<rect x="1" y="3" width="7" height="5" rx="1"/>' +
    '<rect x="1" y="16" width="7" height="5" rx="1"/>' +
    '<rect x="16" y="9.5" width="7" height="5" rx="1"/>' +
    '<path d="M8 5.5h3.5v5H16v3h-4.5v5H8v-2h1.5v-4.5h0V7.5H8z"/>' +
    '</g></svg>'
});

/** Export targets the CLI understands. */
const EXPORT_TARGETS = ['bundle', 'spark-pipelines', 'k8s'];

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-dataflow:plugin',
  description:
    'Dataflow side panel: lineage graph, stage states, provenance, run and export.',
  autoStart: true,
  optional: [ICommandPalette, ILayoutRestorer, INotebookTracker],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    tracker: INotebookTracker | null
  ) => {
    const { commands, shell } = app;
    const model = new DataflowModel(app.serviceManager.serverSettings);
    const panel = new DataflowPanel(model, commands);
    panel.title.icon = dataflowIcon;
    shell.add(panel, 'left', { rank: 650 });
    restorer?.add(panel, panel.id);
    model.start();

    const guard = async (what: string, action: () => Promise<unknown>) => {
      try {
        await action();
      } catch (error) {
        await showErrorMessage(`Dataflow: ${what} failed`, errorMessage(error));
      }
    };
    const hasFlow = () => model.flow !== null;

    commands.addCommand(CommandIDs.runFlow, {
      label: 'Dataflow: Run flow',
      caption: 'Reconcile every stage of the flow on the server',
      isEnabled: hasFlow,
      execute: () => guard('run', () => model.startRun())
    });

    commands.addCommand(CommandIDs.runStage, {
      label: 'Dataflow: Run stage',
      caption: 'Reconcile the selected stage and what it needs',
      isEnabled: hasFlow,
      execute: async args => {
        let stage = (args.stage as string | undefined) ?? model.selected;
        if (!stage) {
          const names = model.graph?.nodes.map(node => node.id) ?? [];
          const choice = await InputDialog.getItem({
            title: 'Run stage',
            items: names,
            okLabel: 'Run'
          });
          if (!choice.button.accept || !choice.value) {
            return;
          }
          stage = choice.value;
        }
        const name = stage;
        await guard('run', () => model.startRun(name));
      }
    });

    commands.addCommand(CommandIDs.exportFlow, {
      label: 'Dataflow: Export flow',
      caption: 'Export the flow to a deployable project on the server',
      isEnabled: hasFlow,
      execute: async () => {
        const target = await InputDialog.getItem({
          title: 'Export flow as',
          items: EXPORT_TARGETS,
          okLabel: 'Next'
        });
        if (!target.button.accept || !target.value) {
          return;
        }
        const output = await InputDialog.getText({
          title: 'Export into directory (relative to the server root)',
          text: `export/${model.flow}-${target.value}`,
          okLabel: 'Export'
        });
        if (!output.button.accept || !output.value) {
          return;
        }
        const kind = target.value;
        const dir = output.value;
        await guard('export', () => model.startExport(kind, dir));
      }
    });

    commands.addCommand(CommandIDs.refresh, {
      label: 'Dataflow: Refresh',
      caption: 'Refresh the Dataflow panel now',
      execute: () => guard('refresh', () => model.refreshNow())
    });

    commands.addCommand(CommandIDs.showPanel, {
      label: 'Dataflow: Show panel',
      execute: () => shell.activateById(panel.id)
    });

    model.changed.connect((_, change) => {
      if (change === 'flows' || change === 'graph' || change === 'selection') {
        commands.notifyCommandChanged();
      }
    });

    if (palette) {
      const category = 'Dataflow';
      for (const command of [
        CommandIDs.runFlow,
        CommandIDs.runStage,
        CommandIDs.exportFlow,
        CommandIDs.refresh,
        CommandIDs.showPanel
      ]) {
        palette.addItem({ command, category });
      }
    }

    if (tracker) {
      registerCommTargets(tracker);
    }
  }
};

export default plugin;
