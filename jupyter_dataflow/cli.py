"""`jupyter-dataflow` (also `jupyter dataflow`): status, plan, run and export from a shell.

A thin layer over `Flow`: parse arguments, call the facade, print. User mistakes
print one line to stderr and exit with status 2; failed runs exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from jupyter_dataflow.core.errors import ConfigError, DataflowError

STORE_ENV = "DATAFLOW_STORE"


def parse_conf(items: Sequence[str]) -> dict[str, str]:
    """`--conf key=value` options as a dict; a malformed one is a user error."""
    conf = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--conf expects key=value, got {item!r}")
        conf[key] = value
    return conf


def _open(args: argparse.Namespace) -> Any:
    from jupyter_dataflow.export.cli import open_for_run

    return open_for_run(args, parse_conf(args.conf))


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(header, widths, strict=False))]
    lines += ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=False)) for r in rows]
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    flow = _open(args)
    statuses = flow.status()
    if args.json:
        print(json.dumps([s.to_json() for s in statuses], indent=2))
        return 0
    if not statuses:
        print(f"flow {flow.name!r} has no stages")
        return 0
    rows = [[s.name, s.kind, s.state, s.mode or "", str(s.partitions), "" if s.rows is None else str(s.rows),
             (s.fingerprint or "")[:12], s.updated or ""] for s in statuses]
    print(_table(rows, ["stage", "kind", "state", "mode", "partitions", "rows", "fingerprint", "updated"]))
    for s in statuses:
        if s.error:
            print(f"\n{s.name}: {s.error}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    flow = _open(args)
    plan = flow.plan(args.stage)
    if args.json:
        print(json.dumps([{"stage": t.stage, "partition": t.partition, "role": t.role, "reason": t.reason,
                           "cause": t.cause} for t in plan.tasks], indent=2))
    else:
        print(plan)
    return 0


def _print_event(event: Any) -> None:
    from jupyter_dataflow.reconciler import events as ev

    where = f"{event.stage}/{event.partition}" if event.partition else event.stage
    if event.kind == ev.TASK_COMMITTED:
        print(f"  done    {where} ({event.reason}, {event.rows} rows, {event.seconds:.1f}s)", flush=True)
    elif event.kind == ev.TASK_REUSED:
        print(f"  reused  {where} ({event.reason})", flush=True)
    elif event.kind == ev.TASK_FAILED:
        print(f"  FAILED  {where}: {event.detail}", flush=True)
    elif event.kind == ev.TASK_SKIPPED:
        print(f"  skipped {where}: {event.detail}", flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    flow = _open(args)
    if not args.quiet:
        flow.subscribe(_print_event)
    while True:
        result = flow.run(args.stage)
        print(result.summary(), flush=True)
        for stage, error in result.errors.items():
            print(f"{stage}: {error}", file=sys.stderr)
        if not args.watch:
            return 0 if result.ok else 1
        time.sleep(args.interval)


def cmd_gc(args: argparse.Namespace) -> int:
    flow = _open(args)
    report = flow.gc(keep=args.keep, grace=args.grace, dry_run=args.dry_run)
    for path in report.objects if args.verbose else []:
        print(f"  {'would remove' if args.dry_run else 'removed'} {path}")
    print(report.summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    from jupyter_dataflow.export.cli import add_parser as add_export_parser
    from jupyter_dataflow.export.cli import add_run_arguments

    parser = argparse.ArgumentParser(prog="jupyter-dataflow",
                                     description="Declarative, always-fresh dataflows on Apache Spark.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--home", default=".dataflow", help="home directory (default ./.dataflow)")
        p.add_argument("--flow", default="default", help="flow or branch name (default 'default')")
        p.add_argument("--spark", default=None, help="local[*], spark://host:port, sc://host:port or k8s://...")
        p.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="Spark setting")
        p.add_argument("--store", default=os.environ.get(STORE_ENV) or None, metavar="URI_OR_PATH",
                       help="data store root, e.g. s3a://bucket/prefix (default: the home's recorded root, "
                            f"<home>/store for a new home; or ${STORE_ENV})")

    p = sub.add_parser("status", help="state of every stage")
    common(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("plan", help="what would run and why; runs nothing")
    common(p)
    p.add_argument("--stage", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan)
    p = sub.add_parser("run", help="reconcile the flow now")
    common(p)
    p.add_argument("--stage", default=None, help="only this stage and its upstream")
    p.add_argument("--watch", action="store_true", help="keep reconciling as sources change")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between reconciles with --watch")
    p.add_argument("--quiet", action="store_true")
    add_run_arguments(p)
    p.set_defaults(func=cmd_run)
    add_export_parser(sub)
    p = sub.add_parser("gc", help="remove stored outputs that nothing references")
    common(p)
    p.add_argument("--keep", type=int, default=1, help="versions to keep per partition (default 1)")
    p.add_argument("--grace", type=float, default=3600.0, help="keep anything used within this many seconds")
    p.add_argument("--dry-run", action="store_true", help="report what would be removed")
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(func=cmd_gc)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except DataflowError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
