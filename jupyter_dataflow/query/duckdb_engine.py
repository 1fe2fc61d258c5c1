"""Answer ad hoc Spark SQL over committed Parquet stages in DuckDB, only when that is safe.

Role: `transpile` turns one Spark SQL query into DuckDB SQL that computes the same
answer with Spark 4 semantics (ANSI mode, session time zone), and `run_duckdb` runs it
in-process over local Parquet and returns Arrow with the column names and types Spark
would return. Safety comes from an allow-list, not a deny-list: every clause, function,
operator and cast must be one whose Spark semantics were checked against DuckDB, and
each known difference is rewritten explicitly (division, NULL ordering, `substr`,
`concat`, integer and decimal result types, date parts, Unicode case mapping...).
Anything else yields a `DuckdbRefusal` naming the reason, and the caller uses Spark.

This module must not import pyspark, write files, or raise for SQL it does not support;
and it must never return an answer Spark would not: where the engines could disagree
on data it cannot see at translation time, it plants a runtime check that makes DuckDB
fail, which again becomes a refusal.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlglot import exp, tokenize
from sqlglot.errors import ErrorLevel, SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.tokens import TokenType

from jupyter_dataflow.core.errors import SqlError
from jupyter_dataflow.core.sql import parse, referenced_tables

__all__ = ["DuckdbRefusal", "run_duckdb", "transpile"]

_SPARK_SCHEMA_KEY = b"org.apache.spark.sql.parquet.row.metadata"
_RELATION_PREFIX = "__dataflow_stage_"


@dataclass(frozen=True)
class DuckdbRefusal:
    """Why a query must run on Spark instead of DuckDB."""

    reason: str  # e.g. "function 'from_json' is not on the checked list"


class _Refuse(Exception):
    """Internal signal: stop translating and refuse with this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- types


@dataclass(frozen=True)
class _T:
    """A Spark SQL data type, reduced to what the checks need."""

    kind: str
    precision: int = 0
    scale: int = 0

    def __str__(self) -> str:
        return f"decimal({self.precision},{self.scale})" if self.kind == "decimal" else self.kind


NULL, BOOL, STRING, DATE, TS, TS_NTZ = (_T(k) for k in ("null", "boolean", "string", "date", "timestamp", "timestamp_ntz"))
BYTE, SHORT, INT, LONG, FLOAT, DOUBLE = (_T(k) for k in ("byte", "short", "int", "long", "float", "double"))
BINARY, OTHER = _T("binary"), _T("other")

_INTEGRAL = ("byte", "short", "int", "long")
_INT_DIGITS = {"byte": 3, "short": 5, "int": 10, "long": 20}
_INT_RANGE = {"byte": 2**7, "short": 2**15, "int": 2**31, "long": 2**63}
_ORDERABLE = {*_INTEGRAL, "float", "double", "decimal", "string", "date", "timestamp", "timestamp_ntz", "boolean", "null"}

_TYPE_NAMES = {
    "boolean": BOOL, "byte": BYTE, "tinyint": BYTE, "short": SHORT, "smallint": SHORT,
    "integer": INT, "int": INT, "long": LONG, "bigint": LONG, "float": FLOAT, "real": FLOAT,
    "double": DOUBLE, "string": STRING, "date": DATE, "timestamp": TS, "timestamp_ltz": TS,
    "timestamp_ntz": TS_NTZ, "binary": BINARY, "void": NULL,
}
_DUCK_TYPES = {
    "boolean": "BOOLEAN", "byte": "TINYINT", "short": "SMALLINT", "int": "INTEGER", "long": "BIGINT",
    "float": "FLOAT", "double": "DOUBLE", "string": "VARCHAR", "date": "DATE",
    "timestamp": "TIMESTAMPTZ", "timestamp_ntz": "TIMESTAMP", "binary": "BLOB",
}
_CAST_TARGETS = {
    exp.DataType.Type.BOOLEAN: BOOL, exp.DataType.Type.TINYINT: BYTE, exp.DataType.Type.SMALLINT: SHORT,
    exp.DataType.Type.INT: INT, exp.DataType.Type.BIGINT: LONG, exp.DataType.Type.FLOAT: FLOAT,
    exp.DataType.Type.DOUBLE: DOUBLE, exp.DataType.Type.TEXT: STRING, exp.DataType.Type.DATE: DATE,
    exp.DataType.Type.TIMESTAMPTZ: TS, exp.DataType.Type.TIMESTAMPNTZ: TS_NTZ,
}


def _spark_type(spec: object) -> _T:
    """A `_T` from a Spark schema JSON type or a `simpleString` such as 'decimal(10,2)'."""
    if not isinstance(spec, str):
        return OTHER
    name = spec.strip().lower()
    found = re.fullmatch(r"decimal\((\d+),\s*(\d+)\)", name)
    if found:
        return _T("decimal", int(found.group(1)), int(found.group(2)))
    if name == "decimal":
        return _T("decimal", 10, 0)
    if re.fullmatch(r"(var)?char\(\d+\)", name):
        return STRING
    return _TYPE_NAMES.get(name, OTHER)


def _numeric(t: _T) -> bool:
    return t.kind in _INTEGRAL or t.kind in ("float", "double", "decimal")


# In a UTC session, Spark TIMESTAMP values are computed on DuckDB's zone-less TIMESTAMP holding
# UTC wall time: identical results, without a time-zone library call per row.
_NAIVE_UTC: ContextVar[bool] = ContextVar("naive_utc", default=False)


def _duck_type(t: _T) -> exp.DataType:
    if t == TS and _NAIVE_UTC.get():
        return exp.DataType.build("TIMESTAMP", dialect="duckdb")
    if t.kind == "decimal":
        return exp.DataType.build(f"DECIMAL({t.precision},{t.scale})", dialect="duckdb")
    if t.kind not in _DUCK_TYPES:
        raise _Refuse(f"no DuckDB type checked for Spark type {t}")
    return exp.DataType.build(_DUCK_TYPES[t.kind], dialect="duckdb")


def _arrow_type(t: _T, timezone: str) -> pa.DataType | None:
    simple: dict[str, pa.DataType] = {
        "boolean": pa.bool_(), "byte": pa.int8(), "short": pa.int16(), "int": pa.int32(),
        "long": pa.int64(), "float": pa.float32(), "double": pa.float64(), "string": pa.string(),
        "date": pa.date32(), "timestamp": pa.timestamp("us", tz="UTC"),  # Spark's Arrow is UTC-labelled
        "timestamp_ntz": pa.timestamp("us"), "binary": pa.binary(), "null": pa.null(),
    }
    if t.kind == "decimal":
        return pa.decimal128(t.precision, t.scale)
    return simple.get(t.kind)


def _as_decimal(t: _T, literal: int | None = None) -> _T:
    """Spark's view of an exact numeric as a decimal (integral literals get their own width)."""
    if t.kind == "decimal":
        return t
    if literal is not None:
        return _T("decimal", max(len(str(abs(literal))), 1), 0)
    return _T("decimal", _INT_DIGITS[t.kind], 0)


def _wider(types: Sequence[_T]) -> _T:
    """Spark's common type for CASE / COALESCE / GREATEST branches, or a refusal."""
    known = [t for t in types if t != NULL]
    if not known:
        return NULL
    first = known[0]
    if all(t == first for t in known):
        return first
    if all(_numeric(t) for t in known):
        if any(t.kind == "float" for t in known):
            raise _Refuse("mixing FLOAT with other numeric types is not checked")
        if any(t.kind == "double" for t in known):
            return DOUBLE
        if all(t.kind in _INTEGRAL for t in known):
            return max(known, key=lambda t: _INTEGRAL.index(t.kind))
        decs = [_as_decimal(t) for t in known]
        scale = max(d.scale for d in decs)
        precision = max(d.precision - d.scale for d in decs) + scale
        if precision > 38:
            raise _Refuse("a decimal common type beyond 38 digits loses precision in Spark")
        return _T("decimal", precision, scale)
    raise _Refuse(f"values of types {', '.join(sorted({str(t) for t in known}))} are mixed")


# ------------------------------------------------------------------- tree helpers


