"""How a SQL transform's output partitions depend on its inputs: map, partial or reduce.

`infer_mode` reads one Spark SQL query (sqlglot, Spark dialect) and decides:

- ``map``: output partition *p* depends only on input partition *p*; the executor runs
  the query once per partition value with every partitioned input restricted to it.
- ``partial``: a decomposable aggregate over one partitioned input; `partial_plan`
  derives a per-partition partial aggregate and a combine over the union of partials
  whose output equals the original query's, column names and types included.
- ``reduce``: everything else.

Map or partial is only chosen when it is provably correct from the SQL text alone; any
doubt yields reduce with a short reason naming the construct. This module is pure: it
must not import Spark, touch files or keep state.

Known limits, all on the side of caution or documented drift:

- column types are unknown here, so the combine recovers Spark's result types at run
  time (`typeof` of a per-partition witness) instead of casting to a written type;
- `approx_count_distinct` becomes HLL sketches, a different approximation;
- a decimal sum whose total overflows its type yields NULL where Spark would raise;
- a user-defined aggregate function is not known as one: applied to GROUP BY keys only,
  it would be taken for a scalar function (built-in aggregates are all known).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, cast, get_args

import sqlglot
from sqlglot import exp
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from jupyter_dataflow.core.errors import StageDefinitionError
from jupyter_dataflow.core.sql import DIALECT, parse

Mode = Literal["map", "partial", "reduce"]
PARTIALS_TABLE = "__dataflow_partials"


@dataclass(frozen=True)
class ModeDecision:
    """How a transform is computed, and why.

    Attributes:
        mode: "map", "partial" or "reduce".
        key: The partition key column for map and partial; None for reduce.
        reason: One short sentence for `plan` and `explain`, naming the deciding construct.
    """

    mode: Mode
    key: str | None
    reason: str


@dataclass(frozen=True)
class PartialPlan:
    """The two queries that compute a `partial` transform incrementally.

    `partial_sql` runs once per partition of `partitioned_input` and reads the same
    table names as the original query; `combine_sql` reads `PARTIALS_TABLE`, the union
    of all partial outputs, and yields exactly the original query's output.
    `rollup_sql` also reads `PARTIALS_TABLE` and merges any number of partials into
    fewer rows of the same columns and types, so a rollup of some partials can stand
    in for them, in the combine or in a later rollup.
    """

    partitioned_input: str
    partial_sql: str
    combine_sql: str
    rollup_sql: str


class _Refusal(Exception):
    """Why a query cannot run in the mode being checked; `specific` if it is the best reason."""

    def __init__(self, reason: str, *, specific: bool = True) -> None:
        super().__init__(reason)
        self.specific = specific


@dataclass(frozen=True)
class _Keyed:
    """A relation whose rows carry the partition key column `key` unchanged."""

    key: str
    position: int | None  # index of the key in the output list, when known
    why: str | None


@dataclass(frozen=True)
class _Source:
    alias: str
    keyed: _Keyed | None  # None: reads no partitioned input
    join: exp.Join | None


@dataclass(frozen=True)
class _Ctx:
    """The partitioned sources visible in one SELECT."""

    key: str
    keyed: frozenset[str]
    preserved: frozenset[str]  # sources whose rows survive every join (not null-supplied)


# Spark aggregates that sqlglot parses as plain functions rather than AggFunc nodes.
_AGGREGATE_NAMES = (
    "any any_value approx_count_distinct approx_percentile approx_top_k approx_top_k_accumulate "
    "approx_top_k_combine array_agg avg bit_and bit_or bit_xor bitmap_construct_agg "
    "bitmap_or_agg bool_and bool_or collect_list collect_set "
    "corr count count_if count_min_sketch covar_pop covar_samp every first first_value "
    "histogram_numeric hll_sketch_agg hll_union_agg kurtosis last last_value listagg max "
    "max_by mean median min min_by mode percentile percentile_approx percentile_cont "
    "percentile_disc regr_avgx regr_avgy regr_count regr_intercept regr_r2 regr_slope "
    "regr_sxx regr_sxy regr_syy skewness some std stddev stddev_pop stddev_samp string_agg "
    "sum theta_intersection_agg theta_sketch_agg theta_union_agg try_avg try_sum var_pop "
    "var_samp variance"
)
_SPARK_AGGREGATES = frozenset(_AGGREGATE_NAMES.split())
_ANONYMOUS_KINDS = {"every": "bool_and", "some": "bool_or", "mean": "avg"}
_AGG_KINDS: dict[type[exp.Expression], str] = {
    exp.Count: "count", exp.CountIf: "count_if", exp.Sum: "sum", exp.Avg: "avg",
    exp.Min: "min", exp.Max: "max", exp.LogicalAnd: "bool_and", exp.LogicalOr: "bool_or",
    exp.ApproxDistinct: "approx_count_distinct", exp.Any: "bool_or",
}
_OPERATORS: dict[type[exp.Expression], str] = {
    exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.Div: "/", exp.Mod: "%", exp.GT: ">",
    exp.GTE: ">=", exp.LT: "<", exp.LTE: "<=", exp.EQ: "=", exp.And: "AND", exp.Or: "OR",
}
_SIMPLE_PARTIALS: dict[str, type[exp.Expression]] = {
    "min": exp.Min, "max": exp.Max, "bool_and": exp.LogicalAnd, "bool_or": exp.LogicalOr,
}
_CLAUSES = ("expressions", "where", "group", "having", "qualify", "order", "windows",
            "laterals", "distribute", "sort", "cluster")
_HLL_DEFAULT_LG_K = 12


def infer_mode(
    sql: str,
    inputs: Mapping[str, str | None],
    *,
    stage: str | None = None,
    requested: Mode | None = None,
) -> ModeDecision:
    """Decide how a SQL transform maps input partitions to output partitions.

    Args:
        sql: One Spark SQL query.
        inputs: Each stage the query reads (lower-case name) -> its partition key
            column, or None when unpartitioned. Tables absent from it count as
            unpartitioned.
        stage: The stage name, for error messages.
        requested: A mode forced by the user; "reduce" is always allowed.

    Returns:
        The mode, its partition key (None for reduce) and a one-sentence reason.

    Raises:
        SqlError: The SQL does not parse.
        StageDefinitionError: `requested` is not a mode, or the query cannot run in it.
    """
    if requested is not None and requested not in get_args(Mode):
        raise StageDefinitionError(f"unknown mode {requested!r}: use map, partial or reduce", stage)
    analysis = _Analysis(sql, inputs, stage)
    if requested == "reduce":
        return ModeDecision("reduce", None, "reduce requested")
    try:
        keyed = analysis.map()
    except _Refusal as refusal:
        if requested == "map":
            raise StageDefinitionError(f"cannot run as map: {refusal}", stage) from None
        not_map: _Refusal | None = refusal
    else:
        if requested != "partial":
            return ModeDecision("map", analysis.spelled(keyed.key), keyed.why or "")
        not_map = None
    try:
        parts = analysis.partial()
    except _Refusal as refusal:
        if requested == "partial":
            raise StageDefinitionError(f"cannot run as partial: {refusal}", stage) from None
        best = refusal if refusal.specific or not_map is None else not_map
        return ModeDecision("reduce", None, str(best))
    reason = parts.why if not_map is None else f"{not_map}; {parts.why}"
    return ModeDecision("partial", analysis.spelled(analysis.inputs[parts.input]), reason)


def partial_plan(sql: str, inputs: Mapping[str, str | None], *, stage: str | None = None) -> PartialPlan:
    """The partial and combine queries of a decomposable aggregate.

    `approx_count_distinct` becomes `hll_sketch_agg` per partition and
    `hll_sketch_estimate(hll_union_agg(...))` at combine: still an approximation, but a
    different one, so its estimates may differ from Spark's `approx_count_distinct`.

    Args:
        sql: One Spark SQL query.
        inputs: As for `infer_mode`.
        stage: The stage name, for error messages.

    Raises:
        SqlError: The SQL does not parse.
        StageDefinitionError: The query is not decomposable; the message says why.
    """
    return _partial_plan(sql, tuple(sorted(inputs.items())), stage)


@functools.lru_cache(maxsize=256)
def _partial_plan(sql: str, inputs: tuple[tuple[str, str | None], ...], stage: str | None) -> PartialPlan:
    # Cached: a run asks for the same stage's plan for each of its tasks, and deriving it
    # (sqlglot copies and rewrites) costs milliseconds each time.
    try:
        parts = _Analysis(sql, dict(inputs), stage).partial()
    except _Refusal as refusal:
        raise StageDefinitionError(f"cannot run as partial: {refusal}", stage) from None
    return PartialPlan(parts.input, parts.partial_sql, parts.combine_sql, parts.rollup_sql)


@dataclass(frozen=True)
class _Parts:
    input: str
    partial_sql: str
    combine_sql: str
    rollup_sql: str
    why: str


class _Analysis:
    """One query with its inputs: map analysis of every (sub)query, and decomposition."""

    def __init__(self, sql: str, inputs: Mapping[str, str | None], stage: str | None) -> None:
        self.original = parse(sql, stage)
        self.tree = normalize_identifiers(self.original.copy(), dialect=DIALECT)
        self._spelling = {str(v).lower(): str(v) for v in inputs.values() if v}
        self.inputs = {k.lower(): v.lower() for k, v in inputs.items() if v}
        self.ctes: dict[str, exp.Expression] = {}
        self.blocker: str | None = None
        for cte in self.tree.find_all(exp.CTE):
            if cte.alias in self.ctes and self.ctes[cte.alias] != cte.this:
                self.blocker = f"CTE name {cte.alias!r} is defined twice"
            self.ctes[cte.alias] = cte.this
            if cte.alias in self.inputs and cte.parent is not self.tree.args.get("with_"):
                self.blocker = f"nested CTE {cte.alias!r} shadows an input"
        if any(w.args.get("recursive") for w in self.tree.find_all(exp.With)):
            self.blocker = "recursive CTE"
        elif self.tree.find(exp.TableSample):
            self.blocker = "TABLESAMPLE"
        elif self.tree.find(exp.Pivot):
            self.blocker = "PIVOT or UNPIVOT"
        self.partitioned = self.reads(self.tree)
        self._memo: dict[tuple[int, bool], _Keyed | _Refusal | None] = {}

    def spelled(self, key: str) -> str:
        return self._spelling.get(key, key)

    def reads(self, node: exp.Expression, seen: frozenset[str] = frozenset()) -> set[str]:
        """The partitioned inputs read anywhere under `node`, through CTEs."""
        found: set[str] = set()
        for table in node.find_all(exp.Table):
            name = _table_name(table)
            if name in self.ctes and name not in seen:
                found |= self.reads(self.ctes[name], seen | {name})
            elif name in self.inputs:
                found.add(name)
        return found

    # -- map -------------------------------------------------------------------------

    def map(self) -> _Keyed:
        if not self.partitioned:
            raise _Refusal("no partitioned input")
        if self.blocker:
            raise _Refusal(self.blocker)
        keyed = self.query(self.tree)
        if keyed is None:
            raise _Refusal("no partitioned input")
        return keyed

    def query(self, node: exp.Expression, keep_key: bool = True) -> _Keyed | None:
        """Map analysis of a query node, memoized (a CTE may be read several times).

        With `keep_key` False the output may drop the key column: its rows still derive
        from single partitions, which is all a partial aggregate over it needs.
        """
        memo = (id(node), keep_key)
        done = self._memo.get(memo)
        if done is None and memo not in self._memo:
            try:
                done = self._query(node, keep_key)
            except _Refusal as refusal:
                done = refusal
            self._memo[memo] = done
        if isinstance(done, _Refusal):
            raise done
        return done

    def _query(self, node: exp.Expression, keep_key: bool) -> _Keyed | None:
        if isinstance(node, (exp.Subquery, exp.SetOperation, exp.Select)):
            _refuse_limit(node)
        if isinstance(node, exp.Subquery):
            return self.query(node.this, keep_key)
        if isinstance(node, exp.SetOperation):
            return self._set_operation(node)
        if isinstance(node, exp.Select):
            return self._select(node, keep_key)
        if self.reads(node):
            raise _Refusal(f"unsupported query form {node.key.upper()} over a partitioned input")
        return None

    def _set_operation(self, node: exp.SetOperation) -> _Keyed | None:
        kind = node.key.upper()
        left, right = self.query(node.this), self.query(node.expression)
        if left is None and right is None:
            return None
        if left is None or right is None:
            raise _Refusal(f"a {kind} branch reads no partitioned input")
        if left.key != right.key or left.position is None or left.position != right.position:
            raise _Refusal(f"{kind} branches do not keep partition key {left.key!r} at the same position")
        return _Keyed(left.key, left.position, f"every {kind} branch keeps partition key {left.key!r}")

    def sources(self, select: exp.Select, keep_key: bool = True) -> list[_Source]:
        """The FROM and JOIN items of a SELECT, in order, with their map analysis."""
        from_ = select.args.get("from_")
        items = ([(from_.this, None)] if from_ else []) + [(j.this, j) for j in select.args.get("joins") or []]
        return [
            _Source(node.alias_or_name.lower() or f"#{i}", self._source(node, keep_key), join)
            for i, (node, join) in enumerate(items)
        ]

    def _source(self, node: exp.Expression, keep_key: bool) -> _Keyed | None:
        if isinstance(node, exp.Table):
            name = _table_name(node)
            if name in self.ctes:
                return self.query(self.ctes[name], keep_key)
            if name in self.inputs:
                return _Keyed(self.inputs[name], None, None)
        elif isinstance(node, exp.Subquery):
            return self.query(node, keep_key)
        if self.reads(node):
            raise _Refusal(f"{node.key.upper()} in FROM reads a partitioned input")
        return None

    def _select(self, select: exp.Select, keep_key: bool) -> _Keyed | None:
        sources = self.sources(select)
        self._refuse_nested_reads(select)
        keyed = {s.alias: s.keyed for s in sources if s.keyed is not None}
        if not keyed:
            return None
        keys = sorted({k.key for k in keyed.values()})
        if len(keys) > 1:
            raise _Refusal(f"inputs are partitioned by different keys ({', '.join(keys)})")
        ctx = _Ctx(keys[0], frozenset(keyed), frozenset(_preserved(sources)))
        reasons = [_map_joins(select, sources, ctx), _map_grouping(select, ctx), _map_windows(select, ctx)]
        position = _map_output(select, ctx) if keep_key or select.args.get("distinct") else None
        inner = [k.why for k in keyed.values() if k.why]
        why = next((r for r in reasons + inner if r), f"row-level query keeps partition key {ctx.key!r}")
        return _Keyed(ctx.key, position, why)

    def _refuse_nested_reads(self, select: exp.Select) -> None:
        for node in _clause_nodes(select):
            if isinstance(node, exp.Query) and (names := self.reads(node)):
                raise _Refusal(f"subquery over partitioned input {min(names)!r} inside an expression")
            if isinstance(node, exp.Lateral) and self.reads(node):
                raise _Refusal("LATERAL over a partitioned input")

    # -- partial ---------------------------------------------------------------------

    def partial(self) -> _Parts:
        if not self.partitioned:
            raise _Refusal("no partitioned input")
        select, original = self.tree, self.original
        if not isinstance(select, exp.Select) or not isinstance(original, exp.Select):
            raise _Refusal(f"{select.key.upper()} at the top level is not an aggregate", specific=False)
        if not (select.args.get("group") or _has_aggregate(select)):
            raise _Refusal("no aggregation to decompose", specific=False)
        if self.blocker:
            raise _Refusal(self.blocker)
        if len(self.partitioned) > 1:
            raise _Refusal(f"aggregates over several partitioned inputs ({', '.join(sorted(self.partitioned))})")
        name = next(iter(self.partitioned))
        _refuse_partial_clauses(select)
        self._check_partial_sources(select, name)
        self._refuse_nested_reads(select)
        keys = _group_items(select, {self.inputs[name]}) or []
        combiner = _Combiner(keys)
        partial_sql, combine_sql = combiner.build(select, original.expressions)
        why = f"aggregates ({', '.join(combiner.kinds)}) over {name!r} decompose per partition"
        return _Parts(name, partial_sql, combine_sql, combiner.rollup_sql(), why)

    def _check_partial_sources(self, select: exp.Select, name: str) -> None:
        try:
            sources = self.sources(select, keep_key=False)
        except _Refusal as refusal:
            raise _Refusal(f"subquery over {name!r} is not row-level: {refusal}") from None
        partitioned = [s for s in sources if s.keyed is not None]
        if len(partitioned) != 1:
            raise _Refusal(f"reads partitioned input {name!r} {len(partitioned)} times in FROM")
        if partitioned[0].alias not in _preserved(sources):
            raise _Refusal(f"{partitioned[0].alias!r} is null-supplied or filter-only in a join")


# -- map checks, one SELECT at a time ---------------------------------------------------


def _map_joins(select: exp.Select, sources: list[_Source], ctx: _Ctx) -> str | None:
    """Partitioned sources must be joined on equal partition keys, else rows pair across partitions."""
    keyed = [s.alias for s in sources if s.keyed is not None]
    if len(keyed) < 2:
        return None
    parent = {a: a for a in keyed}

    def find(a: str) -> str:
        while parent[a] != a:
            a = parent[a]
        return a

    conditions = [j.args.get("on") for j in select.args.get("joins") or []]
    where = select.args.get("where")
    conditions.append(where.this if where else None)
    for cond in conditions:
        for eq in _conjuncts(cond):
            if isinstance(eq, (exp.EQ, exp.NullSafeEQ)):
                left, right = _key_alias(eq.this, ctx), _key_alias(eq.expression, ctx)
                if left and right:
                    parent[find(left)] = find(right)
    for i, source in enumerate(sources):
        join = source.join
        if join is None or source.keyed is None:
            continue
        using = {u.name.lower() for u in join.args.get("using") or []}
        if ctx.key in using or join.args.get("method") == "NATURAL":
            for earlier in sources[:i]:
                if earlier.keyed is not None:
                    parent[find(earlier.alias)] = find(source.alias)
    groups: dict[str, list[str]] = {}
    for alias in keyed:
        groups.setdefault(find(alias), []).append(alias)
    if len(groups) > 1:
        a, b = (members[0] for members in list(groups.values())[:2])
        raise _Refusal(f"joins {a!r} and {b!r} without equating partition key {ctx.key!r}")
    return f"joins {' and '.join(repr(a) for a in keyed)} on partition key {ctx.key!r}"


def _map_grouping(select: exp.Select, ctx: _Ctx) -> str | None:
    items = _group_items(select, {ctx.key})
    if items is None:
        if _has_aggregate(select):
            raise _Refusal(f"global aggregate: no GROUP BY on partition key {ctx.key!r}")
        return None
    if any(_is_key_ref(item, ctx) for item in items):
        return f"GROUP BY includes partition key {ctx.key!r}"
    shown = ", ".join(_short(i) for i in items) or "()"
    raise _Refusal(f"GROUP BY {shown} omits partition key {ctx.key!r}")


def _map_windows(select: exp.Select, ctx: _Ctx) -> str | None:
    named = {w.name.lower(): w for w in select.args.get("windows") or []}
    found = False
    for node in _clause_nodes(select):
        if not isinstance(node, exp.Window) or node.arg_key == "windows":
            continue
        spec = named.get(node.alias.lower()) if node.alias else None
        parts = node.args.get("partition_by") or (spec.args.get("partition_by") if spec else None)
        if not any(_is_key_ref(p, ctx) for p in parts or []):
            raise _Refusal(f"window {_fn_name(node.this)}() is not partitioned by {ctx.key!r}")
        found = True
    return f"window PARTITION BY includes partition key {ctx.key!r}" if found else None


def _map_output(select: exp.Select, ctx: _Ctx) -> int | None:
    """Where the output keeps the key column unchanged; refuses when it does not."""
    kept, position, star_before, renamed = False, None, False, []
    for i, item in enumerate(select.expressions):
        if _is_star(item):
            kept = kept or _star_keeps_key(item, ctx)
            star_before = True
            continue
        name = item.alias_or_name.lower()
        if _is_key_ref(item.unalias(), ctx):
            if name == ctx.key and not kept:
                kept, position = True, None if star_before else i
            elif name != ctx.key:
                renamed.append(name)
        elif name == ctx.key and _is_any_key_column(item.unalias(), ctx):
            raise _Refusal(f"partition key {ctx.key!r} may be NULL from an outer join")
        elif name == ctx.key:
            raise _Refusal(f"output column {ctx.key!r} is computed, not the partition key")
    if kept:
        return position
    if renamed:
        raise _Refusal(f"partition key {ctx.key!r} is renamed to {renamed[0]!r}")
    raise _Refusal(f"output drops partition key {ctx.key!r}")


def _preserved(sources: list[_Source]) -> set[str]:
    """Sources whose every row reaches the output: not null-supplied, not semi/anti filters."""
    preserved: set[str] = set()
    for source in sources:
        join = source.join
        side, kind = ((join.side or "").upper(), (join.kind or "").upper()) if join else ("", "")
        if join is None:
            preserved = {source.alias}
        elif kind in ("SEMI", "ANTI") or side == "LEFT":
            continue
        elif side == "RIGHT":
            preserved = {source.alias}
        elif side == "FULL":
            preserved = set()
        else:
            preserved.add(source.alias)
    return preserved


def _is_key_ref(node: exp.Expression, ctx: _Ctx) -> bool:
    """Whether `node` always equals the partition value of its row."""
    node = _unparen(node)
    if not isinstance(node, exp.Column) or node.args.get("db") or node.name.lower() != ctx.key:
        return False
    table = node.table.lower()
    if table:
        return table in ctx.keyed and table in ctx.preserved
    return bool(ctx.keyed & ctx.preserved)


def _key_alias(node: exp.Expression, ctx: _Ctx) -> str | None:
    """The partitioned source whose key column `node` is, if unambiguous."""
    node = _unparen(node)
    if not isinstance(node, exp.Column) or node.args.get("db") or node.name.lower() != ctx.key:
        return None
    table = node.table.lower()
    if table:
        return table if table in ctx.keyed else None
    return next(iter(ctx.keyed)) if len(ctx.keyed) == 1 else None


def _is_any_key_column(node: exp.Expression, ctx: _Ctx) -> bool:
    """Whether `node` is the key column of some partitioned source, preserved or not."""
    node = _unparen(node)
    if not isinstance(node, exp.Column) or node.args.get("db") or node.name.lower() != ctx.key:
        return False
    return not node.table or node.table.lower() in ctx.keyed


def _star_keeps_key(item: exp.Expression, ctx: _Ctx) -> bool:
    star = item.this if isinstance(item, exp.Column) else item
    excepted = {e.name.lower() for e in star.args.get("except_") or []}
    if ctx.key in excepted:
        return False
    if isinstance(item, exp.Column) and item.table:
        return item.table.lower() in ctx.keyed & ctx.preserved
    return bool(ctx.keyed & ctx.preserved)


# -- shared SQL helpers -----------------------------------------------------------------


def _table_name(table: exp.Table) -> str | None:
    if not isinstance(table.this, exp.Identifier) or table.args.get("db") or table.args.get("catalog"):
        return None
    return table.name.lower()


def _refuse_limit(node: exp.Expression) -> None:
    if node.args.get("limit") or node.args.get("offset"):
        raise _Refusal("LIMIT/OFFSET applies across all partitions")


def _refuse_partial_clauses(select: exp.Select) -> None:
    for arg, what in (("qualify", "QUALIFY"), ("distribute", "DISTRIBUTE BY"), ("sort", "SORT BY"),
                      ("cluster", "CLUSTER BY"), ("windows", "WINDOW")):
        if select.args.get(arg):
            raise _Refusal(f"{what} with aggregation")
    if any(isinstance(n, exp.Window) for n in _clause_nodes(select)):
        raise _Refusal("window function over an aggregate")
    if any(_is_star(i) for i in select.expressions):
        raise _Refusal("SELECT * with aggregation")


def _clause_nodes(select: exp.Select, *, skip_windows: bool = False) -> Iterator[exp.Expression]:
    """Nodes of one SELECT's own clauses; nested queries are yielded but not entered."""
    roots: list[exp.Expression] = []
    for arg in _CLAUSES:
        value = select.args.get(arg)
        roots.extend(value if isinstance(value, list) else [value] if value else [])
    roots.extend(j.args["on"] for j in select.args.get("joins") or [] if j.args.get("on"))

    def prune(node: exp.Expr) -> bool:
        return isinstance(node, exp.Query) or (skip_windows and isinstance(node, exp.Window))

    for root in roots:
        for node in root.walk(prune=prune):
            yield cast(exp.Expression, node)


