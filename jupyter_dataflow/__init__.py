"""jupyter-dataflow: declarative, always-fresh dataflows on Apache Spark in JupyterLab."""

from __future__ import annotations

from typing import Any

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
from jupyter_dataflow.lineage.tree import UnknownColumnError
from jupyter_dataflow.reconciler.loop import RunResult

__version__ = "0.1.0"


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext jupyter_dataflow`: register the magics (IPython is imported only here)."""
    from jupyter_dataflow.ipython import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from jupyter_dataflow.ipython import unload_ipython_extension as unload

    unload(ipython)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    from jupyter_dataflow.server import _jupyter_server_extension_points as points

    return points()


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    from jupyter_dataflow.server import _jupyter_labextension_paths as paths

    return paths()

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
    "UnknownColumnError",
    "UnknownStageError",
    "list_flows",
]