def _fn(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def _cast(node: exp.Expression, t: _T) -> exp.Expression:
    return exp.Cast(this=node, to=_duck_type(t))


def _wrap(node: exp.Expression, build: Callable[[exp.Expression], exp.Expression]) -> exp.Expression:
    """Replace `node` in its tree by `build(node)` (which may contain `node`)."""
    hole = exp.Null()
    node.replace(hole)
    new = build(node)
    hole.replace(new)
    return new


def _coerce(node: exp.Expression, have: _T, want: _T) -> None:
    if have != want:
        _exact_double(have, want)
        _wrap(node, lambda n: _cast(n, want))


def _exact_double(have: _T, want: _T) -> None:
    """DuckDB converts decimals of more than 15 digits to DOUBLE with a possible double
    rounding; Spark rounds once. Up to 15 digits both are exact-then-correctly-rounded."""
    if have.kind == "decimal" and have.precision > 15 and want.kind in ("double", "float"):
        raise _Refuse(f"converting {have} to DOUBLE is not checked beyond 15 digits")


def _raise_if(cond: exp.Expression, value: exp.Expression, message: str) -> exp.Expression:
    """CASE WHEN cond THEN error(message) ELSE value END: DuckDB fails where Spark would."""
    return exp.Case(ifs=[exp.If(this=cond, true=_fn("error", exp.Literal.string(message)))], default=value)


def _int_literal(node: exp.Expression) -> int | None:
    if isinstance(node, exp.Paren):
        return _int_literal(node.this)
    if isinstance(node, exp.Neg):
        inner = _int_literal(node.this)
        return None if inner is None else -inner
    if isinstance(node, exp.Literal) and not node.is_string and re.fullmatch(r"\d+", node.this):
        return int(node.this)
    return None


def _str_literal(node: exp.Expression) -> str | None:
    return node.this if isinstance(node, exp.Literal) and node.is_string else None


def _spark_name(node: exp.Expression) -> str:
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
# Code points whose upper/lower case mapping was checked to agree between Spark (Java) and
# DuckDB: Latin up to U+024F, except the ones with special or version-dependent mappings.
_CASE_UNSAFE = r"[^\x{0}-\x{24F}]|[\x{DF}\x{130}\x{149}\x{19B}\x{1F0}]"


def _typed_literal(text: str, t: _T) -> exp.Expression:
    """A string literal read as DATE/TIMESTAMP, accepted only in formats both engines agree on."""
    try:
        if t == DATE and _DATE_RE.fullmatch(text):
            date.fromisoformat(text)
            return exp.Cast(this=exp.Literal.string(text), to=_duck_type(DATE))
        if t in (TS, TS_NTZ) and _TS_RE.fullmatch(text):
            datetime.fromisoformat(text)
            return exp.Cast(this=exp.Literal.string(text), to=_duck_type(t))
    except ValueError:
        pass
    raise _Refuse(f"the string {text!r} is not a plain {t} literal")


# ------------------------------------------------------------------ the checker


@dataclass
class _Scope:
    sources: dict[str, dict[str, _T]] = field(default_factory=dict)
    aliases: dict[str, _T] = field(default_factory=dict)
    kind: str = "query"  # query | from | exists | in | scalar
    phase: str = ""
    ctes: dict[str, list[tuple[str, _T]]] = field(default_factory=dict)


_WINDOW_ONLY = (exp.RowNumber, exp.Rank, exp.DenseRank, exp.Ntile, exp.PercentRank, exp.CumeDist, exp.Lag, exp.Lead)
_AGGREGATES = (exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max, exp.CountIf, exp.LogicalAnd, exp.LogicalOr,
               exp.Stddev, exp.StddevSamp, exp.StddevPop, exp.Variance, exp.VariancePop)
_STAT_NAMES: dict[type, str] = {exp.Stddev: "stddev_samp", exp.StddevSamp: "stddev_samp", exp.StddevPop: "stddev_pop",
               exp.Variance: "var_samp", exp.VariancePop: "var_pop"}
_DATE_PARTS: dict[type, str] = {exp.Year: "year", exp.Month: "month", exp.Day: "day", exp.DayOfMonth: "day",
               exp.Quarter: "quarter", exp.DayOfYear: "dayofyear", exp.WeekOfYear: "weekofyear"}
_TIME_PARTS: dict[type, str] = {exp.Hour: "hour", exp.Minute: "minute", exp.Second: "second"}
_TRUNC_UNITS = {"year": "year", "yyyy": "year", "yy": "year", "quarter": "quarter", "month": "month",
                "mm": "month", "mon": "month", "week": "week", "day": "day", "dd": "day",
                "hour": "hour", "minute": "minute", "second": "second"}
_CMP = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ)


class _Checker:
    """Types a qualified Spark query tree and rewrites it, in place, into DuckDB semantics."""

    def __init__(self, schemas: Mapping[str, Mapping[str, _T]]) -> None:
        self.schemas = schemas
        self.scopes: list[_Scope] = []

    # ---- queries

    def query(self, q: exp.Expression, ctes: Mapping[str, list[tuple[str, _T]]], kind: str) -> list[tuple[str, _T]]:
        if isinstance(q, exp.Subquery):
            _only(q, {"this", "alias"})
            return self.query(q.this, ctes, kind)
        ctes = dict(ctes)
        with_ = q.args.get("with_")
        if with_ is not None:
            _only(with_, {"expressions"})
            for cte in with_.expressions:
                _only(cte, {"this", "alias"})
                if cte.args["alias"].columns:
                    raise _Refuse("CTE column lists are not checked")
                ctes[cte.alias_or_name.lower()] = self.query(cte.this, ctes, "query")
        if isinstance(q, exp.SetOperation):
            return self.set_operation(q, ctes, kind)
        if isinstance(q, exp.Select):
            return self.select(q, ctes, kind)
        raise _Refuse(f"{q.key.upper()} is not a checked query form")

    def set_operation(self, q: exp.SetOperation, ctes: Mapping[str, list[tuple[str, _T]]], kind: str) -> list[tuple[str, _T]]:
        _only(q, {"with_", "this", "expression", "distinct", "order", "limit", "offset"})
        left = self.query(q.this, ctes, kind)
        right = self.query(q.expression, ctes, kind)
        if len(left) != len(right):
            raise _Refuse("set operation sides have different column counts")
        for (name, lt), (_, rt) in zip(left, right, strict=True):
            if lt != rt:
                raise _Refuse(f"set operation column {name!r} is {lt} on one side and {rt} on the other")
        scope = _Scope(aliases={n.lower(): t for n, t in left}, kind=kind, phase="order", ctes=dict(ctes))
        self.scopes.append(scope)
        try:
            self.order_limit(q)
        finally:
            self.scopes.pop()
        return left

    def select(self, q: exp.Select, ctes: Mapping[str, list[tuple[str, _T]]], kind: str) -> list[tuple[str, _T]]:
        q.set("hint", None)  # hints never change an answer
        _only(q, {"with_", "expressions", "distinct", "from_", "joins", "where", "group", "having", "order", "limit", "offset"})
        distinct = q.args.get("distinct")
        if distinct is not None and distinct.args.get("on"):
            raise _Refuse("DISTINCT ON is not Spark SQL")
        scope = _Scope(kind=kind, ctes=dict(ctes))
        self.scopes.append(scope)
        try:
            from_ = q.args.get("from_")
            if from_ is not None:
                self.source(from_.this, ctes, scope)
            for join in q.args.get("joins") or []:
                _only(join, {"this", "on", "side", "kind", "using"})
                if join.args.get("using") or join.args.get("method"):
                    raise _Refuse("JOIN ... USING / NATURAL JOIN is not checked")
                if (join.kind or "") not in ("", "INNER", "OUTER", "CROSS", "SEMI", "ANTI"):
                    raise _Refuse(f"{join.kind} JOIN is not checked")
                self.source(join.this, ctes, scope)
                if join.args.get("on") is not None:
                    self.condition(join.args["on"])
            if q.args.get("where") is not None:
                scope.phase = "where"
                self.condition(q.args["where"].this)
            scope.phase = "select"
            group = q.args.get("group")
            if group is not None:
                _only(group, {"expressions", "all"})
                for e in list(group.expressions):
                    self.orderable(self.expr(e), "GROUP BY")
            out: list[tuple[str, _T]] = []
            for p in list(q.expressions):
                if not isinstance(p, exp.Alias):
                    raise _Refuse(f"unexpected projection {p.sql(dialect='spark')}")
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
            _only(order, {"expressions"})
            self.ordering(order)
        for key in ("limit", "offset"):
            clause = q.args.get(key)
            if clause is None:
                continue
            _only(clause, {"expression"})
            value = _int_literal(clause.expression)
            if value is None or value < 0:
                raise _Refuse(f"{key.upper()} must be a non-negative integer literal")

    def ordering(self, order: exp.Order) -> None:
        for o in order.expressions:
            if not isinstance(o, exp.Ordered) or o.args.get("with_fill"):
                raise _Refuse("unexpected ORDER BY form")
            self.orderable(self.expr(o.this), "ORDER BY")
            desc = bool(o.args.get("desc"))
            if o.args.get("nulls_first") is None:  # Spark: NULLS FIRST for ASC, NULLS LAST for DESC
                o.set("nulls_first", not desc)

    def source(self, node: exp.Expression, ctes: Mapping[str, list[tuple[str, _T]]], scope: _Scope) -> None:
        if isinstance(node, exp.Table):
            _only(node, {"this", "alias"})
            if node.args.get("alias") is not None and node.args["alias"].columns:
                raise _Refuse("table alias column lists are not checked")
            name = node.name.lower()
            if name in ctes:
                cols = _column_map(ctes[name])
            elif name in self.schemas:
                cols = dict(self.schemas[name])
            else:
                raise _Refuse(f"table {node.name!r} is not a committed stage")
        elif isinstance(node, exp.Subquery):
            _only(node, {"this", "alias"})
            if node.args.get("alias") is not None and node.args["alias"].columns:
                raise _Refuse("subquery alias column lists are not checked")
            cols = _column_map(self.query(node.this, ctes, "from"))
        else:
            raise _Refuse(f"{node.key.upper()} in FROM is not checked")
        alias = node.alias_or_name.lower()
        if alias in scope.sources:
            raise _Refuse(f"source alias {alias!r} is used twice")
        scope.sources[alias] = cols

    # ---- expressions

    def condition(self, node: exp.Expression) -> None:
        t = self.expr(node)
        if t not in (BOOL, NULL):
            raise _Refuse(f"a condition of type {t}")

    def orderable(self, t: _T, where: str) -> None:
        if t.kind not in _ORDERABLE:
            raise _Refuse(f"{where} on a {t} value is not checked")

    def column(self, col: exp.Column) -> _T:
        if col.args.get("db") or col.args.get("catalog") or not isinstance(col.this, exp.Identifier):
            raise _Refuse(f"column reference {col.sql(dialect='spark')} is not checked")
        name, table = col.name.lower(), col.table.lower()
        if not table:
            here = self.scopes[-1]
            if name in here.aliases and here.phase in ("order", "having"):
                return here.aliases[name]
            raise _Refuse(f"column {col.name!r} could not be resolved")
        for depth in range(len(self.scopes) - 1, -1, -1):
            scope = self.scopes[depth]
            if table in scope.sources:
                if name not in scope.sources[table]:
                    raise _Refuse(f"column {col.name!r} could not be resolved")
                if depth != len(self.scopes) - 1:
                    self.correlated(depth)
                t = scope.sources[table][name]
                if t == OTHER:
                    self.other_column_use(col)
                return t
        raise _Refuse(f"column {col.sql(dialect='spark')} could not be resolved")

    def other_column_use(self, col: exp.Column) -> None:
        parent = col.parent
        if isinstance(parent, exp.Count) or (isinstance(parent, exp.Is) and isinstance(parent.expression, exp.Null)):
            return
        raise _Refuse(f"column {col.name!r} has a nested type; only COUNT and IS NULL are checked on it")

    def correlated(self, depth: int) -> None:
        inner, outer = self.scopes[-1], self.scopes[depth]
        ok = (depth == len(self.scopes) - 2 and inner.kind in ("exists", "in")
              and inner.phase == "where" and outer.phase == "where")
        if not ok:
            raise _Refuse("this correlated subquery is not checked (only EXISTS/IN in WHERE)")

    def typed(self, node: exp.Expression) -> tuple[_T, exp.Expression]:
        """Type `node`; return its type and the node now in its place (handlers may replace it)."""
        parent, key, index = node.parent, node.arg_key, node.index
        t = self.expr(node)
        if parent is None or key is None:
            return t, node
        current = parent.args.get(key)
        if isinstance(current, list):
            current = current[index or 0]
        return t, current if isinstance(current, exp.Expression) else node

    def expr(self, node: exp.Expression) -> _T:
        handler = _HANDLERS.get(type(node))
        if handler is None:
            if isinstance(node, exp.Func):
                raise _Refuse(f"function '{_spark_name(node)}' is not on the checked list")
            raise _Refuse(f"{node.key.upper()} is not a checked construct")
        return handler(self, node)

    def exprs(self, nodes: Sequence[exp.Expression]) -> list[_T]:
        return [self.expr(n) for n in list(nodes)]

    def literal(self, node: exp.Literal) -> _T:
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
                return _T("decimal", len(text), 0)
            raise _Refuse("integer literal too long")
        found = re.fullmatch(r"(\d*)\.(\d*)", text)
        if found:
            whole, frac = found.group(1).lstrip("0"), found.group(2)
            precision = max(len(whole) + len(frac), len(frac), 1)
            if precision > 38:
                raise _Refuse("decimal literal too long")
            return _T("decimal", precision, len(frac))
        if re.fullmatch(r"(\d+\.?\d*|\.\d+)[eE][+-]?\d+", text):
            return DOUBLE
        raise _Refuse(f"numeric literal {text!r} is not checked")

    def subquery(self, node: exp.Expression, kind: str) -> _T:
        query = node.this if isinstance(node, exp.Subquery) else node
        if isinstance(node, exp.Subquery):
            _only(node, {"this"})
        cols = self.query(query, self.scopes[-1].ctes if self.scopes else {}, kind)
        if kind != "exists" and len(cols) != 1:
            raise _Refuse("a subquery used as a value must return one column")
        return cols[0][1] if kind != "exists" else BOOL


