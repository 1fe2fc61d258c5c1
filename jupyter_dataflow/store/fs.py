"""The filesystem under a data store root: local paths, or URIs through Hadoop or pyarrow.

Everything the object store and gc do to stored files goes through one small
interface (`StoreFS`): make directories, check and delete, list with sizes and
modification times, and rename a verified staging directory into place. Three
implementations:

- `LocalFS`: a root given as a plain path; the `os` module, as always.
- `HadoopFS`: a root with a scheme (`s3a://`, `hdfs://`, `file://`, ...) on a classic
  SparkSession: Hadoop's FileSystem API through the session's JVM, so the store is
  reached with exactly the filesystem and settings (`spark.hadoop.*`) that Spark
  writes the Parquet with.
- `ArrowFS`: a root with a scheme on a Spark Connect session, which has no JVM on the
  client: `pyarrow.fs` (`s3a://` is read as `s3://`).

Paths are strings: plain local paths for `LocalFS`, full URIs otherwise. Nothing here
imports pyspark, and nothing here knows about fingerprints or metadata.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from dataclasses import dataclass
from typing import Any, Protocol

from jupyter_dataflow.core.errors import CommitError, ConfigError

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
# What `pyarrow.fs.FileSystem.from_uri` understands, keyed by the scheme users write.
ARROW_SCHEMES = {"file": "file", "s3": "s3", "s3a": "s3", "gs": "gs", "gcs": "gs", "hdfs": "hdfs",
                 "abfs": "abfs", "abfss": "abfss"}


def scheme(path: str) -> str | None:
    """The URI scheme of `path` (`s3a`, `file`, ...), or None for a plain local path."""
    match = _SCHEME.match(path)
    # A one-letter "scheme" is a Windows drive (C:\...), not a URI.
    return match.group(1).lower() if match and len(match.group(1)) > 1 else None


def is_uri(path: str) -> bool:
    return scheme(path) is not None


def normalize_root(root: str) -> str:
    """A store root in the form it is recorded: absolute path, or URI without a trailing slash.

    `file:/x` (Hadoop's spelling) becomes `file:///x`; `~` in a local path is expanded.
    """
    root = root.strip()
    if not root:
        raise ConfigError("the store root is empty")
    found = scheme(root)
    if found is None:
        return os.path.abspath(os.path.expanduser(root))
    if found == "file":
        rest = root[len("file:"):]
        if not rest.startswith("//"):
            rest = "//" + rest
        if not rest[2:].startswith("/"):
            raise ConfigError(f"store root {root!r}: a file: URI needs an absolute path (file:///...)")
        return "file://" + (rest[2:].rstrip("/") or "/")
    if "://" not in root or not root.split("://", 1)[1].strip("/"):
        raise ConfigError(f"store root {root!r} is not a URI of the form scheme://authority/path")
    return root.rstrip("/")


def join(base: str, *parts: str) -> str:
    """`base/part/...` for local paths and URIs alike."""
    if not is_uri(base):
        return os.path.join(base, *parts)
    return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])


def basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1] if is_uri(path) else os.path.basename(path.rstrip(os.sep))


def parent(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[0] if is_uri(path) else os.path.dirname(path.rstrip(os.sep))


def spark_uri(path: str) -> str:
    """What Spark reads or writes for a store path: `file://` for plain paths, URIs as they are."""
    return path if is_uri(path) else "file://" + os.path.abspath(path)


@dataclass(frozen=True)
class Entry:
    """One listed file or directory."""

    path: str
    name: str
    is_dir: bool
    size: int          # bytes (0 for directories)
    mtime: float       # seconds since the epoch


class StoreFS(Protocol):
    """What the object store and gc need of a filesystem."""

    def mkdirs(self, path: str) -> None: ...
    def touch(self, path: str) -> None: ...                     # an empty file
    def exists(self, path: str) -> bool: ...
    def listdir(self, path: str) -> list[Entry]: ...               # children; [] when missing
    def files(self, path: str, suffix: str = "") -> list[Entry]: ...   # recursive, sorted
    def size(self, path: str) -> int: ...                       # bytes under path; 0 when missing
    def delete(self, path: str) -> None: ...                    # recursive; missing is fine
    def rename(self, src: str, dst: str) -> None: ...           # dst must not exist


class LocalFS:
    """A store root that is a plain local path."""

    def mkdirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def touch(self, path: str) -> None:
        with open(path, "wb"):
            pass

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def listdir(self, path: str) -> list[Entry]:
        try:
            names = sorted(os.listdir(path))
        except (FileNotFoundError, NotADirectoryError):
            return []
        out = []
        for name in names:
            full = os.path.join(path, name)
            try:
                st = os.stat(full)
            except FileNotFoundError:
                continue
            is_dir = os.path.isdir(full)
            out.append(Entry(full, name, is_dir, 0 if is_dir else st.st_size, st.st_mtime))
        return out

    def files(self, path: str, suffix: str = "") -> list[Entry]:
        out = []
        for dirpath, _dirs, names in os.walk(path):
            for name in names:
                if name.endswith(suffix):
                    full = os.path.join(dirpath, name)
                    with contextlib.suppress(FileNotFoundError):
                        st = os.stat(full)
                        out.append(Entry(full, name, False, st.st_size, st.st_mtime))
        return sorted(out, key=lambda e: e.path)

    def size(self, path: str) -> int:
        if os.path.isfile(path):
            return os.path.getsize(path)
        return sum(e.size for e in self.files(path))

    def delete(self, path: str) -> None:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)

    def rename(self, src: str, dst: str) -> None:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.exists(dst):
            raise CommitError(f"cannot move {src} to {dst}: the target exists")
        try:
            os.replace(src, dst)
        except OSError as err:
            raise CommitError(f"cannot move {src} to {dst}: {err}") from err

class HadoopFS:
    """A store root with a scheme, reached through the Hadoop FileSystem of a classic SparkSession."""

    def __init__(self, spark: Any) -> None:
        self._jvm = spark._jvm
        self._conf = spark._jsc.hadoopConfiguration()

    def _fs(self, path: str) -> tuple[Any, Any]:
        p = self._jvm.org.apache.hadoop.fs.Path(path)
        return p.getFileSystem(self._conf), p

    def mkdirs(self, path: str) -> None:
        fs, p = self._fs(path)
        fs.mkdirs(p)

    def touch(self, path: str) -> None:
        fs, p = self._fs(path)
        fs.create(p, True).close()

    def exists(self, path: str) -> bool:
        fs, p = self._fs(path)
        return bool(fs.exists(p))

    def _entries(self, path: str, statuses: Any, suffix: str = "") -> list[Entry]:
        """Entries under `path`, spelled like `path` (Hadoop says `file:/x` for `file:///x`)."""
        fs, p = self._fs(path)
        prefix = str(fs.makeQualified(p).toString()).rstrip("/")
        out = []
        for status in statuses:
            full = str(status.getPath().toString())
            if full.startswith(prefix + "/"):
                full = path.rstrip("/") + full[len(prefix):]
            name = basename(full)
            if not name.endswith(suffix):
                continue
            is_dir = bool(status.isDirectory())
            out.append(Entry(full, name, is_dir, 0 if is_dir else int(status.getLen()),
                             int(status.getModificationTime()) / 1000.0))
        return sorted(out, key=lambda e: e.path)

    def listdir(self, path: str) -> list[Entry]:
        fs, p = self._fs(path)
        if not fs.exists(p):
            return []
        return self._entries(path, fs.listStatus(p))

    def files(self, path: str, suffix: str = "") -> list[Entry]:
        fs, p = self._fs(path)
        if not fs.exists(p):
            return []
        it = fs.listFiles(p, True)
        statuses = []
        while it.hasNext():
            statuses.append(it.next())
        return self._entries(path, statuses, suffix)

    def size(self, path: str) -> int:
        fs, p = self._fs(path)
        if not fs.exists(p):
            return 0
        return int(fs.getContentSummary(p).getLength())

    def delete(self, path: str) -> None:
        fs, p = self._fs(path)
        fs.delete(p, True)

    def rename(self, src: str, dst: str) -> None:
        fs, s = self._fs(src)
        _, d = self._fs(dst)
        # Hadoop moves a directory *into* an existing target directory: refuse instead.
        if fs.exists(d):
            raise CommitError(f"cannot move {src} to {dst}: the target exists")
        fs.mkdirs(d.getParent())
        if not fs.rename(s, d):
            raise CommitError(f"cannot move {src} to {dst}: the filesystem refused the rename")

class ArrowFS:
    """A store root with a scheme on Spark Connect (no JVM on the client): `pyarrow.fs`."""

    def __init__(self, root: str) -> None:
        self._root = root.rstrip("/")
        self._fs, prefix = _arrow_filesystem(self._root)
        self._prefix = prefix.rstrip("/")

    def _path(self, path: str) -> str:
        """The pyarrow path of a URI under the root."""
        if path.rstrip("/") == self._root:
            return self._prefix
        if not path.startswith(self._root + "/"):
            raise ConfigError(f"{path!r} is outside the store root {self._root!r}")
        return self._prefix + path[len(self._root):]

    def _uri(self, arrow: str) -> str:
        return self._root + arrow[len(self._prefix):] if arrow.startswith(self._prefix) else arrow

    def mkdirs(self, path: str) -> None:
        self._fs.create_dir(self._path(path), recursive=True)

    def touch(self, path: str) -> None:
        self._fs.open_output_stream(self._path(path)).close()

    def exists(self, path: str) -> bool:
        import pyarrow.fs as pafs

        return bool(self._fs.get_file_info(self._path(path)).type != pafs.FileType.NotFound)

    def _entry(self, info: Any) -> Entry:
        import pyarrow.fs as pafs

        is_dir = info.type == pafs.FileType.Directory
        mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
        return Entry(self._uri(info.path), info.base_name, is_dir, 0 if is_dir else int(info.size or 0),
                     mtime)

    def _select(self, path: str, recursive: bool) -> list[Any]:
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(self._path(path), allow_not_found=True, recursive=recursive)
        return list(self._fs.get_file_info(selector))

    def listdir(self, path: str) -> list[Entry]:
        return sorted((self._entry(i) for i in self._select(path, False)), key=lambda e: e.name)

    def files(self, path: str, suffix: str = "") -> list[Entry]:
        import pyarrow.fs as pafs

        return sorted((self._entry(i) for i in self._select(path, True)
                       if i.type == pafs.FileType.File and i.base_name.endswith(suffix)), key=lambda e: e.path)

    def size(self, path: str) -> int:
        import pyarrow.fs as pafs

        info = self._fs.get_file_info(self._path(path))
        if info.type == pafs.FileType.File:
            return int(info.size or 0)
        return sum(e.size for e in self.files(path))

    def delete(self, path: str) -> None:
        import pyarrow.fs as pafs

        info = self._fs.get_file_info(self._path(path))
        if info.type == pafs.FileType.Directory:
            self._fs.delete_dir(self._path(path))
        elif info.type == pafs.FileType.File:
            self._fs.delete_file(self._path(path))

    def rename(self, src: str, dst: str) -> None:
        if self.exists(dst):
            raise CommitError(f"cannot move {src} to {dst}: the target exists")
        self.mkdirs(parent(dst))
        try:
            self._fs.move(self._path(src), self._path(dst))
        except OSError as err:
            raise CommitError(f"cannot move {src} to {dst}: {err}") from err

def _arrow_uri(uri: str) -> str:
    found = scheme(uri)
    if found is None:
        return uri
    mapped = ARROW_SCHEMES.get(found)
    if mapped is None:
        raise ConfigError(f"store root {uri!r}: on Spark Connect the store is reached with pyarrow, which "
                          f"supports {', '.join(sorted(ARROW_SCHEMES))}:// roots, not {found}://")
    return mapped + uri[len(found):]


def _arrow_filesystem(uri: str) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(_arrow_uri(uri))
    except (ValueError, OSError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise ConfigError(f"store root {uri!r}: pyarrow cannot open it: {err}") from err


def open_input(path: str) -> Any:
    """A readable binary file for a stored file, local or remote (pyarrow)."""
    if not is_uri(path):
        return open(path, "rb")  # the caller closes it
    fs, inner = _arrow_filesystem(path)
    return fs.open_input_file(inner)


def is_connect(spark: Any) -> bool:
    """Whether a session is a Spark Connect client (no JVM on this side)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def for_root(root: str, spark: Any = None) -> StoreFS:
    """The filesystem for a normalized store root.

    Args:
        root: a plain local path, or a URI.
        spark: the SparkSession, needed for a URI root: a classic session gives
            `HadoopFS`, a Spark Connect session `ArrowFS`.

    Raises:
        ConfigError: a URI root without a session, or a scheme pyarrow cannot open on
            Spark Connect.
    """
    if not is_uri(root):
        return LocalFS()
    if spark is None:
        raise ConfigError(f"store root {root!r} needs a SparkSession to reach its filesystem")
    if is_connect(spark):
        return ArrowFS(root)
    return HadoopFS(spark)
