"""Leases in the metadata database: one reconciler per flow, one writer per task.

A run holds `flow:<name>` for its whole duration and `task:<fingerprint>` while it
computes a task, so two processes sharing a home never compute the same output
twice. A heartbeat renews the holder's leases; a crashed holder stops renewing and
its leases expire, so nobody waits forever.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from jupyter_dataflow.core.errors import DataflowError
from jupyter_dataflow.store.metadata import Metadata

TTL = float(os.environ.get("JUPYTER_DATAFLOW_LEASE_TTL", "60"))
POLL = 0.5


class LeaseTimeout(DataflowError):
    """Another process held a lease for longer than we were willing to wait."""


class Leases:
    """The leases of one process (owner id) on one home, kept alive by a heartbeat."""

    def __init__(self, meta: Metadata, ttl: float = TTL) -> None:
        self.meta = meta
        self.ttl = ttl
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._held = 0
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None

    def _heartbeat(self, stop: threading.Event) -> None:
        while not stop.wait(self.ttl / 3):
            with contextlib.suppress(Exception):  # a busy database delays a renewal; the next catches up
                self.meta.renew(self.owner, self.ttl)

    def _started(self) -> None:
        with self._lock:
            self._held += 1
            if self._stop is None:
                self._stop = threading.Event()
                threading.Thread(target=self._heartbeat, args=(self._stop,), daemon=True,
                                 name="dataflow-lease-heartbeat").start()

    def _ended(self) -> None:
        with self._lock:
            self._held -= 1
            if self._held == 0 and self._stop is not None:
                self._stop.set()
                self._stop = None

    @contextmanager
    def hold(self, name: str, wait: float | None = None) -> Iterator[bool]:
        """Hold lease `name`; yields True if we had to wait for another holder first."""
        waited = False
        deadline = None if wait is None else time.time() + wait
        while True:
            holder = self.meta.acquire(name, self.owner, self.ttl)
            if holder is None:
                break
            waited = True
            if deadline is not None and time.time() > deadline:
                raise LeaseTimeout(f"{name} is held by {holder}; try again when it finishes")
            time.sleep(POLL)
        self._started()
        try:
            yield waited
        finally:
            self._ended()
            self.meta.release(name, self.owner)