# The handlers below are module functions bound into `_HANDLERS`; each types its children,
# checks Spark's rules, and rewrites the node for DuckDB when the engines differ.

_Handler = Callable[[_Checker, Any], _T]
_HANDLERS: dict[type, _Handler] = {}


def _handles(*classes: type) -> Callable[[_Handler], _Handler]:
    def register(fn: _Handler) -> _Handler:
        for cls in classes:
            _HANDLERS[cls] = fn
        return fn

    return register


def _only(node: exp.Expression, allowed: set[str]) -> None:
    for key, value in node.args.items():
        if key not in allowed and value not in (None, False, []):
            raise _Refuse(f"{key.rstrip('_').upper()} in {node.key.upper()} is not checked")


def _column_map(cols: Sequence[tuple[str, _T]]) -> dict[str, _T]:
    out: dict[str, _T] = {}
    for name, t in cols:
        if name.lower() in out:
            raise _Refuse(f"column name {name!r} appears twice in a derived table")
        out[name.lower()] = t
    return out


@_handles(exp.Column)
def _h_column(c: _Checker, node: exp.Column) -> _T:
    return c.column(node)


@_handles(exp.Literal)
def _h_literal(c: _Checker, node: exp.Literal) -> _T:
    return c.literal(node)


@_handles(exp.Null)
def _h_null(c: _Checker, node: exp.Null) -> _T:
    return NULL


@_handles(exp.Boolean)
def _h_boolean(c: _Checker, node: exp.Boolean) -> _T:
    return BOOL


@_handles(exp.Paren)
def _h_paren(c: _Checker, node: exp.Paren) -> _T:
    return c.expr(node.this)


@_handles(exp.Neg)
def _h_neg(c: _Checker, node: exp.Neg) -> _T:
    t = c.expr(node.this)
    if not _numeric(t):
        raise _Refuse(f"unary minus on {t}")
    return t  # DuckDB negates within the type and fails on overflow, like Spark's ANSI mode


def _operands(c: _Checker, node: exp.Expression) -> tuple[_T, _T]:
    lt, rt = c.expr(node.this), c.expr(node.expression)
    if lt == NULL or rt == NULL:
        raise _Refuse("arithmetic on an untyped NULL is not checked")
    return lt, rt


@_handles(exp.Add, exp.Sub, exp.Mul)
def _h_add_sub_mul(c: _Checker, node: exp.Expression) -> _T:
    lt, rt = _operands(c, node)
    if lt == DATE and rt.kind in ("byte", "short", "int") and not isinstance(node, exp.Mul):
        _coerce(node.expression, rt, INT)  # Spark: date +/- n days
        return DATE
    if not (_numeric(lt) and _numeric(rt)):
        raise _Refuse(f"{node.key.upper()} of {lt} and {rt} is not checked")
    if "float" in (lt.kind, rt.kind):
        raise _Refuse("FLOAT arithmetic is not checked")
    if "double" in (lt.kind, rt.kind):
        result = DOUBLE
        _coerce(node.this, lt, DOUBLE)
        _coerce(node.expression, rt, DOUBLE)
        return result
    if lt.kind in _INTEGRAL and rt.kind in _INTEGRAL:
        result = max(lt, rt, key=lambda t: _INTEGRAL.index(t.kind))
        _coerce(node.this, lt, result)  # DuckDB then overflows exactly where Spark's ANSI mode does
        _coerce(node.expression, rt, result)
        return result
    ld = _as_decimal(lt, _int_literal(node.this))
    rd = _as_decimal(rt, _int_literal(node.expression))
    if isinstance(node, exp.Mul):
        precision, scale = ld.precision + rd.precision + 1, ld.scale + rd.scale
    else:
        scale = max(ld.scale, rd.scale)
        precision = max(ld.precision - ld.scale, rd.precision - rd.scale) + scale + 1
    if precision > 38:
        raise _Refuse("decimal arithmetic beyond 38 digits loses precision in Spark")
    result = _T("decimal", precision, scale)
    _coerce(node.this, lt, ld)
    _coerce(node.expression, rt, rd)
    _wrap(node, lambda n: _cast(n, result))
    return result


@_handles(exp.Div)
def _h_div(c: _Checker, node: exp.Div) -> _T:
    lt, rt = _operands(c, node)
    if not (_numeric(lt) and _numeric(rt)):
        raise _Refuse(f"division of {lt} by {rt} is not checked")
    if "decimal" in (lt.kind, rt.kind) and "double" not in (lt.kind, rt.kind):
        raise _Refuse("decimal division (Spark rounds to a derived scale) is not checked")
    if "float" in (lt.kind, rt.kind):
        raise _Refuse("FLOAT arithmetic is not checked")
    _coerce(node.this, lt, DOUBLE)
    _coerce(node.expression, rt, DOUBLE)
    divisor = node.expression
    _wrap(divisor, lambda d: _raise_if(exp.EQ(this=d.copy(), expression=exp.Literal.number(0)), d, "DIVIDE_BY_ZERO"))
    node.set("typed", None)
    node.set("safe", None)
    return DOUBLE


@_handles(exp.IntDiv)
def _h_intdiv(c: _Checker, node: exp.IntDiv) -> _T:
    lt, rt = _operands(c, node)
    if lt.kind not in _INTEGRAL or rt.kind not in _INTEGRAL:
        raise _Refuse(f"DIV of {lt} and {rt} is not checked")
    _coerce(node.this, lt, LONG)  # DuckDB's // truncates and fails on zero, as Spark's ANSI DIV does
    _coerce(node.expression, rt, LONG)
    return LONG


@_handles(exp.Mod)
def _h_mod(c: _Checker, node: exp.Mod) -> _T:
    lt, rt = _operands(c, node)
    if lt.kind in _INTEGRAL and rt.kind in _INTEGRAL:
        result = max(lt, rt, key=lambda t: _INTEGRAL.index(t.kind))
        _coerce(node.this, lt, result)
        _coerce(node.expression, rt, result)
        return result
    if _numeric(lt) and _numeric(rt) and "double" in (lt.kind, rt.kind) and "float" not in (lt.kind, rt.kind):
        _coerce(node.this, lt, DOUBLE)
        _coerce(node.expression, rt, DOUBLE)
        divisor = node.expression
        _wrap(divisor, lambda d: _raise_if(exp.EQ(this=d.copy(), expression=exp.Literal.number(0)), d, "REMAINDER_BY_ZERO"))
        return DOUBLE
    raise _Refuse(f"remainder of {lt} and {rt} is not checked")


def _comparable(c: _Checker, left: exp.Expression, lt: _T, right: exp.Expression, rt: _T) -> None:
    """Check that Spark compares these values the way DuckDB will; rewrite where needed."""
    if NULL in (lt, rt) or (lt == rt and lt.kind in _ORDERABLE):
        return
    if _numeric(lt) and _numeric(rt):
        if "float" in (lt.kind, rt.kind):
            raise _Refuse("comparing FLOAT with another numeric type is not checked")
        if "double" in (lt.kind, rt.kind):
            _exact_double(lt, DOUBLE)
            _exact_double(rt, DOUBLE)
        return
    for a, at, b, bt in ((left, lt, right, rt), (right, rt, left, lt)):
        if at.kind in ("date", "timestamp", "timestamp_ntz") and bt == STRING:
            text = _str_literal(b)
            if text is None:
                raise _Refuse(f"comparing {at} with a string expression is not checked")
            b.replace(_typed_literal(text, at))
            return
        if at == DATE and bt == TS:
            _coerce(a, DATE, TS)
            return
    raise _Refuse(f"comparing {lt} with {rt} is not checked")


