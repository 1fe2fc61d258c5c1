"""Shared fixtures: one local SparkSession for the whole test run, fresh homes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)  # type: ignore[attr-defined]
os.environ.setdefault("TZ", "UTC")
# Test files are complete before any run reads them: no waiting for young files to
# settle (the policy has its own tests, which set this themselves).
os.environ.setdefault("JUPYTER_DATAFLOW_SOURCE_SETTLE", "0")


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """The one local SparkSession of the test run (small shuffles, UTC, quiet UI)."""
    from jupyter_dataflow.execute.session import get_session

    session = get_session("local[2]", {"spark.sql.shuffle.partitions": "2"})
    yield session


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / ".dataflow"
