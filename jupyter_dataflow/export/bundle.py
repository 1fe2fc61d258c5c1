"""The `bundle` target: a self-contained flow directory, and loading it back into a home.

A bundle is `flow.json` (every stage's definition, definition hash and mode, the
engine settings with credentials redacted), one code file per transform under
`stages/`, and a README. `load` registers a bundle's stages in a home through the
`Flow` facade, so `jupyter-dataflow run DIR` reconciles it incrementally like any flow.
This module never touches the store or Spark directly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_dataflow.core.errors import ConfigError, StageDefinitionError
from jupyter_dataflow.export import pycode, secrets
from jupyter_dataflow.export.files import dump_json
from jupyter_dataflow.export.spec import FlowSpec, StageSpec, is_absolute

FORMAT = "jupyter-dataflow-bundle"
VERSION = 1
FLOW_FILE = "flow.json"
DEFAULT_HOME = ".dataflow"


def _definition(stage: StageSpec) -> dict[str, Any]:
    """The stage definition without its code, which lives in its own file."""
    d = dict(stage.definition)
    d.pop("sql", None)
    if "python" in d:
        d["python"] = {k: v for k, v in d["python"].items() if k != "module"}
        d.pop("canonical", None)  # an AST dump: its digest says the same, readably
    if stage.code_file:
        d["code_file"] = stage.code_file
    return d


def flow_document(spec: FlowSpec) -> dict[str, Any]:
    """The content of `flow.json`."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "flow": spec.name,
        "engine": {"spark": spec.spark, "conf": dict(sorted(spec.conf.items()))},
        "store": spec.store,
        "paths": "relative source and sink paths resolve against the folder that contains the home",
        "secrets": [{"where": r.where, "key": r.key, "env": r.env} for r in spec.secrets],
        "stages": [{"name": s.name, "kind": s.kind, "mode": s.mode, "inputs": list(s.inputs),
                    "definition_hash": s.definition_hash, "definition": _definition(s)} for s in spec.stages],
    }


def files(spec: FlowSpec, prefix: str = "") -> dict[str, str]:
    """Every file of the bundle (relative path -> text), optionally under `prefix`."""
    out = {f"{prefix}{FLOW_FILE}": dump_json(flow_document(spec)),
           f"{prefix}README.md": readme(spec)}
    for s in spec.stages:
        if s.code_file and s.code is not None:
            out[f"{prefix}{s.code_file}"] = s.code
    return out


def _stage_line(s: StageSpec) -> str:
    d = s.definition
    if s.kind == "source":
        what = f"{d['format']} at `{d['path']}`" + (f", by `{d['partition_by']}`" if d.get("partition_by") else "")
    elif s.kind == "sink":
        what = f"writes `{d['source']}` as {d['format']} to `{d['path']}`"
    else:
        what = f"{s.lang} in `{s.code_file}`, reads {', '.join(s.inputs)}"
    return f"| `{s.name}` | {s.kind} | {s.mode or ''} | {what} | `{s.definition_hash[:12]}` |"