@_handles(*_CMP)
def _h_compare(c: _Checker, node: exp.Expression) -> _T:
    lt, rt = c.expr(node.this), c.expr(node.expression)
    _comparable(c, node.this, lt, node.expression, rt)
    return BOOL


@_handles(exp.Between)
def _h_between(c: _Checker, node: exp.Between) -> _T:
    _only(node, {"this", "low", "high"})
    t = c.expr(node.this)
    for key in ("low", "high"):
        bt = c.expr(node.args[key])
        _comparable(c, node.this, t, node.args[key], bt)
    return BOOL


@_handles(exp.In)
def _h_in(c: _Checker, node: exp.In) -> _T:
    _only(node, {"this", "expressions", "query"})
    t = c.expr(node.this)
    if node.args.get("query") is not None:
        st = c.subquery(node.args["query"], "in")
        if NULL not in (t, st) and t != st and not (_numeric(t) and _numeric(st) and "float" not in (t.kind, st.kind)):
            raise _Refuse(f"IN compares {t} with {st}")
        return BOOL
    for i in range(len(node.expressions)):
        et, e = c.typed(node.expressions[i])
        _comparable(c, node.this, t, e, et)
    return BOOL


@_handles(exp.Exists)
def _h_exists(c: _Checker, node: exp.Exists) -> _T:
    _only(node, {"this"})
    return c.subquery(node.this, "exists")


@_handles(exp.Subquery)
def _h_scalar(c: _Checker, node: exp.Subquery) -> _T:
    return c.subquery(node, "scalar")


@_handles(exp.And, exp.Or)
def _h_logic(c: _Checker, node: exp.Expression) -> _T:
    for t in (c.expr(node.this), c.expr(node.expression)):
        if t not in (BOOL, NULL):
            raise _Refuse(f"{node.key.upper()} of a {t} value")
    return BOOL


@_handles(exp.Not)
def _h_not(c: _Checker, node: exp.Not) -> _T:
    c.condition(node.this)
    return BOOL


@_handles(exp.Is)
def _h_is(c: _Checker, node: exp.Is) -> _T:
    t = c.expr(node.this)
    if isinstance(node.expression, exp.Boolean) and t not in (BOOL, NULL):
        raise _Refuse(f"IS TRUE/FALSE on {t}")
    if not isinstance(node.expression, (exp.Null, exp.Boolean)):
        raise _Refuse("IS with a value other than NULL/TRUE/FALSE")
    return BOOL


@_handles(exp.Like)
def _h_like(c: _Checker, node: exp.Like) -> _T:
    _only(node, {"this", "expression", "negate"})
    if c.expr(node.this) not in (STRING, NULL):
        raise _Refuse("LIKE on a non-string value")
    pattern = _str_literal(node.expression)
    if pattern is None:
        raise _Refuse("LIKE with a pattern that is not a string literal")
    if "\\" in pattern:
        if re.search(r"\\(?![\\%_])", pattern):
            raise _Refuse("LIKE pattern with an escape Spark rejects")
        _wrap(node, lambda n: exp.Escape(this=n, expression=exp.Literal.string("\\")))
    return BOOL


def _branches(c: _Checker, values: Sequence[exp.Expression]) -> _T:
    """Type result branches and cast each to Spark's common type."""
    typed = [c.typed(v) for v in values]
    result = _wider([t for t, _ in typed])
    for t, v in typed:
        if t != NULL:
            _coerce(v, t, result)
    return result


@_handles(exp.Case)
def _h_case(c: _Checker, node: exp.Case) -> _T:
    st = c.expr(node.this) if node.args.get("this") is not None else None
    for branch in node.args.get("ifs") or []:
        if st is not None:
            wt = c.expr(branch.this)
            _comparable(c, node.this, st, branch.this, wt)
        else:
            c.condition(branch.this)
    values = [b.args["true"] for b in node.args.get("ifs") or []]
    values += [node.args["default"]] if node.args.get("default") is not None else []
    return _branches(c, values)


@_handles(exp.If)
def _h_if(c: _Checker, node: exp.If) -> _T:
    c.condition(node.this)
    values = [node.args["true"]] + ([node.args["false"]] if node.args.get("false") is not None else [])
    return _branches(c, values)


@_handles(exp.Coalesce, exp.Greatest, exp.Least)
def _h_coalesce(c: _Checker, node: exp.Expression) -> _T:
    _only(node, {"this", "expressions", "ignore_nulls"})  # GREATEST/LEAST skip NULLs in both
    result = _branches(c, [node.this, *node.expressions])
    if not isinstance(node, exp.Coalesce) and result.kind not in _ORDERABLE:
        raise _Refuse(f"{_spark_name(node)} of {result}")
    return result


@_handles(exp.Nullif)
def _h_nullif(c: _Checker, node: exp.Nullif) -> _T:
    lt, rt = c.expr(node.this), c.expr(node.expression)
    _comparable(c, node.this, lt, node.expression, rt)
    if lt != NULL:
        _wrap(node, lambda n: _cast(n, lt))
    return lt


@_handles(exp.Nvl2)
def _h_nvl2(c: _Checker, node: exp.Nvl2) -> _T:
    c.expr(node.this)
    result = _branches(c, [node.args["true"]] + ([node.args["false"]] if node.args.get("false") is not None else []))
    subject = node.this
    values = [node.args["true"]] + ([node.args["false"]] if node.args.get("false") is not None else [])
    _wrap(node, lambda n: exp.Case(
        ifs=[exp.If(this=exp.Not(this=exp.Is(this=subject, expression=exp.Null())), true=values[0])],
        default=values[1] if len(values) > 1 else None))
    return result


@_handles(exp.Cast, exp.TryCast)
def _h_cast(c: _Checker, node: exp.Cast) -> _T:
    if node.args.get("safe") or node.args.get("format") or node.args.get("action") or node.args.get("default"):
        raise _Refuse("TRY_CAST and formatted casts are not checked")
    dt = node.to
    if dt.this == exp.DataType.Type.DECIMAL:
        params = [int(p.this.this) for p in dt.expressions] or [10, 0]
        want = _T("decimal", params[0], params[1] if len(params) > 1 else 0)
    elif dt.this in _CAST_TARGETS and not dt.expressions:
        want = _CAST_TARGETS[dt.this]
    else:
        raise _Refuse(f"CAST to {dt.sql(dialect='spark')} is not checked")
    have = c.expr(node.this)
    source = node.this
    text = _str_literal(source)
    if have == STRING and text is not None and want != STRING:
        node.replace(_cast_string_literal(text, want))
        return want
    _check_cast(have, want)
    if have.kind in ("decimal", "double", "float") and want.kind in _INTEGRAL:
        _wrap(source, lambda s: _fn("trunc", s))  # Spark truncates toward zero; DuckDB rounds
    new = exp.Cast(this=node.this, to=_duck_type(want))
    node.replace(new)
    return want


def _check_cast(have: _T, want: _T) -> None:
    if have in (want, NULL):
        return
    _exact_double(have, want)
    h, w = have.kind, want.kind
    numeric_targets = (*_INTEGRAL, "double", "decimal")
    ok = (
        (h in _INTEGRAL and w in (*numeric_targets, "float", "string", "boolean"))
        or (h == "boolean" and w in (*_INTEGRAL, "string"))
        or (h == "decimal" and w in (*_INTEGRAL, "decimal"))
        or (h == "decimal" and w in ("double", "float"))
        or (h in ("double", "float") and w in (*_INTEGRAL, "double", "float"))
        or (h == "date" and w == "timestamp")
        or (h in ("timestamp", "timestamp_ntz") and w == "date")
    )
    if not ok:
        raise _Refuse(f"CAST from {have} to {want} is not checked")


def _cast_string_literal(text: str, want: _T) -> exp.Expression:
    """Evaluate CAST('literal' AS type) now, accepting only unambiguous spellings."""
    if want in (DATE, TS, TS_NTZ):
        return _typed_literal(text, want)
    if want.kind in _INTEGRAL and re.fullmatch(r"[+-]?\d+", text):
        value = int(text)
        if -_INT_RANGE[want.kind] <= value < _INT_RANGE[want.kind]:
            return _cast(exp.Literal.number(value), want)
    if want.kind == "decimal" and re.fullmatch(r"[+-]?\d+(\.\d+)?", text):
        try:
            value_d = Decimal(text)
        except InvalidOperation as err:
            raise _Refuse(f"cannot read {text!r} as a number") from err
        digits = value_d.as_tuple()
        scale = -int(digits.exponent)
        if scale <= want.scale and len(digits.digits) - scale <= want.precision - want.scale:
            return _cast(exp.Literal.string(text), want)
    if want == DOUBLE and re.fullmatch(r"[+-]?\d+(\.\d+)?([eE][+-]?\d+)?", text):
        return _cast(exp.Literal.string(text), want)
    raise _Refuse(f"CAST of the string {text!r} to {want} is not checked")


@_handles(exp.TsOrDsToDate)
def _h_to_date(c: _Checker, node: exp.TsOrDsToDate) -> _T:
    _only(node, {"this", "safe"})  # only dates, timestamps and checked literals get through
    t = c.expr(node.this)
    if t == STRING and _str_literal(node.this) is not None:
        node.replace(_typed_literal(str(_str_literal(node.this)), DATE))
    elif t == DATE:
        node.replace(node.this)
    elif t in (TS, TS_NTZ):
        node.replace(_cast(node.this, DATE))
    elif t != NULL:
        raise _Refuse(f"to_date of a {t} value is not checked")
    return DATE


