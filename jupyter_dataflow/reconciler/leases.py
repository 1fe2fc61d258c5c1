"""Leases in the metadata database: one reconciler per flow, one writer per task.

A run holds `flow:<name>` for its whole duration and `task:<fingerprint>` while it
computes a task, so two processes sharing a home never compute the same output
twice. A heartbeat renews the holder's leases; a crashed holder stops renewing and
its leases expire, so nobody waits forever. A holder on this machine whose process
is gone (killed, crashed) is recognised at once and its lease taken over, so a
crashed run does not hold up the next one for the lease's lifetime.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from jupyter_dataflow.core.errors import DataflowError
from jupyter_dataflow.store.metadata import Metadata

TTL = float(os.environ.get("JUPYTER_DATAFLOW_LEASE_TTL", "60"))
POLL = 0.5


def _machine() -> str:
    """This host and PID namespace: within it, a holder's process id can be checked."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    host = socket.gethostname().replace(":", "_")
    return f"{host}/{namespace}" if namespace else host


MACHINE = _machine()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")  # a killed child its parent has not reaped yet is gone too


def holder_gone(owner: str) -> bool:
    """Whether a lease owner is a process of this machine that no longer runs.

    Owners elsewhere (another host or container) are never judged: only their lease's
    expiry frees what they held.
    """
    machine, _, rest = owner.partition(":")
    pid = rest.split(":", 1)[0]
    if machine != MACHINE or not pid.isdigit() or int(pid) == os.getpid():
        return False
    return not _process_alive(int(pid))


class LeaseTimeout(DataflowError):
    """Another process held a lease for longer than we were willing to wait."""


class Leases:
    """The leases of one process (owner id) on one home, kept alive by a heartbeat."""

    def __init__(self, meta: Metadata, ttl: float = TTL) -> None:
        self.meta = meta
        self.ttl = ttl
        self.owner = f"{MACHINE}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._held = 0
        self._names: set[str] = set()
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
            holder = self._acquire(name)
            if holder is None:
                break
            waited = True
            if deadline is not None and time.time() > deadline:
                raise LeaseTimeout(f"{name} is held by {holder}; try again when it finishes")
            time.sleep(POLL)
        self._started()
        with self._lock:
            self._names.add(name)
        try:
            yield waited
        finally:
            with self._lock:
                self._names.discard(name)
            self._ended()
            self.meta.release(name, self.owner)

    def _acquire(self, name: str) -> str | None:
        """Take `name` now if it is free, expired or held by a dead process; else its holder."""
        holder = self.meta.acquire(name, self.owner, self.ttl)
        if holder is not None and holder_gone(holder) and self.meta.take_over(name, holder, self.owner, self.ttl):
            return None
        return holder

    @contextmanager
    def hold_if_free(self, names: Iterable[str]) -> Iterator[bool]:
        """Briefly hold every lease in `names` if none is held by a live process.

        Yields whether all are held; never waits. Used for housekeeping that is safe
        only while no reconciler of the home runs (it renews nothing: keep it short).
        """
        taken: list[str] = []
        free = True
        for name in sorted(set(names)):
            with self._lock:
                mine = name in self._names  # another thread of this process holds it
            if mine or self._acquire(name) is not None:
                free = False
                break
            taken.append(name)
        try:
            yield free
        finally:
            for name in taken:
                self.meta.release(name, self.owner)
