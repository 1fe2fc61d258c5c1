"""Options of the `%dataflow` subcommands, and parsing helpers for every magic.

Subcommand options are declared here with IPython's `magic_arguments`, so `--help`
prints the same usage `%dataflow?` documents. Parsing turns a line into an argparse
namespace or raises `UsageError`; nothing here opens flows or runs work.
"""

from __future__ import annotations

import difflib
import os
from argparse import REMAINDER, Namespace
from collections.abc import Callable, Iterable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.utils.process import arg_split

HELP_FLAGS = frozenset({"-h", "--help"})
EXPORT_TARGETS = ("spark-pipelines", "bundle", "k8s")
MODES = ("map", "partial", "reduce")
EXPECT_ACTIONS = ("fail", "warn", "drop")


def help_argument(func: Callable[..., Any]) -> Callable[..., Any]:
    """Document `-h/--help` in the usage line (the flag is handled before parsing)."""
    return argument("-h", "--help", action="store_true", help="show this help and exit")(func)


def split(line: str) -> list[str]:
    """Split a magic line like a shell would (quotes removed), or raise `UsageError`."""
    try:
        return arg_split(line, posix=os.name != "nt", strict=True)
    except ValueError as err:
        raise UsageError(f"cannot read the options {line!r}: {err}") from None


def help_text(func: Callable[..., Any]) -> str:
    """The help of a magic-arguments parser, as a terminal user expects it."""
    text: str = func.parser.format_help()  # type: ignore[attr-defined]
    return text.replace("::\n\n  %", "usage: %", 1).rstrip()


def parse(func: Callable[..., Any], line: str) -> Namespace | None:
    """Parse `line` with the parser `magic_arguments` attached to `func`.

    Args:
        func: a function decorated with `magic_arguments`.
        line: the magic's argument string.

    Returns:
        The parsed options, or None after printing the help when asked with -h/--help.

    Raises:
        UsageError: the options do not fit the declaration.
    """
    parser = func.parser  # type: ignore[attr-defined]
    if HELP_FLAGS.intersection(split(line)):
        print(help_text(func))
        return None
    try:
        return parser.parse_args(split(line))
    except UsageError as err:
        raise UsageError(f"%{parser.prog}: {err} (see %{parser.prog} --help)") from None


def key_values(items: Iterable[str] | None, what: str = "--option") -> dict[str, str]:
    """Turn `["header=true", "sep=;"]` into a dict, refusing items without `=`."""
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{what} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def suggest(name: str, known: Iterable[str]) -> str:
    """A suffix like `; did you mean 'orders'?`, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def body_without_comments(cell: str | None) -> str:
    """The cell body with blank lines and `#` comment lines removed."""
    lines = (cell or "").splitlines()
    return "\n".join(ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#"))


def looks_like_python(cell: str) -> bool:
    """True when a transform body is a Python function rather than SQL."""
    first = body_without_comments(cell).lstrip()
    return first.startswith(("def ", "@", "import ", "from "))


# -- %dataflow subcommands --------------------------------------------------------------

@magic_arguments("dataflow")
@argument("command", nargs="?", metavar="COMMAND",
          help="open, status, plan, run, watch, explain, lineage, promote, drop, branch or export")
@argument("args", nargs=REMAINDER, help="the command's options (see %%dataflow COMMAND --help)")
@help_argument
def dataflow_usage() -> None:
    """Manage the notebook's dataflow: open it, see its state, reconcile, export."""


@magic_arguments("dataflow open")
@help_argument
@argument("--home", help="home directory of the flow (default: ./.dataflow)")
@argument("--name", help="flow or branch name (default: default)")
@argument("--spark", help="local[*], spark://host:port, sc://host:port, k8s://https://host, "
                           "or the name of a variable holding a SparkSession")
@argument("--conf", nargs="+", action="extend", metavar="KEY=VALUE", help="Spark setting, repeatable")
@argument("--store", metavar="URI_OR_PATH",
          help="data store root, e.g. s3a://bucket/prefix (default: the home's, <home>/store when new)")
