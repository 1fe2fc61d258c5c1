"""The object store: content-addressed Parquet directories and their staging area.

Outputs are written by Spark into `staging/<id>/`, verified, and then moved under
`objects/<fp[:2]>/<fp>/`. A committed object is never written again; the metadata
database decides which objects are visible.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from jupyter_dataflow.core.errors import CommitError


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
        p = Path(object_path)
        return sorted(str(f) for f in p.rglob("*.parquet")) if p.exists() else []
