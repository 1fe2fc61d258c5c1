"""`spark-pipelines run` executes the exported project, twice, and computes what the flow computes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.helpers import assert_same_rows

pytestmark = [pytest.mark.spark, pytest.mark.slow]

TABLES = ("orders", "customers", "daily", "daily_customers", "by_segment", "daily_out")


def _run(project: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(project / "run.sh")], capture_output=True, text=True, env=env, timeout=1200,
                          cwd=project.parent)


def test_exported_pipeline_runs_repeatedly_and_matches_the_flow(example, tmp_path: Path, spark: Any) -> None:
    conf = {"spark.sql.shuffle.partitions": "2", "spark.hadoop.fs.s3a.secret.key": "not-in-any-file"}
    flow = example(spark=spark, conf=conf)
    result = flow.run()
    assert result.ok, result.errors
    project = flow.export(tmp_path / "pipeline", to="spark-pipelines")
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_HADOOP_FS_S3A_SECRET_KEY": "not-in-any-file",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("SPARK_CONF_DIR", None)

    first = _run(project, env)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert "Run is COMPLETED" in first.stdout + first.stderr
    second = _run(project, env)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    assert "Run is COMPLETED" in second.stdout + second.stderr
    assert (project / "metastore_db").is_dir(), "the persistent catalog was not used"

    for name in TABLES:
        table = spark.read.parquet("file://" + str(project / "spark-warehouse" / name))
        assert_same_rows(table, flow.table(name), f"pipeline {name}")
    assert "date" in dict(spark.read.parquet("file://" + str(project / "spark-warehouse" / "orders")).dtypes)


def test_a_failing_expectation_fails_the_pipeline(example, tmp_path: Path, spark: Any) -> None:
    flow = example(spark=spark, conf={})
    flow.transform("daily", "SELECT date, count(*) AS orders, sum(amount) AS revenue FROM orders GROUP BY date",
                   expect=["revenue < 0"], expect_action="warn")
    project = flow.export(tmp_path / "pipeline", to="spark-pipelines")
    sql = project / "transformations" / "daily.sql"
    assert "not checked" in sql.read_text()
    flow.transform("daily", "SELECT date, count(*) AS orders, sum(amount) AS revenue FROM orders GROUP BY date",
                   expect=["revenue < 0"])
    flow.export(project, to="spark-pipelines")
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("SPARK_CONF_DIR", None)
    failed = _run(project, env)
    assert failed.returncode != 0
    assert "expectation revenue < 0 failed" in failed.stdout + failed.stderr
