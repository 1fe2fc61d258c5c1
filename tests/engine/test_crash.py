"""A process killed in the middle of a commit loses nothing and shows no half-write."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import jupyter_dataflow as jd
from tests.engine.conftest import make_rows, write_day

pytestmark = [pytest.mark.spark, pytest.mark.slow]

SCRIPT = """
import sys, jupyter_dataflow as jd
flow = jd.Flow.open(home=sys.argv[1], spark="local[1]", conf={"spark.sql.shuffle.partitions": "1"})
flow.source("orders", path="data/orders", format="csv", partition_by="date",
            options={"header": "true", "inferSchema": "true"})
flow.transform("total", "SELECT count(*) AS n, sum(amount) AS revenue FROM orders", mode="reduce")
result = flow.run()
print(result.summary())
sys.exit(0 if result.ok else 1)
"""


def _run(tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    return subprocess.Popen([sys.executable, str(script), str(tmp_path / ".dataflow")], cwd=tmp_path,
                            env={**os.environ, **(env or {})}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def test_kill_during_commit_keeps_the_previous_version(tmp_path: Path, spark) -> None:
    orders = tmp_path / "data" / "orders"
    write_day(orders, "2024-01-01", make_rows(1, 10))
    first = _run(tmp_path)
    assert first.wait(timeout=300) == 0, first.stdout.read() if first.stdout else ""

    flow = jd.Flow.open(home=tmp_path / ".dataflow", spark=spark)
    old = flow.table("total").collect()[0]["n"]
    assert old == 10

    write_day(orders, "2024-01-02", make_rows(2, 7, start=500))
    env = {"JUPYTER_DATAFLOW_FAULT": "commit:total", "JUPYTER_DATAFLOW_FAULT_DIR": str(tmp_path)}
    second = _run(tmp_path, env)
    marker = tmp_path / "commit.reached"
    deadline = time.time() + 300
    while not marker.exists() and second.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert marker.exists(), second.stdout.read() if second.stdout else "process ended before the commit"
    os.killpg(second.pid, signal.SIGKILL)
    second.wait(timeout=60)

    db = sqlite3.connect(tmp_path / ".dataflow" / "metadata.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    reopened = jd.Flow.open(home=tmp_path / ".dataflow", spark=spark)
    assert reopened.table("total").collect()[0]["n"] == old, "a half-committed version became visible"
    assert any(t.stage == "total" for t in reopened.plan().tasks)

    result = reopened.run()
    assert result.ok, result.errors
    assert reopened.table("total").collect()[0]["n"] == 17
    assert reopened.plan().tasks == []
