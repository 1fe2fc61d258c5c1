"""Checker handlers for columns, literals, operators, predicates, conditionals and casts.

Each handler types its children, applies Spark's rules (ANSI integer overflow, decimal
result types, comparison coercions, the common type of branches, the cast table) and
rewrites the node in place where DuckDB would differ. Importing the module registers the
handlers with the checker.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

from sqlglot import exp

from jupyter_dataflow.query.duckdb_checker import (
    Checker,
    call,
    cast,
    coerce,
    exact_double,
    handles,
    int_literal,
    only,
    raise_if,
    spark_name,
    str_literal,
    typed_literal,
    wrap,
)
from jupyter_dataflow.query.duckdb_types import (
    BOOL,
    CAST_TARGETS,
    DATE,
    DOUBLE,
    INT,
    INT_RANGE,
    INTEGRAL,
    LONG,
    NULL,
    ORDERABLE,
    STRING,
    TS,
    TS_NTZ,
    Refuse,
    SparkType,
    as_decimal,
    duck_type,
    numeric,
    wider,
)

_CMP = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ)


@handles(exp.Column)
def _h_column(c: Checker, node: exp.Column) -> SparkType:
    return c.column(node)


@handles(exp.Literal)
def _h_literal(c: Checker, node: exp.Literal) -> SparkType:
    return c.literal(node)


@handles(exp.Null)
def _h_null(c: Checker, node: exp.Null) -> SparkType:
    return NULL


@handles(exp.Boolean)
def _h_boolean(c: Checker, node: exp.Boolean) -> SparkType:
    return BOOL


@handles(exp.Paren)
def _h_paren(c: Checker, node: exp.Paren) -> SparkType:
    return c.expr(node.this)


@handles(exp.Neg)
def _h_neg(c: Checker, node: exp.Neg) -> SparkType:
    t = c.expr(node.this)
    if not numeric(t):
        raise Refuse(f"unary minus on {t}")
    return t  # DuckDB negates within the type and fails on overflow, like Spark's ANSI mode


def _operands(c: Checker, node: exp.Expression) -> tuple[SparkType, SparkType]:
    lt, rt = c.expr(node.this), c.expr(node.expression)
    if lt == NULL or rt == NULL:
        raise Refuse("arithmetic on an untyped NULL is not checked")
    return lt, rt


@handles(exp.Add, exp.Sub, exp.Mul)
def _h_add_sub_mul(c: Checker, node: exp.Expression) -> SparkType:
    lt, rt = _operands(c, node)
    if lt == DATE and rt.kind in ("byte", "short", "int") and not isinstance(node, exp.Mul):
        coerce(node.expression, rt, INT)  # Spark: date +/- n days
        return DATE
    if not (numeric(lt) and numeric(rt)):
        raise Refuse(f"{node.key.upper()} of {lt} and {rt} is not checked")
    if "float" in (lt.kind, rt.kind):
        raise Refuse("FLOAT arithmetic is not checked")
    if "double" in (lt.kind, rt.kind):
        result = DOUBLE
        coerce(node.this, lt, DOUBLE)
        coerce(node.expression, rt, DOUBLE)
        return result
    if lt.kind in INTEGRAL and rt.kind in INTEGRAL:
        result = max(lt, rt, key=lambda t: INTEGRAL.index(t.kind))
        coerce(node.this, lt, result)  # DuckDB then overflows exactly where Spark's ANSI mode does
        coerce(node.expression, rt, result)
        return result
    ld = as_decimal(lt, int_literal(node.this))
    rd = as_decimal(rt, int_literal(node.expression))
    if isinstance(node, exp.Mul):
        precision, scale = ld.precision + rd.precision + 1, ld.scale + rd.scale
    else:
        scale = max(ld.scale, rd.scale)
        precision = max(ld.precision - ld.scale, rd.precision - rd.scale) + scale + 1
    if precision > 38:
        raise Refuse("decimal arithmetic beyond 38 digits loses precision in Spark")
    result = SparkType("decimal", precision, scale)
    coerce(node.this, lt, ld)
    coerce(node.expression, rt, rd)
    wrap(node, lambda n: cast(n, result))
    return result


@handles(exp.Div)
def _h_div(c: Checker, node: exp.Div) -> SparkType:
    lt, rt = _operands(c, node)
    if not (numeric(lt) and numeric(rt)):
        raise Refuse(f"division of {lt} by {rt} is not checked")
    if "decimal" in (lt.kind, rt.kind) and "double" not in (lt.kind, rt.kind):
        raise Refuse("decimal division (Spark rounds to a derived scale) is not checked")
    if "float" in (lt.kind, rt.kind):
        raise Refuse("FLOAT arithmetic is not checked")
    coerce(node.this, lt, DOUBLE)
    coerce(node.expression, rt, DOUBLE)
    divisor = node.expression
    wrap(divisor, lambda d: raise_if(exp.EQ(this=d.copy(), expression=exp.Literal.number(0)), d, "DIVIDE_BY_ZERO"))
    node.set("typed", None)
    node.set("safe", None)
    return DOUBLE


@handles(exp.IntDiv)
def _h_intdiv(c: Checker, node: exp.IntDiv) -> SparkType:
    lt, rt = _operands(c, node)
    if lt.kind not in INTEGRAL or rt.kind not in INTEGRAL:
        raise Refuse(f"DIV of {lt} and {rt} is not checked")
    coerce(node.this, lt, LONG)  # DuckDB's // truncates and fails on zero, as Spark's ANSI DIV does
    coerce(node.expression, rt, LONG)
    return LONG


@handles(exp.Mod)
def _h_mod(c: Checker, node: exp.Mod) -> SparkType:
    lt, rt = _operands(c, node)
    if lt.kind in INTEGRAL and rt.kind in INTEGRAL:
        result = max(lt, rt, key=lambda t: INTEGRAL.index(t.kind))
        coerce(node.this, lt, result)
        coerce(node.expression, rt, result)
        return result
    if numeric(lt) and numeric(rt) and "double" in (lt.kind, rt.kind) and "float" not in (lt.kind, rt.kind):
        coerce(node.this, lt, DOUBLE)
        coerce(node.expression, rt, DOUBLE)
        divisor = node.expression
        wrap(divisor, lambda d: raise_if(exp.EQ(this=d.copy(), expression=exp.Literal.number(0)), d, "REMAINDER_BY_ZERO"))
        return DOUBLE
    raise Refuse(f"remainder of {lt} and {rt} is not checked")


def _comparable(c: Checker, left: exp.Expression, lt: SparkType, right: exp.Expression, rt: SparkType) -> None:
    """Check that Spark compares these values the way DuckDB will; rewrite where needed."""
    if NULL in (lt, rt) or (lt == rt and lt.kind in ORDERABLE):
        return
    if numeric(lt) and numeric(rt):
        if "float" in (lt.kind, rt.kind):
            raise Refuse("comparing FLOAT with another numeric type is not checked")
        if "double" in (lt.kind, rt.kind):
            exact_double(lt, DOUBLE)
            exact_double(rt, DOUBLE)
        return
    for a, at, b, bt in ((left, lt, right, rt), (right, rt, left, lt)):
        if at.kind in ("date", "timestamp", "timestamp_ntz") and bt == STRING:
            text = str_literal(b)
            if text is None:
                raise Refuse(f"comparing {at} with a string expression is not checked")
            b.replace(typed_literal(text, at))
            return
        if at == DATE and bt == TS:
            coerce(a, DATE, TS)
            return
    raise Refuse(f"comparing {lt} with {rt} is not checked")


@handles(*_CMP)
def _h_compare(c: Checker, node: exp.Expression) -> SparkType:
    lt, rt = c.expr(node.this), c.expr(node.expression)
    _comparable(c, node.this, lt, node.expression, rt)
    return BOOL


@handles(exp.Between)
def _h_between(c: Checker, node: exp.Between) -> SparkType:
    only(node, {"this", "low", "high"})
    t = c.expr(node.this)
    for key in ("low", "high"):
        bt = c.expr(node.args[key])
        _comparable(c, node.this, t, node.args[key], bt)
    return BOOL


@handles(exp.In)
def _h_in(c: Checker, node: exp.In) -> SparkType:
    only(node, {"this", "expressions", "query"})
    t = c.expr(node.this)
    if node.args.get("query") is not None:
        st = c.subquery(node.args["query"], "in")
        if NULL not in (t, st) and t != st and not (numeric(t) and numeric(st) and "float" not in (t.kind, st.kind)):
            raise Refuse(f"IN compares {t} with {st}")
        return BOOL
    for i in range(len(node.expressions)):
        et, e = c.typed(node.expressions[i])
        _comparable(c, node.this, t, e, et)
    return BOOL


@handles(exp.Exists)
def _h_exists(c: Checker, node: exp.Exists) -> SparkType:
    only(node, {"this"})
    return c.subquery(node.this, "exists")


@handles(exp.Subquery)
def _h_scalar(c: Checker, node: exp.Subquery) -> SparkType:
    return c.subquery(node, "scalar")


@handles(exp.And, exp.Or)
def _h_logic(c: Checker, node: exp.Expression) -> SparkType:
    for t in (c.expr(node.this), c.expr(node.expression)):
        if t not in (BOOL, NULL):
            raise Refuse(f"{node.key.upper()} of a {t} value")
    return BOOL


@handles(exp.Not)
def _h_not(c: Checker, node: exp.Not) -> SparkType:
    c.condition(node.this)
    return BOOL


@handles(exp.Is)
def _h_is(c: Checker, node: exp.Is) -> SparkType:
    t = c.expr(node.this)
    if isinstance(node.expression, exp.Boolean) and t not in (BOOL, NULL):
        raise Refuse(f"IS TRUE/FALSE on {t}")
    if not isinstance(node.expression, (exp.Null, exp.Boolean)):
        raise Refuse("IS with a value other than NULL/TRUE/FALSE")
    return BOOL


@handles(exp.Like)
def _h_like(c: Checker, node: exp.Like) -> SparkType:
    only(node, {"this", "expression", "negate"})
    if c.expr(node.this) not in (STRING, NULL):
        raise Refuse("LIKE on a non-string value")
    pattern = str_literal(node.expression)
    if pattern is None:
        raise Refuse("LIKE with a pattern that is not a string literal")
    if "\\" in pattern:
        if re.search(r"\\(?![\\%_])", pattern):
            raise Refuse("LIKE pattern with an escape Spark rejects")
        wrap(node, lambda n: exp.Escape(this=n, expression=exp.Literal.string("\\")))
    return BOOL


def _branches(c: Checker, values: Sequence[exp.Expression]) -> SparkType:
    """Type result branches and cast each to Spark's common type."""
    typed = [c.typed(v) for v in values]
    result = wider([t for t, _ in typed])
    for t, v in typed:
        if t != NULL:
            coerce(v, t, result)
    return result


