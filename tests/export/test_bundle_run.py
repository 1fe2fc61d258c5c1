"""A bundle loaded into a new home reconciles on real Spark like the flow it came from."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jupyter_dataflow.core.errors import ConfigError
from jupyter_dataflow.export import bundle
from tests.cluster.helpers import ROOT, assert_same_rows

pytestmark = pytest.mark.spark

STAGES = ("orders", "customers", "daily", "daily_customers", "by_segment")
ENV = {"SPARK_HADOOP_FS_S3A_SECRET_KEY": "s", "SPARK_HADOOP_FS_S3A_ACCESS_KEY": "a",
       "DATAFLOW_BIG_OUT_PASSWORD": "p"}


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)


def _late_day(data: Path) -> None:
    day = data / "orders" / "date=2024-01-09"
    day.mkdir(parents=True)
    (day / "part-0.csv").write_text("order_id,customer_id,amount\n900001,3,12.5\n900002,4,7.25\n")


def test_bundle_reconciles_incrementally_and_matches_its_flow(example, tmp_path: Path, spark: Any,
                                                              credentials: None) -> None:
    flow = example(spark=spark)
    assert flow.run().ok
    out = flow.export(tmp_path / "bundle", to="bundle")
    shutil.copytree(flow.home.parent / "data", out / "data")

    loaded, report = bundle.load(out, spark=spark)
    try:
        assert loaded.home == out / ".dataflow"
        assert report.changed == list(flow.graph.order()) and report.edited == [] and report.dropped == []
        for name in flow.graph.order():
            assert loaded.graph[name].definition_hash() == flow.graph[name].definition_hash()
        first = loaded.run()
        assert first.ok, first.errors
        for name in STAGES:
            assert_same_rows(loaded.table(name), flow.table(name), f"bundle {name}")
        assert loaded.run().executed == []

        _late_day(out / "data")
        third = loaded.run()
        assert third.ok, third.errors
        partitioned = [t for t in third.executed if t.partition]
        assert partitioned and {t.partition for t in partitioned} == {"date=2024-01-09"}
        assert {t.stage for t in third.executed if t.stage in ("orders", "customers")} == {"orders"}
        assert loaded.run().executed == []
    finally:
        loaded.close()

    again, report = bundle.load(out, spark=spark)
    assert report.changed == [] and report.dropped == []
    again.close()


def test_data_root_and_an_edited_code_file(example, tmp_path: Path, spark: Any, credentials: None) -> None:
    flow = example(spark=spark)
    out = flow.export(tmp_path / "bundle", to="bundle")
    home = tmp_path / "elsewhere" / ".dataflow"
    loaded, _ = bundle.load(out, home=home, spark=spark, data_root=flow.home.parent)
    try:
        assert loaded.graph["orders"].path == str(flow.home.parent / "data" / "orders")
        assert loaded.run().ok
    finally:
        loaded.close()
    code = out / "stages" / "daily.sql"
    code.write_text(code.read_text().replace("count(*) AS orders", "count(*) AS n_orders"))
    edited, report = bundle.load(out, home=home, spark=spark, data_root=flow.home.parent)
    try:
        assert report.changed == ["daily"]
        planned = {t.stage for t in edited.plan().tasks}
        assert planned == {"daily", "daily_out"}
        assert edited.run().ok
        assert "n_orders" in edited.table("daily").columns
    finally:
        edited.close()


def test_stages_missing_from_the_bundle_are_dropped(example, tmp_path: Path, spark: Any, credentials: None) -> None:
    rich = example(rich=True, spark=spark)
    out = rich.export(tmp_path / "rich", to="bundle")
    loaded, _ = bundle.load(out, home=tmp_path / "h" / ".dataflow", spark=spark)
    assert "scaled_daily" in loaded.graph
    loaded.close()
    rich.drop("big_out")
    rich.drop("big_days")
    rich.drop("scaled_daily")
    rich.export(out, to="bundle")
    smaller, report = bundle.load(out, home=tmp_path / "h" / ".dataflow", spark=spark)
    assert sorted(report.dropped) == ["big_days", "big_out", "scaled_daily"]
    assert "scaled_daily" not in smaller.graph
    smaller.close()


def test_helpers_of_a_python_stage_survive_the_round_trip(example, tmp_path: Path, spark: Any,
                                                          credentials: None) -> None:
    rich = example(rich=True, spark=spark)
    out = rich.export(tmp_path / "rich", to="bundle")
    loaded, _ = bundle.load(out, home=tmp_path / "h" / ".dataflow", spark=spark,
                            data_root=rich.home.parent)
    try:
        assert loaded.graph["scaled_daily"].text == rich.graph["scaled_daily"].text
        result = loaded.run("scaled_daily")
        assert result.ok, result.errors
        rows = loaded.table("scaled_daily").orderBy("date").collect()
        assert rows and all(abs(r["scaled"] - 3 * r["revenue"]) < 1e-9 for r in rows)
    finally:
        loaded.close()


def test_missing_credentials_stop_the_load(example, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flow = example()
    out = flow.export(tmp_path / "b", to="bundle")
    for key in ENV:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError, match="SPARK_HADOOP_FS_S3A_ACCESS_KEY, SPARK_HADOOP_FS_S3A_SECRET_KEY"):
        bundle.load(out)
    assert not (out / ".dataflow").exists()


@pytest.mark.slow
def test_cli_runs_a_bundle_directory_twice(example, tmp_path: Path) -> None:
    flow = example(conf={"spark.sql.shuffle.partitions": "2"})
    out = flow.export(tmp_path / "bundle", to="bundle")
    shutil.copytree(flow.home.parent / "data", out / "data")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "jupyter_dataflow.cli", "run", str(out), "--spark", "local[1]", "--quiet"]
    first = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "(registered customers, orders, daily" in first.stdout and " 0 failed" in first.stdout
    second = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "(unchanged)" in second.stdout
    assert second.stdout.strip().splitlines()[-1].startswith("0 executed")
    assert (out / "out" / "daily").is_dir()