def _string_args(c: _Checker, nodes: Sequence[exp.Expression], what: str) -> None:
    for t in c.exprs(nodes):
        if t not in (STRING, NULL):
            raise _Refuse(f"{what} of a {t} value is not checked")


def _literal_arg(node: exp.Expression | None, what: str) -> int:
    value = None if node is None else _int_literal(node)
    if value is None:
        raise _Refuse(f"{what} must be an integer literal")
    return value


def _spark_substr(s: exp.Expression, pos: int, length: int | None) -> exp.Expression:
    """Spark's substr(s, pos, len) on code points, for literal pos and len."""
    if length is not None and length <= 0:
        return exp.Case(ifs=[exp.If(this=exp.Is(this=s, expression=exp.Null()), true=exp.Null())],
                        default=exp.Literal.string(""))
    if pos >= 0:
        args = [s, exp.Literal.number(max(pos, 1))]
        return _fn("substring", *args, *([exp.Literal.number(length)] if length is not None else []))
    # start = len(s) + pos, clamped at 0; end = start + length
    start = exp.Add(this=_fn("length", s.copy()), expression=exp.Literal.number(pos))
    clamped = _fn("greatest", start, exp.Literal.number(0))
    if length is None:
        return _fn("substring", s, exp.Add(this=clamped, expression=exp.Literal.number(1)))
    end = exp.Add(this=start.copy(), expression=exp.Literal.number(length))
    count = exp.Sub(this=end.copy(), expression=clamped.copy())
    return exp.Case(
        ifs=[exp.If(this=exp.GTE(this=clamped.copy(), expression=end), true=exp.Literal.string(""))],
        default=_fn("substring", s.copy(), exp.Add(this=clamped, expression=exp.Literal.number(1)), count))


@_handles(exp.Substring)
def _h_substring(c: _Checker, node: exp.Substring) -> _T:
    _only(node, {"this", "start", "length"})
    _string_args(c, [node.this], "substr")
    pos = _literal_arg(node.args.get("start"), "substr position")
    length = None if node.args.get("length") is None else _literal_arg(node.args["length"], "substr length")
    node.replace(_spark_substr(node.this, pos, length))
    return STRING


@_handles(exp.Left, exp.Right)
def _h_left_right(c: _Checker, node: exp.Expression) -> _T:
    _string_args(c, [node.this], _spark_name(node))
    n = _literal_arg(node.expression, f"{_spark_name(node)} length")
    if n <= 0:
        node.replace(_spark_substr(node.this, 1, 0))
    elif isinstance(node, exp.Left):
        node.replace(_spark_substr(node.this, 1, n))
    else:
        node.replace(_spark_substr(node.this, -n, None))
    return STRING


@_handles(exp.Length)
def _h_length(c: _Checker, node: exp.Length) -> _T:
    _only(node, {"this"})
    _string_args(c, [node.this], "length")
    node.replace(_cast(_fn("length", node.this), INT))  # both count code points
    return INT


@_handles(exp.Upper, exp.Lower)
def _h_case_map(c: _Checker, node: exp.Expression) -> _T:
    _string_args(c, [node.this], _spark_name(node))
    name = "upper" if isinstance(node, exp.Upper) else "lower"
    arg = node.this
    unsafe = _fn("regexp_matches", arg.copy(), exp.Literal.string(_CASE_UNSAFE))
    node.replace(_raise_if(unsafe, _fn(name, arg), f"{name}() of characters whose case mapping differs"))
    return STRING


@_handles(exp.Concat, exp.DPipe)
def _h_concat(c: _Checker, node: exp.Expression) -> _T:
    parts = [node.this, node.expression] if isinstance(node, exp.DPipe) else list(node.expressions)
    if not parts:
        raise _Refuse("concat() without arguments")
    for t, p in [c.typed(p) for p in parts]:
        if t.kind in _INTEGRAL:
            _coerce(p, t, STRING)
        elif t not in (STRING, NULL):
            raise _Refuse(f"concat of a {t} value is not checked")
    parts = [node.this, node.expression] if isinstance(node, exp.DPipe) else list(node.expressions)
    joined = parts[0]
    for p in parts[1:]:
        joined = exp.DPipe(this=joined, expression=p)  # `||` is NULL if any part is, like Spark's concat
    node.replace(_cast(joined, STRING) if len(parts) == 1 else joined)
    return STRING


@_handles(exp.ConcatWs)
def _h_concat_ws(c: _Checker, node: exp.ConcatWs) -> _T:
    parts = list(node.expressions)
    if len(parts) < 2:
        raise _Refuse("concat_ws with fewer than two arguments")
    _string_args(c, parts, "concat_ws")
    node.replace(_fn("concat_ws", *node.expressions))
    return STRING


@_handles(exp.Trim)
def _h_trim(c: _Checker, node: exp.Trim) -> _T:
    _only(node, {"this", "position"})
    _string_args(c, [node.this], "trim")
    name = {"LEADING": "ltrim", "TRAILING": "rtrim"}.get(str(node.args.get("position") or "").upper(), "trim")
    node.replace(_fn(name, node.this))  # both strip ASCII spaces only
    return STRING


@_handles(exp.Replace)
def _h_replace(c: _Checker, node: exp.Replace) -> _T:
    args = [node.this, node.expression, node.args.get("replacement") or exp.Literal.string("")]
    if any(a is not node.this and _str_literal(a) is None for a in args):
        raise _Refuse("replace() with a non-literal search or replacement")
    _string_args(c, args[:1], "replace")
    node.replace(_fn("replace", *args))
    return STRING


@_handles(exp.Pad)
def _h_pad(c: _Checker, node: exp.Pad) -> _T:
    _string_args(c, [node.this], "lpad/rpad")
    width = _literal_arg(node.expression, "pad length")
    fill = _str_literal(node.args.get("fill_pattern") or exp.Literal.string(" "))
    if width < 0 or not fill:
        raise _Refuse("lpad/rpad with a negative length or empty padding")
    node.replace(_fn("lpad" if node.args.get("is_left") else "rpad", node.this, exp.Literal.number(width),
                     exp.Literal.string(fill)))
    return STRING


@_handles(exp.StrPosition)
def _h_instr(c: _Checker, node: exp.StrPosition) -> _T:
    _only(node, {"this", "substr"})
    _string_args(c, [node.this, node.args["substr"]], "instr")
    node.replace(_cast(_fn("instr", node.this, node.args["substr"]), INT))
    return INT


@_handles(exp.StartsWith, exp.EndsWith, exp.Contains)
def _h_contains(c: _Checker, node: exp.Expression) -> _T:
    _only(node, {"this", "expression"})
    _string_args(c, [node.this, node.expression], _spark_name(node))
    names: dict[type, str] = {exp.StartsWith: "starts_with", exp.EndsWith: "ends_with"}
    name = names.get(type(node), "contains")
    node.replace(_fn(name, node.this, node.expression))
    return BOOL


@_handles(exp.Repeat)
def _h_repeat(c: _Checker, node: exp.Repeat) -> _T:
    _string_args(c, [node.this], "repeat")
    if c.expr(node.args["times"]).kind not in ("byte", "short", "int"):
        raise _Refuse("repeat count must be an INT")
    node.replace(_fn("repeat", node.this, node.args["times"]))
    return STRING


def _date_arg(c: _Checker, node: exp.Expression, allow: tuple[_T, ...]) -> _T:
    t = c.expr(node)
    if t not in allow and t != NULL:
        raise _Refuse(f"a date function on a {t} value is not checked")
    return t


@_handles(*_DATE_PARTS)
def _h_date_part(c: _Checker, node: exp.Expression) -> _T:
    _only(node, {"this"})
    _date_arg(c, node.this, (DATE, TS, TS_NTZ))
    node.replace(_cast(_fn(_DATE_PARTS[type(node)], node.this), INT))
    return INT


@_handles(*_TIME_PARTS)
def _h_time_part(c: _Checker, node: exp.Expression) -> _T:
    _only(node, {"this"})
    _date_arg(c, node.this, (TS, TS_NTZ))
    node.replace(_cast(_fn(_TIME_PARTS[type(node)], node.this), INT))
    return INT


@_handles(exp.DayOfWeek)
def _h_dayofweek(c: _Checker, node: exp.DayOfWeek) -> _T:
    _date_arg(c, node.this, (DATE, TS, TS_NTZ))
    # Spark: 1 = Sunday ... 7 = Saturday; DuckDB: 0 = Sunday
    node.replace(_cast(exp.Add(this=_fn("dayofweek", node.this), expression=exp.Literal.number(1)), INT))
    return INT


@_handles(exp.Extract)
def _h_extract(c: _Checker, node: exp.Extract) -> _T:
    unit = node.this.name.upper() if isinstance(node.this, (exp.Var, exp.Identifier)) else ""
    names = {"YEAR": "year", "MONTH": "month", "DAY": "day", "QUARTER": "quarter", "HOUR": "hour", "MINUTE": "minute"}
    if unit not in names:
        raise _Refuse(f"EXTRACT({unit or '?'}) is not checked")
    _date_arg(c, node.expression, (DATE, TS, TS_NTZ) if unit not in ("HOUR", "MINUTE") else (TS, TS_NTZ))
    node.replace(_cast(_fn(names[unit], node.expression), INT))
    return INT


@_handles(exp.TsOrDsAdd)
def _h_date_add(c: _Checker, node: exp.TsOrDsAdd) -> _T:
    _only(node, {"this", "expression", "unit"})
    if str(node.args.get("unit") or "DAY").upper() != "DAY":
        raise _Refuse("date arithmetic in units other than days is not checked")
    t = _date_arg(c, node.this, (DATE, TS, TS_NTZ))
    n = c.expr(node.expression)
    if n.kind not in ("byte", "short", "int"):
        raise _Refuse("date_add/date_sub need an INT number of days")
    day = node.this if t == DATE else _cast(node.this, DATE)
    node.replace(exp.Add(this=day, expression=_cast(node.expression, INT)))
    return DATE