@handles(exp.Case)
def _h_case(c: Checker, node: exp.Case) -> SparkType:
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


@handles(exp.If)
def _h_if(c: Checker, node: exp.If) -> SparkType:
    c.condition(node.this)
    values = [node.args["true"]] + ([node.args["false"]] if node.args.get("false") is not None else [])
    return _branches(c, values)


@handles(exp.Coalesce, exp.Greatest, exp.Least)
def _h_coalesce(c: Checker, node: exp.Expression) -> SparkType:
    only(node, {"this", "expressions", "ignore_nulls"})  # GREATEST/LEAST skip NULLs in both
    result = _branches(c, [node.this, *node.expressions])
    if not isinstance(node, exp.Coalesce) and result.kind not in ORDERABLE:
        raise Refuse(f"{spark_name(node)} of {result}")
    return result


@handles(exp.Nullif)
def _h_nullif(c: Checker, node: exp.Nullif) -> SparkType:
    lt, rt = c.expr(node.this), c.expr(node.expression)
    _comparable(c, node.this, lt, node.expression, rt)
    if lt != NULL:
        wrap(node, lambda n: cast(n, lt))
    return lt


@handles(exp.Nvl2)
def _h_nvl2(c: Checker, node: exp.Nvl2) -> SparkType:
    c.expr(node.this)
    result = _branches(c, [node.args["true"]] + ([node.args["false"]] if node.args.get("false") is not None else []))
    subject = node.this
    values = [node.args["true"]] + ([node.args["false"]] if node.args.get("false") is not None else [])
    wrap(node, lambda n: exp.Case(
        ifs=[exp.If(this=exp.Not(this=exp.Is(this=subject, expression=exp.Null())), true=values[0])],
        default=values[1] if len(values) > 1 else None))
    return result