def _is_aggregate(node: exp.Expression) -> bool:
    if isinstance(node, exp.Any):
        return not isinstance(node.this, exp.Query)
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()  # sketch aggregates follow Spark's *_agg[_type] naming
        return name in _SPARK_AGGREGATES or re.search(r"_agg(_|$)", name) is not None
    return isinstance(node, exp.AggFunc)


def _has_aggregate(select: exp.Select) -> bool:
    return any(_is_aggregate(n) for n in _clause_nodes(select, skip_windows=True))


def _group_items(select: exp.Select, known: set[str]) -> list[exp.Expression] | None:
    """GROUP BY expressions with ordinals, ALL and output aliases resolved; None without GROUP BY."""
    group = select.args.get("group")
    if group is None:
        return None
    if any(group.args.get(a) for a in ("rollup", "cube", "grouping_sets")) or any(
        isinstance(e, (exp.Rollup, exp.Cube, exp.GroupingSets)) for e in group.expressions
    ):
        raise _Refusal("GROUP BY ROLLUP, CUBE or GROUPING SETS")
    if any(_is_star(i) for i in select.expressions):
        raise _Refusal("SELECT * with GROUP BY")
    if group.args.get("all"):
        return [i.unalias() for i in select.expressions if not any(_is_aggregate(n) for n in i.walk())]
    plain = {e.name.lower() for e in group.expressions if isinstance(e, exp.Column)}
    return [_resolve_group_item(e, select, known, plain) for e in group.expressions]


