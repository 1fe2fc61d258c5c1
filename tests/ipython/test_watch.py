"""`%dataflow watch`: the background reconciler picks up new data by itself."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from jupyter_dataflow.reconciler import events as ev
from tests.ipython.conftest import Cells, write_day

pytestmark = pytest.mark.spark


def wait_until(check: Callable[[], bool], what: str, timeout: float = 300.0) -> None:
    """Poll until `check()` holds; the timeout only guards against a hang."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def test_watch_reconciles_new_files_and_survives_failures(spark_cells: Cells, orders: Path) -> None:
    cells = spark_cells
    cells("%config Dataflow.watch_interval = 0.5")
    cells("%%source orders --format csv --path data/orders --partition-by date --option header=true\n")
    cells("%%transform daily\nSELECT date, count(*) AS n FROM orders GROUP BY date")
    flow = cells.flow
    runs: list[str] = []
    unsubscribe = flow.subscribe(lambda e: runs.append(e.kind) if e.kind in (ev.RUN_STARTED, ev.RUN_FINISHED)
                                 else None)
    watcher = cells.magics.watcher

    def fresh() -> bool:
        return all(s.state == "fresh" for s in flow.status())

    try:
        out = cells("%dataflow watch on")
        assert "watching flow 'default' every 0.5s" in out.stdout
        assert watcher.running
        assert "already on" in cells("%dataflow watch on").stdout
        wait_until(fresh, "the first background run")

        # A new day lands; nobody runs anything. A cell that is busy meanwhile gets no output.
        write_day(orders, "2024-01-04", [(1, 1, 1.0), (2, 2, 2.0)])
        busy = cells("import time\nfor _ in range(20):\n    time.sleep(0.2)\n")
        assert busy.stdout == "" and "dataflow" not in busy.stderr
        wait_until(lambda: fresh() and any(s.partitions == 4 for s in flow.status() if s.name == "daily"),
                   "the new partition to be reconciled")
        assert flow.table("daily").count() == 4

        # The user's run and the watch's are never at the same time.
        cells("%dataflow run")

        # A failing stage does not stop the watch, nor is it retried until something changes.
        cells("%%transform broken --lang python\ndef broken(daily):\n    return 1\n")
        wait_until(lambda: "failed" in watcher.status, "the failure to be reported")
        assert watcher.running
        wait_until(lambda: "waiting for a change" in watcher.status, "the watch to wait for a change")
        assert "watch: waiting for a change" in cells("%dataflow watch").stdout
        cells("%%transform broken --lang python\ndef broken(daily):\n    return daily\n")
        wait_until(fresh, "the fixed stage to be reconciled")
        assert watcher.pins > 0            # its jobs ran in the dataflow scheduler pool

        out = cells("%dataflow watch off")
        assert "watch: off" in out.stdout and not watcher.running
    finally:
        watcher.stop()
        unsubscribe()
    assert runs and runs[0] == ev.RUN_STARTED
    assert all(a != b for a, b in itertools.pairwise(runs)), runs   # runs never overlapped
    assert runs.count(ev.RUN_STARTED) >= 3
