"""Read a flow out of a notebook file without executing it.

The `%%source`, `%%transform` and `%%sink` cells (and `%source`/`%sink` lines,
`%dataflow open|drop|promote`, `%%query NAME` and `%config Dataflow.*`) are parsed
with the same option parsers the magics use, in notebook order, and replayed on a
scratch flow through the `Flow` facade, so every definition is checked exactly as the
kernel would check it. Python transforms see the imports, function definitions and
literal constants of the plain code cells above them (defined, never called); no
other notebook code runs. This module never touches a real home or Spark.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import shlex
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_dataflow.core.errors import DataflowError
from jupyter_dataflow.export import pycode
from jupyter_dataflow.export.spec import FlowSpec, build

STAGE_MAGICS = ("source", "transform", "sink")


@dataclass
class Cell:
    index: int          # 1-based position among the notebook's code cells
    source: str


@dataclass
class NotebookSettings:
    """What `%dataflow open` and `%config Dataflow.*` set, as the kernel would see it."""

    home: str = ".dataflow"
    name: str = "default"
    spark: str | None = None
    conf: dict[str, str] = field(default_factory=dict)
    store: str | None = None


def code_cells(path: Path) -> list[Cell]:
    """The code cells of a notebook file, in order."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataflowError(f"cannot read notebook {str(path)!r}: {err}") from None
    cells = doc.get("cells") if isinstance(doc, dict) else None
    if not isinstance(cells, list):
        raise DataflowError(f"{str(path)!r} is not a notebook (no cells)")
    out: list[Cell] = []
    for cell in cells:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        src = cell.get("source", "")
        out.append(Cell(len(out) + 1, "".join(src) if isinstance(src, list) else str(src)))
    return out


# -- option parsers: the magics' own, or an equivalent set when they cannot load --------------

def _magic_parsers() -> dict[str, Any] | None:
    try:
        from jupyter_dataflow.ipython import args
        from jupyter_dataflow.ipython.magics import DataflowMagics
    except ImportError:
        return None
    found = {name: getattr(DataflowMagics, name, None) for name in (*STAGE_MAGICS, "query")}
    if any(getattr(f, "parser", None) is None for f in found.values()):
        return None
    parsers = {k: f.parser for k, f in found.items()}  # type: ignore[union-attr]
    for sub in ("open", "drop", "promote"):
        parsers[f"dataflow {sub}"] = args.SUBCOMMANDS[sub].parser  # type: ignore[attr-defined]
    return parsers


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # raise instead of exiting
        raise DataflowError(message)


def _fallback_parsers() -> dict[str, Any]:
    """The magics' options, declared again for when the magics cannot be imported."""
    p: dict[str, Any] = {}
    src = p["source"] = _Parser(prog="%%source", add_help=False)
    src.add_argument("name")
    src.add_argument("--path", required=True)
    src.add_argument("--format", default="parquet")
    src.add_argument("--partition-by")
    src.add_argument("--option", nargs="+", action="extend")
    src.add_argument("--no-ingest", action="store_true")
    tr = p["transform"] = _Parser(prog="%%transform", add_help=False)
    tr.add_argument("name")
    tr.add_argument("--partition-by")
    tr.add_argument("--mode")
    tr.add_argument("--expect", action="append")
    tr.add_argument("--expect-action", default="fail")
    tr.add_argument("--lang", choices=("sql", "python"))
    sk = p["sink"] = _Parser(prog="%%sink", add_help=False)
    sk.add_argument("name")
    sk.add_argument("--from", dest="source", required=True)
    sk.add_argument("--path", required=True)
    sk.add_argument("--format", default="parquet")
    sk.add_argument("--option", nargs="+", action="extend")
    q = p["query"] = _Parser(prog="%%query", add_help=False)
    q.add_argument("name", nargs="?")
    q.add_argument("--limit", type=int)
    op = p["dataflow open"] = _Parser(prog="%dataflow open", add_help=False)
    op.add_argument("--home")
    op.add_argument("--name")
    op.add_argument("--spark")
    op.add_argument("--store")
    op.add_argument("--conf", nargs="+", action="extend")
    dr = p["dataflow drop"] = _Parser(prog="%dataflow drop", add_help=False)
    dr.add_argument("stage")
    pr = p["dataflow promote"] = _Parser(prog="%dataflow promote", add_help=False)
    pr.add_argument("query")
    pr.add_argument("as_")
    pr.add_argument("stage")
    pr.add_argument("--partition-by")
    pr.add_argument("--mode")
    return p


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line, posix=True)
    except ValueError as err:
        raise DataflowError(f"cannot read the options {line!r}: {err}") from None


