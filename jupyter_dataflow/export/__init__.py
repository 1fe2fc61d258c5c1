"""Export a flow to run outside Jupyter: Spark Declarative Pipelines, a bundle, Kubernetes.

`export_flow` writes an open `Flow`'s blueprint; `export_notebook` reads one from a
notebook file without running it; `export_home` from a home directory. Every target
is rendered from the same `FlowSpec` into a mapping of files and written
deterministically (the same flow always gives byte-identical files), with
credential-like settings replaced by `${ENV}` references. Exporting never starts
Spark and never reads or writes a store.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jupyter_dataflow.core.errors import ConfigError
from jupyter_dataflow.export import bundle, files, k8s, pipelines
from jupyter_dataflow.export.k8s import K8sOptions
from jupyter_dataflow.export.spec import FlowSpec, build

TARGETS = ("spark-pipelines", "bundle", "k8s")

__all__ = ["TARGETS", "FlowSpec", "K8sOptions", "export_flow", "export_home", "export_notebook", "write"]


def write(spec: FlowSpec, directory: str | os.PathLike[str], to: str, *, storage: str | None = None,
          k8s_options: K8sOptions | None = None) -> Path:
    """Write `spec` as target `to` into `directory`; return the directory.

    Args:
        spec: the flow to export.
        directory: output directory (created; files from an earlier export there are replaced).
        to: `spark-pipelines`, `bundle` or `k8s`.
        storage: `spark-pipelines` only: the pipeline storage URI.
        k8s_options: `k8s` only: namespace, image, schedule, sizes.

    Raises:
        ConfigError: unknown target.
    """
    out = Path(directory).absolute()
    executable: list[str] = []
    if to == "spark-pipelines":
        tree, executable = pipelines.files(spec, out, storage)
    elif to == "bundle":
        tree = bundle.files(spec)
    elif to == "k8s":
        tree = k8s.files(spec, k8s_options or K8sOptions())
    else:
        raise ConfigError(f"unknown export target {to!r}: use {', '.join(TARGETS)}")
    files.write_tree(out, tree, executable)
    return out


def export_flow(flow: Any, directory: str | os.PathLike[str], to: str = "bundle", *,
                conf: dict[str, str] | None = None, spark: Any = None, **options: Any) -> Path:
    """Export an open `Flow` (see `write` for the options).

    Relative source and sink paths resolve, as in the flow, against the folder that
    contains its home. The flow's store root is recorded when it is not the home's
    default `<home>/store`; `store=` records another one.
    """
    store = options.pop("store", None)
    spec = build(flow.graph, flow.name, spark=spark, conf=conf, data_root=flow.home.parent,
                 store=_store(store if store is not None else flow.exported_store))
    return write(spec, directory, to, **_target_options(to, options))


def export_home(home: str | os.PathLike[str], directory: str | os.PathLike[str], to: str = "bundle", *,
                name: str = "default", spark: str | None = None, conf: dict[str, str] | None = None,
                **options: Any) -> Path:
    """Export flow `name` of a home directory."""
    from jupyter_dataflow.flow import Flow, list_flows

    path = Path(home)
    if not (path / "metadata.db").exists():
        raise ConfigError(f"{str(path)!r} is not a jupyter-dataflow home (no metadata.db)")
    if name not in list_flows(path):
        raise ConfigError(f"home {str(path)!r} has no flow {name!r}; it has {', '.join(list_flows(path)) or 'none'}")
    with Flow.open(home=path, name=name, spark=spark, conf=conf) as flow:
        return export_flow(flow, directory, to, conf=conf, spark=spark, **options)


def export_notebook(notebook: str | os.PathLike[str], directory: str | os.PathLike[str], to: str = "bundle", *,
                    name: str | None = None, spark: str | None = None, conf: dict[str, str] | None = None,
                    **options: Any) -> Path:
    """Export the flow a notebook defines, reading its cells without executing it."""
    from jupyter_dataflow.export import notebook as nbmod

    spec = nbmod.read(notebook, name)
    if spark is not None or conf:
        spec = build_like(spec, spark=spark, conf=conf)
    store = options.pop("store", None)
    if store is not None:
        from dataclasses import replace

        spec = replace(spec, store=_store(store))
    return write(spec, directory, to, **_target_options(to, options))


def build_like(spec: FlowSpec, *, spark: str | None, conf: dict[str, str] | None) -> FlowSpec:
    """`spec` with the engine setting replaced and settings added (credentials redacted)."""
    from dataclasses import replace

    from jupyter_dataflow.export import secrets

    merged, refs = secrets.redact({**spec.conf, **dict(conf or {})}, "spark conf")
    others = tuple(r for r in spec.secrets if r.where != "spark conf")
    return replace(spec, spark=spark if spark is not None else spec.spark, conf=merged,
                   secrets=tuple(refs) + others)


def _store(root: str | None) -> str | None:
    """A store root as recorded in an export (checked and normalized)."""
    if root is None or to_str(root).strip() == "":
        return None
    from jupyter_dataflow.store.fs import normalize_root

    return normalize_root(to_str(root))


def to_str(value: Any) -> str:
    return os.fspath(value) if isinstance(value, os.PathLike) else str(value)


def _target_options(to: str, options: dict[str, Any]) -> dict[str, Any]:
    storage = options.pop("storage", None)
    k8s_fields = set(K8sOptions.__dataclass_fields__)
    k8s_values = {k: options.pop(k) for k in list(options) if k in k8s_fields and options[k] is not None}
    for k in [k for k in options if options[k] is None]:
        options.pop(k)
    if options:
        raise ConfigError(f"unknown export option(s): {', '.join(sorted(options))}")
    out: dict[str, Any] = {}
    if storage is not None:
        out["storage"] = storage
    if to == "k8s":
        out["k8s_options"] = K8sOptions(**k8s_values)
    return out
