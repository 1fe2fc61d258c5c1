"""How a SQL transform's output partitions depend on its inputs: map, partial or reduce.

`infer_mode` reads one Spark SQL query (sqlglot, Spark dialect) and decides:

- ``map``: output partition *p* depends only on input partition *p*; the executor runs
  the query once per partition value with every partitioned input restricted to it.
- ``partial``: a decomposable aggregate over one partitioned input; `partial_plan`
  derives (through `combine`) a per-partition partial aggregate and a combine over the
  union of partials whose output equals the original query's, column names and types
  included.
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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from sqlglot import exp
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from jupyter_dataflow.core.combine import PARTIALS_TABLE as PARTIALS_TABLE  # part of this API
from jupyter_dataflow.core.combine import Combiner
from jupyter_dataflow.core.errors import StageDefinitionError
from jupyter_dataflow.core.sql import DIALECT, parse
from jupyter_dataflow.core.sqltree import (
    Refusal,
    clause_nodes,
    conjuncts,
    fn_name,
    has_aggregate,
    is_aggregate,
    is_star,
    short,
    table_name,
    unparen,
)

Mode = Literal["map", "partial", "reduce"]


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
    except Refusal as refusal:
        if requested == "map":
            raise StageDefinitionError(f"cannot run as map: {refusal}", stage) from None
        not_map: Refusal | None = refusal
    else:
        if requested != "partial":
            return ModeDecision("map", analysis.spelled(keyed.key), keyed.why or "")
        not_map = None
    try:
        parts = analysis.partial()
    except Refusal as refusal:
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
    except Refusal as refusal:
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
        self._memo: dict[tuple[int, bool], _Keyed | Refusal | None] = {}

    def spelled(self, key: str) -> str:
        return self._spelling.get(key, key)

    def reads(self, node: exp.Expression, seen: frozenset[str] = frozenset()) -> set[str]:
        """The partitioned inputs read anywhere under `node`, through CTEs."""
        found: set[str] = set()
        for table in node.find_all(exp.Table):
            name = table_name(table)
            if name in self.ctes and name not in seen:
                found |= self.reads(self.ctes[name], seen | {name})
            elif name in self.inputs:
                found.add(name)
        return found

    # -- map -------------------------------------------------------------------------

    def map(self) -> _Keyed:
        if not self.partitioned:
            raise Refusal("no partitioned input")
        if self.blocker:
            raise Refusal(self.blocker)
        keyed = self.query(self.tree)
        if keyed is None:
            raise Refusal("no partitioned input")
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
            except Refusal as refusal:
                done = refusal
            self._memo[memo] = done
        if isinstance(done, Refusal):
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
            raise Refusal(f"unsupported query form {node.key.upper()} over a partitioned input")
        return None

    def _set_operation(self, node: exp.SetOperation) -> _Keyed | None:
        kind = node.key.upper()
        left, right = self.query(node.this), self.query(node.expression)
        if left is None and right is None:
            return None
        if left is None or right is None:
            raise Refusal(f"a {kind} branch reads no partitioned input")
        if left.key != right.key or left.position is None or left.position != right.position:
            raise Refusal(f"{kind} branches do not keep partition key {left.key!r} at the same position")
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
            name = table_name(node)
            if name in self.ctes:
                return self.query(self.ctes[name], keep_key)
            if name in self.inputs:
                return _Keyed(self.inputs[name], None, None)
        elif isinstance(node, exp.Subquery):
            return self.query(node, keep_key)
        if self.reads(node):
            raise Refusal(f"{node.key.upper()} in FROM reads a partitioned input")
        return None

    def _select(self, select: exp.Select, keep_key: bool) -> _Keyed | None:
        sources = self.sources(select)
        self._refuse_nested_reads(select)
        keyed = {s.alias: s.keyed for s in sources if s.keyed is not None}
        if not keyed:
            return None
        keys = sorted({k.key for k in keyed.values()})
        if len(keys) > 1:
            raise Refusal(f"inputs are partitioned by different keys ({', '.join(keys)})")
        ctx = _Ctx(keys[0], frozenset(keyed), frozenset(_preserved(sources)))
        reasons = [_map_joins(select, sources, ctx), _map_grouping(select, ctx), _map_windows(select, ctx)]
        position = _map_output(select, ctx) if keep_key or select.args.get("distinct") else None
        inner = [k.why for k in keyed.values() if k.why]
        why = next((r for r in reasons + inner if r), f"row-level query keeps partition key {ctx.key!r}")
        return _Keyed(ctx.key, position, why)

    def _refuse_nested_reads(self, select: exp.Select) -> None:
        for node in clause_nodes(select):
            if isinstance(node, exp.Query) and (names := self.reads(node)):
                raise Refusal(f"subquery over partitioned input {min(names)!r} inside an expression")
            if isinstance(node, exp.Lateral) and self.reads(node):
                raise Refusal("LATERAL over a partitioned input")

    # -- partial ---------------------------------------------------------------------

    def partial(self) -> _Parts:
        if not self.partitioned:
            raise Refusal("no partitioned input")
        select, original = self.tree, self.original
        if not isinstance(select, exp.Select) or not isinstance(original, exp.Select):
            raise Refusal(f"{select.key.upper()} at the top level is not an aggregate", specific=False)
        if not (select.args.get("group") or has_aggregate(select)):
            raise Refusal("no aggregation to decompose", specific=False)
        if self.blocker:
            raise Refusal(self.blocker)
        if len(self.partitioned) > 1:
            raise Refusal(f"aggregates over several partitioned inputs ({', '.join(sorted(self.partitioned))})")
        name = next(iter(self.partitioned))
        _refuse_partial_clauses(select)
        self._check_partial_sources(select, name)
        self._refuse_nested_reads(select)
        keys = _group_items(select, {self.inputs[name]}) or []
        combiner = Combiner(keys)
        partial_sql, combine_sql = combiner.build(select, original.expressions)
        why = f"aggregates ({', '.join(combiner.kinds)}) over {name!r} decompose per partition"
        return _Parts(name, partial_sql, combine_sql, combiner.rollup_sql(), why)

    def _check_partial_sources(self, select: exp.Select, name: str) -> None:
        try:
            sources = self.sources(select, keep_key=False)
        except Refusal as refusal:
            raise Refusal(f"subquery over {name!r} is not row-level: {refusal}") from None
        partitioned = [s for s in sources if s.keyed is not None]
        if len(partitioned) != 1:
            raise Refusal(f"reads partitioned input {name!r} {len(partitioned)} times in FROM")
        if partitioned[0].alias not in _preserved(sources):
            raise Refusal(f"{partitioned[0].alias!r} is null-supplied or filter-only in a join")


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
        for eq in conjuncts(cond):
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
        raise Refusal(f"joins {a!r} and {b!r} without equating partition key {ctx.key!r}")
    return f"joins {' and '.join(repr(a) for a in keyed)} on partition key {ctx.key!r}"


def _map_grouping(select: exp.Select, ctx: _Ctx) -> str | None:
    items = _group_items(select, {ctx.key})
    if items is None:
        if has_aggregate(select):
            raise Refusal(f"global aggregate: no GROUP BY on partition key {ctx.key!r}")
        return None
    if any(_is_key_ref(item, ctx) for item in items):
        return f"GROUP BY includes partition key {ctx.key!r}"
    shown = ", ".join(short(i) for i in items) or "()"
    raise Refusal(f"GROUP BY {shown} omits partition key {ctx.key!r}")


def _map_windows(select: exp.Select, ctx: _Ctx) -> str | None:
    named = {w.name.lower(): w for w in select.args.get("windows") or []}
    found = False
    for node in clause_nodes(select):
        if not isinstance(node, exp.Window) or node.arg_key == "windows":
            continue
        spec = named.get(node.alias.lower()) if node.alias else None
        parts = node.args.get("partition_by") or (spec.args.get("partition_by") if spec else None)
        if not any(_is_key_ref(p, ctx) for p in parts or []):
            raise Refusal(f"window {fn_name(node.this)}() is not partitioned by {ctx.key!r}")
        found = True
    return f"window PARTITION BY includes partition key {ctx.key!r}" if found else None


def _map_output(select: exp.Select, ctx: _Ctx) -> int | None:
    """Where the output keeps the key column unchanged; refuses when it does not."""
    kept, position, star_before, renamed = False, None, False, []
    for i, item in enumerate(select.expressions):
        if is_star(item):
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
            raise Refusal(f"partition key {ctx.key!r} may be NULL from an outer join")
        elif name == ctx.key:
            raise Refusal(f"output column {ctx.key!r} is computed, not the partition key")
    if kept:
        return position
    if renamed:
        raise Refusal(f"partition key {ctx.key!r} is renamed to {renamed[0]!r}")
    raise Refusal(f"output drops partition key {ctx.key!r}")


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
    node = unparen(node)
    if not isinstance(node, exp.Column) or node.args.get("db") or node.name.lower() != ctx.key:
        return False
    table = node.table.lower()
    if table:
        return table in ctx.keyed and table in ctx.preserved
    return bool(ctx.keyed & ctx.preserved)


def _key_alias(node: exp.Expression, ctx: _Ctx) -> str | None:
    """The partitioned source whose key column `node` is, if unambiguous."""
    node = unparen(node)
    if not isinstance(node, exp.Column) or node.args.get("db") or node.name.lower() != ctx.key:
        return None
    table = node.table.lower()
    if table:
        return table if table in ctx.keyed else None
    return next(iter(ctx.keyed)) if len(ctx.keyed) == 1 else None


def _is_any_key_column(node: exp.Expression, ctx: _Ctx) -> bool:
    """Whether `node` is the key column of some partitioned source, preserved or not."""
    node = unparen(node)
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


# -- clause refusals and GROUP BY resolution ----------------------------------------------


def _refuse_limit(node: exp.Expression) -> None:
    if node.args.get("limit") or node.args.get("offset"):
        raise Refusal("LIMIT/OFFSET applies across all partitions")


def _refuse_partial_clauses(select: exp.Select) -> None:
    for arg, what in (("qualify", "QUALIFY"), ("distribute", "DISTRIBUTE BY"), ("sort", "SORT BY"),
                      ("cluster", "CLUSTER BY"), ("windows", "WINDOW")):
        if select.args.get(arg):
            raise Refusal(f"{what} with aggregation")
    if any(isinstance(n, exp.Window) for n in clause_nodes(select)):
        raise Refusal("window function over an aggregate")
    if any(is_star(i) for i in select.expressions):
        raise Refusal("SELECT * with aggregation")


def _group_items(select: exp.Select, known: set[str]) -> list[exp.Expression] | None:
    """GROUP BY expressions with ordinals, ALL and output aliases resolved; None without GROUP BY."""
    group = select.args.get("group")
    if group is None:
        return None
    if any(group.args.get(a) for a in ("rollup", "cube", "grouping_sets")) or any(
        isinstance(e, (exp.Rollup, exp.Cube, exp.GroupingSets)) for e in group.expressions
    ):
        raise Refusal("GROUP BY ROLLUP, CUBE or GROUPING SETS")
    if any(is_star(i) for i in select.expressions):
        raise Refusal("SELECT * with GROUP BY")
    if group.args.get("all"):
        return [i.unalias() for i in select.expressions if not any(is_aggregate(n) for n in i.walk())]
    plain = {e.name.lower() for e in group.expressions if isinstance(e, exp.Column)}
    return [_resolve_group_item(e, select, known, plain) for e in group.expressions]


def _resolve_group_item(item: exp.Expression, select: exp.Select, known: set[str], plain: set[str]) -> exp.Expression:
    node = unparen(item)
    if isinstance(node, exp.Literal) and not node.is_string and node.name.isdigit():
        n = int(node.name)
        if not 1 <= n <= len(select.expressions):
            raise Refusal(f"GROUP BY position {n} is not in the SELECT list")
        return select.expressions[n - 1].unalias()
    if not isinstance(node, exp.Column) or node.table:
        return node
    name = node.name.lower()
    aliased = {i.alias.lower(): i.this for i in select.expressions if isinstance(i, exp.Alias)}.get(name)
    if aliased is None or name in known or any(is_aggregate(n) for n in aliased.walk()):
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
        raise Refusal(f"GROUP BY {name} may be a column or the output alias {name!r}")
    return aliased
