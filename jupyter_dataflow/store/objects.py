"""The object store: content-addressed Parquet directories and their staging area.

Outputs are written by Spark into `staging/<id>/`, verified, and then moved under
`objects/<fp[:2]>/<fp>/`. A committed object is never written again; the metadata
database decides which objects are visible.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from jupyter_dataflow.core.errors import CommitError

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
    if path.startswith(EXTERNAL):
        spec = json.loads(path[len(EXTERNAL):])
        consts = ((spec["key"], spec["value"], spec["type"] or "string"),) if spec.get("key") else ()
        return Location(tuple(spec["files"]), consts, True)
    p = Path(path)
    return Location(tuple(sorted(str(f) for f in p.rglob("*.parquet"))) if p.exists() else ())


def exists(path: str) -> bool:
    """Whether an object's data is still there (sinks record no data: always true)."""
    if not path:
        return True
    if path.startswith(EXTERNAL):
        return all(os.path.exists(f) for f in locate(path).files)
    return os.path.isdir(path)


class ObjectStore:
    """Paths and moves for one home's data store (a local directory)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.staging = root / "staging"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(parents=True, exist_ok=True)

    def object_path(self, fingerprint: str) -> Path:
        return self.objects / fingerprint[:2] / fingerprint

    def new_staging(self, stage: str) -> Path:
        return self.staging / f"{stage}-{uuid.uuid4().hex}"

    @staticmethod
    def uri(path: Path) -> str:
        return "file://" + str(path)

    def verify(self, staged: Path) -> int:
        """Check a staged write is complete; return its size in bytes."""
        if not (staged / "_SUCCESS").exists():
            raise CommitError(f"staged output {staged} is incomplete (no _SUCCESS marker)")
        return sum(p.stat().st_size for p in staged.rglob("*.parquet"))

    @staticmethod
    def size(staged: Path) -> int:
        return sum(p.stat().st_size for p in staged.rglob("*.parquet"))

    def split_batch(self, staged: Path, column: str, count: int) -> dict[int, Path]:
        """Verify a write partitioned by `column` (values 0..count-1); its parts, each complete.

        Every part gets its own `_SUCCESS` marker, so it verifies and publishes like a
        write of its own. A part with no rows has no directory: create it empty.
        """
        self.verify(staged)
        parts = {}
        for i in range(count):
            part = staged / f"{column}={i}"
            part.mkdir(exist_ok=True)
            (part / "_SUCCESS").touch()
            parts[i] = part
        return parts

    def publish(self, staged: Path, fingerprint: str) -> Path:
        """Move a verified staged output to its content address (atomic rename)."""
        target = self.object_path(fingerprint)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            # Same fingerprint means same content: an earlier, unrecorded publish (a crash
            # between move and commit) left it. Replace it with the verified copy.
            shutil.rmtree(target)
        try:
            os.replace(staged, target)
        except OSError as err:
            raise CommitError(f"cannot publish {staged} as {target}: {err}") from err
        return target

    def discard(self, staged: Path) -> None:
        shutil.rmtree(staged, ignore_errors=True)

    def parquet_files(self, object_path: str) -> list[str]:
        return list(locate(object_path).files)
