"""The store filesystem layer: the same operations through os, Hadoop and pyarrow.

Every implementation runs here against local `file:` URIs (there is no network and
no object store on the test machine); Hadoop's goes through the JVM of the shared
SparkSession, exactly as it would for `s3a://` or `hdfs://`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jupyter_dataflow.core.errors import CommitError, ConfigError
from jupyter_dataflow.store import fs as storefs
from jupyter_dataflow.store.objects import ObjectStore


def _local(tmp_path: Path, spark: Any) -> tuple[storefs.StoreFS, str]:
    return storefs.LocalFS(), str(tmp_path / "root")


def _hadoop(tmp_path: Path, spark: Any) -> tuple[storefs.StoreFS, str]:
    return storefs.HadoopFS(spark), "file://" + str(tmp_path / "root")


def _arrow(tmp_path: Path, spark: Any) -> tuple[storefs.StoreFS, str]:
    root = "file://" + str(tmp_path / "root")
    return storefs.ArrowFS(root), root


IMPLEMENTATIONS: dict[str, Callable[[Path, Any], tuple[storefs.StoreFS, str]]] = {
    "local": _local, "hadoop": _hadoop, "arrow": _arrow}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def layer(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[storefs.StoreFS, str]:
    spark = request.getfixturevalue("spark") if request.param == "hadoop" else None
    return IMPLEMENTATIONS[request.param](tmp_path, spark)


def disk(path: str) -> Path:
    return Path(path[len("file://"):] if path.startswith("file://") else path)


def write_object(root: Path, name: str, sizes: tuple[int, ...] = (10, 20), success: bool = True) -> Path:
    folder = root / name
    (folder / "date=1").mkdir(parents=True)
    for i, n in enumerate(sizes):
        (folder / "date=1" / f"part-{i}.parquet").write_bytes(b"x" * n)
    if success:
        (folder / "_SUCCESS").write_bytes(b"\n")
    return folder


@pytest.mark.spark
def test_mkdirs_exists_listdir_files_and_sizes(layer: tuple[storefs.StoreFS, str]) -> None:
    fs, root = layer
    assert not fs.exists(root) and fs.listdir(root) == [] and fs.files(root) == [] and fs.size(root) == 0
    staging = storefs.join(root, "staging")
    fs.mkdirs(staging)
    assert fs.exists(staging) and disk(staging).is_dir()
    write_object(disk(staging), "daily-1")
    entries = fs.listdir(staging)
    assert [(e.name, e.is_dir) for e in entries] == [("daily-1", True)]
    assert entries[0].path == storefs.join(staging, "daily-1")
    assert abs(entries[0].mtime - time.time()) < 120
    parquet = fs.files(storefs.join(staging, "daily-1"), ".parquet")
    assert [e.name for e in parquet] == ["part-0.parquet", "part-1.parquet"]
    assert [e.size for e in parquet] == [10, 20]
    assert all(e.path.startswith(storefs.join(staging, "daily-1", "date=1")) for e in parquet)
    assert fs.size(storefs.join(staging, "daily-1")) == 31   # every file, the marker included
    marker = storefs.join(staging, "daily-1", "date=1", "_SUCCESS")
    fs.touch(marker)
    assert disk(marker).is_file() and disk(marker).stat().st_size == 0


@pytest.mark.spark
def test_rename_moves_a_directory_and_refuses_an_existing_target(layer: tuple[storefs.StoreFS, str]) -> None:
    fs, root = layer
    staged = storefs.join(root, "staging", "s-1")
    write_object(disk(storefs.join(root, "staging")), "s-1")
    target = storefs.join(root, "objects", "ab", "abc")
    fs.rename(staged, target)  # the parent is created
    assert not fs.exists(staged) and fs.exists(storefs.join(target, "_SUCCESS"))
    write_object(disk(storefs.join(root, "staging")), "s-2")
    with pytest.raises(CommitError, match="exists"):
        fs.rename(storefs.join(root, "staging", "s-2"), target)
    # Not moved into the target either (what Hadoop's rename would do with a directory).
    assert not fs.exists(storefs.join(target, "s-2")) and fs.exists(storefs.join(root, "staging", "s-2"))


@pytest.mark.spark
def test_delete_is_recursive_and_quiet_when_missing(layer: tuple[storefs.StoreFS, str]) -> None:
    fs, root = layer
    write_object(disk(root), "obj")
    fs.delete(storefs.join(root, "obj"))
    assert not disk(root).joinpath("obj").exists()
    fs.delete(storefs.join(root, "obj"))  # already gone: nothing to do
    (disk(root) / "single").write_bytes(b"abc")
    assert fs.size(storefs.join(root, "single")) == 3
    fs.delete(storefs.join(root, "single"))
    assert not (disk(root) / "single").exists()


@pytest.mark.spark
@pytest.mark.parametrize("impl", ["hadoop", "arrow"])
def test_object_store_on_a_uri_root_stages_verifies_and_publishes(impl: str, tmp_path: Path,
                                                                  spark: Any) -> None:
    root = "file://" + str(tmp_path / "shared" / "store") + "/"
    store = ObjectStore(root, lambda: storefs.HadoopFS(spark) if impl == "hadoop" else storefs.ArrowFS(store.root))
    assert store.root == root.rstrip("/") and not store.local
    assert not (tmp_path / "shared").exists(), "opening a URI store touches nothing"
    staged = store.new_staging("daily")
    assert staged.startswith(root + "staging/daily-") and store.uri(staged) == staged
    write_object(disk(storefs.parent(staged)), storefs.basename(staged))
    assert store.verify(staged) == 30
    path = store.publish(staged, "ab" * 32)
    assert path == root + "objects/ab/" + "ab" * 32
    assert store.exists(path) and not store.exists(staged)
    assert [os.path.basename(f) for f in store.parquet_files(path)] == ["part-0.parquet", "part-1.parquet"]
    store.delete(path)
    assert not store.exists(path)
    incomplete = store.new_staging("daily")
    write_object(disk(storefs.parent(incomplete)), storefs.basename(incomplete), success=False)
    with pytest.raises(CommitError, match="incomplete"):
        store.verify(incomplete)
    store.discard(incomplete)
    assert not disk(incomplete).exists()


def test_roots_are_normalized_and_bad_ones_refused(tmp_path: Path) -> None:
    assert storefs.normalize_root("s3a://bucket/prefix/") == "s3a://bucket/prefix"
    assert storefs.normalize_root("file:/mnt/shared/x") == "file:///mnt/shared/x"
    assert storefs.normalize_root("file:///mnt/shared/x/") == "file:///mnt/shared/x"
    assert storefs.normalize_root(str(tmp_path / "a" / ".." / "b")) == str(tmp_path / "b")
    for bad in ("", "   ", "s3a://", "file:relative/x", "hdfs:/no-authority"):
        with pytest.raises(ConfigError):
            storefs.normalize_root(bad)
    assert storefs.scheme("C:\\data") is None and storefs.scheme("/data") is None
    assert storefs.join("s3a://b/p", "objects", "ab") == "s3a://b/p/objects/ab"
    assert storefs.spark_uri("/x/y") == "file:///x/y" and storefs.spark_uri("s3a://b/x") == "s3a://b/x"


def test_without_a_session_a_uri_root_has_no_filesystem_and_local_needs_none(tmp_path: Path) -> None:
    assert isinstance(storefs.for_root(str(tmp_path)), storefs.LocalFS)
    with pytest.raises(ConfigError, match="SparkSession"):
        storefs.for_root("s3a://bucket/prefix")
    store = ObjectStore("s3a://bucket/prefix")
    with pytest.raises(ConfigError, match="SparkSession"):
        store.exists("s3a://bucket/prefix/objects/ab/abc")


def test_arrow_names_the_schemes_spark_connect_supports() -> None:
    with pytest.raises(ConfigError, match=r"on Spark Connect .* supports .*s3a.*not wasb://"):
        storefs.ArrowFS("wasb://container@account/prefix")


@pytest.mark.spark
def test_a_classic_session_gives_hadoop_for_any_uri(spark: Any, tmp_path: Path) -> None:
    assert isinstance(storefs.for_root("file://" + str(tmp_path), spark), storefs.HadoopFS)
    assert isinstance(storefs.for_root(str(tmp_path), spark), storefs.LocalFS)
    assert not storefs.is_connect(spark)

