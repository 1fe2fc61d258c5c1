"""Progress of a run, driven by reconciler events.

`RunProgress` folds events into counts (tasks done/total, current stage, elapsed);
`WidgetProgress` draws them with ipywidgets in a notebook and `TextProgress` as plain
lines elsewhere. `track` subscribes one of them to a flow for the duration of a run.
Nothing here starts, plans or runs work: the caller does, inside `track`.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from jupyter_dataflow.reconciler import events as ev

_DONE_KINDS = (ev.TASK_COMMITTED, ev.TASK_REUSED, ev.TASK_FAILED)


@dataclass
class RunProgress:
    """Counts of a run in progress; fed events from any thread."""

    estimate: Mapping[str, int] = field(default_factory=dict)  # stage -> tasks in the plan made before
    planned: dict[str, int] = field(default_factory=dict)       # stage -> tasks the run planned
    done: int = 0
    executed: int = 0
    reused: int = 0
    failed: int = 0
    stage: str = ""
    ok: bool | None = None       # set by the caller from the run's result
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def total(self) -> int:
        """Tasks known so far: as planned by the run, else as estimated beforehand."""
        rest = sum(n for s, n in self.estimate.items() if s not in self.planned)
        return max(sum(self.planned.values()) + rest, self.done)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def apply(self, event: ev.Event) -> bool:
        """Fold one event in; True when the counts changed."""
        with self._lock:
            if event.kind == ev.STAGE_PLANNED:
                self.planned[event.stage] = event.total or 0
                if event.total:
                    self.stage = event.stage
            elif event.kind == ev.TASK_STARTED:
                self.stage = event.stage
            elif event.kind in _DONE_KINDS:
                self.done += 1
                self.executed += event.kind == ev.TASK_COMMITTED
                self.reused += event.kind == ev.TASK_REUSED
                self.failed += event.kind == ev.TASK_FAILED
                self.stage = event.stage
            else:
                return False
            return True

    def line(self) -> str:
        text = f"{self.done}/{self.total} tasks"
        if self.stage:
            text += f" · stage {self.stage}"
        if self.failed:
            text += f" · {self.failed} failed"
        return text + f" · {self.elapsed:.1f}s"


class Progress(Protocol):
    """Something that shows a `RunProgress`."""

    def update(self, progress: RunProgress) -> None: ...
    def finish(self, progress: RunProgress, ok: bool) -> None: ...


class TextProgress:
    """Plain lines: one per stage that had work, then the final count."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout   # captured now: events arrive on other threads
        self._reported: set[str] = set()

    def update(self, progress: RunProgress) -> None:
        return None

    def stage_done(self, stage: str, progress: RunProgress) -> None:
        if progress.planned.get(stage) and stage not in self._reported:
            self._reported.add(stage)
            self.stream.write(f"  {stage}: done · {progress.line()}\n")
            self.stream.flush()

    def finish(self, progress: RunProgress, ok: bool) -> None:
        return None


class WidgetProgress:
    """An ipywidgets bar with a one-line label, displayed in the running cell."""

    def __init__(self) -> None:
        import ipywidgets as widgets
        from IPython.display import display

        self.bar = widgets.IntProgress(value=0, min=0, max=1, bar_style="info",
                                       layout=widgets.Layout(width="320px"))
        self.label = widgets.HTML(value="planning…")
        self.box = widgets.HBox([self.bar, self.label])
        display(self.box)

    def update(self, progress: RunProgress) -> None:
        total = max(progress.total, 1)
        self.bar.max = total
        self.bar.value = min(progress.done, total)
        self.label.value = progress.line()
        if progress.failed:
            self.bar.bar_style = "warning"

    def finish(self, progress: RunProgress, ok: bool) -> None:
        self.update(progress)
        self.bar.max = max(progress.done, 1)
        self.bar.value = self.bar.max
        self.bar.bar_style = "success" if ok else "danger"
        self.label.value = ("done · " if ok else "finished with failures · ") + progress.line()


@contextmanager
def track(subscribe: Callable[[Callable[[ev.Event], None]], Callable[[], None]],
          estimate: Mapping[str, int], *, widget: bool) -> Iterator[RunProgress]:
    """Show the progress of the run made inside the block.

    Args:
        subscribe: `Flow.subscribe`, returning an unsubscribe function.
        estimate: tasks per stage from a plan made just before the run.
        widget: draw an ipywidgets bar (in a notebook) instead of plain text.

    Yields:
        The live counts; `finish` is shown when the block exits.
    """
    progress = RunProgress(estimate=dict(estimate))
    view: Any = WidgetProgress() if widget else TextProgress()

    def on_event(event: ev.Event) -> None:
        if progress.apply(event):
            view.update(progress)
        if event.kind == ev.STAGE_FINISHED and isinstance(view, TextProgress):
            view.stage_done(event.stage, progress)

    unsubscribe = subscribe(on_event)
    try:
        yield progress
    except BaseException:
        progress.ok = False
        raise
    finally:
        unsubscribe()
        ok = progress.ok if progress.ok is not None else progress.failed == 0
        view.finish(progress, ok)