def _resolve_group_item(item: exp.Expression, select: exp.Select, known: set[str], plain: set[str]) -> exp.Expression:
    node = _unparen(item)
    if isinstance(node, exp.Literal) and not node.is_string and node.name.isdigit():
        n = int(node.name)
        if not 1 <= n <= len(select.expressions):
            raise _Refusal(f"GROUP BY position {n} is not in the SELECT list")
        return select.expressions[n - 1].unalias()
    if not isinstance(node, exp.Column) or node.table:
        return node
    name = node.name.lower()
    aliased = {i.alias.lower(): i.this for i in select.expressions if isinstance(i, exp.Alias)}.get(name)
    if aliased is None or name in known or any(_is_aggregate(n) for n in aliased.walk()):
        return node
    # Spark binds a GROUP BY name to an input column before an output alias. Without the
    # input schema, a column is certain when WHERE, ON or the aliased expression reads it.
    where = select.args.get("where")
    roots = [where, aliased, *(j.args.get("on") for j in select.args.get("joins") or [])]
    read = {
        n.name.lower() for root in roots if root
        for n in root.walk(prune=lambda x: isinstance(x, exp.Query)) if isinstance(n, exp.Column)
    }
    if name in read:
        return node
    columns = {c.name.lower() for c in aliased.find_all(exp.Column)}
    if not columns or columns <= plain - {name}:
        raise _Refusal(f"GROUP BY {name} may be a column or the output alias {name!r}")
    return aliased


