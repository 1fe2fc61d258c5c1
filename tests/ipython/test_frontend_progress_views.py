"""Cell insertion, progress counting and the status/plan views, without Spark."""

from __future__ import annotations

import io
from typing import Any

from comm.base_comm import BaseComm

from jupyter_dataflow.flow import Change, StageStatus
from jupyter_dataflow.ipython.display import (
    PlanView,
    QueryView,
    StatusView,
    describe_change,
    text_table,
)
from jupyter_dataflow.ipython.frontend import COMM_TARGET, Frontend
from jupyter_dataflow.ipython.magics import bodyless_stage_cells, transform_cell
from jupyter_dataflow.plan.planner import Plan
from jupyter_dataflow.reconciler import events as ev
from jupyter_dataflow.widgets.progress import RunProgress, track


class KernelShell:
    """The parts of a kernel's shell the frontend helper reads."""

    def __init__(self, cell_id: str | None) -> None:
        self.kernel = self
        self._parent = {"header": {}, "metadata": {"cellId": cell_id} if cell_id else {}}
        self.next_inputs: list[str] = []

    def get_parent(self) -> dict[str, Any]:
        return self._parent

    def set_next_input(self, text: str, replace: bool = False) -> None:
        self.next_inputs.append(text)


class RecordingFrontend(Frontend):
    """Keeps the comms it opens (the comm package's own objects, no kernel attached)."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.opened: list[tuple[BaseComm, dict[str, Any]]] = []

    def _open(self, data: dict[str, Any]) -> Any:
        comm = super()._open(data)
        self.opened.append((comm, data))
        return comm


def test_insert_cell_goes_to_the_lab_extension_with_the_requesting_cell_id() -> None:
    shell = KernelShell("cell-42")
    front = RecordingFrontend(shell)
    front.probe()
    assert front.opened[0][1] == {"action": "hello"}
    assert front.insert_cell("%%transform t\nSELECT 1\n") == "comm"
    comm, data = front.opened[-1]
    assert comm.target_name == COMM_TARGET
    assert data == {"action": "insert_cell", "code": "%%transform t\nSELECT 1\n", "cell_id": "cell-42"}
    comm.handle_msg({"content": {"data": {"status": "ok", "cell_id": "new-1", "index": 3}}})
    assert front.has_target is True and front.replies == [{"status": "ok", "cell_id": "new-1", "index": 3}]
    assert shell.next_inputs == []


def test_a_frontend_without_the_target_gets_next_input() -> None:
    shell = KernelShell(None)
    front = RecordingFrontend(shell)
    front.probe()
    probe, _ = front.opened[0]
    probe.handle_close({"content": {"data": {}}})       # what JupyterLab does for an unknown target
    assert front.has_target is False
    assert front.insert_cell("%%transform t\nSELECT 1\n") == "next_input"
    assert shell.next_inputs == ["%%transform t\nSELECT 1\n"]


def test_outside_a_kernel_the_cell_is_the_next_input() -> None:
    class Terminal:
        def __init__(self) -> None:
            self.next: list[str] = []

        def set_next_input(self, text: str, replace: bool = False) -> None:
            self.next.append(text)

    shell = Terminal()
    front = Frontend(shell)
    front.probe()
    assert not front.in_kernel and front.cell_id() is None
    assert front.insert_cell("x") == "next_input" and shell.next == ["x"]


def test_transform_cell_and_bodyless_cells() -> None:
    assert transform_cell("t", " SELECT 1 \n", {"partition_by": "date", "mode": "map"}) == \
        "%%transform t --partition-by date --mode map\nSELECT 1\n"
    assert bodyless_stage_cells(["%%source s --path p"]) == ["%%source s --path p\n", "\n"]
    assert bodyless_stage_cells(["%%sink s --from a --path p\n", "  \n"]) == ["%%sink s --from a --path p\n", "\n"]
    cell = ["%%transform t\n", "SELECT 1\n"]
    assert bodyless_stage_cells(cell) == cell
    assert bodyless_stage_cells(["%%sourcery x\n"]) == ["%%sourcery x\n"]


def _event(kind: str, stage: str = "s", total: int | None = None) -> ev.Event:
    return ev.Event(kind, "default", stage, "p", total=total)


def test_progress_counts_tasks_against_plan_and_run() -> None:
    progress = RunProgress(estimate={"a": 2, "b": 3})
    assert progress.total == 5
    progress.apply(_event(ev.STAGE_PLANNED, "a", total=2))
    progress.apply(_event(ev.TASK_STARTED, "a"))
    progress.apply(_event(ev.TASK_COMMITTED, "a"))
    progress.apply(_event(ev.TASK_REUSED, "a"))
    progress.apply(_event(ev.STAGE_PLANNED, "b", total=1))   # the run found less to do than planned
    progress.apply(_event(ev.TASK_FAILED, "b"))
    assert (progress.done, progress.total, progress.executed, progress.reused, progress.failed) == (3, 3, 1, 1, 1)
    assert progress.line().startswith("3/3 tasks · stage b · 1 failed")
    assert not progress.apply(_event(ev.RUN_FINISHED))


def test_track_prints_plain_lines_and_unsubscribes(capsys: Any) -> None:
    bus = ev.EventBus()
    with track(bus.subscribe, {"a": 1}, widget=False) as progress:
        bus.emit(_event(ev.STAGE_PLANNED, "a", total=1))
        bus.emit(_event(ev.TASK_COMMITTED, "a"))
        bus.emit(_event(ev.STAGE_FINISHED, "a"))
        bus.emit(_event(ev.STAGE_FINISHED, "fresh_stage"))
    bus.emit(_event(ev.TASK_COMMITTED, "late"))
    assert progress.done == 1
    out = capsys.readouterr().out
    assert out.startswith("  a: done · 1/1 tasks · stage a") and "fresh_stage" not in out


def test_status_view_colours_and_text() -> None:
    rows = [StageStatus("orders", "source", "fresh", 3, 12, "f" * 64, "2024-01-01 00:00:00 UTC", None, "source"),
            StageStatus("daily", "transform", "stale", 2, 2, None, None, None, "map",
                        ("daily/date=2024-01-03: new", "daily/date=2024-01-04: new")),
            StageStatus("broken", "transform", "failed", 0, None, None, None, "boom\ntrace", "reduce")]
    view = StatusView("default", "/h/.dataflow", rows)
    html = view._repr_html_()
    assert "#1a7f37" in html and "#9a6700" in html and "#cf222e" in html
    assert "daily/date=2024-01-03: new (+1 more)" in html and "boom" in html and "trace" not in html
    text = repr(view)
    assert text.splitlines()[0] == "flow 'default' in /h/.dataflow"
    assert "orders  source" in text and "12" in text
    assert repr(StatusView("x", "h", [])) == "flow 'x' has no stages yet"


def test_plan_query_and_change_texts() -> None:
    assert repr(PlanView(Plan("default", ()))) == "nothing to do: every stage is fresh"
    import pandas as pd

    q = QueryView(pd.DataFrame({"a": [1, 2]}), 2, True, "big")
    assert "first 2 rows (limit 2; more rows exist) · stored in big" in repr(q)
    assert "<table" in q._repr_html_()
    assert describe_change("transform", Change("t", "replaced", ("t", "u"))) == \
        "transform t: replaced; now stale: t, u"
    assert "unchanged" in describe_change("source", Change("s", "unchanged"))
    assert text_table(["a", "bb"], [[1, None]]).splitlines() == ["a  bb", "-  --", "1"]


def test_text_progress_writes_to_the_stream_it_started_with() -> None:
    from jupyter_dataflow.widgets.progress import TextProgress

    stream = io.StringIO()
    view = TextProgress(stream)
    progress = RunProgress(estimate={"a": 1})
    progress.apply(_event(ev.STAGE_PLANNED, "a", total=1))
    view.stage_done("a", progress)
    view.stage_done("a", progress)
    assert stream.getvalue().count("a: done") == 1
