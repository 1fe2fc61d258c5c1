"""Column lineage of one Spark SQL query, traced with sqlglot.

Given a query and the columns of the stages it reads, `analyze` names the query's
output columns and, for each, the input columns it depends on:

- **direct**: the value flows into the output through the projection (a plain
  reference, an expression, an aggregate's or window function's argument, a
  CASE branch's result);
- **indirect**: the column decides which rows exist or how they combine: WHERE,
  JOIN ON/USING, GROUP BY, HAVING, QUALIFY, ORDER BY under a LIMIT, window
  PARTITION BY/ORDER BY, CASE conditions, aggregate FILTER clauses, and
  subqueries used as predicates.

A column that is both is reported as direct. `SELECT *` is expanded with the known
input columns; CTEs, derived tables, set operations and correlated subqueries are
followed scope by scope (`sqlglot.optimizer.qualify` + `scope`). This module is
pure: it never touches Spark, the store or a Flow.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope

DIALECT = "spark"
DIRECT = "direct"
INDIRECT = "indirect"

Key = tuple[str, str]          # (input stage, column)
Deps = dict[Key, str]          # input column -> DIRECT | INDIRECT


class LineageUnavailable(Exception):
    """The query's column lineage cannot be traced; `str()` says why."""


@dataclass(frozen=True)
class QueryColumns:
    """Outputs of a query and the input columns each one depends on."""

    outputs: tuple[str, ...]
    deps: Mapping[str, Deps] = field(default_factory=dict)


def merge(target: Deps, deps: Mapping[Key, str], via: str) -> None:
    """Add `deps`, reached through a `via` dependency, to `target`; direct wins."""
    for key, kind in deps.items():
        new = DIRECT if via == DIRECT and kind == DIRECT else INDIRECT
        if target.get(key) != DIRECT:
            target[key] = new


def _safe_type(type_text: str) -> str:
    if not type_text:
        return "string"
    try:
        exp.DataType.build(type_text, dialect=DIALECT)
    except (SqlglotError, ValueError):
        return "string"
    return type_text


def _within(node: Any, ancestor: Any) -> bool:
    current: Any = node
    while current is not None:
        if current is ancestor:
            return True
        current = current.parent
    return False


def _indirect_position(node: Any, top: Any) -> bool:
    """True when `node` sits where it selects or orders rows rather than giving values."""
    current: Any = node
    while current is not top and current.parent is not None:
        parent = current.parent
        key = current.arg_key
        if isinstance(parent, exp.Window) and key in ("partition_by", "order"):
            return True
        if isinstance(parent, exp.If) and key == "this":
            return True
        if isinstance(parent, exp.Case) and key == "this":
            return True
        if isinstance(parent, (exp.Where, exp.Having, exp.Qualify)):
            return True
        current = parent
    return False


