"""The Jupyter server extension: authenticated REST endpoints under `/dataflow/api/`.

`jupyter_dataflow` re-exports `_jupyter_server_extension_points` and
`_jupyter_labextension_paths` so that enabling the package (see
`jupyter-config/server-config/jupyter_dataflow.json`) loads this module and
`jupyter labextension develop` finds the built lab extension.
"""

from __future__ import annotations

import atexit
from collections import Counter
from typing import Any

from jupyter_dataflow.server.config import Dataflow
from jupyter_dataflow.server.handlers import handlers
from jupyter_dataflow.server.runs import RunManager

__all__ = [
    "Dataflow",
    "_jupyter_labextension_paths",
    "_jupyter_server_extension_points",
    "_load_jupyter_server_extension",
]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "jupyter_dataflow.server"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    # Relative to the `jupyter_dataflow` package, where the builder writes it.
    return [{"src": "labextension", "dest": "jupyter-dataflow"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Read `c.Dataflow.*`, resolve the home and register the handlers."""
    config = Dataflow(parent=serverapp)
    root_dir = str(getattr(serverapp, "root_dir", "") or ".")
    home = config.resolve_home(root_dir)
    runs = RunManager(output_tail=config.output_tail, max_runs=config.max_runs)
    atexit.register(runs.terminate_all)

    web_app = serverapp.web_app
    web_app.settings.update(
        {
            "dataflow_config": config,
            "dataflow_home": home,
            "dataflow_root": root_dir,
            "dataflow_runs": runs,
            # Records streams started / completed / aborted by the client.
            "dataflow_streams": Counter(),
        }
    )
    base_url = web_app.settings.get("base_url", "/")
    web_app.add_handlers(".*$", handlers(base_url))
    serverapp.log.info("jupyter_dataflow: serving home %s at %sdataflow/api/", home, base_url)
