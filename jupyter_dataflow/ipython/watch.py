"""`%dataflow watch`: a background reconciler thread inside the kernel.

The thread wakes when a magic changes the graph (`poke`) and every
`Dataflow.watch_interval` seconds, plans, and runs when the plan has tasks. Its Spark
jobs go to their own fair-scheduler pool so ad hoc queries stay responsive. It
reports only to a status display created in the cell that turned it on (never
printing into other cells), survives any failure, does not retry an identical plan
that just failed, and stops on `off`, on unload and at interpreter exit. It calls
`Flow` only; runs are serialised with the user's `%dataflow run` by a shared lock.
"""

from __future__ import annotations

import atexit
import html
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from jupyter_dataflow.reconciler import events as ev

POOL = "dataflow"
_PIN_KINDS = (ev.RUN_STARTED, ev.STAGE_PLANNED, ev.TASK_STARTED)


def pin_pool(session: Any) -> bool:
    """Send this thread's Spark jobs to the `dataflow` pool (classic sessions only)."""
    try:
        session.sparkContext.setLocalProperty("spark.scheduler.pool", POOL)
        return True
    except Exception:  # Spark Connect has no thread-local properties
        return False


def route_output(parent: dict[str, Any] | None) -> None:
    """Send this thread's prints and log lines to the cell of `parent` (ipykernel streams only)."""
    if not parent:
        return
    for stream in (sys.stdout, sys.stderr):
        setter = getattr(stream, "set_thread_parent", None)
        if setter is not None:
            setter(parent)


def _clock() -> str:
    return time.strftime("%H:%M:%S")


class Watcher:
    """Owns the watch thread, its stop/wake events and its status display."""

    def __init__(self, open_flow: Callable[[], Any], run_lock: threading.Lock,
                 interval: Callable[[], float]) -> None:
        self._open_flow = open_flow
        self._run_lock = run_lock
        self._interval = interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._widget: Any = None
        self._failed_plan: tuple[tuple[str, ...], ...] | None = None
        self._session: Any = None
        self._parent: dict[str, Any] | None = None
        self._routed: set[int] = set()
        self.status = "off"
        self.checks = 0
        self.runs = 0
        self.pins = 0
        self.last_result: Any = None
        self.last_error: str | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, widget: bool, parent: dict[str, Any] | None = None) -> None:
        """Start the thread.

        Args:
            widget: show the status in the current cell with an ipywidgets HTML.
            parent: the kernel request of the current cell; whatever the watch's threads
                print goes there rather than into whichever cell runs at that moment.
        """
        if self.running:
            return
        self._parent = parent
        self._routed = set()
        if widget:
            import ipywidgets as widgets
            from IPython.display import display

            self._widget = widgets.HTML()
            display(self._widget)
        self._stop.clear()
        self._wake.set()   # first pass right away
        self._set("starting")
        self._thread = threading.Thread(target=self._loop, name="dataflow-watch", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)

    def stop(self, timeout: float = 60.0) -> bool:
        """Ask the thread to stop and wait for it (a run in progress finishes first).

        Returns:
            True when the thread has ended.
        """
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        ended = thread is None or not thread.is_alive()
        if ended:
            self._thread = None
            atexit.unregister(self._at_exit)
        return ended

    def _at_exit(self) -> None:
        self.stop(timeout=5.0)

    def poke(self) -> None:
        """The graph changed: plan again now rather than at the next poll."""
        if self.running:
            self._wake.set()

    # the thread ---------------------------------------------------------------------
    def _loop(self) -> None:
        route_output(self._parent)
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self._pass()
            except Exception as err:  # the watch must outlive any failure
                self.last_error = str(err).splitlines()[0] if str(err) else type(err).__name__
                self._set(f"error at {_clock()}: {self.last_error}; retrying", error=True)
            self._wake.wait(self._interval())
        self._set("off")

    def _pass(self) -> None:
        flow = self._open_flow()
        plan = flow.plan()
        self.checks += 1
        tasks = plan.tasks
        if not tasks:
            self._failed_plan = None
            self._set(f"fresh · checked {_clock()}")
            return
        signature = tuple(sorted((t.stage, t.partition, t.reason, t.role, t.fingerprint or "") for t in tasks))
        if signature == self._failed_plan:
            self._set(f"waiting for a change · last run failed: {self.last_error}", error=True)
            return
        self._set(f"running {len(tasks)} task(s) · since {_clock()}")
        with self._run_lock:
            if self._stop.is_set():
                return
            self._session = flow.spark
            self._pin()
            unsubscribe = flow.subscribe(self._on_event)
            try:
                result = flow.run()
            finally:
                unsubscribe()
        self.runs += 1
        self.last_result = result
        if result.ok:
            self._failed_plan = None
            self._set(f"{result.summary()} · {_clock()}")
        else:
            self._failed_plan = signature
            self.last_error = next(iter(result.errors.values()), "a task failed").splitlines()[0]
            self._set(f"{result.summary()} · {_clock()} · {self.last_error}", error=True)

    def _pin(self) -> None:
        if pin_pool(self._session):
            self.pins += 1

    def _on_event(self, event: ev.Event) -> None:
        # Stage and task threads of the watch's run get the pool and the output cell too.
        if event.kind in _PIN_KINDS:
            self._pin()
            ident = threading.get_ident()
            if ident not in self._routed:
                self._routed.add(ident)
                route_output(self._parent)

    def _set(self, text: str, error: bool = False) -> None:
        self.status = text
        if self._widget is not None:
            colour = "#cf222e" if error else "#57606a"
            self._widget.value = (f"<span style='font-size:12px;color:{colour}'>"
                                  f"dataflow watch: {html.escape(text)}</span>")