@handles(exp.Cast, exp.TryCast)
def _h_cast(c: Checker, node: exp.Cast) -> SparkType:
    if node.args.get("safe") or node.args.get("format") or node.args.get("action") or node.args.get("default"):
        raise Refuse("TRY_CAST and formatted casts are not checked")
    dt = node.to
    if dt.this == exp.DataType.Type.DECIMAL:
        params = [int(p.this.this) for p in dt.expressions] or [10, 0]
        want = SparkType("decimal", params[0], params[1] if len(params) > 1 else 0)
    elif dt.this in CAST_TARGETS and not dt.expressions:
        want = CAST_TARGETS[dt.this]
    else:
        raise Refuse(f"CAST to {dt.sql(dialect='spark')} is not checked")
    have = c.expr(node.this)
    source = node.this
    text = str_literal(source)
    if have == STRING and text is not None and want != STRING:
        node.replace(_cast_string_literal(text, want))
        return want
    _check_cast(have, want)
    if have.kind in ("decimal", "double", "float") and want.kind in INTEGRAL:
        wrap(source, lambda s: call("trunc", s))  # Spark truncates toward zero; DuckDB rounds
    new = exp.Cast(this=node.this, to=duck_type(want))
    node.replace(new)
    return want


def _check_cast(have: SparkType, want: SparkType) -> None:
    if have in (want, NULL):
        return
    exact_double(have, want)
    h, w = have.kind, want.kind
    numeric_targets = (*INTEGRAL, "double", "decimal")
    ok = (
        (h in INTEGRAL and w in (*numeric_targets, "float", "string", "boolean"))
        or (h == "boolean" and w in (*INTEGRAL, "string"))
        or (h == "decimal" and w in (*INTEGRAL, "decimal"))
        or (h == "decimal" and w in ("double", "float"))
        or (h in ("double", "float") and w in (*INTEGRAL, "double", "float"))
        or (h == "date" and w == "timestamp")
        or (h in ("timestamp", "timestamp_ntz") and w == "date")
    )
    if not ok:
        raise Refuse(f"CAST from {have} to {want} is not checked")


