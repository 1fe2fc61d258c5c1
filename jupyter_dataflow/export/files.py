"""Write an export's files deterministically, and only its own files.

An export is a mapping of relative path to text. Files are written with `\\n` line
ends and a trailing newline, executable scripts get mode 0755, and a manifest
(`.dataflow-export`) records what was written so that exporting again into the same
directory removes the files of stages that no longer exist, and nothing else.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from jupyter_dataflow.core.errors import DataflowError

MANIFEST = ".dataflow-export"


def text(value: str) -> str:
    """Normalize line ends and end with exactly one newline."""
    body = value.replace("\r\n", "\n").rstrip("\n")
    return body + "\n"


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


class _Dumper(yaml.SafeDumper):
    """Block-style YAML; multi-line strings as literal blocks so code stays readable."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", text(value), style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def dump_yaml(data: Any) -> str:
    """YAML in insertion order (callers build dicts in a fixed order)."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                     width=100)


def dump_yaml_all(documents: Iterable[Any]) -> str:
    return "---\n".join(dump_yaml(d) for d in documents)


def _check(rel: str) -> None:
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise DataflowError(f"refusing to write outside the export directory: {rel!r}")


def write_tree(directory: Path, files: Mapping[str, str], executable: Iterable[str] = ()) -> list[Path]:
    """Write `files` under `directory`, replacing what an earlier export there wrote.

    Args:
        directory: the export directory (created when missing).
        files: relative POSIX path -> text.
        executable: relative paths to mark executable.

    Returns:
        The written paths, sorted.

    Raises:
        DataflowError: a path would leave the directory, or the directory is a file.
    """
    if directory.exists() and not directory.is_dir():
        raise DataflowError(f"export target {str(directory)!r} exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    for rel in files:
        _check(rel)
    manifest = directory / MANIFEST
    previous: list[str] = []
    if manifest.exists():
        try:
            previous = list(json.loads(manifest.read_text()).get("files", []))
        except (ValueError, AttributeError):
            previous = []
    for rel in sorted(set(previous) - set(files)):
        _check(rel)
        stale = directory / rel
        if stale.is_file():
            stale.unlink()
            _prune(stale.parent, directory)
    modes = set(executable)
    written = []
    for rel in sorted(files):
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = text(files[rel]).encode()
        if not path.exists() or path.read_bytes() != data:
            tmp = path.with_name(path.name + ".tmp-export")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        path.chmod(0o755 if rel in modes else 0o644)
        written.append(path)
    manifest.write_text(dump_json({"files": sorted(files)}))
    return written


def _prune(folder: Path, root: Path) -> None:
    while folder != root and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
