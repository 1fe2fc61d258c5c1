"""The README example flow on every real engine gives what local mode gives.

A standalone master and worker, and a Spark Connect server, are started by the
fixtures in `conftest.py`. Each engine runs the flow in a subprocess through the CLI and
the results are read back with the test run's local session:
- classic pyspark allows one SparkContext per process, and the test run has one;
- a Spark Connect session cannot join a process that has a classic one: the builder
  refuses (`SESSION_ALREADY_EXIST`), and `pyspark.sql.functions` picks classic or
  Connect columns for the whole process (from `SPARK_CONNECT_MODE_ENABLED`), so
  the two cannot share one process anyway.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import jupyter_dataflow as jd
from tests.cluster.helpers import ROOT, assert_same_rows, quickstart

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.spark]

STAGES = ("orders", "customers", "daily", "daily_customers", "by_segment")


def _prepare(root: Path, store: str | None = None) -> Path:
    example = quickstart()
    example.make_data(root)
    home = root / ".dataflow"
    with jd.Flow.open(home=home, store=store) as flow:
        example.build(flow)
    return home


@pytest.fixture(scope="module")
def local_results(tmp_path_factory: pytest.TempPathFactory, spark: Any) -> dict[str, Any]:
    """Every stage of the example flow, computed in local mode, as pandas frames."""
    root = tmp_path_factory.mktemp("local-reference")
    home = _prepare(root)
    with jd.Flow.open(home=home, spark=spark) as flow:
        result = flow.run()
        assert result.ok, result.errors
        frames = {name: flow.table(name).toPandas() for name in STAGES}
    frames["daily_out"] = _read_sink(spark, root)
    return frames


def _read_sink(spark: Any, root: Path) -> Any:
    return spark.read.option("header", "true").option("inferSchema", "true").csv(
        "file://" + str(root / "out" / "daily")).toPandas()


def _cli_run(home: Path, url: str, conf: dict[str, str], env: dict[str, str],
             store: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "jupyter_dataflow.cli", "run", "--home", str(home), "--spark", url]
    if store is not None:
        argv += ["--store", store]
    for key, value in conf.items():
        argv += ["--conf", f"{key}={value}"]
    return subprocess.run(argv, cwd=home.parent, env={**env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=600)


def _check_engine(label: str, url: str, conf: dict[str, str], env: dict[str, str], root: Path,
                  local_results: dict[str, Any], spark: Any, store: str | None = None) -> None:
    home = _prepare(root, store)
    proc = _cli_run(home, url, conf, env, store)
    assert proc.returncode == 0, f"run on {url} failed:\n{proc.stdout}\n{proc.stderr}"
    assert " 0 failed" in proc.stdout, proc.stdout
    with jd.Flow.open(home=home, spark=spark) as flow:
        for name in STAGES:
            assert_same_rows(flow.table(name), local_results[name], f"{label} {name}")
    assert_same_rows(_read_sink(spark, root), local_results["daily_out"], f"{label} daily_out")
    again = _cli_run(home, url, conf, env, store)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1].startswith("0 executed"), again.stdout


def test_standalone_cluster_matches_local_mode(standalone_cluster: Any, local_results: dict[str, Any],
                                               tmp_path: Path, spark: Any) -> None:
    _check_engine("standalone", standalone_cluster.url, standalone_cluster.conf(), standalone_cluster.env,
                  tmp_path, local_results, spark)
    # The driver registered with the master and the worker ran its executor.
    assert any((standalone_cluster.work / "worker").glob("app-*/*/stderr")), "no executor ran on the worker"


def test_spark_connect_matches_local_mode(connect_server: Any, local_results: dict[str, Any],
                                          tmp_path: Path, spark: Any) -> None:
    _check_engine("connect", connect_server.url, {}, connect_server.env, tmp_path, local_results, spark)


def test_batched_partitions_match_one_job_per_partition_on_every_engine(
        standalone_cluster: Any, connect_server: Any, tmp_path: Path, spark: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Several partitions per Spark job (the source's ingest, the map transform) must
    # record the very data versions one job per partition records, on every engine.
    monkeypatch.setenv("JUPYTER_DATAFLOW_BATCH", "1")
    with jd.Flow.open(home=_prepare(tmp_path / "alone"), spark=spark) as flow:
        assert flow.run().ok
        alone = _versions(flow)
    monkeypatch.delenv("JUPYTER_DATAFLOW_BATCH")
    for label, engine in (("standalone", standalone_cluster), ("connect", connect_server)):
        home = _prepare(tmp_path / label)
        proc = _cli_run(home, engine.url, engine.conf() if label == "standalone" else {}, engine.env)
        assert proc.returncode == 0, f"{label}:\n{proc.stdout}\n{proc.stderr}"
        with jd.Flow.open(home=home) as flow:
            assert _versions(flow) == alone, label
            for stage in ("orders", "daily_customers"):
                current = flow.meta.current(flow.name, stage, "output")
                starts = {o.started_at for o in flow.meta.objects([c.fingerprint for c in current]).values()}
                assert len(current) == 7 and len(starts) == 1, f"{label} {stage}: not one batch"


def _versions(flow: jd.Flow) -> dict[tuple[str, str], str]:
    # Not by_segment: its floating-point sum depends on the order an engine adds rows in.
    return {(stage, c.partition): c.data_version for stage in STAGES if stage != "by_segment"
            for c in flow.meta.current(flow.name, stage, "output")}


def test_store_roots_given_as_uris_on_standalone_and_connect(standalone_cluster: Any, connect_server: Any,
                                                            local_results: dict[str, Any], tmp_path: Path,
                                                            spark: Any) -> None:
    # Standalone reaches a URI root through Hadoop in the driver's JVM; Connect, which has
    # no JVM on the client, through pyarrow. Both write where every executor can read.
    for label, engine in (("standalone", standalone_cluster), ("connect", connect_server)):
        shared = tmp_path / f"{label}-shared"
        store = "file://" + str(shared / "store")
        conf = engine.conf() if label == "standalone" else {}
        _check_engine(f"{label} store", engine.url, conf, engine.env, tmp_path / label, local_results, spark,
                      store)
        objects = list((shared / "store" / "objects").glob("*/*/_SUCCESS"))
        assert len(objects) >= len(STAGES) - 1, f"{label}: outputs are not under the store root"
        assert not (tmp_path / label / ".dataflow" / "store").exists()


def test_connect_beside_a_classic_session_is_a_clear_error(connect_server: Any, spark: Any) -> None:
    from jupyter_dataflow.core.errors import ConfigError
    from jupyter_dataflow.execute.session import get_session

    with pytest.raises(ConfigError, match="SESSION_ALREADY_EXIST"):
        get_session(connect_server.url)
    assert spark.range(4).selectExpr("sum(id) AS s").collect()[0]["s"] == 6


# Calls that exist only on a classic (JVM-backed) session; through Spark Connect they fail.
CLASSIC_ONLY = re.compile(r"sparkContext|\.rdd\b|_jsc\b|_jvm\b")


def test_engine_uses_no_classic_only_apis() -> None:
    package = ROOT / "jupyter_dataflow"
    found = []
    for folder in ("execute", "reconciler"):
        for path in sorted((package / folder).rglob("*.py")):
            if path == package / "execute" / "session.py":
                continue  # the session factory may look at the classic session it made
            for number, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                if CLASSIC_ONLY.search(code):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "classic-only Spark APIs break Spark Connect:\n" + "\n".join(found)


def test_fixture_start_times_are_reported(standalone_cluster: Any, connect_server: Any) -> None:
    # Printed with -s; recorded so slow machines can be told from hung services.
    print(f"\nstandalone master+worker ready in {standalone_cluster.startup_seconds:.1f}s; "
          f"Spark Connect server ready in {connect_server.startup_seconds:.1f}s")
    assert standalone_cluster.startup_seconds > 0 and connect_server.startup_seconds > 0
    assert os.path.isdir(standalone_cluster.work)
