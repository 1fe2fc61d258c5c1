"""Stage definitions: immutable values that say what a stage is, never what it holds.

A stage is one of `Source`, `Transform` or `Sink`. Each can render itself as JSON for
the metadata database and back, and names the canonical code and configuration that
its fingerprint is computed from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from jupyter_dataflow.core import normalize_py
from jupyter_dataflow.core import sql as sqlmod
from jupyter_dataflow.core.errors import StageDefinitionError
from jupyter_dataflow.core.fingerprint import digest
from jupyter_dataflow.core.names import check_name

SOURCE_FORMATS = ("csv", "json", "parquet")
SINK_FORMATS = ("parquet", "csv", "json")
MODES = ("map", "partial", "reduce")
EXPECT_ACTIONS = ("fail", "warn", "drop")

Mode = Literal["map", "partial", "reduce"]


def _options(options: Mapping[str, Any] | None, stage: str) -> tuple[tuple[str, str], ...]:
    if options is None:
        return ()
    if not isinstance(options, Mapping):
        raise StageDefinitionError(f"options must be a mapping of strings, got {type(options).__name__}", stage)
    out = []
    for k, v in options.items():
        if not isinstance(k, str) or not k:
            raise StageDefinitionError(f"option names must be non-empty strings, got {k!r}", stage)
        if isinstance(v, bool):
            v = "true" if v else "false"
        if not isinstance(v, (str, int, float)):
            raise StageDefinitionError(f"option {k!r} must be a string or number, got {type(v).__name__}", stage)
        out.append((k, str(v)))
    return tuple(sorted(out))


def _choice(value: Any, allowed: tuple[str, ...], what: str, stage: str) -> str:
    if value not in allowed:
        raise StageDefinitionError(f"{what} must be one of {', '.join(allowed)}; got {value!r}", stage)
    return str(value)



@dataclass(frozen=True)
class Source:
    """Reads files (a file, a folder or a glob) in csv, json or parquet."""

    name: str
    path: str
    format: str = "parquet"
    partition_by: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    ingest: bool = True

    kind = "source"

    @classmethod
    def create(
        cls,
        name: str,
        *,
        path: str,
        format: str = "parquet",
        partition_by: str | None = None,
        options: Mapping[str, Any] | None = None,
        ingest: bool = True,
    ) -> Source:
        check_name(name)
        if not isinstance(path, str) or not path.strip():
            raise StageDefinitionError("a source needs a path", name)
        fmt = _choice(format, SOURCE_FORMATS, "format", name)
        if partition_by is not None:
            check_name(partition_by, "partition column")
        if not ingest and fmt != "parquet":
            raise StageDefinitionError("ingest=False reads in place and needs parquet files", name)
        return cls(name, path, fmt, partition_by, _options(options, name), bool(ingest))

    @property
    def inputs(self) -> tuple[str, ...]:
        return ()

    def code(self) -> str:
        return f"read {self.format}"

    def config(self) -> dict[str, Any]:
        return {"format": self.format, "partition_by": self.partition_by,
                "options": [list(o) for o in self.options], "ingest": self.ingest}

    def definition_hash(self) -> str:
        return digest("source", self.path, json.dumps(self.config(), sort_keys=True))

    def to_json(self) -> dict[str, Any]:
        return {"kind": "source", "name": self.name, "path": self.path, **self.config()}


@dataclass(frozen=True)
class Transform:
    """Spark SQL or a PySpark function over other stages."""

    name: str
    inputs: tuple[str, ...]
    sql: str | None = None
    python: normalize_py.PythonCode | None = None
    partition_by: str | None = None
    mode: Mode | None = None
    expect: tuple[str, ...] = ()
    expect_action: str = "fail"
    canonical_code: str = field(default="", compare=False)

    kind = "transform"

    @classmethod
    def from_sql(cls, name: str, sql: str, *, partition_by: str | None = None, mode: str | None = None,
                 expect: tuple[str, ...] = (), expect_action: str = "fail") -> Transform:
        check_name(name)
        tree = sqlmod.parse(sql, name)
        inputs = tuple(sqlmod.referenced_tables(tree, name))
        if not inputs:
            raise StageDefinitionError("the SQL reads no stage: a transform needs at least one input", name)
        return cls(name, inputs, sql=sql, python=None, **_common(name, partition_by, mode, expect, expect_action),
                   canonical_code=sqlmod.canonical(tree, name))

    @classmethod
    def from_python(cls, name: str, code: normalize_py.PythonCode, *, partition_by: str | None = None,
                    mode: str | None = None, expect: tuple[str, ...] = (), expect_action: str = "fail") -> Transform:
        check_name(name)
        return cls(name, code.params, sql=None, python=code, **_common(name, partition_by, mode, expect, expect_action),
                   canonical_code=normalize_py.canonical(code.module) + "\nentry:" + code.function)

    @property
    def lang(self) -> str:
        return "sql" if self.sql is not None else "python"

    @property
    def text(self) -> str:
        """The code as the user would read it."""
        return self.sql if self.sql is not None else self.python.module if self.python else ""

    def code(self) -> str:
        return self.canonical_code

    def config(self) -> dict[str, Any]:
        return {"partition_by": self.partition_by, "mode": self.mode,
                "expect": [sqlmod.canonical(f"SELECT * FROM t WHERE {e}") for e in self.expect],
                "expect_action": self.expect_action}

    def definition_hash(self) -> str:
        return digest("transform", self.lang, self.code(), json.dumps(self.config(), sort_keys=True))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": "transform", "name": self.name, "lang": self.lang,
                                "partition_by": self.partition_by, "mode": self.mode,
                                "expect": list(self.expect), "expect_action": self.expect_action}
        data["inputs"] = list(self.inputs)
        data["canonical"] = self.canonical_code
        if self.sql is not None:
            data["sql"] = self.sql
        elif self.python is not None:
            data["python"] = {"module": self.python.module, "function": self.python.function,
                              "params": list(self.python.params)}
        return data


def _common(name: str, partition_by: str | None, mode: str | None, expect: tuple[str, ...],
            expect_action: str) -> dict[str, Any]:
    if partition_by is not None:
        check_name(partition_by, "partition column")
    if mode is not None:
        _choice(mode, MODES, "mode", name)
    exp_list = tuple(expect or ())
    for e in exp_list:
        if not isinstance(e, str) or not e.strip():
            raise StageDefinitionError(f"an expectation must be a SQL predicate string, got {e!r}", name)
        sqlmod.parse(f"SELECT * FROM t WHERE {e}", name)
    _choice(expect_action, EXPECT_ACTIONS, "expect action", name)
    return {"partition_by": partition_by, "mode": mode, "expect": exp_list, "expect_action": expect_action}


@dataclass(frozen=True)
class Sink:
    """Writes a stage's committed output to a path, replacing it atomically."""

    name: str
    source: str
    path: str
    format: str = "parquet"
    options: tuple[tuple[str, str], ...] = ()

    kind = "sink"

    @classmethod
    def create(cls, name: str, *, source: str, path: str, format: str = "parquet",
               options: Mapping[str, Any] | None = None) -> Sink:
        check_name(name)
        if not isinstance(source, str) or not source:
            raise StageDefinitionError("a sink needs the stage it writes (source=...)", name)
        check_name(source)
        if not isinstance(path, str) or not path.strip():
            raise StageDefinitionError("a sink needs a path", name)
        fmt = _choice(format, SINK_FORMATS, "format", name)
        return cls(name, source, path, fmt, _options(options, name))

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.source,)

    def code(self) -> str:
        return f"write {self.format}"

    def config(self) -> dict[str, Any]:
        return {"format": self.format, "options": [list(o) for o in self.options]}

    def definition_hash(self) -> str:
        return digest("sink", self.path, json.dumps(self.config(), sort_keys=True))

    def to_json(self) -> dict[str, Any]:
        return {"kind": "sink", "name": self.name, "source": self.source, "path": self.path, **self.config()}