class _Tracer:
    """Follows columns through the scopes of one qualified query."""

    def __init__(self, tables: Mapping[str, str], names: Mapping[str, Mapping[str, str]]) -> None:
        self.tables = tables          # lower-cased table name -> stage name
        self.names = names            # stage -> lower-cased column -> column as recorded
        self._outputs: dict[tuple[int, int], Deps] = {}
        self._indirect: dict[int, Deps] = {}
        self._busy: set[tuple[int, int]] = set()

    @staticmethod
    def _branches(scope: Scope) -> list[Scope]:
        if not isinstance(scope.expression, exp.SetOperation):
            return []
        # Called `union_scopes` before sqlglot 26.
        return list(getattr(scope, "set_operation_scopes", None) or getattr(scope, "union_scopes", []))

    @staticmethod
    def selects(scope: Scope) -> list[Any]:
        expression: Any = scope.expression
        return list(expression.selects)

    def output(self, scope: Scope, index: int) -> Deps:
        """Input columns that output `index` of `scope` depends on (its rows' filters included)."""
        key = (id(scope), index)
        if key in self._outputs:
            return self._outputs[key]
        if key in self._busy:     # a recursive CTE referring to itself
            return {}
        self._busy.add(key)
        deps: Deps = {}
        branches = self._branches(scope)
        if branches:
            for branch in branches:
                merge(deps, self.output(branch, index), DIRECT)
        else:
            selects = self.selects(scope)
            if index < len(selects):
                projection = selects[index]
                for column in scope.columns:
                    if _within(column, projection):
                        via = INDIRECT if _indirect_position(column, projection) else DIRECT
                        merge(deps, self.column(scope, column), via)
                for sub in scope.subquery_scopes:
                    if _within(sub.expression, projection):
                        via = INDIRECT if _indirect_position(sub.expression, projection) else DIRECT
                        for i in range(len(self.selects(sub))):
                            merge(deps, self.output(sub, i), via)
            merge(deps, self.indirect(scope), INDIRECT)
        self._busy.discard(key)
        self._outputs[key] = deps
        return deps

    def indirect(self, scope: Scope) -> Deps:
        """Input columns that decide which rows `scope` yields (for every output)."""
        key = id(scope)
        if key in self._indirect:
            return self._indirect[key]
        self._indirect[key] = {}   # guards against recursive CTEs
        deps: Deps = {}
        branches = self._branches(scope)
        if branches:
            for branch in branches:
                merge(deps, self.indirect(branch), INDIRECT)
            self._indirect[key] = deps
            return deps
        select = scope.expression
        selects = self.selects(scope)
        order = select.args.get("order")
        limited = bool(select.args.get("limit") or select.args.get("offset"))
        for column in scope.columns:
            if any(_within(column, p) for p in selects):
                continue
            if order is not None and not limited and _within(column, order):
                continue   # ordering alone changes no stored value
            merge(deps, self.column(scope, column), INDIRECT)
        for sub in scope.subquery_scopes:
            if any(_within(sub.expression, p) for p in selects):
                continue
            for i in range(len(self.selects(sub))):
                merge(deps, self.output(sub, i), INDIRECT)
        for _alias, (_node, source) in scope.selected_sources.items():
            if isinstance(source, Scope):
                merge(deps, self.indirect(source), INDIRECT)
        self._indirect[key] = deps
        return deps

    def _source(self, scope: Scope, alias: str) -> object | None:
        current: Scope | None = scope
        while current is not None:
            if alias in current.sources:
                return current.sources[alias]
            current = current.parent
        return None

    def column(self, scope: Scope, column: exp.Column) -> Deps:
        """What one column reference in `scope` reads."""
        source: object | None = None
        if column.table:
            source = self._source(scope, column.table)
        elif len(scope.selected_sources) == 1:
            # Not qualified (the input's columns are unknown): the only source has it.
            source = next(iter(scope.selected_sources.values()))[1]
        if source is None:
            return {}
        if isinstance(source, Scope) and source.is_udtf:
            # LATERAL VIEW explode(...) and friends: their outputs come from their arguments.
            deps: Deps = {}
            for inner in source.columns:
                if inner is not column:
                    merge(deps, self.column(source, inner), DIRECT)
            return deps
        if isinstance(source, Scope):
            wanted = column.name.lower()
            expression: Any = source.expression
            for i, name in enumerate(expression.named_selects):
                if name.lower() == wanted:
                    return self.output(source, i)
            return {}
        if isinstance(source, exp.Table):
            stage = self.tables.get(source.name.lower())
            if stage is None:
                return {}
            name = self.names.get(stage, {}).get(column.name.lower(), column.name)
            return {(stage, name): DIRECT}
        if isinstance(source, exp.Expression):
            found: Deps = {}
            for inner in source.find_all(exp.Column):
                if inner is not column:
                    merge(found, self.column(scope, inner), DIRECT)
            return found
        return {}


def _qualified(tree: Any, schema: Mapping[str, Mapping[str, str]], complete: bool) -> Any:
    last: Exception | None = None
    # Validation needs every input's columns; without them it can only fail.
    for validate in (True, False) if complete else (False,):
        try:
            return qualify(tree.copy(), dialect=DIALECT, schema=dict(schema), validate_qualify_columns=validate,
                           quote_identifiers=False, identify=False)
        except (SqlglotError, KeyError, ValueError) as err:
            last = err
    raise LineageUnavailable(f"the query could not be resolved: {last}")


