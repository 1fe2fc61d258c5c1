"""The notebook magics: `%dataflow`, `%%source`, `%%transform`, `%%sink`, `%%query`.

Each magic parses its options, makes one or two `Flow` calls and displays the result.
Magics never reach into the store, planner or executor. A user mistake (any
`DataflowError`, a bad option, a Spark analysis error) surfaces as a short
`UsageError` without a traceback; `Flow` guarantees the graph is unchanged after it.
"""

from __future__ import annotations

import functools
import re
import sys
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display
from traitlets import TraitError

from jupyter_dataflow.core.errors import DataflowError
from jupyter_dataflow.flow import Change, Flow
from jupyter_dataflow.ipython import args
from jupyter_dataflow.ipython.display import (
    ExplainView,
    PlanView,
    QueryView,
    StatusView,
    describe_change,
    short_error,
)
from jupyter_dataflow.ipython.frontend import Frontend
from jupyter_dataflow.ipython.settings import Dataflow
from jupyter_dataflow.ipython.watch import Watcher
from jupyter_dataflow.widgets.progress import track

F = TypeVar("F", bound=Callable[..., Any])
LAST_QUERY = "_dataflow_query"
LAST_RUN = "_dataflow_run"


def _is_engine_error(err: BaseException) -> bool:
    """True for Spark's own user-facing errors (analysis, parse, runtime)."""
    errors = sys.modules.get("pyspark.errors")   # not loaded: cannot be a Spark error
    base = getattr(errors, "PySparkException", None)
    return base is not None and isinstance(err, base)


def friendly(func: F) -> F:
    """Turn user mistakes into a short `UsageError`; real bugs keep their traceback."""
    @functools.wraps(func)
    def wrapper(*a: Any, **kw: Any) -> Any:
        try:
            return func(*a, **kw)
        except UsageError:
            raise
        except (DataflowError, TraitError) as err:
            raise UsageError(str(err)) from None
        except Exception as err:
            if _is_engine_error(err):
                raise UsageError(short_error(err)) from None
            raise

    return cast(F, wrapper)


_BODYLESS = re.compile(r"%%(source|sink)(\s|$)")


def bodyless_stage_cells(lines: list[str]) -> list[str]:
    """Input transformer: let a one-line `%%source`/`%%sink` cell reach its magic.

    IPython refuses a cell magic whose body is empty; these two take everything as
    options, so give such a cell an empty body line instead.
    """
    if lines and _BODYLESS.match(lines[0]) and not "".join(lines[1:]).strip():
        return [lines[0].rstrip("\n") + "\n", "\n"]
    return lines


def transform_cell(stage: str, sql: str, options: Mapping[str, str]) -> str:
    """The `%%transform` cell that registers `sql` as `stage` with these options."""
    flags = "".join(f" --{k.replace('_', '-')} {v}" for k, v in options.items())
    return f"%%transform {stage}{flags}\n{sql.strip()}\n"


