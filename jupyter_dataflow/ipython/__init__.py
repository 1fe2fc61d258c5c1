"""IPython integration: `%load_ext jupyter_dataflow` registers the dataflow magics.

This package is a thin notebook front end over `Flow` (magics, option parsing,
displays, the background watch). It imports IPython lazily so that importing
`jupyter_dataflow` from the CLI or the server stays cheap, and it never reaches into
the store, planner or executor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jupyter_dataflow.flow import Flow
    from jupyter_dataflow.ipython.magics import DataflowMagics

__all__ = ["current_flow", "load_ipython_extension", "unload_ipython_extension"]

_REGISTRY_KEY = "DataflowMagics"


def _loaded(ipython: Any) -> DataflowMagics | None:
    magics = ipython.magics_manager.registry.get(_REGISTRY_KEY)
    return magics


def load_ipython_extension(ipython: Any) -> None:
    """Register `%dataflow`, `%%source`, `%%transform`, `%%sink`, `%%query` and `Dataflow` config."""
    from jupyter_dataflow.ipython.magics import DataflowMagics, bodyless_stage_cells

    if _loaded(ipython) is not None:
        return
    magics = DataflowMagics(ipython)
    ipython.register_magics(magics)
    if bodyless_stage_cells not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(bodyless_stage_cells)
    if magics.settings not in ipython.configurables:
        ipython.configurables.append(magics.settings)


def unload_ipython_extension(ipython: Any) -> None:
    """Stop the watch, close the flow and remove the magics and their settings."""
    from jupyter_dataflow.ipython.magics import bodyless_stage_cells

    magics = _loaded(ipython)
    if magics is None:
        return
    settings = magics.settings
    magics.close()
    if bodyless_stage_cells in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.remove(bodyless_stage_cells)
    manager = ipython.magics_manager
    for kind, names in magics.magics.items():
        for name in names:
            bound = manager.magics[kind].get(name)
            if getattr(bound, "__self__", None) is magics:
                del manager.magics[kind][name]
    manager.registry.pop(_REGISTRY_KEY, None)
    if settings in ipython.configurables:
        ipython.configurables.remove(settings)


def current_flow(ipython: Any = None) -> Flow:
    """The `Flow` the magics of this shell use (opening it if needed).

    Args:
        ipython: the shell; default: the running one.

    Raises:
        RuntimeError: the extension is not loaded in that shell.
    """
    if ipython is None:
        from IPython import get_ipython

        ipython = get_ipython()
    magics = _loaded(ipython) if ipython is not None else None
    if magics is None:
        raise RuntimeError("the dataflow magics are not loaded: run %load_ext jupyter_dataflow first")
    return magics.flow()