def dataflow_open() -> None:
    """Open (or create) a flow. Optional: the first dataflow magic opens the configured flow."""


@magic_arguments("dataflow status")
@help_argument
def dataflow_status() -> None:
    """Show every stage: state (fresh, stale, running, failed), partitions, rows, last update."""


@magic_arguments("dataflow plan")
@help_argument
@argument("stage", nargs="?", help="only this stage and what it depends on")
def dataflow_plan() -> None:
    """Show what a run would execute and why. Executes nothing."""


@magic_arguments("dataflow run")
@help_argument
@argument("stage", nargs="?", help="only this stage and what it depends on")
def dataflow_run() -> None:
    """Reconcile now: run the tasks that make stages fresh, with a progress bar."""


@magic_arguments("dataflow watch")
@help_argument
@argument("state", nargs="?", choices=("on", "off"), help="start or stop; without it, show the watch status")
def dataflow_watch() -> None:
    """Reconcile in the background: after each graph change and every Dataflow.watch_interval seconds."""


@magic_arguments("dataflow explain")
@help_argument
@argument("stage", help="stage name")
@argument("partition", nargs="?", help="one partition, e.g. date=2024-01-01")
def dataflow_explain() -> None:
    """Show the provenance of what is stored: fingerprints, inputs, code, timings."""


@magic_arguments("dataflow lineage")
@help_argument
@argument("stage", nargs="?", help="centre the view on this stage")
@argument("--columns", action="store_true", help="show column-level lineage")
def dataflow_lineage() -> None:
    """Show the lineage of the flow (or of one stage)."""


@magic_arguments("dataflow promote")
@help_argument
@argument("query", help="name of a %%%%query (or _dataflow_query for the last unnamed one)")
@argument("as_", metavar="AS", help="the word AS")
@argument("stage", help="name of the new transform")
@argument("--partition-by", help="partition key of the transform's output")
@argument("--mode", choices=MODES, help="force the partition mode instead of inferring it")
def dataflow_promote() -> None:
    """Turn a named ad hoc query into a permanent transform; a %%transform cell is inserted below."""


@magic_arguments("dataflow drop")
@help_argument
@argument("stage", help="stage to remove (stored outputs stay until garbage collected)")
def dataflow_drop() -> None:
    """Remove a stage from the flow."""


@magic_arguments("dataflow branch")
@help_argument
@argument("name", help="name of the new branch")
def dataflow_branch() -> None:
    """Copy the flow's blueprint into a new branch that shares every stored output, and switch to it."""


@magic_arguments("dataflow export")
@help_argument
@argument("directory", metavar="DIR", help="output directory")
@argument("--to", required=True, choices=EXPORT_TARGETS, help="what to write")
def dataflow_export() -> None:
    """Export the flow to run outside Jupyter."""


SUBCOMMANDS: dict[str, Callable[..., Any]] = {
    "open": dataflow_open,
    "status": dataflow_status,
    "plan": dataflow_plan,
    "run": dataflow_run,
    "watch": dataflow_watch,
    "explain": dataflow_explain,
    "lineage": dataflow_lineage,
    "promote": dataflow_promote,
    "drop": dataflow_drop,
    "branch": dataflow_branch,
    "export": dataflow_export,
}


def subcommand_help() -> str:
    """The `%dataflow --help` text: usage plus one line per subcommand."""
    lines = [help_text(dataflow_usage), "", "commands:"]
    for func in SUBCOMMANDS.values():
        parser = func.parser  # type: ignore[attr-defined]
        usage = " ".join(parser.format_usage().replace("::", "").split())
        lines.append(f"  {usage}")
        lines.append(f"      {(parser.description or '').strip().splitlines()[0]}")
    return "\n".join(lines)


def promote_target(ns: Namespace) -> tuple[str, str]:
    """The (query, stage) of `promote QUERY AS STAGE`, checking the AS keyword."""
    if ns.as_.lower() != "as":
        raise UsageError(f"%dataflow promote: expected 'QUERY AS STAGE', got {ns.query} {ns.as_} {ns.stage}")
    return ns.query, ns.stage
