"""The bad-input catalogue: every entry is a user mistake, the precise error it gets,
and a check that neither the graph nor the store changed.

Entries span the Python API, the magics and the CLI; the REST API's entries are in
tests/server/test_api.py (bad names -> 400, unknown flows and stages -> 404, bad
formats and limits -> 400, no token -> 403). docs/bad-inputs.md lists them all.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import jupyter_dataflow as jd
from tests.ipython.conftest import Cells


def snapshot(home: Path) -> tuple[Any, ...]:
    """Everything a mistake could have changed: metadata rows and the store's files."""
    db = sqlite3.connect(home / "metadata.db")
    try:
        tables = tuple(tuple(sorted(map(tuple, db.execute(f"SELECT * FROM {t}").fetchall())))
                       for t in ("flows", "stages", "objects", "current", "stage_state", "source_schema"))
    finally:
        db.close()
    files = []
    for root, _dirs, names in os.walk(home / "store"):
        for n in names:
            p = Path(root) / n
            files.append((str(p.relative_to(home)), hashlib.sha256(p.read_bytes()).hexdigest()))
    return tables, tuple(sorted(files))


@pytest.fixture
def flow(tmp_path: Path, orders: Path) -> jd.Flow:
    f = jd.Flow.open(home=tmp_path / ".dataflow", name="default")
    f.source("orders", path="data/orders", format="csv", partition_by="date", options={"header": "true"})
    f.transform("daily", "SELECT date, sum(amount) AS revenue FROM orders GROUP BY date")
    f.transform("weekly", "SELECT * FROM daily")
    return f


API_CASES: list[tuple[str, Callable[[jd.Flow], Any], type[Exception], str]] = [
    ("SQL syntax error", lambda f: f.transform("x", "SELECT date,\n sum(amount AS r FROM orders"),
     jd.SqlError, "line 2"),
    ("unknown stage", lambda f: f.transform("x", "SELECT * FROM ordrs"), jd.UnknownStageError,
     "did you mean 'orders'?"),
    ("cycle", lambda f: f.transform("daily", "SELECT * FROM weekly"), jd.CycleError, "daily -> weekly -> daily"),
    ("self reference", lambda f: f.transform("daily", "SELECT * FROM daily"), jd.CycleError, "cycle"),
    ("traversal name", lambda f: f.transform("../x", "SELECT * FROM orders"), jd.StageDefinitionError,
     "invalid stage name '../x'"),
    ("reserved name", lambda f: f.transform("select", "SELECT * FROM orders"), jd.StageDefinitionError,
     "reserved word"),
    ("internal name", lambda f: f.transform("__dataflow_x", "SELECT * FROM orders"), jd.StageDefinitionError,
     "reserved for internal use"),
    ("duplicate name in other case", lambda f: f.transform("Daily", "SELECT * FROM orders"),
     jd.StageDefinitionError, "already exists"),
    ("kind change", lambda f: f.source("daily", path="data/orders", format="csv"), jd.StageDefinitionError,
     "a transform with this name exists"),
    ("wrong format", lambda f: f.source("s", path="data/orders", format="xlsx"), jd.StageDefinitionError,
     "format must be one of"),
    ("wrong option type", lambda f: f.source("s", path="x", options={"header": [1]}), jd.StageDefinitionError,
     "option 'header' must be a string"),
    ("bad mode", lambda f: f.transform("x", "SELECT * FROM orders", mode="fast"), jd.StageDefinitionError,
     "mode must be one of"),
    ("impossible forced mode", lambda f: f.transform("x", "SELECT count(DISTINCT amount) AS n FROM orders",
                                                      mode="partial"), jd.StageDefinitionError, "partial"),
    ("bad expectation", lambda f: f.transform("x", "SELECT * FROM orders", expect=["amount >"]), jd.SqlError,
     "SQL error"),
    ("bad expect action", lambda f: f.transform("x", "SELECT * FROM orders", expect_action="ignore"),
     jd.StageDefinitionError, "expect action must be one of"),
    ("not a query", lambda f: f.transform("x", "DELETE FROM orders"), jd.SqlError, "must be a query"),
    ("two statements", lambda f: f.transform("x", "SELECT * FROM orders; SELECT 1"), jd.SqlError,
     "exactly one SQL statement"),
    ("sql and python", lambda f: f.transform("x", "SELECT 1", python="def x(orders): return orders"),
     jd.StageDefinitionError, "exactly one of sql= or python="),
    ("python without inputs", lambda f: f.transform("x", python="def x():\n    return None\n"),
     jd.StageDefinitionError, "at least one input stage"),
    ("python unknown global", lambda f: f.transform("x", python="def x(orders):\n    return helper(orders)\n"),
     jd.StageDefinitionError, "name 'helper' is not defined"),
    ("python unknown input", lambda f: f.transform("x", python="def x(ordrs):\n    return ordrs\n"),
     jd.UnknownStageError, "did you mean 'orders'?"),
    ("sink of a missing stage", lambda f: f.sink("out", source="dialy", path="out"), jd.UnknownStageError,
     "did you mean 'daily'?"),
    ("reading a sink", lambda f: (f.sink("out", source="daily", path="out"),
                                  f.transform("x", "SELECT * FROM out")), jd.StageDefinitionError, "is a sink"),
    ("drop with dependents", lambda f: f.drop("daily"), jd.StageDefinitionError, "weekly reads it"),
    ("drop unknown", lambda f: f.drop("nosuch"), jd.UnknownStageError, "unknown stage 'nosuch'"),
    ("explain unknown partition", lambda f: f.explain("daily", "date=1999-01-01"), jd.DataflowError,
     "no committed partition"),
    ("table never run", lambda f: f.table("daily"), jd.DataflowError, "no committed output yet"),
    ("query unknown stage", lambda f: f.query("SELECT * FROM dayly"), jd.UnknownStageError,
     "did you mean 'daily'?"),
    ("branch over existing", lambda f: (f.branch("dev"), f.branch("dev")), jd.StageDefinitionError,
     "already exists"),
    ("bad flow name", lambda f: jd.Flow.open(home=f.home, name="a b"), jd.StageDefinitionError,
     "invalid flow name"),
    ("bad engine", lambda f: jd.Flow.open(home=f.home, spark=42), jd.ConfigError, "engine URL or a SparkSession"),
    ("bad gc keep", lambda f: f.gc(keep=-1), jd.ConfigError, "keep must be"),
    ("another store root", lambda f: jd.Flow.open(home=f.home, name="other", store="s3a://bucket/x"),
     jd.ConfigError, "keeps its data in"),
    ("bad store root", lambda f: jd.Flow.open(home=f.home, store="s3a://"), jd.ConfigError, "not a URI"),
]


