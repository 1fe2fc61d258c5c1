"""Putting a new cell in the notebook, below the cell that asked for it.

In JupyterLab the lab extension registers the `jupyter_dataflow` comm target on each
notebook kernel; we open a comm on it with `{"action": "insert_cell", "code": ...,
"cell_id": ...}` and it inserts the cell right away. A frontend without that target
closes the comm: we learn this from a probe comm opened at the first magic, and then
(as outside a kernel) fall back to `shell.set_next_input`. This module only talks to
the frontend; it never touches the flow.
"""

from __future__ import annotations

import contextlib
from typing import Any

COMM_TARGET = "jupyter_dataflow"


class Frontend:
    """What the kernel knows about the notebook frontend it serves."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.has_target: bool | None = None   # None: not known (yet)
        self._probe: Any = None
        self.replies: list[dict[str, Any]] = []

    @property
    def in_kernel(self) -> bool:
        """True in a Jupyter kernel (comms, widgets), False in a terminal or a test shell."""
        return getattr(self.shell, "kernel", None) is not None

    def _open(self, data: dict[str, Any]) -> Any:
        from comm import create_comm

        return create_comm(target_name=COMM_TARGET, data=data)

    def probe(self) -> None:
        """Open a comm once so a frontend without our target tells us by closing it."""
        if self._probe is not None or not self.in_kernel:
            return
        try:
            comm = self._open({"action": "hello"})
        except Exception:
            self.has_target = False
            return

        def closed(_msg: Any) -> None:
            if self.has_target is None:
                self.has_target = False

        comm.on_close(closed)
        self._probe = comm

    def parent(self) -> dict[str, Any] | None:
        """The kernel request being executed (header, metadata), if any."""
        kernel = getattr(self.shell, "kernel", None)
        parent: Any = None
        if kernel is not None and hasattr(kernel, "get_parent"):
            parent = kernel.get_parent()
        if not parent:
            parent = getattr(self.shell, "parent_header", None)
        return dict(parent) if parent else None

    def cell_id(self) -> str | None:
        """Id of the cell being executed, as the frontend sent it with the request."""
        metadata = (self.parent() or {}).get("metadata") or {}
        cell = metadata.get("cellId") or metadata.get("cell_id")
        return str(cell) if cell else None

    def insert_cell(self, code: str) -> str:
        """Insert a code cell below the current one.

        Args:
            code: the new cell's source.

        Returns:
            "comm" when sent to the lab extension, "next_input" when left to IPython.
        """
        if self.in_kernel and self.has_target is not False:
            try:
                comm = self._open({"action": "insert_cell", "code": code, "cell_id": self.cell_id()})
            except Exception:
                comm = None
            if comm is not None:
                def answered(msg: Any) -> None:
                    data = (msg.get("content") or {}).get("data") or {}
                    self.has_target = True
                    self.replies.append(data)
                    comm.close()

                def closed(_msg: Any) -> None:
                    if self.has_target is None:
                        self.has_target = False

                comm.on_msg(answered)
                comm.on_close(closed)
                return "comm"
        self.shell.set_next_input(code, replace=False)
        return "next_input"

    def close(self) -> None:
        if self._probe is not None:
            with contextlib.suppress(Exception):
                self._probe.close()
            self._probe = None