def readme(spec: FlowSpec) -> str:
    """The bundle's README: what is in it and how to run it."""
    lines = [
        f"# Flow `{spec.name}` (jupyter-dataflow bundle)",
        "",
        "A self-contained, deterministic export of a jupyter-dataflow flow. Run it on any Spark:",
        "",
        "```bash",
        "pip install jupyter-dataflow",
        "jupyter-dataflow run .                          # home ./.dataflow, local Spark",
        "jupyter-dataflow run . --spark spark://host:7077 --home /data/.dataflow",
        "jupyter-dataflow run . --watch --interval 60     # keep reconciling as sources change",
        "```",
        "",
        "Each run loads the stages below into the home and reconciles incrementally: a second",
        "run executes nothing, a new source file recomputes only its partitions and what",
        "depends on them. Outputs stay in the home's store; `jupyter-dataflow status --home H`",
        "shows them.",
        "",
        "## Stages",
        "",
        "| stage | kind | mode | definition | definition hash |",
        "| --- | --- | --- | --- | --- |",
        *[_stage_line(s) for s in spec.stages],
        "",
        "`flow.json` holds every definition with its hash; the code of each transform is in",
        "`stages/`. Editing a code file changes that stage's definition: the next run",
        "recomputes it and what depends on it.",
        "",
        "## Paths",
        "",
    ]
    rel = spec.relative_paths()
    if rel:
        lines += [
            "Relative source and sink paths resolve against the folder that contains the home",
            "(`./.dataflow` by default, so against this directory):",
            "",
            *[f"- `{p}`" for p in sorted(set(rel))],
            "",
            "Put the data there, or pass `--home /somewhere/.dataflow` (paths then resolve",
            "against `/somewhere`), or `--data-root DIR` to resolve them against `DIR`.",
        ]
    else:
        lines.append("Every source and sink path is absolute or a URI; they are used as they are.")
    lines += ["", "## Data store", ""]
    if spec.store:
        lines += [f"Outputs are stored under `{spec.store}` (override with `--store`). Every executor",
                  "must reach it; the home (metadata database) records it on the first run and refuses",
                  "another root afterwards."]
    else:
        lines += ["Outputs are stored in the home (`<home>/store`). On a cluster, give a root every",
                  "executor can reach: `--store s3a://BUCKET/PREFIX` (or `hdfs://...`, or a shared",
                  "`file:///mnt/...`), the same on every run."]
    lines += ["", "## Engine", ""]
    lines.append(f"Exported engine: `{spec.spark}` (override with `--spark`)." if spec.spark
                 else "No engine recorded: local Spark unless `--spark` says otherwise.")
    if spec.conf:
        lines += ["", "Spark settings (`--conf key=value` adds or overrides):", ""]
        lines += [f"- `{k}` = `{v}`" for k, v in sorted(spec.conf.items())]
    lines += ["", *secrets_section(spec)]
    return "\n".join(lines) + "\n"


def secrets_section(spec: FlowSpec) -> list[str]:
    """README lines listing the redacted credentials and their environment variables."""
    lines = ["## Credentials", ""]
    if not spec.secrets:
        return [*lines, "No credential-like settings were found; nothing was redacted."]
    lines += ["Credential-like values were not exported. Each is a `${ENV}` reference that",
              "`jupyter-dataflow run` resolves from the environment; set these variables:", "",
              "| variable | setting |", "| --- | --- |"]
    lines += [f"| `{r.env}` | {r.where} `{r.key}` |" for r in spec.secrets]
    return lines


# -- loading ---------------------------------------------------------------------------

@dataclass
class LoadReport:
    """What loading a bundle did to the home's flow."""

    flow: str
    changed: list[str] = field(default_factory=list)   # stages registered anew or replaced
    dropped: list[str] = field(default_factory=list)   # stages removed (not in the bundle)
    edited: list[str] = field(default_factory=list)    # definitions that differ from flow.json's hash


def is_bundle(path: str | os.PathLike[str]) -> bool:
    """Whether a directory holds a bundle (`flow.json` of this format)."""
    p = Path(path) / FLOW_FILE
    if not p.is_file():
        return False
    try:
        return bool(json.loads(p.read_text()).get("format") == FORMAT)
    except (ValueError, AttributeError):
        return False


def read(directory: Path) -> dict[str, Any]:
    """The parsed `flow.json`, checked."""
    path = directory / FLOW_FILE
    if not path.is_file():
        raise ConfigError(f"{str(directory)!r} is not a bundle: no {FLOW_FILE}")
    try:
        doc = json.loads(path.read_text())
    except ValueError as err:
        raise ConfigError(f"{path}: not valid JSON: {err}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a jupyter-dataflow bundle")
    if doc.get("version") != VERSION:
        raise ConfigError(f"{path}: bundle version {doc.get('version')!r} is not supported (expected {VERSION})")
    return doc


def open_bundle(directory: str | os.PathLike[str], *, home: str | os.PathLike[str] | None = None,
                name: str | None = None, spark: Any = None, conf: Mapping[str, str] | None = None,
                data_root: str | os.PathLike[str] | None = None, store: str | None = None) -> Any:
    """Load a bundle into a home and return the open `Flow` (see `load`)."""
    return load(directory, home=home, name=name, spark=spark, conf=conf, data_root=data_root, store=store)[0]