@pytest.mark.parametrize("case", API_CASES, ids=[c[0] for c in API_CASES])
def test_python_api(flow: jd.Flow, case: tuple[str, Callable[[jd.Flow], Any], type[Exception], str]) -> None:
    _name, call, error, message = case
    before = snapshot(flow.home)
    stages = dict(flow.graph.stages)
    with pytest.raises(error) as info:
        call(flow)
    assert message in str(info.value)
    if _name not in ("reading a sink", "branch over existing"):  # their first step is a valid change
        assert snapshot(flow.home) == before
        assert dict(flow.graph.stages) == stages


MAGIC_CASES = [
    ("%%transform x --mode fast\nSELECT * FROM orders", "invalid choice: 'fast'"),
    ("%%transform x --expect-action ignore\nSELECT * FROM orders", "invalid choice: 'ignore'"),
    ("%%source s --format csv", "path"),
    ("%%sink out --from daily --format csv --path out --option header", "--option expects KEY=VALUE"),
    ("%dataflow frobnicate", "unknown %dataflow command 'frobnicate'"),
    ("%dataflow explian daily", "did you mean 'explain'?"),
    ("%dataflow watch maybe", "invalid choice: 'maybe'"),
    ("%dataflow promote nothing AS stage", "nothing"),
    ("%dataflow export out --to zip", "invalid choice: 'zip'"),
    ("%%transform x\nSELECT * FROM weekly WHERE", "SQL error"),
]


@pytest.mark.parametrize("cell,expected", MAGIC_CASES, ids=[c[0].split("\n")[0] for c in MAGIC_CASES])
def test_magics(cells: Cells, tmp_path: Path, orders: Path, cell: str, expected: str) -> None:
    cells("%%source orders --format csv --path data/orders --partition-by date --option header=true")
    cells("%%transform daily\nSELECT date, sum(amount) AS revenue FROM orders GROUP BY date")
    cells("%%transform weekly\nSELECT * FROM daily")
    before = snapshot(tmp_path / ".dataflow")
    message = cells.error(cell)
    assert expected in message, message
    assert "Traceback" not in message
    assert snapshot(tmp_path / ".dataflow") == before


CLI_CASES = [
    (["status", "--flow", "../x"], 2, "invalid flow name"),
    (["plan", "--stage", "dayly"], 2, "did you mean 'daily'?"),
    (["run", "--spark", "mesos://x"], 2, "unknown Spark engine"),
    (["run", "--conf", "novalue"], 2, "--conf expects key=value"),
    (["gc", "--keep", "-3"], 2, "keep must be"),
    (["status", "--bogus"], 2, "unrecognized arguments"),
    (["run", "--store", "s3a://bucket/x"], 2, "keeps its data in"),
]


@pytest.mark.parametrize("args,code,expected", CLI_CASES, ids=[" ".join(c[0]) for c in CLI_CASES])
def test_cli(flow: jd.Flow, args: list[str], code: int, expected: str) -> None:
    before = snapshot(flow.home)
    out = subprocess.run([sys.executable, "-m", "jupyter_dataflow.cli", *args, "--home", str(flow.home)],
                         capture_output=True, text=True, cwd=flow.home.parent, timeout=120)
    assert out.returncode == code, out
    assert expected in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert snapshot(flow.home) == before
