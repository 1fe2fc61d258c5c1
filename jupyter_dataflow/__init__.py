"""jupyter-dataflow: declarative, always-fresh dataflows on Apache Spark in JupyterLab."""

from __future__ import annotations

from jupyter_dataflow.core.errors import (
    CommitError,
    ConfigError,
    CycleError,
    DataflowError,
    ExpectationError,
    SourceError,
    SqlError,
    StageDefinitionError,
    StageExecutionError,
    UnknownStageError,
)
from jupyter_dataflow.flow import Change, Flow, StageStatus, list_flows
from jupyter_dataflow.ipython import load_ipython_extension, unload_ipython_extension  # noqa: F401  (IPython looks these up on the package)
from jupyter_dataflow.reconciler.loop import RunResult

__version__ = "0.1.0"

__all__ = [
    "Change",
    "CommitError",
    "ConfigError",
    "CycleError",
    "DataflowError",
    "ExpectationError",
    "Flow",
    "RunResult",
    "SourceError",
    "SqlError",
    "StageDefinitionError",
    "StageExecutionError",
    "StageStatus",
    "UnknownStageError",
    "list_flows",
]
