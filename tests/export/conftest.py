"""Factories for export tests: the README example flow and a richer one, registered without Spark."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import jupyter_dataflow as jd
from tests.cluster.helpers import quickstart

SECRET = "hunter2-do-not-export"
CONF = {"spark.sql.shuffle.partitions": "2", "spark.hadoop.fs.s3a.secret.key": SECRET,
        "spark.hadoop.fs.s3a.access.key": "AKIA-not-exported", "spark.executor.memory": "1g"}


def scaled(frame, factor):  # a notebook-style helper
    from pyspark.sql import functions as F

    return frame.withColumn("scaled", F.col("revenue") * factor)


FACTOR = 3


def scaled_daily(daily):
    return scaled(daily, FACTOR)


def build_rich(flow: jd.Flow) -> None:
    """The example flow plus a helper-using PySpark stage, a dropping expectation and sink options."""
    quickstart().build(flow)
    flow.transform("scaled_daily", python=scaled_daily)
    flow.transform("big_days", "SELECT date, revenue FROM daily WHERE orders > 0",
                   expect=["revenue < 1000000"], expect_action="drop")
    flow.sink("big_out", source="big_days", path="out/big", format="json",
              options={"compression": "none", "password": SECRET})


@pytest.fixture
def example(tmp_path: Path) -> Iterator[Callable[..., jd.Flow]]:
    """Open a flow in `tmp_path/work/.dataflow` with the example's data; `rich=True` adds more stages."""
    opened: list[jd.Flow] = []

    def factory(rich: bool = False, conf: dict[str, str] | None = None, spark: Any = None,
                root: Path | None = None) -> jd.Flow:
        work = root or tmp_path / "work"
        if not (work / "data").exists():
            quickstart().make_data(work, days=3, rows_per_day=200)
        flow = jd.Flow.open(home=work / ".dataflow", conf=CONF if conf is None else conf, spark=spark)
        opened.append(flow)
        (build_rich if rich else quickstart().build)(flow)
        return flow

    yield factory
    for f in opened:
        f.close()


def tree(directory: Path) -> dict[str, bytes]:
    """Every file under a directory (relative path -> bytes)."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}
