"""Typed events the reconciler emits; consoles, progress bars and widgets subscribe.

Subscribers are called on the thread that emits; they must be quick and must not
raise (a raising subscriber is dropped from that event, never from the run).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Event kinds, in the order a task goes through them.
RUN_STARTED = "run_started"
STAGE_PLANNED = "stage_planned"
TASK_QUEUED = "task_queued"
TASK_STARTED = "task_started"
TASK_COMMITTED = "task_committed"
TASK_REUSED = "task_reused"
TASK_FAILED = "task_failed"
TASK_SKIPPED = "task_skipped"
STAGE_FINISHED = "stage_finished"
RUN_FINISHED = "run_finished"


@dataclass(frozen=True)
class Event:
    kind: str
    flow: str
    stage: str = ""
    partition: str = ""
    reason: str = ""
    detail: str = ""
    rows: int | None = None
    seconds: float | None = None
    state: str | None = None
    total: int | None = None
    at: float = field(default_factory=time.time)


Listener = Callable[[Event], None]


class EventBus:
    """A small synchronous publish/subscribe hub."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def emit(self, event: Event) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            with contextlib.suppress(Exception):  # a broken display must not break a run
                listener(event)
