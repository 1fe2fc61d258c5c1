"""The `export` subcommand and `run DIR` for bundles, plugged into `jupyter-dataflow`.

`jupyter_dataflow.cli` owns the command line; this module declares the export options
and turns parsed arguments into calls of this package. It prints one line per result
and leaves error handling (exit status 2 for `DataflowError`) to the main CLI.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyter_dataflow.core.errors import ConfigError

TARGETS = ("spark-pipelines", "bundle", "k8s")


def cmd_export(args: argparse.Namespace) -> int:
    from jupyter_dataflow.export import export_home, export_notebook

    source = Path(args.source)
    options: dict[str, Any] = {"storage": args.storage, "namespace": args.namespace, "image": args.image,
                               "schedule": args.schedule, "spark_image": args.spark_image,
                               "package": args.package}
    if args.to != "spark-pipelines" and args.storage:
        raise ConfigError("--storage applies to --to spark-pipelines only")
    if args.to == "spark-pipelines" and args.store:
        raise ConfigError("--store applies to --to bundle and k8s (a pipeline project has --storage)")
    if args.store:
        options["store"] = args.store
    if args.to != "k8s":
        given = [k for k in ("namespace", "image", "schedule", "spark_image", "package") if options[k]]
        if given:
            raise ConfigError(f"--{given[0].replace('_', '-')} applies to --to k8s only")
    from jupyter_dataflow.cli import parse_conf

    conf = parse_conf(args.conf)
    if source.suffix == ".ipynb":
        if not source.is_file():
            raise ConfigError(f"notebook {str(source)!r} does not exist")
        out = export_notebook(source, args.output, args.to, name=args.flow, spark=args.spark, conf=conf, **options)
    elif source.is_dir():
        out = export_home(source, args.output, args.to, name=args.flow or "default", spark=args.spark, conf=conf,
                          **options)
    else:
        raise ConfigError(f"{str(source)!r} is neither a notebook (.ipynb) nor a home directory")
    print(f"exported {source} as {args.to} to {out}")
    return 0


def add_parser(sub: Any, cmd: Callable[[argparse.Namespace], int] = cmd_export) -> argparse.ArgumentParser:
    """Declare `jupyter-dataflow export SOURCE --to TARGET -o DIR` on a subparsers object."""
    p: argparse.ArgumentParser = sub.add_parser(
        "export", help="write a flow to run outside Jupyter",
        description="Export the flow of a home directory or of a notebook (read without running it) as a "
                    "Spark Declarative Pipelines project, a self-contained bundle, or a bundle with "
                    "Kubernetes manifests. The same flow always gives byte-identical files.")
    p.add_argument("source", metavar="NOTEBOOK_OR_HOME", help="a .ipynb notebook or a home directory")
    p.add_argument("--to", required=True, choices=TARGETS, help="what to write")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
    p.add_argument("--flow", default=None, help="flow name (default: the notebook's, or 'default')")
    p.add_argument("--spark", default=None, help="engine recorded in the export (URL)")
    p.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                   help="Spark setting recorded in the export; credentials become ${ENV} references")
    p.add_argument("--storage", default=None, help="spark-pipelines: pipeline storage URI (absolute)")
    p.add_argument("--store", default=None, metavar="URI_OR_PATH",
                   help="bundle, k8s: data store root the exported flow runs with, e.g. s3a://bucket/prefix")
    p.add_argument("--namespace", default=None, help="k8s: namespace (default 'default')")
    p.add_argument("--image", default=None, help="k8s: image of driver and executors")
    p.add_argument("--schedule", default=None, help="k8s: CronJob schedule (default hourly)")
    p.add_argument("--spark-image", default=None, help="k8s: base image for the Dockerfile")
    p.add_argument("--package", default=None, help="k8s: what the Dockerfile pip-installs")
    p.set_defaults(func=cmd)
    return p


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """`run [DIR] [--data-root R]`: DIR is a bundle to load before reconciling."""
    p.add_argument("bundle", nargs="?", metavar="DIR", default=None,
                   help="a bundle directory (from export --to bundle); its home defaults to DIR/.dataflow")
    p.add_argument("--data-root", default=None,
                   help="with DIR: resolve relative source and sink paths against this folder")
    p.set_defaults(home=None, flow=None)


def open_for_run(args: argparse.Namespace, conf: dict[str, str]) -> Any:
    """The flow `run` reconciles: a loaded bundle when DIR is given, else the home's flow."""
    from jupyter_dataflow.flow import Flow

    if getattr(args, "bundle", None) is None:
        if getattr(args, "data_root", None):
            raise ConfigError("--data-root needs a bundle directory (run DIR --data-root R)")
        return Flow.open(home=args.home or ".dataflow", name=args.flow or "default", spark=args.spark, conf=conf,
                         store=getattr(args, "store", None))
    from jupyter_dataflow.export import bundle

    flow, report = bundle.load(args.bundle, home=args.home, name=args.flow, spark=args.spark, conf=conf,
                               data_root=args.data_root, store=getattr(args, "store", None))
    notes = []
    if report.changed:
        notes.append(f"registered {', '.join(report.changed)}")
    if report.dropped:
        notes.append(f"dropped {', '.join(report.dropped)}")
    if report.edited:
        notes.append(f"edited since export: {', '.join(report.edited)}")
    print(f"bundle {args.bundle} -> home {flow.home} flow {flow.name!r}"
          + (f" ({'; '.join(notes)})" if notes else " (unchanged)"), flush=True)
    return flow
