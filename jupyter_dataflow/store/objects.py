"""The object store: content-addressed Parquet directories and their staging area.

Outputs are written by Spark into `<root>/staging/<id>/`, verified, and then moved
under `<root>/objects/<fp[:2]>/<fp>/`. A committed object is never written again; the
metadata database decides which objects are visible. The root is a local path or any
URI Spark writes to (`s3a://`, `hdfs://`, `file://`); every file operation goes
through `jupyter_dataflow.store.fs`.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from jupyter_dataflow.core.errors import CommitError, ConfigError
from jupyter_dataflow.store import fs as storefs
from jupyter_dataflow.store.fs import StoreFS

EXTERNAL = "external:"


@dataclass(frozen=True)
class Location:
    """Where an object's rows are: Parquet files, plus constant columns to add.

    Objects written by us are directories in the store. A source read in place
    (`ingest=False`) is *external*: its files stay where they are, the store never
    deletes them, and its directory key comes back as a constant column.
    """

    files: tuple[str, ...]
    constants: tuple[tuple[str, str | None, str], ...] = ()   # (column, value, Spark type)
    external: bool = False


def external_path(files: list[str], key: str | None, value: str | None, key_type: str | None) -> str:
    return EXTERNAL + json.dumps({"files": sorted(files), "key": key, "value": value, "type": key_type},
                                 sort_keys=True)


def locate(path: str) -> Location:
    """Where the rows of an external or local object are (see `ObjectStore.locate` for URIs)."""
    if path.startswith(EXTERNAL):
        spec = json.loads(path[len(EXTERNAL):])
        consts = ((spec["key"], spec["value"], spec["type"] or "string"),) if spec.get("key") else ()
        return Location(tuple(spec["files"]), consts, True)
    p = Path(path)
    return Location(tuple(sorted(str(f) for f in p.rglob("*.parquet"))) if p.exists() else ())


class ObjectStore:
    """Paths and moves for one home's data store, under a local path or a URI root.

    Object paths are plain paths under a local root (as they always were, so existing
    homes keep working) and full URIs under any other root. The filesystem for a URI
    root is made on first use by `fs_factory` (it may need the SparkSession), so
    opening a store never starts Spark.
    """

    def __init__(self, root: str | os.PathLike[str], fs_factory: Callable[[], StoreFS] | None = None) -> None:
        self.root = storefs.normalize_root(os.fspath(root))
        self.local = not storefs.is_uri(self.root)
        self.objects = storefs.join(self.root, "objects")
        self.staging = storefs.join(self.root, "staging")
        self._factory = fs_factory
        self._fs: StoreFS | None = storefs.LocalFS() if self.local else None
        self._lock = threading.Lock()
        self._ready = False
        if self.local:
            self._ensure_dirs()

    @property
    def fs(self) -> StoreFS:
        """The filesystem of the root (made on first use for a URI root)."""
        with self._lock:
            if self._fs is None:
                if self._factory is None:
                    raise ConfigError(f"store root {self.root!r} needs a SparkSession to reach its filesystem")
                self._fs = self._factory()
            return self._fs

    def fs_for(self, path: str) -> StoreFS:
        """The filesystem of one stored path: plain paths are local whatever the root."""
        return self.fs if storefs.is_uri(path) else _LOCAL

    def _ensure_dirs(self) -> None:
        if not self._ready:
            self.fs.mkdirs(self.objects)
            self.fs.mkdirs(self.staging)
            self._ready = True

    def object_path(self, fingerprint: str) -> str:
        return storefs.join(self.objects, fingerprint[:2], fingerprint)

    def new_staging(self, stage: str) -> str:
        self._ensure_dirs()
        return storefs.join(self.staging, f"{stage}-{uuid.uuid4().hex}")

    @staticmethod
    def uri(path: str | os.PathLike[str]) -> str:
        """What Spark reads or writes for a stored path (`file://` for plain paths)."""
        return storefs.spark_uri(os.fspath(path))

    def verify(self, staged: str, part: str | None = None) -> int:
        """Check a staged write is complete; return its size in bytes (of `part`, a
        directory inside it, when given: one partition of a batch)."""
        fs = self.fs_for(staged)
        if not fs.exists(storefs.join(staged, "_SUCCESS")):
            raise CommitError(f"staged output {staged} is incomplete (no _SUCCESS marker)")
        return sum(e.size for e in fs.files(part or staged, ".parquet"))

    def publish(self, staged: str, fingerprint: str) -> str:
        """Move a verified staged output to its content address (a rename; atomic where the
        filesystem's directory rename is: local, HDFS; object stores copy)."""
        target = self.object_path(fingerprint)
        fs = self.fs_for(staged)
        if fs.exists(target):
            # Same fingerprint means same content: an earlier, unrecorded publish (a crash
            # between move and commit) left it. Replace it with the verified copy.
            fs.delete(target)
        fs.rename(staged, target)
        return target

    def discard(self, staged: str) -> None:
        self.fs_for(staged).delete(staged)

    def exists(self, path: str) -> bool:
        """Whether an object's data is still there (sinks record no data: always true)."""
        if not path:
            return True
        if path.startswith(EXTERNAL):
            return all(os.path.exists(f) for f in locate(path).files)
        if not storefs.is_uri(path):
            return os.path.isdir(path)
        return self.fs.exists(path)

    def delete(self, path: str) -> None:
        """Remove a stored object (never an external source's files)."""
        if path and not path.startswith(EXTERNAL):
            self.fs_for(path).delete(path)

    def locate(self, path: str) -> Location:
        """Where an object's rows are; lists a URI object through the store's filesystem."""
        if path.startswith(EXTERNAL) or not storefs.is_uri(path):
            return locate(path)
        return Location(tuple(e.path for e in self.fs.files(path, ".parquet")))

    def parquet_files(self, object_path: str) -> list[str]:
        return list(self.locate(object_path).files)


_LOCAL = storefs.LocalFS()
