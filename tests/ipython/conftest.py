"""An in-process IPython shell with the dataflow magics, and a cell runner that fails
the test when a cell raises."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from IPython.utils.capture import CapturedIO, capture_output

import jupyter_dataflow.ipython as jdi


@pytest.fixture(scope="session")
def ip() -> Any:
    """The one test IPython shell of the run."""
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython()
    if shell is None:  # already started by another test module
        from IPython.terminal.interactiveshell import TerminalInteractiveShell

        shell = TerminalInteractiveShell.instance()
    # Compute HTML too, as a notebook frontend would ask for it.
    if "text/html" not in shell.display_formatter.active_types:
        shell.display_formatter.active_types = [*shell.display_formatter.active_types, "text/html"]
    return shell


@dataclass
class Cells:
    """Runs cells in the shell and captures what they print and display."""

    ip: Any

    def __call__(self, source: str) -> CapturedIO:
        """Run a cell that must succeed; return its captured output."""
        with capture_output() as io:
            result = self.ip.run_cell(source, store_history=False)
        if not result.success:
            error = result.error_before_exec or result.error_in_exec
            pytest.fail(f"cell raised {error!r}\n--- cell:\n{source}\n--- stdout:\n{io.stdout}\n"
                        f"--- stderr:\n{io.stderr}")
        return io

    def error(self, source: str) -> str:
        """Run a cell that must fail with a short message; return that message."""
        with capture_output() as io:
            result = self.ip.run_cell(source, store_history=False)
        error = result.error_before_exec or result.error_in_exec
        assert error is not None, f"cell did not fail:\n{source}\n{io.stdout}"
        text = io.stdout + io.stderr
        assert "Traceback" not in text and "JVM stacktrace" not in text, text
        assert type(error).__name__ == "UsageError", f"{error!r}\n{text}"
        return str(error)

    @property
    def magics(self) -> Any:
        return self.ip.magics_manager.registry["DataflowMagics"]

    @property
    def flow(self) -> Any:
        return jdi.current_flow(self.ip)


def html_of(io: CapturedIO) -> str:
    return "\n".join(o.data.get("text/html", "") for o in io.outputs)


def text_of(io: CapturedIO) -> str:
    return io.stdout + "\n".join(o.data.get("text/plain", "") for o in io.outputs)


def write_day(root: Path, day: str, rows: list[tuple[int, int, float]], name: str = "part-0.csv") -> Path:
    folder = root / f"date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("order_id,customer_id,amount\n" + "".join(f"{o},{c},{a}\n" for o, c, a in rows))
    return path


@pytest.fixture
def orders(tmp_path: Path) -> Path:
    """Three days of small orders under tmp_path/data/orders/date=..."""
    root = tmp_path / "data" / "orders"
    for d in range(1, 4):
        write_day(root, f"2024-01-0{d}", [(100 * d + i, i % 3, float(10 * d + i)) for i in range(4)])
    return root


@pytest.fixture
def cells(ip: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cells]:
    """A freshly loaded extension whose flow lives in tmp_path/.dataflow (Spark: local[2] by URL)."""
    monkeypatch.chdir(tmp_path)
    ip.extension_manager.unload_extension("jupyter_dataflow")
    ip.config.pop("Dataflow", None)   # %config also records settings in the shell's config
    runner = Cells(ip)
    runner("%load_ext jupyter_dataflow")
    runner(f"%dataflow open --home {tmp_path / '.dataflow'} --name default --spark local[2]")
    yield runner
    ip.extension_manager.unload_extension("jupyter_dataflow")
    ip.config.pop("Dataflow", None)
    for key in [k for k in ip.user_ns if k.startswith("_dataflow") or k.startswith("df_")]:
        ip.user_ns.pop(key, None)
    ip.rl_next_input = None


@pytest.fixture
def spark_cells(cells: Cells, spark: Any, tmp_path: Path) -> Cells:
    """`cells` whose flow runs on the shared test SparkSession (set through %config)."""
    cells.ip.user_ns["_test_spark"] = spark
    cells(f"%dataflow open --home {tmp_path / '.dataflow'} --spark _test_spark")
    assert cells.flow.spark is spark
    return cells