def load(directory: str | os.PathLike[str], *, home: str | os.PathLike[str] | None = None,
         name: str | None = None, spark: Any = None, conf: Mapping[str, str] | None = None,
         data_root: str | os.PathLike[str] | None = None, store: str | None = None) -> tuple[Any, LoadReport]:
    """Register a bundle's stages in a home, replacing what differs and dropping the rest.

    Args:
        directory: the bundle directory.
        home: the home to load into (default: `DIR/.dataflow`).
        name: the flow name in the home (default: the bundle's).
        spark: engine URL or SparkSession (default: the bundle's engine, else local).
        conf: Spark settings added to (and overriding) the bundle's.
        data_root: resolve relative source and sink paths against this folder instead of
            the folder containing the home (they become absolute in the home's flow).
        store: the data store root (default: the bundle's, else the home's own).

    Returns:
        The open `Flow` and a `LoadReport`.

    Raises:
        ConfigError: not a bundle, a credential's environment variable is not set, or
            the store root differs from the one the home records.
        DataflowError: a stage cannot be registered (its message names the stage).
    """
    from jupyter_dataflow.flow import Flow

    root = Path(directory).absolute()
    doc = read(root)
    engine = doc.get("engine") or {}
    settings = secrets.resolve({**(engine.get("conf") or {}), **dict(conf or {})})
    flow = Flow.open(home=Path(home) if home is not None else root / DEFAULT_HOME, name=name or doc["flow"],
                     spark=spark if spark is not None else engine.get("spark"), conf=settings,
                     store=store if store else doc.get("store"))
    report = LoadReport(flow.name)
    base = Path(data_root).absolute() if data_root is not None else None
    try:
        wanted = []
        for entry in doc["stages"]:
            stage_name = entry["name"]
            wanted.append(stage_name)
            change = _register(flow, root, entry["definition"], base)
            if change.action != "unchanged":
                report.changed.append(stage_name)
            current = flow.graph[stage_name].definition_hash()
            if base is None and current != entry.get("definition_hash"):
                report.edited.append(stage_name)
        extra = [s for s in reversed(flow.graph.order()) if s not in wanted]
        for stage_name in extra:
            flow.drop(stage_name)
            report.dropped.append(stage_name)
    except Exception:
        flow.close()
        raise
    return flow, report


def _path(path: str, base: Path | None) -> str:
    return path if base is None or is_absolute(path) else str(base / path)


def _register(flow: Any, root: Path, d: Mapping[str, Any], base: Path | None) -> Any:
    kind, stage_name = d.get("kind"), str(d.get("name"))
    existing = flow.graph.stages.get(stage_name)
    if existing is not None and existing.kind != kind:
        flow.drop(stage_name)
    options = secrets.resolve(dict(d.get("options") or []))
    if kind == "source":
        return flow.source(stage_name, path=_path(d["path"], base), format=d["format"],
                           partition_by=d.get("partition_by"), options=options, ingest=d.get("ingest", True))
    if kind == "sink":
        return flow.sink(stage_name, source=d["source"], path=_path(d["path"], base), format=d["format"],
                         options=options)
    if kind != "transform":
        raise StageDefinitionError(f"unknown stage kind {kind!r} in the bundle", stage_name)
    code_path = root / d["code_file"]
    if not code_path.is_file():
        raise StageDefinitionError(f"code file {d['code_file']!r} is missing from the bundle", stage_name)
    code = code_path.read_text()
    common = {"partition_by": d.get("partition_by"), "mode": d.get("mode"), "expect": tuple(d.get("expect") or ()),
              "expect_action": d.get("expect_action", "fail")}
    if d.get("lang") == "sql":
        return flow.transform(stage_name, code, **common)
    entry = (d.get("python") or {}).get("function") or stage_name
    try:
        return flow.transform(stage_name, python=code, **common)
    except StageDefinitionError as err:
        if "cannot tell which function" not in str(err):
            raise
    # Module text with helper functions: hand over the entry function itself, defined
    # from the file (its helpers resolve by source from the same namespace).
    func, namespace = pycode.define(code, entry, f"bundle {stage_name}", stage_name)
    return flow.transform(stage_name, python=func, namespace=namespace, **common)