@_handles(exp.DateDiff)
def _h_datediff(c: _Checker, node: exp.DateDiff) -> _T:
    _only(node, {"this", "expression", "unit"})
    if str(node.args.get("unit") or "DAY").upper() not in ("DAY", "'DAY'"):
        raise _Refuse("datediff in units other than days is not checked")
    _date_arg(c, node.this, (DATE,))
    _date_arg(c, node.expression, (DATE,))
    node.replace(_cast(_fn("date_diff", exp.Literal.string("day"), node.expression, node.this), INT))
    return INT


def _unit(node: exp.Expression | None) -> str:
    text = node.name if isinstance(node, (exp.Var, exp.Identifier, exp.Literal)) else ""
    unit = _TRUNC_UNITS.get(text.lower())
    if unit is None:
        raise _Refuse(f"truncation unit {text!r} is not checked")
    return unit


@_handles(exp.TimestampTrunc)
def _h_date_trunc(c: _Checker, node: exp.TimestampTrunc) -> _T:
    _only(node, {"this", "unit"})
    unit = _unit(node.args.get("unit"))
    t = _date_arg(c, node.this, (DATE, TS))
    value = node.this if t != DATE else _cast(node.this, TS)
    node.replace(_fn("date_trunc", exp.Literal.string(unit), value))
    return TS


@_handles(exp.DateTrunc)
def _h_trunc(c: _Checker, node: exp.DateTrunc) -> _T:
    _only(node, {"this", "unit"})
    unit = _unit(node.args.get("unit"))
    if unit not in ("year", "quarter", "month", "week"):
        raise _Refuse(f"trunc(date, {unit!r}) is not checked")
    t = _date_arg(c, node.this, (DATE, TS))
    value = node.this if t == DATE else _cast(node.this, DATE)
    node.replace(_cast(_fn("date_trunc", exp.Literal.string(unit), value), DATE))
    return DATE


@_handles(exp.LastDay)
def _h_last_day(c: _Checker, node: exp.LastDay) -> _T:
    _only(node, {"this"})
    _date_arg(c, node.this, (DATE,))
    node.replace(_fn("last_day", node.this))
    return DATE


@_handles(exp.AddMonths)
def _h_add_months(c: _Checker, node: exp.AddMonths) -> _T:
    _only(node, {"this", "expression"})
    _date_arg(c, node.this, (DATE,))
    if c.expr(node.expression).kind not in ("byte", "short", "int"):
        raise _Refuse("add_months needs an INT number of months")
    months = _fn("to_months", _cast(node.expression, INT))
    node.replace(_cast(exp.Add(this=node.this, expression=months), DATE))
    return DATE


@_handles(exp.Abs)
def _h_abs(c: _Checker, node: exp.Abs) -> _T:
    t = c.expr(node.this)
    if not _numeric(t):
        raise _Refuse(f"abs of {t}")
    return t


@_handles(exp.Round)
def _h_round(c: _Checker, node: exp.Round) -> _T:
    _only(node, {"this", "decimals"})
    t = c.expr(node.this)
    digits = 0 if node.args.get("decimals") is None else _literal_arg(node.args["decimals"], "round scale")
    if digits < 0:
        raise _Refuse("round to a negative scale is not checked")
    if t.kind in _INTEGRAL:
        node.replace(node.this)
        return t
    if t.kind != "decimal":
        raise _Refuse(f"round of {t} (Spark rounds HALF_UP on the decimal value) is not checked")
    scale = min(digits, t.scale)
    result = _T("decimal", min(t.precision - t.scale + scale + 1, 38), scale)
    node.replace(_cast(_fn("round", node.this, exp.Literal.number(scale)), result))
    return result


@_handles(exp.Floor, exp.Ceil)
def _h_floor(c: _Checker, node: exp.Expression) -> _T:
    _only(node, {"this"})
    t = c.expr(node.this)
    name = "floor" if isinstance(node, exp.Floor) else "ceil"
    if t.kind in _INTEGRAL:
        node.replace(_cast(node.this, LONG))
        return LONG
    if t.kind in ("double", "float"):
        node.replace(_cast(_fn(name, node.this), LONG))
        return LONG
    if t.kind == "decimal":
        result = _T("decimal", min(t.precision - t.scale + 1, 38), 0)
        node.replace(_cast(_fn(name, node.this), result))
        return result
    raise _Refuse(f"{name} of {t}")


@_handles(exp.Sqrt, exp.Pow, exp.Sign)
def _h_math(c: _Checker, node: exp.Expression) -> _T:
    args = [node.this] + ([node.expression] if isinstance(node, exp.Pow) else [])
    for t, a in [c.typed(a) for a in args]:
        if not _numeric(t) or t.kind == "float":
            raise _Refuse(f"{_spark_name(node)} of {t}")
        _coerce(a, t, DOUBLE)
    args = [node.this] + ([node.expression] if isinstance(node, exp.Pow) else [])
    names: dict[type, str] = {exp.Sqrt: "sqrt", exp.Pow: "pow", exp.Sign: "sign"}
    result = _cast(_fn(names[type(node)], *args), DOUBLE)
    if isinstance(node, exp.Sign):  # Spark: signum(NaN) is NaN; DuckDB: 0
        result = exp.Case(ifs=[exp.If(this=_fn("isnan", args[0].copy()), true=args[0].copy())], default=result)
    node.replace(result)
    return DOUBLE


@_handles(exp.Anonymous)
def _h_anonymous(c: _Checker, node: exp.Anonymous) -> _T:
    name = str(node.name).lower()
    args = list(node.expressions)
    if name in ("isnull", "isnotnull") and len(args) == 1:
        _, arg = c.typed(args[0])
        test: exp.Expression = exp.Is(this=arg, expression=exp.Null())
        node.replace(test if name == "isnull" else exp.Not(this=test))
        return BOOL
    if name == "weekday" and len(args) == 1:  # Spark: 0 = Monday; DuckDB isodow: 1 = Monday
        _date_arg(c, args[0], (DATE, TS, TS_NTZ))
        node.replace(_cast(exp.Sub(this=_fn("isodow", node.expressions[0]), expression=exp.Literal.number(1)), INT))
        return INT
    raise _Refuse(f"function '{name}' is not on the checked list")


# ---- aggregates and windows: they return a type and whether DuckDB's result needs a cast


def _aggregate(c: _Checker, node: exp.Expression) -> tuple[_T, bool]:
    if isinstance(node, exp.Count):
        _only(node, {"this", "big_int"})
        arg = node.this
        if isinstance(arg, exp.Distinct):
            if len(arg.expressions) != 1:
                raise _Refuse("count(DISTINCT a, b) is not checked")
            c.orderable(c.expr(arg.expressions[0]), "count(DISTINCT)")
        elif arg is not None and not isinstance(arg, exp.Star):
            c.expr(arg)
        return LONG, False
    arg = node.this
    inner = arg.expressions[0] if isinstance(arg, exp.Distinct) and len(arg.expressions) == 1 else arg
    if isinstance(arg, exp.Distinct) and not isinstance(node, (exp.Sum, exp.Avg, exp.Min, exp.Max)):
        raise _Refuse(f"DISTINCT in {_spark_name(node)} is not checked")
    if inner is None or isinstance(inner, exp.Distinct):
        raise _Refuse(f"{_spark_name(node)} form is not checked")
    t, inner = c.typed(inner)
    if isinstance(node, (exp.Min, exp.Max)):
        c.orderable(t, _spark_name(node))
        return t, False
    if isinstance(node, (exp.CountIf, exp.LogicalAnd, exp.LogicalOr)):
        if t not in (BOOL, NULL):
            raise _Refuse(f"{_spark_name(node)} of {t}")
        if isinstance(node, exp.CountIf):
            return LONG, True
        node.replace(_fn("bool_and" if isinstance(node, exp.LogicalAnd) else "bool_or", inner))
        return BOOL, False
    if not _numeric(t):
        raise _Refuse(f"{_spark_name(node)} of {t}")
    if isinstance(node, exp.Sum):
        if t.kind in _INTEGRAL:
            return LONG, True
        if t.kind == "decimal":
            return _T("decimal", min(t.precision + 10, 38), t.scale), True
        _coerce(inner, t, DOUBLE)
        return DOUBLE, False
    if isinstance(node, exp.Avg):
        if t.kind == "decimal":
            raise _Refuse("avg of a decimal (Spark keeps a decimal with 4 more digits) is not checked")
        return DOUBLE, False
    _coerce(inner, t, DOUBLE)
    node.replace(_fn(_STAT_NAMES[type(node)], node.this))  # Spark computes these on DOUBLE
    return DOUBLE, False


def _h_aggregate(c: _Checker, node: exp.Expression) -> _T:
    t, needs_cast = _aggregate(c, node)
    if needs_cast:
        _wrap(node, lambda n: _cast(n, t))
    return t


for _agg_class in _AGGREGATES:
    _HANDLERS[_agg_class] = _h_aggregate


@_handles(exp.Filter)
def _h_filter(c: _Checker, node: exp.Filter) -> _T:
    if not isinstance(node.this, _AGGREGATES):
        raise _Refuse("FILTER on a non-aggregate")
    t, needs_cast = _aggregate(c, node.this)
    c.condition(node.expression.this)
    if needs_cast:
        _wrap(node, lambda n: _cast(n, t))
    return t


