"""Settings of the server extension (`c.Dataflow.*` in `jupyter_server_config.py`).

Only configuration lives here: where the home is, how to start the CLI for runs,
and the streaming batch size. No request handling, no engine calls.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from traitlets import Int, List, Unicode, default
from traitlets.config import Configurable


class Dataflow(Configurable):
    """Dataflow settings read by the Jupyter server extension."""

    home = Unicode(
        "",
        help=(
            "The dataflow home the REST API serves. Relative paths are resolved "
            "against the server's root_dir; empty means <root_dir>/.dataflow."
        ),
    ).tag(config=True)

    cli = List(
        Unicode(),
        help=(
            "Command that runs the dataflow CLI, as argv. `run --home H --flow F "
            "[--stage S]` is appended for runs. Defaults to the `jupyter-dataflow` "
            "script of the server's Python environment."
        ),
    ).tag(config=True)

    batch_size = Int(
        65536,
        min=1,
        help="Rows per Arrow record batch when streaming records.",
    ).tag(config=True)

    output_tail = Int(
        65536,
        min=1024,
        help="Bytes of a run's combined stdout/stderr kept for the runs endpoint.",
    ).tag(config=True)

    max_runs = Int(
        100,
        min=1,
        help="Finished runs remembered per server; the oldest are forgotten first.",
    ).tag(config=True)

    @default("cli")
    def _default_cli(self) -> list[str]:
        script = Path(sys.executable).parent / "jupyter-dataflow"
        if script.exists():
            return [str(script)]
        found = shutil.which("jupyter-dataflow")
        if found:
            return [found]
        return [sys.executable, "-m", "jupyter_dataflow.cli"]

    def resolve_home(self, root_dir: str) -> Path:
        """The absolute home directory for a server whose root is `root_dir`."""
        root = Path(os.path.expanduser(root_dir or ".")).resolve()
        if not self.home:
            return root / ".dataflow"
        home = Path(os.path.expanduser(self.home))
        return home if home.is_absolute() else (root / home).resolve()