Stage = Source | Transform | Sink


def from_json(data: Mapping[str, Any]) -> Stage:
    """Rebuild a stage from its `to_json` form (as stored in the metadata database)."""
    kind = data.get("kind")
    if kind == "source":
        return Source.create(data["name"], path=data["path"], format=data["format"],
                             partition_by=data.get("partition_by"), options=dict(data.get("options") or []),
                             ingest=data.get("ingest", True))
    if kind == "sink":
        return Sink.create(data["name"], source=data["source"], path=data["path"], format=data["format"],
                           options=dict(data.get("options") or []))
    if kind == "transform":
        common = {"partition_by": data.get("partition_by"), "mode": data.get("mode"),
                  "expect": tuple(data.get("expect") or ()), "expect_action": data.get("expect_action", "fail")}
        if "sql" in data:
            if "canonical" in data and "inputs" in data:
                # Trust what was computed at registration: reopening a home must not
                # depend on re-parsing (fast, and stable across parser upgrades).
                return Transform(data["name"], tuple(data["inputs"]), sql=data["sql"], **common,
                                 canonical_code=data["canonical"])
            return Transform.from_sql(data["name"], data["sql"], **common)
        py = data["python"]
        code = normalize_py.PythonCode(py["module"], py["function"], tuple(py["params"]))
        return Transform.from_python(data["name"], code, **common)
    raise StageDefinitionError(f"unknown stage kind {kind!r}")
