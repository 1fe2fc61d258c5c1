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

Files are reached through the store's filesystem, so a URI root (`s3a://`, `hdfs://`)
is collected like a local one.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from jupyter_dataflow.store import fs as storefs
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


def newest_mtime(fs: storefs.StoreFS, entry: storefs.Entry) -> float:
    """The latest modification time in a tree (a live Spark write touches nested files).

    Object stores keep no directory times (they report 0): there the files alone count.
    """
    newest = entry.mtime
    if entry.is_dir:
        for child in fs.listdir(entry.path):
            newest = max(newest, newest_mtime(fs, child))
    return newest


def sweep_staging(store: ObjectStore, older_than: float, dry_run: bool = False) -> list[tuple[str, int]]:
    """Remove staging entries untouched since `older_than`; (path, bytes) of each.

    The caller must hold every flow's lease of the home (no reconciler may be writing).
    """
    fs = store.fs
    swept = []
    for staged in fs.listdir(store.staging):
        if newest_mtime(fs, staged) >= older_than:
            continue
        swept.append((staged.path, fs.size(staged.path)))
        if not dry_run:
            fs.delete(staged.path)
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
                db.execute(f"DELETE FROM inputs_parts WHERE fingerprint IN ({marks}) "
                           f"AND fingerprint NOT IN (SELECT fingerprint FROM objects)", chunk)
            still = {r[0] for r in db.execute("SELECT fingerprint FROM objects")}
        doomed = [d for d in doomed if d[0] not in still]
    for fp, path, size in doomed:
        size = 0 if path.startswith(EXTERNAL) else size
        report.objects.append(fp)
        report.bytes += size
        if not dry_run:
            store.delete(path)  # never the user's own files (external sources)
    known = {storefs.basename(r["path"]) for r in meta.query("SELECT path FROM objects WHERE path != ''")
             if not r["path"].startswith(EXTERNAL)}
    fs = store.fs
    for prefix in fs.listdir(store.objects):
        for obj in fs.listdir(prefix.path) if prefix.is_dir else []:
            if obj.name not in known and newest_mtime(fs, obj) < now - grace:
                report.orphans.append(obj.path)
                report.bytes += fs.size(obj.path)
                if not dry_run:
                    fs.delete(obj.path)
    for path, size in sweep_staging(store, now - grace, dry_run):
        report.staging.append(path)
        report.bytes += size
    return report