def _conjuncts(cond: exp.Expression | None) -> list[exp.Expression]:
    if cond is None:
        return []
    cond = _unparen(cond)
    if not isinstance(cond, exp.And):
        return [cond]
    return [_unparen(cast(exp.Expression, c)) for c in cond.flatten()]


def _unparen(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _is_star(item: exp.Expression) -> bool:
    return isinstance(item, exp.Star) or (isinstance(item, exp.Column) and isinstance(item.this, exp.Star))


def _short(node: exp.Expression, limit: int = 40) -> str:
    text = node.sql(dialect=DIALECT)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fn_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    return _AGG_KINDS.get(type(node)) or node.sql(dialect=DIALECT).split("(")[0].lower()


def _sql(text: str) -> exp.Expression:
    return cast(exp.Expression, sqlglot.parse_one(text, read=DIALECT))


# -- partial: decomposition of the aggregates ---------------------------------------------


def _output_name(item: exp.Expression) -> str:
    """The column name Spark gives a SELECT item (from the query as typed)."""
    if isinstance(item, exp.Alias):
        return item.alias
    name = _spark_name(item)
    if name is None:
        raise _Refusal(f"unaliased output {_short(item)} needs AS <name>")
    return name


def _spark_name(node: exp.Expression) -> str | None:
    """Spark's generated name for an unaliased expression, for the forms known here."""
    node = _unparen(node)
    if isinstance(node, exp.Column):
        return None if isinstance(node.this, exp.Star) else node.name
    if isinstance(node, exp.Literal):
        return node.name if node.is_string or re.fullmatch(r"[0-9]+(\.[0-9]+)?", node.name) else None
    operator = _OPERATORS.get(type(node))
    if operator:
        left, right = _spark_name(node.this), _spark_name(node.expression)
        return f"({left} {operator} {right})" if left and right else None
    if isinstance(node, exp.Anonymous):
        function = node.name.lower() if node.name.lower() in _ANONYMOUS_KINDS else None
    else:
        function = None if isinstance(node, exp.Any) else _AGG_KINDS.get(type(node))
    args = _agg_args(node)
    if function is None or not args:
        return None
    if isinstance(node, exp.ApproxDistinct):
        args = args[:1]  # Spark leaves relativeSD out of the name
    if isinstance(node, exp.Count) and isinstance(args[0], exp.Star):
        return "count(1)"
    names = [_spark_name(a) for a in args]
    return f"{function}({', '.join(n for n in names if n)})" if all(names) else None


def _agg_args(node: exp.Expression) -> list[exp.Expression]:
    return [_unparen(a) for a in node.iter_expressions()]


def _cast_like(value: str, witness: str) -> str:
    # Spark SQL has no CAST(x AS TYPEOF(y)); from_json with a schema built from typeof()
    # (foldable) is one, exact for integers, decimals and doubles (shortest round trip).
    return f"FROM_JSON(TO_JSON(NAMED_STRUCT('v', {value})), CONCAT('v ', TYPEOF({witness}))).v"


def _avg(total: str, count: str, witness: str) -> str:
    """Spark's avg from the combined sum and count, in the type of `witness` (a partial avg)."""
    plain = f"TO_JSON(NAMED_STRUCT('v', {total} / {count}))"
    json = (
        f"CASE WHEN COALESCE({count}, 0) = 0 THEN NULL "
        f"WHEN TYPEOF({witness}) LIKE 'decimal%' THEN {_decimal_quotient_json(total, count, witness)} "
        f"ELSE {plain} END"
    )
    return f"FROM_JSON({json}, CONCAT('v ', TYPEOF({witness}))).v"


def _decimal_quotient_json(total: str, count: str, witness: str) -> str:
    """`total / count` rounded half up to the scale of `witness`, exactly, as JSON.

    Spark's decimal avg divides straight to the result scale, while SQL division caps
    precision at 38 digits and may round earlier. So divide the unscaled digits by
    schoolbook long division in 18-digit chunks, where every quotient fits a bigint.
    """

    def whole(x: str) -> str:
        return f"CAST({x} AS DECIMAL(38, 0))"

    def scale(typed: str) -> str:
        return f"CAST(REGEXP_EXTRACT(TYPEOF({typed}), ',([0-9]+)', 1) AS INT)"

    digits = f"LPAD(REPLACE(CAST(ABS({total}) AS STRING), '.', ''), 54, '0')"
    chunk = "1000000000000000000"
    quotients: list[str] = []
    rest = "0"
    for start in (1, 19, 37):
        piece = f"CAST(SUBSTR({digits}, {start}, 18) AS DECIMAL(38, 0))"
        part = whole(f"{rest} * {chunk} + {piece}") if quotients else piece
        quotients.append(whole(f"{part} DIV {count}"))
        rest = whole(f"{part} % {count}")
    integral = whole(f"{quotients[0]} * {chunk} * {chunk} + {quotients[1]} * {chunk} + {quotients[2]}")
    shift = whole(f"CONCAT('1', REPEAT('0', {scale(witness)} - {scale(total)}))")
    tail = whole(f"{rest} * {shift}")
    fraction = f"({tail} DIV {count}) + IF(2 * ({tail} % {count}) >= {count}, 1, 0)"
    unscaled = f"CAST({whole(f'{integral} * {shift} + {fraction}')} AS STRING)"
    sign = f"IF({total} < 0, '-', '')"
    return f"""CONCAT('{{"v":', {sign}, {unscaled}, 'E-', {scale(witness)}, '}}')"""


class _Combiner:
    """Splits an aggregate SELECT into per-partition partials and their combination.

    The combine has three layers: merge the partials per group (`__a*`), finish each
    original aggregate from the merged states (`__v*`), then evaluate the original
    SELECT, HAVING, ORDER BY and LIMIT over the finished values and group keys (`__k*`).
    """

    def __init__(self, keys: list[exp.Expression]) -> None:
        self.keys = keys
        self._key_sql = [k.sql(dialect=DIALECT) for k in keys]
        self.partials: list[exp.Expression] = []
        self._rollups: list[str] = []  # per partial: how partials of it merge into one
        self._partial_names: dict[str, str] = {}
        self.merged: list[str] = []
        self.finished: list[str] = []
        self._finished_names: dict[str, str] = {}
        self.kinds: list[str] = []

    def build(self, select: exp.Select, as_typed: list[exp.Expression]) -> tuple[str, str]:
        """The partial and combine SQL; `as_typed` are the SELECT items before normalization."""
        aliases: dict[str, exp.Expression] = {}
        sources: dict[str, exp.Expression] = {}
        items = []
        for item, typed in zip(select.expressions, as_typed, strict=True):
            combined = self._rewrite(item.unalias(), aliases, sources, clause="SELECT")
            items.append(exp.alias_(combined, _output_name(typed), quoted=True))
            aliases.setdefault(items[-1].alias.lower(), combined)
            sources.setdefault(items[-1].alias.lower(), item.unalias())
        having = select.args.get("having")
        condition = self._rewrite(having.this, aliases, sources, "HAVING") if having else None
        order = select.args.get("order")
        ordered = [o.copy() for o in order.expressions] if order else []
        outputs = {i.this.sql(dialect=DIALECT): i.alias for i in items}
        for o in ordered:
            sort_by = self._rewrite(o.this, aliases, sources, "ORDER BY")
            name = outputs.get(sort_by.sql(dialect=DIALECT))
            # Refer to outputs by name: Spark resolves those in any ORDER BY.
            o.set("this", exp.column(name, quoted=True) if name else sort_by)
        outer = exp.select(*items).from_(self._finish_layer())
        outer.set("distinct", exp.Distinct() if select.args.get("distinct") else None)
        outer.set("where", exp.Where(this=condition) if condition else None)
        outer.set("order", exp.Order(expressions=ordered) if ordered else None)
        for arg in ("limit", "offset"):
            if select.args.get(arg):
                outer.set(arg, select.args[arg].copy())
        return self._partial_select(select).sql(dialect=DIALECT), outer.sql(dialect=DIALECT)

    def _finish_layer(self) -> exp.Expression:
        keys = [f"__k{i}" for i in range(len(self.keys))]
        merged = [f"{sql} AS __a{i}" for i, sql in enumerate(self.merged)]
        merge = f"SELECT {', '.join(keys + merged) or '1 AS __a'} FROM {PARTIALS_TABLE}"
        if keys:
            merge += f" GROUP BY {', '.join(keys)}"
        finished = [f"{sql} AS __v{i}" for i, sql in enumerate(self.finished)]
        finish = f"SELECT {', '.join(keys + finished) or '1 AS __v'} FROM ({merge})"
        return exp.paren(_sql(finish))

    def _partial_select(self, select: exp.Select) -> exp.Select:
        partial = select.copy()
        keys = [exp.alias_(k.copy(), f"__k{i}") for i, k in enumerate(self.keys)]
        parts = [exp.alias_(p, f"__p{i}") for i, p in enumerate(self.partials)]
        partial.set("expressions", keys + parts or [exp.alias_(exp.Literal.number(1), "__p")])
        for arg in ("having", "order", "limit", "offset", "distinct"):
            partial.set(arg, None)
        partial.set("group", exp.Group(expressions=[k.copy() for k in self.keys]) if self.keys else None)
        return partial

    def _rewrite(
        self,
        node: exp.Expression,
        aliases: dict[str, exp.Expression],
        sources: dict[str, exp.Expression],
        clause: str,
    ) -> exp.Expression:
        def visit(n: exp.Expression) -> exp.Expression:
            key = self._key_index(n)
            if key is not None:
                if clause != "SELECT" and isinstance(n, exp.Column) and not n.table:
                    other = sources.get(n.name.lower())
                    if other is not None and self._key_index(other) != key:
                        raise _Refusal(f"{n.name!r} in {clause} is both a column and an output alias")
                return exp.column(f"__k{key}")
            if isinstance(n, exp.Filter) or _is_aggregate(n):
                return self._finish(n)
            if isinstance(n, (exp.Query, exp.Window)):
                raise _Refusal(f"{n.key.upper()} inside an aggregate query's {clause}")
            if isinstance(n, exp.Column):
                alias = aliases.get(n.name.lower()) if not n.table else None
                if alias is None:
                    raise _Refusal(f"column {_short(n)} is neither grouped nor aggregated")
                return alias.copy()
            return n

        return node.copy().transform(visit)

    def _key_index(self, node: exp.Expression) -> int | None:
        text = node.sql(dialect=DIALECT)
        if text in self._key_sql:
            return self._key_sql.index(text)
        if not isinstance(node, exp.Column):
            return None
        hits = [
            i for i, k in enumerate(self.keys)
            if isinstance(k, exp.Column) and k.name == node.name and not (k.table and node.table)
        ]
        return hits[0] if len(hits) == 1 else None

    def rollup_sql(self) -> str:
        """Partials merged per group into rows of the partials' own columns and types."""
        keys = [f"__k{i}" for i in range(len(self.keys))]
        merged = [f"{sql} AS __p{i}" for i, sql in enumerate(self._rollups)]
        rollup = f"SELECT {', '.join(keys + merged) or 'MIN(__p) AS __p'} FROM {PARTIALS_TABLE}"
        return rollup + (f" GROUP BY {', '.join(keys)}" if keys else "")

    def _partial(self, agg: exp.Expression, where: exp.Expression | None, rollup: Callable[[str], str]) -> str:
        if where is not None:
            agg = exp.Filter(this=agg, expression=where.copy())
        text = agg.sql(dialect=DIALECT)
        if text not in self._partial_names:
            name = f"__p{len(self.partials)}"
            self._partial_names[text] = name
            self.partials.append(agg)
            self._rollups.append(rollup(name))
        return self._partial_names[text]

    def _merge(self, sql: str) -> str:
        if sql not in self.merged:
            self.merged.append(sql)
        return f"__a{self.merged.index(sql)}"

    def _finish(self, node: exp.Expression) -> exp.Expression:
        text = node.sql(dialect=DIALECT)
        if text not in self._finished_names:
            self._finished_names[text] = f"__v{len(self.finished)}"
            self.finished.append(self._finished_value(node))
        return exp.column(self._finished_names[text])

    def _finished_value(self, node: exp.Expression) -> str:
        where = node.expression if isinstance(node, exp.Filter) else None
        agg = node.this if isinstance(node, exp.Filter) else node
        kind = _decomposable_kind(agg)
        if kind not in self.kinds:
            self.kinds.append(kind)
        args = [a.copy() for a in _agg_args(agg)]
        if kind in ("count", "count_if"):
            return self._merge(f"COALESCE(SUM({self._partial(agg.copy(), where, _summed)}), 0)")
        if kind == "sum":
            p = self._partial(agg.copy(), where, _typed_sum)
            return self._merge(_typed_sum(p))
        if kind == "avg":
            total = self._partial(exp.Sum(this=args[0]), where, _typed_sum)
            count = self._partial(exp.Count(this=args[0].copy()), where, _summed)
            witness = self._partial(exp.Avg(this=args[0].copy()), where, "MIN({})".format)
            merged_total = self._merge(_typed_sum(total))
            return _avg(merged_total, self._merge(f"SUM({count})"), self._merge(f"MIN({witness})"))
        if kind == "approx_count_distinct":
            sketch = self._partial(_distinct_sketch(args), where, "HLL_UNION_AGG({})".format)
            return self._merge(f"COALESCE(HLL_SKETCH_ESTIMATE(HLL_UNION_AGG({sketch})), 0)")
        simple = f"{kind.upper()}({{}})".format
        return self._merge(simple(self._partial(_SIMPLE_PARTIALS[kind](this=args[0]), where, simple)))


def _summed(partial: str) -> str:
    return f"SUM({partial})"


def _typed_sum(partial: str) -> str:
    """The sum of partial sums, in the partials' own type (as Spark's sum would type it)."""
    return _cast_like(f"SUM({partial})", f"MIN({partial})")


def _distinct_sketch(args: list[exp.Expression]) -> exp.Expression:
    """The per-partition HLL sketch standing in for approx_count_distinct."""
    lg_k = _HLL_DEFAULT_LG_K
    if len(args) == 2:
        rsd = args[1]
        if not isinstance(rsd, exp.Literal) or rsd.is_string or float(rsd.name) <= 0:
            raise _Refusal("approx_count_distinct with a non-literal relativeSD")
        lg_k = min(21, max(4, math.ceil(2 * math.log2(1.04 / float(rsd.name)))))
    value = args[0].sql(dialect=DIALECT)
    # hll_sketch_agg takes only int, bigint, string or binary: sketch a 64-bit hash.
    return _sql(f"HLL_SKETCH_AGG(CASE WHEN ({value}) IS NULL THEN NULL ELSE XXHASH64({value}) END, {lg_k})")


def _decomposable_kind(agg: exp.Expression) -> str:
    if isinstance(agg, exp.Anonymous):
        name = agg.name.lower()
        if name not in _ANONYMOUS_KINDS or len(agg.expressions) != 1:
            raise _Refusal(f"{name}() does not decompose over partitions")
        kind = _ANONYMOUS_KINDS[name]
    else:
        found = _AGG_KINDS.get(type(agg))
        if found is None:
            raise _Refusal(f"{_fn_name(agg)}() does not decompose over partitions")
        kind = found
    if any(isinstance(a, exp.Distinct) for a in agg.iter_expressions()) and kind not in ("min", "max"):
        raise _Refusal(f"{kind}(DISTINCT ...) does not decompose over partitions")
    if kind not in ("count", "approx_count_distinct") and len(_agg_args(agg)) != 1:
        raise _Refusal(f"{kind}() with {len(_agg_args(agg))} arguments")
    return kind