def _window_function(c: _Checker, fn: exp.Expression, ordered: bool, framed: bool) -> tuple[_T, bool]:
    if isinstance(fn, _AGGREGATES):
        return _aggregate(c, fn)
    if not isinstance(fn, _WINDOW_ONLY):
        raise _Refuse(f"window function '{_spark_name(fn)}' is not on the checked list")
    if not ordered:
        raise _Refuse(f"{_spark_name(fn)} needs ORDER BY in its window")
    if framed:
        raise _Refuse(f"a frame on {_spark_name(fn)} is not checked")
    if isinstance(fn, (exp.RowNumber, exp.Rank, exp.DenseRank)):
        if fn.expressions or fn.args.get("this"):
            raise _Refuse(f"{_spark_name(fn)} with arguments")
        return INT, True
    if isinstance(fn, (exp.PercentRank, exp.CumeDist)):
        if fn.expressions:
            raise _Refuse(f"{_spark_name(fn)} with arguments")
        return DOUBLE, False
    if isinstance(fn, exp.Ntile):
        if _literal_arg(fn.this, "ntile buckets") <= 0:
            raise _Refuse("ntile needs a positive bucket count")
        return INT, True
    _only(fn, {"this", "offset", "default"})
    t = c.expr(fn.this)
    if fn.args.get("offset") is not None and _literal_arg(fn.args["offset"], "lag/lead offset") < 0:
        raise _Refuse("negative lag/lead offset")
    default = fn.args.get("default")
    if default is not None:
        dt, default = c.typed(default)
        if dt != t and dt != NULL:
            if not (_numeric(t) and _int_literal(default) is not None):
                raise _Refuse(f"lag/lead default of type {dt} for a {t} value")
            _coerce(default, dt, t)
    return t, False


@_handles(exp.Window)
def _h_window(c: _Checker, node: exp.Window) -> _T:
    _only(node, {"this", "partition_by", "order", "spec", "over"})
    for e in list(node.args.get("partition_by") or []):
        c.orderable(c.expr(e), "PARTITION BY")
    order = node.args.get("order")
    if order is not None:
        c.ordering(order)
    spec = node.args.get("spec")
    if spec is not None:
        _only(spec, {"kind", "start", "start_side", "end", "end_side"})
        for key in ("start", "end"):
            bound = spec.args.get(key)
            if str(bound).upper() in ("UNBOUNDED", "CURRENT ROW"):
                continue
            if spec.args.get("kind") != "ROWS" or _int_literal(bound) is None:
                raise _Refuse("only ROWS frames with literal offsets are checked")
    t, needs_cast = _window_function(c, node.this, order is not None, spec is not None)
    if needs_cast:
        _wrap(node, lambda n: _cast(n, t))
    return t


# ------------------------------------------------------------- names and entry points


def _auto_name(node: exp.Expression) -> str | None:
    """Spark's name for an unaliased projection, for the few forms whose spelling is sure."""
    if isinstance(node, exp.Column) and isinstance(node.this, exp.Identifier):
        return str(node.name)
    names: dict[type, str] = {exp.Count: "count", exp.Sum: "sum", exp.Avg: "avg", exp.Min: "min", exp.Max: "max"}
    fn = names.get(type(node))
    if fn is None:
        return None
    arg = node.this
    if isinstance(node, exp.Count) and (isinstance(arg, exp.Star) or _int_literal(arg) == 1):
        return "count(1)"
    prefix = ""
    if isinstance(arg, exp.Distinct) and len(arg.expressions) == 1:
        arg, prefix = arg.expressions[0], "DISTINCT "
    if isinstance(arg, exp.Column) and not arg.table and isinstance(arg.this, exp.Identifier) and not arg.this.quoted:
        return f"{fn}({prefix}{arg.name})"
    return None


def _names(q: exp.Expression, ctes: Mapping[str, list[str | None]], schemas: Mapping[str, Sequence[str]]) -> list[str | None]:
    """Spark's output column names of a query, read from the tree as written."""
    if isinstance(q, exp.Subquery):
        return _names(q.this, ctes, schemas)
    ctes = dict(ctes)
    with_ = q.args.get("with_")
    for cte in with_.expressions if with_ is not None else []:
        ctes[cte.alias_or_name.lower()] = _names(cte.this, ctes, schemas)
    if isinstance(q, exp.SetOperation):
        return _names(q.this, ctes, schemas)
    if not isinstance(q, exp.Select):
        raise _Refuse(f"{q.key.upper()} is not a checked query form")
    sources = _source_names(q, ctes, schemas)
    if any(j.args.get("using") for j in q.args.get("joins") or []) and any(
            isinstance(p, exp.Star) for p in q.expressions):
        raise _Refuse("SELECT * with JOIN ... USING is not checked")
    out: list[str | None] = []
    for p in q.expressions:
        if isinstance(p, exp.Star):
            out.extend(n for _, cols in sources for n in cols)
        elif isinstance(p, exp.Column) and isinstance(p.this, exp.Star):
            out.extend(n for alias, cols in sources if alias == p.table.lower() for n in cols)
        elif isinstance(p, exp.Alias):
            out.append(p.alias)
        else:
            out.append(_auto_name(p))
    return out


def _source_names(q: exp.Select, ctes: Mapping[str, list[str | None]],
                  schemas: Mapping[str, Sequence[str]]) -> list[tuple[str, list[str | None]]]:
    sources: list[tuple[str, list[str | None]]] = []
    from_ = q.args.get("from_")
    for src in ([from_.this] if from_ is not None else []) + [j.this for j in q.args.get("joins") or []]:
        if isinstance(src, exp.Table):
            cols = ctes.get(src.name.lower())
            cols = cols if cols is not None else list(schemas.get(src.name.lower(), []))
        elif isinstance(src, exp.Subquery):
            cols = _names(src.this, ctes, schemas)
        else:
            raise _Refuse(f"{src.key.upper()} in FROM is not checked")
        sources.append((src.alias_or_name.lower(), cols))
    return sources


def _check_alias_uses(tree: exp.Expression, schemas: Mapping[str, Sequence[str]]) -> None:
    """Refuse alias references whose resolution differs: Spark has no aliases in WHERE/ON, and
    prefers a source column over a same-named alias in GROUP BY/HAVING."""
    ctes: dict[str, list[str | None]] = {}
    for cte in tree.find_all(exp.CTE):
        ctes.setdefault(cte.alias_or_name.lower(), _names(cte.this, ctes, schemas))
    for q in tree.find_all(exp.Select):
        aliases = {p.alias.lower(): p for p in q.expressions if isinstance(p, exp.Alias)}
        if aliases:
            sources = _source_names(q, ctes, schemas)
            _check_alias_use(q, aliases, {str(n).lower() for _, cols in sources for n in cols if n})


def _check_alias_use(q: exp.Select, aliases: Mapping[str, exp.Alias], source_columns: set[str]) -> None:
    clauses = [q.args.get("where"), q.args.get("group"), q.args.get("having")]
    clauses += [j.args.get("on") for j in q.args.get("joins") or []]
    for clause in clauses:
        if clause is None:
            continue
        for col in clause.find_all(exp.Column):
            if col.table or col.find_ancestor(exp.Select) is not q:
                continue
            name = col.name.lower()
            if name not in aliases:
                continue
            aliased = aliases[name].this
            same = isinstance(aliased, exp.Column) and aliased.name.lower() == name
            in_where = clause is q.args.get("where") or isinstance(clause.parent, exp.Join)
            if (in_where and name not in source_columns) or (name in source_columns and not same):
                raise _Refuse(f"the name {col.name!r} could mean a select alias or a column")


def _apply_limit(q: exp.Expression, limit: int) -> None:
    current = q.args.get("limit")
    value = _int_literal(current.expression) if current is not None else None
    if value is None or value > limit:
        q.set("limit", exp.Limit(expression=exp.Literal.number(limit)))


@dataclass(frozen=True)
class _Translation:
    sql: str
    names: tuple[str, ...]
    types: tuple[_T, ...]


def _translate(sql: str, relations: Mapping[str, str], schemas: Mapping[str, Sequence[tuple[str, _T]]],
               limit: int | None = None, naive_utc: bool = False) -> _Translation:
    """Spark SQL -> checked DuckDB SQL, with Spark's output names and types (memoized)."""
    return _translate_cached(sql, tuple(sorted(relations.items())),
                             tuple(sorted((k, tuple(v)) for k, v in schemas.items())), limit, naive_utc)


@lru_cache(maxsize=512)
def _translate_cached(sql: str, relations: tuple[tuple[str, str], ...],
                      schemas: tuple[tuple[str, tuple[tuple[str, _T], ...]], ...],
                      limit: int | None, naive_utc: bool) -> _Translation:
    token = _NAIVE_UTC.set(naive_utc)
    try:
        return _translate_tree(sql, dict(relations), dict(schemas), limit)
    finally:
        _NAIVE_UTC.reset(token)


def _translate_tree(sql: str, relations: Mapping[str, str], schemas: Mapping[str, Sequence[tuple[str, _T]]],
                    limit: int | None) -> _Translation:
    try:
        tree = parse(sql)
        tokens = tokenize(sql, read="spark")
    except (SqlError, SqlglotError) as err:
        raise _Refuse(f"Spark SQL does not parse: {err}") from None
    for a, b in itertools.pairwise(tokens):
        # Spark reads 'it''s' as one literal with a quote; the parser here sees two literals
        if a.token_type == b.token_type == TokenType.STRING and b.start == a.end + 1:
            raise _Refuse("a doubled quote inside a string literal is not checked")
    lowered = {k.lower(): v.lower() for k, v in relations.items()}
    rel_schemas = {lowered[k.lower()]: list(v) for k, v in schemas.items() if k.lower() in lowered}
    cte_names = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for table in list(tree.find_all(exp.Table)):
        name = table.name.lower()
        if table.args.get("db") or table.args.get("catalog"):
            raise _Refuse(f"qualified table name {table.sql(dialect='spark')}")
        if name in cte_names:
            continue
        if name not in lowered:
            raise _Refuse(f"table {table.name!r} is not a committed stage")
        table.set("alias", exp.TableAlias(this=exp.to_identifier(table.alias or table.name)))
        table.set("this", exp.to_identifier(lowered[name]))
    column_names = {rel: [n for n, _ in cols] for rel, cols in rel_schemas.items()}
    names = _names(tree, {}, column_names)
    _check_alias_uses(tree, column_names)
    for i, n in enumerate(names):
        if n is None:
            raise _Refuse(f"output column {i + 1} needs an alias (AS name): Spark's automatic name is not checked")
    try:
        qualify(tree, schema={rel: {n: "INT" for n, _ in cols} for rel, cols in rel_schemas.items()},
                dialect="spark", validate_qualify_columns=True, identify=True)
    except SqlglotError as err:
        raise _Refuse(f"names do not resolve: {str(err).splitlines()[0]}") from None
    checker = _Checker({rel: {n.lower(): t for n, t in cols} for rel, cols in rel_schemas.items()})
    out = checker.query(tree, {}, "query")
    if len(out) != len(names):
        raise _Refuse("internal: output columns disagree")
    for (qualified_name, t), spark_name in zip(out, names, strict=True):
        if not re.fullmatch(r"_col_\d+", qualified_name) and qualified_name.lower() != str(spark_name).lower():
            raise _Refuse(f"internal: output column {spark_name!r} resolved as {qualified_name!r}")
        if t == OTHER or _arrow_type(t, "UTC") is None:
            raise _Refuse(f"output column {spark_name!r} has a type ({t}) whose conversion is not checked")
    if limit is not None:
        _apply_limit(tree, limit)
    try:
        text = tree.sql(dialect="duckdb", unsupported_level=ErrorLevel.RAISE)
    except SqlglotError as err:
        raise _Refuse(f"DuckDB SQL cannot express it: {err}") from None
    return _Translation(text, tuple(str(n) for n in names), tuple(t for _, t in out))


