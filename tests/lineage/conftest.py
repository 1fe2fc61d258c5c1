"""Factories for lineage tests: stage facts without a flow, and never-run flows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import jupyter_dataflow as jd
from jupyter_dataflow.lineage import StageFacts


def struct(*fields: tuple[str, str]) -> str:
    """A recorded schema as Spark writes it (StructType JSON)."""
    return json.dumps({"type": "struct", "fields": [
        {"name": n, "type": t, "nullable": True, "metadata": {}} for n, t in fields]})


def fact(name: str, kind: str = "transform", *, inputs: tuple[str, ...] = (), sql: str | None = None,
         lang: str | None = None, schema: Any = None, state: str = "fresh") -> StageFacts:
    if kind == "transform" and lang is None:
        lang = "sql" if sql is not None else "python"
    return StageFacts(name=name, kind=kind, inputs=inputs, lang=lang, sql=sql, code=sql or "",
                      status={"state": state, "mode": "map", "partitions": 1, "rows": 3,
                              "fingerprint": "ab" * 32, "updated": None, "error": None,
                              "reasons": []}, schema=schema)


@pytest.fixture
def never_run(tmp_path: Path) -> Iterator[jd.Flow]:
    """orders -> daily (SQL) -> top (SELECT *) -> out (sink); daily -> enriched (PySpark).

    Defined only: registering needs no Spark and nothing runs."""
    (tmp_path / "data" / "orders").mkdir(parents=True)
    flow = jd.Flow.open(home=tmp_path / ".dataflow")
    flow.source("orders", path="data/orders", partition_by="date")
    flow.transform("daily", "SELECT date, sum(amount) AS revenue, count(*) AS n FROM orders "
                            "WHERE amount > 0 GROUP BY date")
    flow.transform("top", "SELECT * FROM daily WHERE revenue > 100")
    flow.transform("enriched", python="def enriched(daily):\n    return daily\n")
    flow.sink("out", source="top", path="out/top")
    yield flow
    flow.close()
