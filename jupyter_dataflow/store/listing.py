"""List a source's files and group them into partitions.

A source partition is a Hive-style directory (`date=2024-01-01/`) when the source has
a partition key, otherwise a single file. Each file is identified by path, size,
modification time and, for small files, a content hash, so that a rewrite with the
same size and time is still seen.
"""

from __future__ import annotations

import fnmatch
import glob as globmod
import hashlib
import os
from dataclasses import dataclass
from urllib.parse import unquote

from jupyter_dataflow.core.errors import SourceError
from jupyter_dataflow.core.fingerprint import file_identity

SMALL_FILE = 1 << 20


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


def _local(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def list_files(path: str, stage: str) -> tuple[str, list[SourceFile]]:
    """The root and the data files of a source path (file, folder or glob), sorted."""
    local = _local(path)
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
        root = local
        candidates = []
        for dirpath, dirnames, filenames in os.walk(local):
            dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
            candidates.extend(os.path.join(dirpath, f) for f in sorted(filenames) if not _hidden(f))
    else:
        raise SourceError(f"path {path!r} does not exist", stage)
    root = os.path.abspath(root)
    files = []
    for p in candidates:
        if _hidden(os.path.basename(p)):
            continue
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue  # removed while listing: the next listing sees it gone
        absolute = os.path.abspath(p)
        digest = _hash(absolute) if st.st_size <= SMALL_FILE else None
        files.append(SourceFile(absolute, os.path.relpath(absolute, root), st.st_size, st.st_mtime_ns, digest))
    return root, files


def partitions(path: str, partition_by: str | None, stage: str) -> dict[str, SourcePartition]:
    """Group a source's files into partitions keyed by partition id."""
    _root, files = list_files(path, stage)
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