def transpile(sql: str, tables: Mapping[str, str], *,
              schemas: Mapping[str, Mapping[str, str]] | None = None) -> str | DuckdbRefusal:
    """Spark SQL -> DuckDB SQL; `tables` maps stage name -> DuckDB relation name to reference.

    Args:
        sql: one Spark SQL query over stage names.
        tables: stage name -> name of the DuckDB relation that holds its rows.
        schemas: stage name -> {column: Spark type, e.g. 'int', 'decimal(10,2)', 'timestamp'}
            in column order. Without the types nothing can be checked, so the query is refused.

    Returns:
        DuckDB SQL computing what Spark would, or a `DuckdbRefusal` saying why not.
    """
    if schemas is None:
        return DuckdbRefusal("column types of the stages are unknown (pass schemas=...)")
    typed = {stage: [(col, _spark_type(t)) for col, t in cols.items()] for stage, cols in schemas.items()}
    try:
        return _translate(sql, tables, typed).sql
    except _Refuse as refusal:
        return DuckdbRefusal(refusal.reason)


# --------------------------------------------------------------------- execution


@dataclass(frozen=True)
class _Stage:
    files: tuple[str, ...]
    columns: tuple[tuple[str, _T], ...]
    zoneless: tuple[str, ...]  # Spark TIMESTAMP columns stored as INT96: DuckDB reads them zone-less
    zoned: tuple[str, ...]  # Spark TIMESTAMP columns stored as UTC-adjusted INT64


def _local_path(path: str) -> str:
    if path.startswith("file://"):
        path = path[len("file://"):]
    elif path.startswith("file:"):
        path = path[len("file:"):]
    elif re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", path):
        raise _Refuse(f"{path!r} is not on the local file system")
    return path


def _data_files(path: str) -> Iterator[str]:
    local = _local_path(path)
    if os.path.isfile(local):
        yield local
        return
    if not os.path.isdir(local):
        raise _Refuse(f"{path!r} does not exist")
    for entry in sorted(os.scandir(local), key=lambda e: e.name):
        if entry.name.startswith(("_", ".")):
            continue  # _SUCCESS, .crc files: Spark skips them too
        if entry.is_dir():
            raise _Refuse(f"{path!r} has sub-directories (a partitioned layout is not checked)")
        yield entry.path


@lru_cache(maxsize=4096)
def _footer(path: str, mtime_ns: int, size: int) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """The Spark schema JSON and Arrow field types of one file (cached: committed files never change)."""
    schema = pq.read_schema(path)
    meta = (schema.metadata or {}).get(_SPARK_SCHEMA_KEY)
    return (meta.decode() if meta else None), tuple((f.name, str(f.type)) for f in schema)


def _load_stage(name: str, paths: Sequence[str]) -> _Stage:
    files = tuple(f for p in paths for f in _data_files(p))
    if not files:
        raise _Refuse(f"stage {name!r} has no Parquet files")
    schema_json, arrow_fields = None, None
    for f in files:
        st = os.stat(f)
        meta, fields = _footer(f, st.st_mtime_ns, st.st_size)
        if meta is None:
            raise _Refuse(f"{f!r} was not written by Spark (no Spark schema in its footer)")
        if schema_json is None:
            schema_json, arrow_fields = meta, fields
        elif [(x["name"], x["type"]) for x in json.loads(meta)["fields"]] != [
                (x["name"], x["type"]) for x in json.loads(schema_json)["fields"]] or fields != arrow_fields:
            raise _Refuse(f"the files of stage {name!r} do not share one schema")
    assert schema_json is not None and arrow_fields is not None
    columns = tuple((f["name"], _spark_type(f["type"])) for f in json.loads(schema_json)["fields"])
    if len({n.lower() for n, _ in columns}) != len(columns):
        raise _Refuse(f"stage {name!r} has column names that differ only in case")
    arrow_types = dict(arrow_fields)
    zoned = tuple(n for n, t in columns if t == TS and "tz=" in arrow_types.get(n, ""))
    zoneless = tuple(n for n, t in columns if t == TS and n not in zoned)
    return _Stage(files, columns, zoneless, zoned)


_DATABASE_LOCK = threading.Lock()
_DATABASE: list[Any] = []


def _database() -> Any:
    """The process's in-memory DuckDB database (opening one costs ~50 ms; a cursor ~0)."""
    import duckdb

    with _DATABASE_LOCK:
        if not _DATABASE:
            database = duckdb.connect(":memory:")
            database.execute("SET parquet_metadata_cache = true")  # committed files never change
            _DATABASE.append(database)
        return _DATABASE[0]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _view_column(col: str, stage: _Stage, naive_utc: bool) -> str:
    """How a view exposes a stored column: Spark TIMESTAMPs become one consistent DuckDB type."""
    name = _quote(col)
    if naive_utc and col in stage.zoned:
        return f"CAST({name} AS TIMESTAMP) AS {name}"  # the session is UTC: exact
    if not naive_utc and col in stage.zoneless:
        return f"timezone('UTC', {name}) AS {name}"  # INT96 holds UTC wall time
    return name


def _conform(table: pa.Table, names: Sequence[str], types: Sequence[_T], timezone: str) -> pa.Table:
    """Arrow with Spark's column names and types (a failing cast refuses, as Spark would fail)."""
    if table.num_columns != len(names):
        raise _Refuse("internal: DuckDB returned an unexpected number of columns")
    columns = []
    for column, t in zip(table.columns, types, strict=True):
        target = _arrow_type(t, timezone)
        if target is not None and column.type != target:
            try:
                column = column.cast(target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                raise _Refuse(f"result does not convert to Spark's {t}: {err}") from None
        columns.append(column)
    return pa.Table.from_arrays(columns, names=list(names))


def run_duckdb(sql: str, tables: Mapping[str, Sequence[str]], *, limit: int | None = None,
               timezone: str = "UTC") -> pa.Table | DuckdbRefusal:
    """Run a Spark SQL query over committed stages in DuckDB, or say why it must go to Spark.

    Args:
        sql: one Spark SQL query over stage names.
        tables: stage name -> local Parquet directories (or files) whose union is the stage.
        limit: at most this many rows, applied inside the engine.
        timezone: the Spark session time zone.

    Returns:
        An Arrow table with Spark's column names and types, or a `DuckdbRefusal`. Runtime
        failures (overflow, division by zero, a guard that detects data the engines treat
        differently) are refusals too: Spark then runs the query and reports its own error.
    """
    if limit is not None and limit < 0:
        return DuckdbRefusal("a negative limit")
    if not re.fullmatch(r"[A-Za-z0-9_+\-/:]+", timezone):
        return DuckdbRefusal(f"time zone {timezone!r} is not checked")
    try:
        read = {name.lower() for name in referenced_tables(sql)}  # only these stages are opened
        stages = {name: _load_stage(name, paths) for name, paths in tables.items() if name.lower() in read}
        relations = {name: _RELATION_PREFIX + name.lower() for name in stages}
        naive_utc = timezone in ("UTC", "Etc/UTC")
        translation = _translate(sql, relations, {n: s.columns for n, s in stages.items()}, limit=limit,
                                 naive_utc=naive_utc)
    except _Refuse as refusal:
        return DuckdbRefusal(refusal.reason)
    except SqlError as err:
        return DuckdbRefusal(f"Spark SQL does not parse: {err}")
    except (OSError, ValueError, pa.ArrowException) as err:
        return DuckdbRefusal(f"stage files could not be read: {err}")
    import duckdb

    con = _database().cursor()  # a private connection: its settings and temp views are its own
    try:
        con.execute(f"SET SESSION TimeZone = {_string(timezone)}")
        con.execute("SET SESSION default_null_order = 'nulls_last'")  # what generated ORDER BY assumes
        for name, stage in stages.items():
            select = ", ".join(_view_column(col, stage, naive_utc) for col, _ in stage.columns)
            files = ", ".join(_string(f) for f in stage.files)
            con.execute(f"CREATE TEMP VIEW {_quote(relations[name])} AS SELECT {select} "
                        f"FROM read_parquet([{files}], hive_partitioning = false)")
        result = con.sql(translation.sql).to_arrow_table()
        return _conform(result, translation.names, translation.types, timezone)
    except _Refuse as refusal:
        return DuckdbRefusal(refusal.reason)
    except duckdb.Error as err:
        return DuckdbRefusal(f"DuckDB failed, Spark decides: {str(err).splitlines()[0]}")
    finally:
        con.close()