def _output_names(original: Any, qualified: Any, recorded: Sequence[str] | None) -> list[tuple[str, int]]:
    """Each output's name and the index of the projection that makes it.

    Recorded names (what Spark called the columns) win: matched by name first, since
    Spark may reorder (a USING key comes first), then the rest in order (Spark names
    unaliased expressions by their text, which sqlglot does not reproduce exactly).
    """
    names = list(qualified.named_selects)
    if recorded is not None and len(recorded) == len(names):
        free: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            free.setdefault(name.lower(), []).append(i)
        matched: list[int | None] = [free[r.lower()].pop(0) if free.get(r.lower()) else None for r in recorded]
        rest = iter(i for i in range(len(names)) if i not in set(matched))
        return [(r, i if i is not None else next(rest)) for r, i in zip(recorded, matched, strict=True)]
    originals = list(original.selects) if isinstance(original, exp.Query) else []
    out = []
    for i, name in enumerate(names):
        source = originals[i] if len(originals) == len(names) else None
        if source is not None and not isinstance(source, (exp.Alias, exp.Column, exp.Star)):
            out.append((source.sql(dialect=DIALECT).lower(), i))   # Spark names it by its text
        else:
            out.append((name, i))
    return out


def analyze(sql: str, inputs: Mapping[str, Sequence[tuple[str, str]] | None],
            recorded: Sequence[str] | None = None) -> QueryColumns:
    """Trace the column lineage of one query (cached: payloads are rebuilt often).

    Args:
        sql: the transform's Spark SQL.
        inputs: stage name -> its columns as (name, type) pairs, or None when not known
            yet. Table references match stage names case-insensitively.
        recorded: the output column names Spark recorded for this stage, if it ran;
            they name the outputs.

    Returns:
        The output columns and, for each, the input columns it depends on. Treat it
        as read-only: it is shared between calls.

    Raises:
        LineageUnavailable: the query cannot be parsed or resolved, or a `*` reads a
            stage whose columns are not known.
    """
    key = tuple(sorted((name, tuple(cols) if cols is not None else None) for name, cols in inputs.items()))
    result = _analyze_cached(sql, key, tuple(recorded) if recorded is not None else None)
    if isinstance(result, str):
        raise LineageUnavailable(result)
    return result


@functools.lru_cache(maxsize=4096)
def _analyze_cached(sql: str, inputs: tuple[tuple[str, tuple[tuple[str, str], ...] | None], ...],
                    recorded: tuple[str, ...] | None) -> QueryColumns | str:
    try:
        return _analyze(sql, dict(inputs), recorded)
    except LineageUnavailable as why:   # remembered too: the answer will not change
        return str(why)


def _analyze(sql: str, inputs: Mapping[str, Sequence[tuple[str, str]] | None],
             recorded: Sequence[str] | None) -> QueryColumns:
    try:
        tree = sqlglot.parse_one(sql, read=DIALECT)
    except SqlglotError as err:
        raise LineageUnavailable(f"the query does not parse: {err}") from None
    tables = {name.lower(): name for name in inputs}
    names = {name: {c.lower(): c for c, _ in cols} for name, cols in inputs.items() if cols is not None}
    schema = {name.lower(): {c: _safe_type(t) for c, t in cols}
              for name, cols in inputs.items() if cols is not None}
    qualified = _qualified(tree, schema, complete=all(cols is not None for cols in inputs.values()))
    if not isinstance(qualified, exp.Query):
        raise LineageUnavailable("not a query")
    for projection in qualified.selects:
        if isinstance(projection, exp.Star) or (isinstance(projection, exp.Column)
                                                and isinstance(projection.this, exp.Star)):
            raise LineageUnavailable("SELECT * reads a stage whose columns are not known yet")
    root = build_scope(qualified)
    if root is None:
        raise LineageUnavailable("the query has no scope")
    pairs = _output_names(tree, qualified, recorded)
    tracer = _Tracer(tables, names)
    deps = {name: tracer.output(root, i) for name, i in pairs}
    return QueryColumns(tuple(name for name, _ in pairs), deps)
