"""List a source's files and group them into partitions.

A source partition is a Hive-style directory (`date=2024-01-01/`) when the source has
a partition key, otherwise a single file. Each file is identified by path, size,
modification time and, for small files, a content hash, so that a rewrite with the
same size and time is still seen.

What is not data: hidden files (`.x`, `_x`, `*.tmp`, `*.crc`) and empty (0-byte)
files, which hold no rows in any format (a 0-byte Parquet file is one still being
created). What is an error, naming the file: a broken symbolic link, a pipe or other
non-regular file, a file that cannot be opened. A file still being written is caught
at ingest: `settle` waits until the partition's files have been quiet for
JUPYTER_DATAFLOW_SOURCE_SETTLE seconds (default 2), and `check_unchanged` fails the
partition if any file changed between listing and the end of the read.
"""

from __future__ import annotations

import fnmatch
import glob as globmod
import hashlib
import os
import stat
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote

from jupyter_dataflow.core.errors import SourceError
from jupyter_dataflow.core.fingerprint import file_identity

SMALL_FILE = 1 << 20
# A cached hash is trusted only for files last modified well before it was computed;
# within this window a rewrite could keep both size and modification time.
RACY_NS = 2_000_000_000


class HashCache(Protocol):
    def file_hashes(self, paths: Iterable[str]) -> Mapping[str, tuple[int, int, str, int]]: ...
    def put_file_hashes(self, rows: Iterable[tuple[str, int, int, str, int]]) -> None: ...


@dataclass(frozen=True)
class SourceFile:
    path: str          # absolute path or URI Spark can read
    relpath: str       # path relative to the source root, used in identities
    size: int
    mtime_ns: int
    content_hash: str | None

    @property
    def identity(self) -> str:
        return file_identity(self.relpath, self.size, self.mtime_ns, self.content_hash)


@dataclass(frozen=True)
class SourcePartition:
    partition: str                 # "date=2024-01-01" or a relative file path
    value: str | None              # the key's value for Hive partitions
    files: tuple[SourceFile, ...]


def _hidden(name: str) -> bool:
    return name.startswith((".", "_")) or name.endswith((".crc", ".tmp"))


def _hash(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def local_path(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def list_files(path: str, stage: str, cache: HashCache | None = None) -> tuple[str, list[SourceFile]]:
    """The root and the data files of a source path (file, folder or glob), sorted."""
    local = local_path(path)
    if "://" in local:
        raise SourceError(f"listing {path!r} needs a local path; remote stores read with ingest", stage)
    if any(ch in local for ch in "*?["):
        root = os.path.dirname(local.split("*")[0].split("?")[0].split("[")[0]) or "."
        matches = sorted(p for p in globmod.glob(local, recursive=True) if os.path.isfile(p))
        candidates = matches
    elif os.path.isfile(local):
        root = os.path.dirname(os.path.abspath(local))
        candidates = [local]
    elif os.path.isdir(local):
        # Walked from its absolute form, every path found is absolute and normal already.
        root = os.path.abspath(local)
        candidates = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
            candidates.extend(os.path.join(dirpath, f) for f in sorted(filenames) if not _hidden(f))
    else:
        raise SourceError(f"path {path!r} does not exist", stage)
    root = os.path.abspath(root)
    inside = root.rstrip(os.sep) + os.sep
    stats = []
    for p in candidates:
        if _hidden(os.path.basename(p)):
            continue
        absolute = p if p.startswith(inside) else os.path.abspath(p)
        rel = absolute[len(inside):] if absolute.startswith(inside) else os.path.relpath(absolute, root)
        try:
            st = os.stat(p)
        except FileNotFoundError:
            if os.path.islink(p):
                raise SourceError(f"cannot read {rel}: broken symbolic link to {os.readlink(p)!r}", stage) from None
            continue  # removed while listing: the next listing sees it gone
        except OSError as err:
            raise SourceError(f"cannot read {rel}: {err.strerror or err}", stage) from err
        if not stat.S_ISREG(st.st_mode):
            raise SourceError(f"cannot read {rel}: not a regular file (a pipe, socket or device is not data)", stage)
        if st.st_size == 0:
            continue  # no rows in any format; picked up once it has content
        stats.append((absolute, rel, st))
    small = [a for a, _, st in stats if st.st_size <= SMALL_FILE]
    cached = cache.file_hashes(small) if cache is not None and small else {}
    fresh_rows = []
    files = []
    for absolute, rel, st in stats:
        digest = None
        if st.st_size <= SMALL_FILE:
            hit = cached.get(absolute)
            if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns and st.st_mtime_ns < hit[3] - RACY_NS:
                digest = hit[2]
            else:
                try:
                    digest = _hash(absolute)
                except OSError as err:
                    raise SourceError(f"cannot read {rel}: {err.strerror or err}", stage) from err
                fresh_rows.append((absolute, st.st_size, st.st_mtime_ns, digest, time.time_ns()))
        files.append(SourceFile(absolute, rel, st.st_size, st.st_mtime_ns, digest))
    if cache is not None and fresh_rows:
        cache.put_file_hashes(fresh_rows)
    return root, files


def partitions(path: str, partition_by: str | None, stage: str,
               cache: HashCache | None = None) -> dict[str, SourcePartition]:
    """Group a source's files into partitions keyed by partition id."""
    _root, files = list_files(path, stage, cache)
    out: dict[str, list[SourceFile]] = {}
    values: dict[str, str | None] = {}
    for f in files:
        if partition_by is None:
            out[f.relpath] = [f]
            values[f.relpath] = None
            continue
        first = f.relpath.split(os.sep, 1)[0]
        key, sep, value = first.partition("=")
        if not sep or key.lower() != partition_by.lower() or first == f.relpath:
            if fnmatch.fnmatch(first, "*=*"):
                raise SourceError(f"directory {first!r} is not partitioned by {partition_by!r}", stage)
            continue  # a stray file beside the partition directories is not data
        pid = f"{partition_by}={value}"
        out.setdefault(pid, []).append(f)
        values[pid] = unquote(value)
    return {pid: SourcePartition(pid, values[pid], tuple(fs)) for pid, fs in sorted(out.items())}


def settle_seconds() -> float:
    return float(os.environ.get("JUPYTER_DATAFLOW_SOURCE_SETTLE", "2"))


def settle(stage: str, part: SourcePartition, quiet: float | None = None) -> None:
    """Before reading a partition: wait until its files have been quiet for `quiet` seconds.

    A file modified moments ago may still be being written. Waits at most `quiet`
    seconds, then fails the partition (via `check_unchanged`) if any file changed since
    it was listed, so a half-written file is never read as if complete.
    """
    quiet = settle_seconds() if quiet is None else quiet
    newest = max((f.mtime_ns for f in part.files), default=0) / 1e9
    wait = newest + quiet - time.time()
    if wait > 0:
        time.sleep(min(wait, quiet))
    check_unchanged(stage, part)


def check_unchanged(stage: str, part: SourcePartition) -> None:
    """Fail the partition if a file was removed or changed since it was listed."""
    for f in part.files:
        try:
            st = os.stat(local_path(f.path))
        except FileNotFoundError:
            raise SourceError(f"{f.relpath} was removed while the partition was read; the previous version "
                              "is kept, run again", stage, part.partition) from None
        if (st.st_size, st.st_mtime_ns) != (f.size, f.mtime_ns):
            raise SourceError(f"{f.relpath} changed while the partition was read (size {f.size} -> "
                              f"{st.st_size} bytes): it is still being written; the previous version is kept, "
                              "run again once the writer has finished (or write to a hidden name and rename)",
                              stage, part.partition)
