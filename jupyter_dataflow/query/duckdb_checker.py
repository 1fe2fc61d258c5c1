"""The checker that types a Spark query tree and rewrites it, in place, into DuckDB semantics.

Safety comes from an allow-list, not a deny-list: `Checker` walks the clauses of a
qualified tree, resolves columns through nested scopes, and hands every expression to the
handler registered for its node type in `HANDLERS`; a node without one is refused. The
tree helpers here (casts, wrapping, literal readers, runtime guards) are what handlers
rewrite with. The handlers live in `duckdb_operators` and `duckdb_functions`, which import
this module; it must not import them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlglot import exp
from sqlglot.errors import SqlglotError

from jupyter_dataflow.query.duckdb_types import (
    BOOL,
    DATE,
    DOUBLE,
    INT,
    LONG,
    NULL,
    ORDERABLE,
    OTHER,
    STRING,
    TS,
    TS_NTZ,
    Refuse,
    SparkType,
    duck_type,
)

# ------------------------------------------------------------------- tree helpers


def call(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def cast(node: exp.Expression, t: SparkType) -> exp.Expression:
    return exp.Cast(this=node, to=duck_type(t))


def wrap(node: exp.Expression, build: Callable[[exp.Expression], exp.Expression]) -> exp.Expression:
    """Replace `node` in its tree by `build(node)` (which may contain `node`)."""
    hole = exp.Null()
    node.replace(hole)
    new = build(node)
    hole.replace(new)
    return new


def coerce(node: exp.Expression, have: SparkType, want: SparkType) -> None:
    if have != want:
        exact_double(have, want)
        wrap(node, lambda n: cast(n, want))


def exact_double(have: SparkType, want: SparkType) -> None:
    """DuckDB converts decimals of more than 15 digits to DOUBLE with a possible double
    rounding; Spark rounds once. Up to 15 digits both are exact-then-correctly-rounded."""
    if have.kind == "decimal" and have.precision > 15 and want.kind in ("double", "float"):
        raise Refuse(f"converting {have} to DOUBLE is not checked beyond 15 digits")


def raise_if(cond: exp.Expression, value: exp.Expression, message: str) -> exp.Expression:
    """CASE WHEN cond THEN error(message) ELSE value END: DuckDB fails where Spark would."""
    return exp.Case(ifs=[exp.If(this=cond, true=call("error", exp.Literal.string(message)))], default=value)


def int_literal(node: exp.Expression) -> int | None:
    if isinstance(node, exp.Paren):
        return int_literal(node.this)
    if isinstance(node, exp.Neg):
        inner = int_literal(node.this)
        return None if inner is None else -inner
    if isinstance(node, exp.Literal) and not node.is_string and re.fullmatch(r"\d+", node.this):
        return int(node.this)
    return None


def str_literal(node: exp.Expression) -> str | None:
    return node.this if isinstance(node, exp.Literal) and node.is_string else None


def spark_name(node: exp.Expression) -> str:
    """The Spark spelling of a construct, for messages."""
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    try:
        text = node.sql(dialect="spark")
    except SqlglotError:
        return node.key
    found = re.match(r"([A-Za-z_][A-Za-z0-9_]*)\(", text)
    return found.group(1).lower() if found else node.key


_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TS_RE = re.compile(r"\d{4}-\d{2}-\d{2}( \d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?")


def typed_literal(text: str, t: SparkType) -> exp.Expression:
    """A string literal read as DATE/TIMESTAMP, accepted only in formats both engines agree on."""
    try:
        if t == DATE and _DATE_RE.fullmatch(text):
            date.fromisoformat(text)
            return exp.Cast(this=exp.Literal.string(text), to=duck_type(DATE))
        if t in (TS, TS_NTZ) and _TS_RE.fullmatch(text):
            datetime.fromisoformat(text)
            return exp.Cast(this=exp.Literal.string(text), to=duck_type(t))
    except ValueError:
        pass
    raise Refuse(f"the string {text!r} is not a plain {t} literal")


# ------------------------------------------------------------------ the checker


@dataclass
class _Scope:
    sources: dict[str, dict[str, SparkType]] = field(default_factory=dict)
    aliases: dict[str, SparkType] = field(default_factory=dict)
    kind: str = "query"  # query | from | exists | in | scalar
    phase: str = ""
    ctes: dict[str, list[tuple[str, SparkType]]] = field(default_factory=dict)





class Checker:
    """Types a qualified Spark query tree and rewrites it, in place, into DuckDB semantics."""

    def __init__(self, schemas: Mapping[str, Mapping[str, SparkType]]) -> None:
        self.schemas = schemas
        self.scopes: list[_Scope] = []

    # ---- queries

    def query(self, q: exp.Expression, ctes: Mapping[str, list[tuple[str, SparkType]]], kind: str) -> list[tuple[str, SparkType]]:
        if isinstance(q, exp.Subquery):
            only(q, {"this", "alias"})
            return self.query(q.this, ctes, kind)
        ctes = dict(ctes)
        with_ = q.args.get("with_")
        if with_ is not None:
            only(with_, {"expressions"})
            for cte in with_.expressions:
                only(cte, {"this", "alias"})
                if cte.args["alias"].columns:
                    raise Refuse("CTE column lists are not checked")
                ctes[cte.alias_or_name.lower()] = self.query(cte.this, ctes, "query")
        if isinstance(q, exp.SetOperation):
            return self.set_operation(q, ctes, kind)
        if isinstance(q, exp.Select):
            return self.select(q, ctes, kind)
        raise Refuse(f"{q.key.upper()} is not a checked query form")

    def set_operation(self, q: exp.SetOperation, ctes: Mapping[str, list[tuple[str, SparkType]]], kind: str) -> list[tuple[str, SparkType]]:
        only(q, {"with_", "this", "expression", "distinct", "order", "limit", "offset"})
        left = self.query(q.this, ctes, kind)
        right = self.query(q.expression, ctes, kind)
        if len(left) != len(right):
            raise Refuse("set operation sides have different column counts")
        for (name, lt), (_, rt) in zip(left, right, strict=True):
            if lt != rt:
                raise Refuse(f"set operation column {name!r} is {lt} on one side and {rt} on the other")
        scope = _Scope(aliases={n.lower(): t for n, t in left}, kind=kind, phase="order", ctes=dict(ctes))
        self.scopes.append(scope)
        try:
            self.order_limit(q)
        finally:
            self.scopes.pop()
        return left

    def select(self, q: exp.Select, ctes: Mapping[str, list[tuple[str, SparkType]]], kind: str) -> list[tuple[str, SparkType]]:
        q.set("hint", None)  # hints never change an answer
        only(q, {"with_", "expressions", "distinct", "from_", "joins", "where", "group", "having", "order", "limit", "offset"})
        distinct = q.args.get("distinct")
        if distinct is not None and distinct.args.get("on"):
            raise Refuse("DISTINCT ON is not Spark SQL")
        scope = _Scope(kind=kind, ctes=dict(ctes))
        self.scopes.append(scope)
        try:
            from_ = q.args.get("from_")
            if from_ is not None:
                self.source(from_.this, ctes, scope)
            for join in q.args.get("joins") or []:
                only(join, {"this", "on", "side", "kind", "using"})
                if join.args.get("using") or join.args.get("method"):
                    raise Refuse("JOIN ... USING / NATURAL JOIN is not checked")
                if (join.kind or "") not in ("", "INNER", "OUTER", "CROSS", "SEMI", "ANTI"):
                    raise Refuse(f"{join.kind} JOIN is not checked")
                self.source(join.this, ctes, scope)
                if join.args.get("on") is not None:
                    self.condition(join.args["on"])
            if q.args.get("where") is not None:
                scope.phase = "where"
                self.condition(q.args["where"].this)
            scope.phase = "select"
            group = q.args.get("group")
            if group is not None:
                only(group, {"expressions", "all"})
                for e in list(group.expressions):
                    self.orderable(self.expr(e), "GROUP BY")
            out: list[tuple[str, SparkType]] = []
            for p in list(q.expressions):
                if not isinstance(p, exp.Alias):
                    raise Refuse(f"unexpected projection {p.sql(dialect='spark')}")
                t = self.expr(p.this)
                scope.aliases.setdefault(p.alias.lower(), t)
                out.append((p.alias, t))
            if q.args.get("having") is not None:
                scope.phase = "having"
                self.condition(q.args["having"].this)
            scope.phase = "order"
            self.order_limit(q)
            return out
        finally:
            self.scopes.pop()

    def order_limit(self, q: exp.Expression) -> None:
        order = q.args.get("order")
        if order is not None:
            only(order, {"expressions"})
            self.ordering(order)
        for key in ("limit", "offset"):
            clause = q.args.get(key)
            if clause is None:
                continue
            only(clause, {"expression"})
            value = int_literal(clause.expression)
            if value is None or value < 0:
                raise Refuse(f"{key.upper()} must be a non-negative integer literal")

    def ordering(self, order: exp.Order) -> None:
        for o in order.expressions:
            if not isinstance(o, exp.Ordered) or o.args.get("with_fill"):
                raise Refuse("unexpected ORDER BY form")
            self.orderable(self.expr(o.this), "ORDER BY")
            desc = bool(o.args.get("desc"))
            if o.args.get("nulls_first") is None:  # Spark: NULLS FIRST for ASC, NULLS LAST for DESC
                o.set("nulls_first", not desc)

    def source(self, node: exp.Expression, ctes: Mapping[str, list[tuple[str, SparkType]]], scope: _Scope) -> None:
        if isinstance(node, exp.Table):
            only(node, {"this", "alias"})
            if node.args.get("alias") is not None and node.args["alias"].columns:
                raise Refuse("table alias column lists are not checked")
            name = node.name.lower()
            if name in ctes:
                cols = _column_map(ctes[name])
            elif name in self.schemas:
                cols = dict(self.schemas[name])
            else:
                raise Refuse(f"table {node.name!r} is not a committed stage")
        elif isinstance(node, exp.Subquery):
            only(node, {"this", "alias"})
            if node.args.get("alias") is not None and node.args["alias"].columns:
                raise Refuse("subquery alias column lists are not checked")
            cols = _column_map(self.query(node.this, ctes, "from"))
        else:
            raise Refuse(f"{node.key.upper()} in FROM is not checked")
        alias = node.alias_or_name.lower()
        if alias in scope.sources:
            raise Refuse(f"source alias {alias!r} is used twice")
        scope.sources[alias] = cols

    # ---- expressions

    def condition(self, node: exp.Expression) -> None:
        t = self.expr(node)
        if t not in (BOOL, NULL):
            raise Refuse(f"a condition of type {t}")

    def orderable(self, t: SparkType, where: str) -> None:
        if t.kind not in ORDERABLE:
            raise Refuse(f"{where} on a {t} value is not checked")

    def column(self, col: exp.Column) -> SparkType:
        if col.args.get("db") or col.args.get("catalog") or not isinstance(col.this, exp.Identifier):
            raise Refuse(f"column reference {col.sql(dialect='spark')} is not checked")
        name, table = col.name.lower(), col.table.lower()
        if not table:
            here = self.scopes[-1]
            if name in here.aliases and here.phase in ("order", "having"):
                return here.aliases[name]
            raise Refuse(f"column {col.name!r} could not be resolved")
        for depth in range(len(self.scopes) - 1, -1, -1):
            scope = self.scopes[depth]
            if table in scope.sources:
                if name not in scope.sources[table]:
                    raise Refuse(f"column {col.name!r} could not be resolved")
                if depth != len(self.scopes) - 1:
                    self.correlated(depth)
                t = scope.sources[table][name]
                if t == OTHER:
                    self.other_column_use(col)
                return t
        raise Refuse(f"column {col.sql(dialect='spark')} could not be resolved")

    def other_column_use(self, col: exp.Column) -> None:
        parent = col.parent
        if isinstance(parent, exp.Count) or (isinstance(parent, exp.Is) and isinstance(parent.expression, exp.Null)):
            return
        raise Refuse(f"column {col.name!r} has a nested type; only COUNT and IS NULL are checked on it")

    def correlated(self, depth: int) -> None:
        inner, outer = self.scopes[-1], self.scopes[depth]
        ok = (depth == len(self.scopes) - 2 and inner.kind in ("exists", "in")
              and inner.phase == "where" and outer.phase == "where")
        if not ok:
            raise Refuse("this correlated subquery is not checked (only EXISTS/IN in WHERE)")

    def typed(self, node: exp.Expression) -> tuple[SparkType, exp.Expression]:
        """Type `node`; return its type and the node now in its place (handlers may replace it)."""
        parent, key, index = node.parent, node.arg_key, node.index
        t = self.expr(node)
        if parent is None or key is None:
            return t, node
        current = parent.args.get(key)
        if isinstance(current, list):
            current = current[index or 0]
        return t, current if isinstance(current, exp.Expression) else node

    def expr(self, node: exp.Expression) -> SparkType:
        handler = HANDLERS.get(type(node))
        if handler is None:
            if isinstance(node, exp.Func):
                raise Refuse(f"function '{spark_name(node)}' is not on the checked list")
            raise Refuse(f"{node.key.upper()} is not a checked construct")
        return handler(self, node)

    def exprs(self, nodes: Sequence[exp.Expression]) -> list[SparkType]:
        return [self.expr(n) for n in list(nodes)]

    def literal(self, node: exp.Literal) -> SparkType:
        if node.is_string:
            return STRING
        text = node.this
        if re.fullmatch(r"\d+", text):
            value = int(text)
            if value < 2**31:
                return INT
            if value < 2**63:
                return LONG
            if len(text) <= 38:
                return SparkType("decimal", len(text), 0)
            raise Refuse("integer literal too long")
        found = re.fullmatch(r"(\d*)\.(\d*)", text)
        if found:
            whole, frac = found.group(1).lstrip("0"), found.group(2)
            precision = max(len(whole) + len(frac), len(frac), 1)
            if precision > 38:
                raise Refuse("decimal literal too long")
            return SparkType("decimal", precision, len(frac))
        if re.fullmatch(r"(\d+\.?\d*|\.\d+)[eE][+-]?\d+", text):
            return DOUBLE
        raise Refuse(f"numeric literal {text!r} is not checked")

    def subquery(self, node: exp.Expression, kind: str) -> SparkType:
        query = node.this if isinstance(node, exp.Subquery) else node
        if isinstance(node, exp.Subquery):
            only(node, {"this"})
        cols = self.query(query, self.scopes[-1].ctes if self.scopes else {}, kind)
        if kind != "exists" and len(cols) != 1:
            raise Refuse("a subquery used as a value must return one column")
        return cols[0][1] if kind != "exists" else BOOL


# Handlers are module functions (in duckdb_operators and duckdb_functions) bound into
# `HANDLERS`; each types its children, checks Spark's rules, and rewrites the node for
# DuckDB when the engines differ.

_Handler = Callable[[Checker, Any], SparkType]
HANDLERS: dict[type, _Handler] = {}


def handles(*classes: type) -> Callable[[_Handler], _Handler]:
    def register(fn: _Handler) -> _Handler:
        for cls in classes:
            HANDLERS[cls] = fn
        return fn

    return register


def only(node: exp.Expression, allowed: set[str]) -> None:
    for key, value in node.args.items():
        if key not in allowed and value not in (None, False, []):
            raise Refuse(f"{key.rstrip('_').upper()} in {node.key.upper()} is not checked")


def _column_map(cols: Sequence[tuple[str, SparkType]]) -> dict[str, SparkType]:
    out: dict[str, SparkType] = {}
    for name, t in cols:
        if name.lower() in out:
            raise Refuse(f"column name {name!r} appears twice in a derived table")
        out[name.lower()] = t
    return out