def _cast_string_literal(text: str, want: SparkType) -> exp.Expression:
    """Evaluate CAST('literal' AS type) now, accepting only unambiguous spellings."""
    if want in (DATE, TS, TS_NTZ):
        return typed_literal(text, want)
    if want.kind in INTEGRAL and re.fullmatch(r"[+-]?\d+", text):
        value = int(text)
        if -INT_RANGE[want.kind] <= value < INT_RANGE[want.kind]:
            return cast(exp.Literal.number(value), want)
    if want.kind == "decimal" and re.fullmatch(r"[+-]?\d+(\.\d+)?", text):
        try:
            value_d = Decimal(text)
        except InvalidOperation as err:
            raise Refuse(f"cannot read {text!r} as a number") from err
        digits = value_d.as_tuple()
        scale = -int(digits.exponent)
        if scale <= want.scale and len(digits.digits) - scale <= want.precision - want.scale:
            return cast(exp.Literal.string(text), want)
    if want == DOUBLE and re.fullmatch(r"[+-]?\d+(\.\d+)?([eE][+-]?\d+)?", text):
        return cast(exp.Literal.string(text), want)
    raise Refuse(f"CAST of the string {text!r} to {want} is not checked")


@handles(exp.TsOrDsToDate)
def _h_to_date(c: Checker, node: exp.TsOrDsToDate) -> SparkType:
    only(node, {"this", "safe"})  # only dates, timestamps and checked literals get through
    t = c.expr(node.this)
    if t == STRING and str_literal(node.this) is not None:
        node.replace(typed_literal(str(str_literal(node.this)), DATE))
    elif t == DATE:
        node.replace(node.this)
    elif t in (TS, TS_NTZ):
        node.replace(cast(node.this, DATE))
    elif t != NULL:
        raise Refuse(f"to_date of a {t} value is not checked")
    return DATE