@magics_class
class DataflowMagics(Magics):
    """The magics of one IPython shell, sharing one `Flow` and one run lock."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.settings = Dataflow(parent=shell)
        self.frontend = Frontend(shell)
        self.run_lock = threading.Lock()         # the user's runs and the watch's never overlap
        self._open_lock = threading.RLock()
        self._flow: Flow | None = None
        self._flow_key: tuple[Any, ...] | None = None
        self.queries: dict[str, str] = {}
        self.watcher = Watcher(self.flow, self.run_lock, lambda: self.settings.watch_interval)

    @property
    def user_ns(self) -> dict[str, Any]:
        assert self.shell is not None
        return self.shell.user_ns

    # the flow ------------------------------------------------------------------------
    def flow(self) -> Flow:
        """The open flow, opened on first use and reopened when the settings change."""
        with self._open_lock:
            key = self.settings.flow_key()
            if self._flow is None or key != self._flow_key:
                s = self.settings
                self._adopt(Flow.open(home=s.home, name=s.flow, spark=s.spark, conf=dict(s.conf),
                                      store=s.store or None), key)
            assert self._flow is not None
            self.frontend.probe()
            return self._flow

    def _adopt(self, flow: Flow, key: tuple[Any, ...]) -> None:
        with self._open_lock:
            old, self._flow, self._flow_key = self._flow, flow, key
        if old is not None and old is not flow:
            old.close()

    def _changed(self, kind: str, change: Change) -> None:
        print(describe_change(kind, change))
        if change.action != "unchanged":
            self.watcher.poke()

    def close(self) -> None:
        """Stop the watch and release the flow (on unload)."""
        self.watcher.stop()
        self.frontend.close()
        if self._flow is not None:
            self._flow.close()
            self._flow = None

    # %dataflow -----------------------------------------------------------------------
    @line_magic
    @friendly
    def dataflow(self, line: str = "") -> Any:
        command, _, rest = line.strip().partition(" ")
        if not command or command in args.HELP_FLAGS:
            print(args.subcommand_help())
            return None
        spec = args.SUBCOMMANDS.get(command)
        if spec is None:
            raise UsageError(f"unknown %dataflow command {command!r}{args.suggest(command, args.SUBCOMMANDS)}"
                             " (see %dataflow --help)")
        ns = args.parse(spec, rest)
        if ns is None:
            return None
        return getattr(self, f"_cmd_{command}")(ns)

    dataflow.__doc__ = args.subcommand_help()

    def _cmd_open(self, ns: Any) -> Flow:
        s = self.settings
        with self._open_lock:   # the watch thread never sees half-changed settings
            saved = (s.home, s.flow, s.spark, dict(s.conf), s.store)
            try:
                s.home = ns.home or s.home
                s.flow = ns.name or s.flow
                s.spark = self._engine(ns.spark) if ns.spark else s.spark
                s.conf = {**s.conf, **args.key_values(ns.conf, "--conf")}
                s.store = ns.store or s.store
                return self.flow()
            except BaseException:
                s.home, s.flow, s.spark, s.conf, s.store = saved
                raise

    def _engine(self, value: str) -> Any:
        """An engine URL, or the SparkSession held by the user variable of that name."""
        held = self.user_ns.get(value) if value.isidentifier() else None
        return held if held is not None and hasattr(held, "sql") else value

    def _cmd_status(self, ns: Any) -> None:
        flow = self.flow()
        display(StatusView(flow.name, str(flow.home), flow.status()))

    def _cmd_plan(self, ns: Any) -> None:
        display(PlanView(self.flow().plan(ns.stage)))

    def _cmd_run(self, ns: Any) -> None:
        flow = self.flow()
        estimate = Counter(t.stage for t in flow.plan(ns.stage).tasks)
        if not self.run_lock.acquire(blocking=False):
            print("waiting for the background run to finish...")
            self.run_lock.acquire()
        try:
            with track(flow.subscribe, estimate, widget=self.frontend.in_kernel and bool(estimate)) as progress:
                result = flow.run(ns.stage)
                progress.ok = result.ok
        finally:
            self.run_lock.release()
        self.user_ns[LAST_RUN] = result
        print(result.summary())
        if not result.ok:
            raise UsageError("\n".join(result.errors.values()) or "a task failed")

    def _cmd_watch(self, ns: Any) -> None:
        if ns.state is None:
            print(f"watch: {self.watcher.status}")
        elif ns.state == "off":
            print("watch: off" if self.watcher.stop() else "watch: stopping after the current run")
        elif self.watcher.running:
            print(f"watch is already on: {self.watcher.status}")
        else:
            flow = self.flow()
            self.watcher.start(widget=self.frontend.in_kernel,
                               parent=self.frontend.parent() if self.frontend.in_kernel else None)
            if not self.frontend.in_kernel:
                print(f"watching flow {flow.name!r} every {self.settings.watch_interval:g}s"
                      " (%dataflow watch shows its status)")

    def _cmd_explain(self, ns: Any) -> None:
        display(ExplainView(self.flow().explain(ns.stage, ns.partition)))

    def _cmd_lineage(self, ns: Any) -> None:
        lineage = getattr(self.flow(), "lineage", None)
        if lineage is None:
            print("lineage is not available in this installation of jupyter-dataflow")
            return
        view = lineage(ns.stage, columns=ns.columns)
        if view is not None:
            display(view)

    def _cmd_promote(self, ns: Any) -> None:
        query, stage = args.promote_target(ns)
        sql = self.queries.get(query)
        if sql is None:
            raise UsageError(f"no query named {query!r}{args.suggest(query, self.queries)};"
                             " name one with %%query NAME")
        options = {k: v for k, v in (("partition_by", ns.partition_by), ("mode", ns.mode)) if v}
        change = self.flow().promote(sql, stage, **options)
        self.frontend.insert_cell(transform_cell(change.stage, sql, options))
        self._changed("transform", change)
        print(f"a %%transform {change.stage} cell with this query follows this cell")

    def _cmd_drop(self, ns: Any) -> None:
        flow = self.flow()
        flow.drop(ns.stage)
        print(f"dropped stage {ns.stage}; its stored outputs stay until garbage collected")
        self.watcher.poke()

    def _cmd_branch(self, ns: Any) -> None:
        flow = self.flow()
        branch = flow.branch(ns.name)
        with self._open_lock:
            self.settings.flow = branch.name
            self._adopt(branch, self.settings.flow_key())
        print(f"created branch {branch.name!r} from {flow.name!r} and switched to it"
              f" (%dataflow open --name {flow.name} switches back)")
        self.watcher.poke()

    def _cmd_export(self, ns: Any) -> None:
        flow = self.flow()
        export = getattr(flow, "export", None)
        if export is None:
            raise UsageError("export is not available in this installation of jupyter-dataflow")
        out = export(ns.directory, to=ns.to)
        print(f"exported flow {flow.name!r} as {ns.to} to {out or ns.directory}")

    # stage cells ---------------------------------------------------------------------
    @line_cell_magic
    @magic_arguments("%source")
    @args.help_argument
    @argument("name", help="stage name")
    @argument("--path", required=True, help="file, folder or glob (relative paths: next to the home)")
    @argument("--format", default="parquet", choices=("csv", "json", "parquet"), help="file format")
    @argument("--partition-by", help="Hive-style directory key, e.g. date for date=2024-01-01/")
    @argument("--option", nargs="+", action="extend", metavar="KEY=VALUE", help="reader option, repeatable")
    @argument("--no-ingest", action="store_true", help="read immutable Parquet in place instead of ingesting")
    @friendly
    def source(self, line: str, cell: str | None = None) -> None:
        """Register a source stage: files read by Spark, partitioned by directory key or by file."""
        ns = args.parse(self.source, line)
        if ns is None:
            return
        if args.body_without_comments(cell):
            raise UsageError("%%source takes no body: give reader options as --option KEY=VALUE")
        change = self.flow().source(ns.name, path=ns.path, format=ns.format, partition_by=ns.partition_by,
                                    options=args.key_values(ns.option), ingest=not ns.no_ingest)
        self._changed("source", change)

    @cell_magic
    @magic_arguments("%transform")
    @args.help_argument
    @argument("name", help="stage name")
    @argument("--partition-by", help="partition key of the output")
    @argument("--mode", choices=args.MODES, help="force the partition mode instead of inferring it")
    @argument("--expect", action="append", metavar="PREDICATE", help="row predicate checked before commit")
    @argument("--expect-action", default="fail", choices=args.EXPECT_ACTIONS,
              help="on violations: block the commit, publish with a warning, or drop the rows")
    @argument("--lang", choices=("sql", "python"),
              help="body language (default: sql, or python when the body defines a function)")
    @friendly
    def transform(self, line: str, cell: str | None = None) -> None:
        """Register a transform: a Spark SQL query, or a PySpark function whose parameters name its inputs."""
        ns = args.parse(self.transform, line)
        if ns is None:
            return
        body = (cell or "").strip("\n")
        if not args.body_without_comments(body):
            raise UsageError(f"%%transform {ns.name} needs a SQL query (or a Python function) in the cell")
        python = ns.lang == "python" or (ns.lang is None and args.looks_like_python(body))
        code: dict[str, Any] = ({"python": body, "namespace": self.user_ns} if python else {"sql": body})
        change = self.flow().transform(ns.name, **code, partition_by=ns.partition_by, mode=ns.mode,
                                       expect=ns.expect or (), expect_action=ns.expect_action)
        self._changed("transform", change)

    @line_cell_magic
    @magic_arguments("%sink")
    @args.help_argument
    @argument("name", help="stage name")
    @argument("--from", dest="source", required=True, help="stage whose committed output is written")
    @argument("--path", required=True, help="destination folder (relative paths: next to the home)")
    @argument("--format", default="parquet", choices=("csv", "json", "parquet"), help="file format")
    @argument("--option", nargs="+", action="extend", metavar="KEY=VALUE", help="writer option, repeatable")
    @friendly
    def sink(self, line: str, cell: str | None = None) -> None:
        """Register a sink: writes a stage's committed output to files outside the store."""
        ns = args.parse(self.sink, line)
        if ns is None:
            return
        if args.body_without_comments(cell):
            raise UsageError("%%sink takes no body: give writer options as --option KEY=VALUE")
        change = self.flow().sink(ns.name, source=ns.source, path=ns.path, format=ns.format,
                                  options=args.key_values(ns.option))
        self._changed("sink", change)

    @cell_magic
    @magic_arguments("%query")
    @args.help_argument
    @argument("name", nargs="?", help=f"store the result under this name (default: {LAST_QUERY})")
    @argument("--limit", type=int, help="rows to fetch and show (default: Dataflow.query_limit)")
    @friendly
    def query(self, line: str, cell: str | None = None) -> None:
        """Run Spark SQL over the committed outputs of any stage and show the first rows."""
        ns = args.parse(self.query, line)
        if ns is None:
            return
        sql = (cell or "").strip()
        name = ns.name or LAST_QUERY
        if not sql:
            raise UsageError("%%query needs a SQL query in the cell")
        if not name.isidentifier():
            raise UsageError(f"%%query: {name!r} is not a valid Python name")
        limit = ns.limit if ns.limit and ns.limit > 0 else self.settings.query_limit
        result = self.flow().query_result(sql, engine=self.settings.query_engine, limit=limit + 1)
        frame = result.to_pandas()
        truncated = len(frame) > limit
        frame = frame.head(limit) if truncated else frame
        self.queries[name] = sql
        self.user_ns[name] = frame
        answered = f"answered by {result.engine} in {result.seconds * 1000:.0f} ms"
        if result.reason:
            answered += f" ({result.reason})"
        display(QueryView(frame, limit, truncated, name, (answered,)))
