"""Shared pieces of cluster and export tests: the README example flow and table comparison."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]


def quickstart() -> ModuleType:
    """The README's example flow module (`examples/quickstart.py`): `build` and `make_data`."""
    path = ROOT / "examples" / "quickstart.py"
    spec = importlib.util.spec_from_file_location("dataflow_quickstart_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def canonical_frame(df: Any) -> pd.DataFrame:
    """A pandas frame in a canonical row and column order, dates as ISO strings."""
    frame = df if isinstance(df, pd.DataFrame) else df.toPandas()
    frame = frame[sorted(frame.columns)].copy()
    for col in frame.columns:
        if frame[col].dtype == object:
            frame[col] = frame[col].map(lambda v: v.isoformat() if hasattr(v, "isoformat") else v)
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def assert_same_rows(got: Any, expected: Any, what: str) -> None:
    """Same columns and rows, floats compared to 1e-9 relative (sums may add in another order)."""
    g, e = canonical_frame(got), canonical_frame(expected)
    assert list(g.columns) == list(e.columns), f"{what}: columns {list(g.columns)} != {list(e.columns)}"
    assert len(g) == len(e), f"{what}: {len(g)} rows != {len(e)}"
    pd.testing.assert_frame_equal(g, e, check_dtype=False, check_exact=False, rtol=1e-9, obj=what)
