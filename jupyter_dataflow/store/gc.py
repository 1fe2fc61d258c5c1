"""Garbage collection: remove stored outputs that nothing references any more.

An object is kept while any flow or branch points to it, while it is among the last
`keep` versions of a partition, while a task lease protects it, or while its last
use is younger than the grace period (a reader may still hold a DataFrame over it).
Rows are deleted first, in one transaction that re-checks references; files after.
A crash between the two leaves only unreferenced files, which the next gc removes.

Staging directories are written only by a reconciler holding its flow's lease. One
left behind (a killed process, a failed write) is removed here, and at the start of
a run, but only while the caller holds the lease of every flow of the home: then no
writer can be live, whatever the directory's age.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_dataflow.store.metadata import Metadata
from jupyter_dataflow.store.objects import EXTERNAL, ObjectStore

# A run sweeps staging entries untouched for this long (gc uses its own grace period).
STAGING_SETTLE = float(os.environ.get("JUPYTER_DATAFLOW_STAGING_SETTLE", "10"))


@dataclass
class GcReport:
    dry_run: bool
    objects: list[str] = field(default_factory=list)
    staging: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    bytes: int = 0

    def summary(self) -> str:
        verb = "would free" if self.dry_run else "freed"
        return (f"{verb} {self.bytes / 2**20:.1f} MiB: {len(self.objects)} unreferenced outputs, "
                f"{len(self.staging)} abandoned staging directories, {len(self.orphans)} orphaned files")


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def newest_mtime(path: Path) -> float:
    """The latest modification time in a tree (a live Spark write touches nested files)."""
    try:
        newest = path.lstat().st_mtime
    except FileNotFoundError:
        return 0.0
    if path.is_dir() and not path.is_symlink():
        for p in path.rglob("*"):
            try:
                newest = max(newest, p.lstat().st_mtime)
            except FileNotFoundError:
                continue  # removed while we looked
    return newest


def sweep_staging(store: ObjectStore, older_than: float, dry_run: bool = False) -> list[tuple[str, int]]:
    """Remove staging entries untouched since `older_than`; (path, bytes) of each.

    The caller must hold every flow's lease of the home (no reconciler may be writing).
    """
    swept = []
    for staged in sorted(store.staging.iterdir()) if store.staging.exists() else []:
        if newest_mtime(staged) >= older_than:
            continue
        swept.append((str(staged), _size(staged)))
        if dry_run:
            continue
        if staged.is_dir() and not staged.is_symlink():
            shutil.rmtree(staged, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(staged)
    return swept


def candidates(meta: Metadata, keep: int, grace: float, now: float) -> list[tuple[str, str, int]]:
    """(fingerprint, path, bytes) of objects that may be removed."""
    protected = {r["fingerprint"] for r in meta.query("SELECT fingerprint FROM current")}
    # A version among the last `keep` of its partition, or replaced within the grace period, stays.
    for r in meta.query("SELECT fingerprint, ROW_NUMBER() OVER (PARTITION BY flow, stage, role, partition "
                        "ORDER BY committed_at DESC) AS rank, coalesce(replaced_at, ?) AS last_used FROM history",
                        (now,)):
        if r["rank"] <= keep or r["last_used"] > now - grace:
            protected.add(r["fingerprint"])
    leased = {name.split(":", 1)[1] for name in meta.live_leases("task:")}
    out = []
    for r in meta.query("SELECT fingerprint, path, bytes, finished_at FROM objects"):
        fp = r["fingerprint"]
        if fp in protected or fp in leased or r["finished_at"] > now - grace:
            continue
        out.append((fp, r["path"], r["bytes"]))
    return out


def collect(meta: Metadata, store: ObjectStore, *, keep: int = 1, grace: float = 3600.0,
            dry_run: bool = False) -> GcReport:
    """Remove what nothing references; `dry_run` only reports."""
    now = time.time()
    report = GcReport(dry_run)
    doomed = candidates(meta, keep, grace, now)
    if not dry_run and doomed:
        fps = [fp for fp, _, _ in doomed]
        with meta.transaction() as db:
            for i in range(0, len(fps), 500):
                chunk = fps[i:i + 500]
                marks = ",".join("?" * len(chunk))
                db.execute(f"DELETE FROM objects WHERE fingerprint IN ({marks}) "
                           f"AND fingerprint NOT IN (SELECT fingerprint FROM current)", chunk)
            still = {r[0] for r in db.execute("SELECT fingerprint FROM objects")}
        doomed = [d for d in doomed if d[0] not in still]
    for fp, path, size in doomed:
        size = 0 if path.startswith(EXTERNAL) else size
        report.objects.append(fp)
        report.bytes += size
        if not dry_run and path and not path.startswith(EXTERNAL):  # never the user's own files
            shutil.rmtree(path, ignore_errors=True)
    known = {Path(r["path"]).name for r in meta.query("SELECT path FROM objects WHERE path != ''")
             if not r["path"].startswith(EXTERNAL)}
    for prefix in sorted(store.objects.iterdir()) if store.objects.exists() else []:
        for obj in sorted(prefix.iterdir()):
            if obj.name not in known and obj.stat().st_mtime < now - grace:
                report.orphans.append(str(obj))
                report.bytes += _size(obj)
                if not dry_run:
                    shutil.rmtree(obj, ignore_errors=True)
    for path, size in sweep_staging(store, now - grace, dry_run):
        report.staging.append(path)
        report.bytes += size
    return report