def _key_values(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DataflowError(f"expected KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _drop(stage: str) -> Callable[[Any], Any]:
    return lambda flow: flow.drop(stage)


def _promote(stage: str, sql: str, partition_by: str | None, mode: str | None) -> Callable[[Any], Any]:
    return lambda flow: flow.transform(stage, sql, partition_by=partition_by, mode=mode)


# -- reading the notebook --------------------------------------------------------------------

class NotebookReader:
    """Replays a notebook's dataflow cells on a flow."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.parsers = _magic_parsers() or _fallback_parsers()
        self.settings = NotebookSettings()
        self.plain: list[ast.stmt] = []          # definitions from plain code cells so far
        self.queries: dict[str, str] = {}

    def parse(self, kind: str, line: str, where: str) -> Any:
        try:
            return self.parsers[kind].parse_args(_split(line))
        except DataflowError as err:
            raise DataflowError(f"{where}: {err}") from None
        except SystemExit:
            raise DataflowError(f"{where}: cannot parse %{kind} {line.strip()!r}") from None
        except Exception as err:  # IPython's UsageError from the magics' parsers
            raise DataflowError(f"{where}: {err}") from None

    def settings_pass(self, cells: list[Cell]) -> NotebookSettings:
        """Where the notebook opens its flow: `%dataflow open` and `%config Dataflow.*` lines."""
        for cell in cells:
            for line in cell.source.splitlines():
                stripped = line.strip()
                if stripped.startswith("%dataflow open"):
                    ns = self.parse("dataflow open", stripped[len("%dataflow open"):], f"cell {cell.index}")
                    s = self.settings
                    s.home = ns.home or s.home
                    s.name = ns.name or s.name
                    s.spark = ns.spark or s.spark
                    s.store = ns.store or s.store
                    s.conf.update(_key_values(ns.conf))
                elif stripped.startswith("%config Dataflow."):
                    self._config(stripped[len("%config Dataflow."):], cell.index)
        return self.settings

    def _config(self, text: str, index: int) -> None:
        key, sep, value = text.partition("=")
        if not sep:
            return
        try:
            parsed = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            return  # not a literal (e.g. a variable): the kernel's value is unknown here
        key = key.strip()
        if key in ("home", "flow", "spark", "store") and isinstance(parsed, str):
            setattr(self.settings, "name" if key == "flow" else key, parsed)
        elif key == "conf" and isinstance(parsed, dict):
            self.settings.conf = {str(k): str(v) for k, v in parsed.items()}

    def steps(self, cells: list[Cell]) -> Iterator[tuple[str, Callable[[Any], Any]]]:
        """(where, action on a flow) for every dataflow statement, in notebook order."""
        for cell in cells:
            where = f"cell {cell.index}"
            lines = cell.source.splitlines()
            while lines and not lines[0].strip():
                lines.pop(0)
            if not lines:
                continue
            head = lines[0].strip()
            body = "\n".join(lines[1:])
            magic = head[2:].split(None, 1)[0] if head.startswith("%%") else ""
            if magic in STAGE_MAGICS:
                yield where, self._stage(magic, head[2 + len(magic):], body, where)
            elif magic == "query":
                ns = self.parse("query", head[len("%%query"):], where)
                self.queries[ns.name or "_dataflow_query"] = body
            elif not magic:
                yield from self._plain(lines, where)

    def _plain(self, lines: list[str], where: str) -> Iterator[tuple[str, Callable[[Any], Any]]]:
        python = []
        for line in lines:
            stripped = line.strip()
            if stripped.startswith(("%source ", "%sink ")):
                magic = stripped[1:].split(None, 1)[0]
                yield where, self._stage(magic, stripped[1 + len(magic):], "", where)
            elif stripped.startswith("%dataflow drop"):
                ns = self.parse("dataflow drop", stripped[len("%dataflow drop"):], where)
                yield where, _drop(ns.stage)
            elif stripped.startswith("%dataflow promote"):
                ns = self.parse("dataflow promote", stripped[len("%dataflow promote"):], where)
                if ns.query not in self.queries:
                    raise DataflowError(f"{where}: no %%query named {ns.query!r} above this line")
                yield where, _promote(ns.stage, self.queries[ns.query], ns.partition_by, ns.mode)
            elif stripped.startswith(("%", "!")):
                python.append("")  # another magic or a shell line: not Python, keep line numbers
            else:
                python.append(line)
        # A cell that does not parse fails in the kernel too: it defines nothing for the flow.
        with contextlib.suppress(SyntaxError):
            self.plain.extend(pycode.definitions("\n".join(python)))

    def _stage(self, magic: str, line: str, body: str, where: str) -> Callable[[Any], Any]:
        ns = self.parse(magic, line, where)
        if magic == "source":
            return lambda flow: flow.source(ns.name, path=ns.path, format=ns.format, partition_by=ns.partition_by,
                                            options=_key_values(ns.option), ingest=not ns.no_ingest)
        if magic == "sink":
            return lambda flow: flow.sink(ns.name, source=ns.source, path=ns.path, format=ns.format,
                                          options=_key_values(ns.option))
        code = body.strip("\n")
        first = "\n".join(ln for ln in code.splitlines() if ln.strip() and not ln.lstrip().startswith("#")).lstrip()
        python = ns.lang == "python" or (ns.lang is None and first.startswith(("def ", "@", "import ", "from ")))
        options = {"partition_by": ns.partition_by, "mode": ns.mode, "expect": ns.expect or (),
                   "expect_action": ns.expect_action}
        if not python:
            return lambda flow: flow.transform(ns.name, code, **options)
        namespace = pycode.namespace_of(list(self.plain), f"notebook {self.path.name}", ns.name)
        return lambda flow: flow.transform(ns.name, python=code, namespace=namespace, **options)


def _store(root: str | None, base: Path) -> str | None:
    """The notebook's store root as the kernel resolves it (relative paths: the notebook's folder)."""
    from jupyter_dataflow.store.fs import is_uri, normalize_root

    if not root or not root.strip():
        return None
    return normalize_root(root if is_uri(root) or os.path.isabs(os.path.expanduser(root)) else str(base / root))


def read(path: str | os.PathLike[str], name: str | None = None) -> FlowSpec:
    """The flow a notebook defines, as a `FlowSpec`, without executing the notebook.

    Args:
        path: the `.ipynb` file.
        name: the flow name (default: the notebook's `%dataflow open --name`, else `default`).

    Raises:
        DataflowError: the notebook cannot be read, or a cell's definition is refused
            (the message names the cell).
    """
    from jupyter_dataflow.flow import Flow

    nb = Path(path).absolute()
    reader = NotebookReader(nb)
    cells = code_cells(nb)
    settings = reader.settings_pass(cells)
    home = Path(os.path.expanduser(settings.home))
    home = home if home.is_absolute() else nb.parent / home
    flow_name = name or settings.name
    with tempfile.TemporaryDirectory(prefix="dataflow-export-") as scratch:
        flow = Flow.open(home=Path(scratch) / ".dataflow", name=flow_name)
        try:
            for where, action in reader.steps(cells):
                try:
                    action(flow)
                except DataflowError as err:
                    raise DataflowError(f"{nb.name}, {where}: {err}") from None
            return build(flow.graph, flow_name, spark=settings.spark, conf=settings.conf,
                         data_root=home.parent, store=_store(settings.store, nb.parent))
        finally:
            flow.close()
