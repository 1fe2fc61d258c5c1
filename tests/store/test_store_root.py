"""A data store root away from the home: the README's example flow on a `file://` URI root.

A root with a scheme goes through Hadoop's FileSystem (the shared SparkSession's JVM),
the path a cluster takes for `s3a://` or `hdfs://`; there is no object store here, so
a local `file://` URI in another folder than the home stands in for it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

import jupyter_dataflow as jd
from jupyter_dataflow import cli
from jupyter_dataflow.core.errors import ConfigError
from jupyter_dataflow.store.fs import HadoopFS
from jupyter_dataflow.store.metadata import Metadata
from tests.cluster.helpers import quickstart


@pytest.fixture
def work(tmp_path: Path) -> Path:
    quickstart().make_data(tmp_path / "work", days=3, rows_per_day=200)
    return tmp_path / "work"


def stored_paths(flow: jd.Flow) -> list[str]:
    return [r["path"] for r in flow.meta.query("SELECT path FROM objects WHERE path != ''")]


@pytest.mark.spark
def test_example_flow_on_a_uri_root_runs_reruns_nothing_and_gc_frees_there(
        work: Path, tmp_path: Path, spark: Any) -> None:
    shared = tmp_path / "shared" / "store"
    root = "file://" + str(shared)
    home = work / ".dataflow"
    flow = jd.Flow.open(home=home, spark=spark, store=root + "/")
    try:
        quickstart().build(flow)
        first = flow.run()
        assert first.ok and first.executed, first.errors
        assert isinstance(flow.store.fs, HadoopFS), "a root with a scheme goes through Hadoop"
        paths = stored_paths(flow)
        assert paths and all(p.startswith(root + "/objects/") for p in paths)
        assert all((shared / p[len(root) + 1:] / "_SUCCESS").is_file() for p in paths)
        assert not (home / "store").exists(), "nothing is written to the home's own store"
        assert (work / "out" / "daily").is_dir()

        again = flow.run()
        assert again.ok and again.executed == [] and not flow.plan().tasks
        assert flow.table("daily").count() == 3
        rows = sum(b.num_rows for b in flow.record_batches("daily_customers"))
        assert rows == flow.table("daily_customers").count() > 0
        answer = flow.query_result("SELECT count(*) AS n FROM daily")
        assert answer.engine == "spark" and answer.to_pandas()["n"][0] == 3

        # A new definition of `daily` replaces its outputs; gc frees the old ones from the root.
        old = {p for p in stored_paths(flow)}
        flow.transform("daily", "SELECT date, count(*) AS orders, round(sum(amount), 3) AS revenue "
                                "FROM orders GROUP BY date", expect=["revenue >= 0"])
        changed = flow.run()
        assert changed.ok and {t.stage for t in changed.executed} >= {"daily"}
        # Crash leftovers: a half-written staging directory (no _SUCCESS), an hour old.
        crashed = root + "/staging/daily-crashed"
        spark.range(5).write.parquet(crashed)
        os.remove(shared / "staging" / "daily-crashed" / "_SUCCESS")
        old_time = time.time() - 7200
        for folder, _dirs, names in os.walk(shared / "staging" / "daily-crashed"):
            for name in names:
                os.utime(os.path.join(folder, name), (old_time, old_time))
            os.utime(folder, (old_time, old_time))
        fresh = shared / "staging" / "daily-running"
        fresh.mkdir()

        report = flow.gc(keep=1, grace=60)
        assert report.staging == [crashed] and report.objects == []
        assert not (shared / "staging" / "daily-crashed").exists()
        assert fresh.is_dir(), "a young staging directory may belong to a running write"
        fresh.rmdir()

        report = flow.gc(keep=1, grace=0)
        replaced = old - set(stored_paths(flow))
        assert replaced and len(report.objects) == len(replaced) and report.bytes > 0
        assert all(not (shared / p[len(root) + 1:]).exists() for p in replaced)
        assert all((shared / p[len(root) + 1:]).is_dir() for p in stored_paths(flow))
        assert flow.run().executed == []
    finally:
        flow.close()

    reopened = jd.Flow.open(home=home, spark=spark)  # no store given: the recorded root
    try:
        assert reopened.store_root == root
        assert reopened.run().executed == []
    finally:
        reopened.close()


def test_a_home_refuses_another_store_root_and_changes_nothing(tmp_path: Path) -> None:
    home = tmp_path / ".dataflow"
    with jd.Flow.open(home=home, store="file:///mnt/shared/a") as flow:
        flow.source("orders", path="data/orders", format="csv")
    with pytest.raises(ConfigError, match=r"keeps its data in 'file:///mnt/shared/a', not "
                                          r"'s3a://bucket/b'.*store='file:///mnt/shared/a'"):
        jd.Flow.open(home=home, name="other", store="s3a://bucket/b")
    with pytest.raises(ConfigError, match="keeps its data in"):
        jd.Flow.open(home=home, store=str(tmp_path / "elsewhere"))
    assert jd.list_flows(home) == ["default"], "the refused open created no flow"
    meta = Metadata(home / "metadata.db")
    assert meta.store_root() == "file:///mnt/shared/a"
    meta.close()
    with jd.Flow.open(home=home, store="file:/mnt/shared/a/") as same:  # same root, other spelling
        assert same.store_root == "file:///mnt/shared/a" and list(same.graph.stages) == ["orders"]
        assert same.branch("b").store_root == "file:///mnt/shared/a"
    assert not (tmp_path / "elsewhere").exists() and not (home / "store").exists()


def test_default_root_is_recorded_relative_so_a_home_can_move(tmp_path: Path) -> None:
    home = tmp_path / "a" / ".dataflow"
    with jd.Flow.open(home=home) as flow:
        assert flow.store_root == str(home / "store") and flow.exported_store is None
    meta = Metadata(home / "metadata.db")
    assert meta.store_root() == "store"
    meta.close()
    moved = tmp_path / "b" / ".dataflow"
    moved.parent.mkdir()
    home.rename(moved)
    with jd.Flow.open(home=moved) as flow:
        assert flow.store_root == str(moved / "store")
    with jd.Flow.open(home=moved, store=str(moved / "store")) as flow:  # the default, spelled out
        assert flow.store_root == str(moved / "store")


def test_a_home_made_before_roots_were_recorded_keeps_its_store(tmp_path: Path) -> None:
    home = tmp_path / ".dataflow"
    with jd.Flow.open(home=home):
        pass
    meta = Metadata(home / "metadata.db")
    with meta.transaction() as db:
        db.execute("DELETE FROM meta WHERE key = 'store_root'")
    meta.close()
    with jd.Flow.open(home=home) as flow:
        assert flow.store_root == str(home / "store")


def test_cli_store_option_and_its_refusal(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    home = str(tmp_path / ".dataflow")
    assert cli.main(["status", "--home", home, "--store", "s3a://bucket/flows"]) == 0
    assert cli.main(["status", "--home", home]) == 0
    monkeypatch.setenv(cli.STORE_ENV, "s3a://bucket/flows")
    assert cli.main(["plan", "--home", home]) == 0
    capsys.readouterr()
    assert cli.main(["gc", "--home", home, "--store", "s3a://bucket/other", "--dry-run"]) == 2
    assert "keeps its data in 's3a://bucket/flows'" in capsys.readouterr().err


def test_exports_carry_a_chosen_store_root_only(work: Path, tmp_path: Path) -> None:
    with jd.Flow.open(home=work / ".dataflow") as flow:
        quickstart().build(flow)
        plain = json.loads((flow.export(tmp_path / "plain", to="bundle") / "flow.json").read_text())
        assert plain["store"] is None
        chosen = flow.export(tmp_path / "chosen", to="k8s", store="s3a://bucket/prefix/")
    doc = json.loads((chosen / "bundle" / "flow.json").read_text())
    assert doc["store"] == "s3a://bucket/prefix"
    manifest = (chosen / "k8s" / "run-once.yaml").read_text()
    assert "- --store\n" in manifest and "- s3a://bucket/prefix\n" in manifest
    assert "s3a://bucket/prefix" in (chosen / "README.md").read_text()
    plain_k8s = flow.export(tmp_path / "plain-k8s", to="k8s")
    assert "--store" not in (plain_k8s / "k8s" / "run-once.yaml").read_text()
    assert "s3a://BUCKET/PREFIX" in (plain_k8s / "README.md").read_text()

    other = tmp_path / "other"
    with jd.Flow.open(home=other / ".dataflow", store="s3a://bucket/flows") as flow:
        quickstart().build(flow)
        assert json.loads((flow.export(tmp_path / "o", to="bundle") / "flow.json").read_text())["store"] \
            == "s3a://bucket/flows"


def test_a_bundle_runs_with_its_store_root_unless_told_otherwise(work: Path, tmp_path: Path) -> None:
    from jupyter_dataflow.export import bundle

    with jd.Flow.open(home=work / ".dataflow", store="s3a://bucket/flows") as flow:
        quickstart().build(flow)
        out = flow.export(tmp_path / "b", to="bundle")
    loaded = bundle.open_bundle(out, home=tmp_path / "run" / ".dataflow")
    try:
        assert loaded.store_root == "s3a://bucket/flows"
    finally:
        loaded.close()
    with pytest.raises(ConfigError, match="keeps its data in"):
        bundle.open_bundle(out, home=tmp_path / "run" / ".dataflow", store="file:///mnt/x")
    moved = bundle.open_bundle(out, home=tmp_path / "run2" / ".dataflow", store="file:///mnt/x")
    try:
        assert moved.store_root == "file:///mnt/x"
    finally:
        moved.close()
