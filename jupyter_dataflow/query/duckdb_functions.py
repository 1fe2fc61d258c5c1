"""Checker handlers for built-in functions, aggregates and window functions.

String functions on code points, date parts and date arithmetic, rounding and math, and
the aggregate and window functions, each rewritten where DuckDB differs from Spark
(`substr` positions, Unicode case mapping, day-of-week numbering, result types). Importing
the module registers the handlers with the checker.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from jupyter_dataflow.query.duckdb_checker import (
    HANDLERS,
    Checker,
    call,
    cast,
    coerce,
    handles,
    int_literal,
    only,
    raise_if,
    spark_name,
    str_literal,
    wrap,
)
from jupyter_dataflow.query.duckdb_types import (
    BOOL,
    DATE,
    DOUBLE,
    INT,
    INTEGRAL,
    LONG,
    NULL,
    STRING,
    TS,
    TS_NTZ,
    Refuse,
    SparkType,
    numeric,
)

# Code points whose upper/lower case mapping was checked to agree between Spark (Java) and
# DuckDB: Latin up to U+024F, except the ones with special or version-dependent mappings.
_CASE_UNSAFE = r"[^\x{0}-\x{24F}]|[\x{DF}\x{130}\x{149}\x{19B}\x{1F0}]"

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


def _string_args(c: Checker, nodes: Sequence[exp.Expression], what: str) -> None:
    for t in c.exprs(nodes):
        if t not in (STRING, NULL):
            raise Refuse(f"{what} of a {t} value is not checked")


def _literal_arg(node: exp.Expression | None, what: str) -> int:
    value = None if node is None else int_literal(node)
    if value is None:
        raise Refuse(f"{what} must be an integer literal")
    return value


def _spark_substr(s: exp.Expression, pos: int, length: int | None) -> exp.Expression:
    """Spark's substr(s, pos, len) on code points, for literal pos and len."""
    if length is not None and length <= 0:
        return exp.Case(ifs=[exp.If(this=exp.Is(this=s, expression=exp.Null()), true=exp.Null())],
                        default=exp.Literal.string(""))
    if pos >= 0:
        args = [s, exp.Literal.number(max(pos, 1))]
        return call("substring", *args, *([exp.Literal.number(length)] if length is not None else []))
    # start = len(s) + pos, clamped at 0; end = start + length
    start = exp.Add(this=call("length", s.copy()), expression=exp.Literal.number(pos))
    clamped = call("greatest", start, exp.Literal.number(0))
    if length is None:
        return call("substring", s, exp.Add(this=clamped, expression=exp.Literal.number(1)))
    end = exp.Add(this=start.copy(), expression=exp.Literal.number(length))
    count = exp.Sub(this=end.copy(), expression=clamped.copy())
    return exp.Case(
        ifs=[exp.If(this=exp.GTE(this=clamped.copy(), expression=end), true=exp.Literal.string(""))],
        default=call("substring", s.copy(), exp.Add(this=clamped, expression=exp.Literal.number(1)), count))


@handles(exp.Substring)
def _h_substring(c: Checker, node: exp.Substring) -> SparkType:
    only(node, {"this", "start", "length"})
    _string_args(c, [node.this], "substr")
    pos = _literal_arg(node.args.get("start"), "substr position")
    length = None if node.args.get("length") is None else _literal_arg(node.args["length"], "substr length")
    node.replace(_spark_substr(node.this, pos, length))
    return STRING


@handles(exp.Left, exp.Right)
def _h_left_right(c: Checker, node: exp.Expression) -> SparkType:
    _string_args(c, [node.this], spark_name(node))
    n = _literal_arg(node.expression, f"{spark_name(node)} length")
    if n <= 0:
        node.replace(_spark_substr(node.this, 1, 0))
    elif isinstance(node, exp.Left):
        node.replace(_spark_substr(node.this, 1, n))
    else:
        node.replace(_spark_substr(node.this, -n, None))
    return STRING


@handles(exp.Length)
def _h_length(c: Checker, node: exp.Length) -> SparkType:
    only(node, {"this"})
    _string_args(c, [node.this], "length")
    node.replace(cast(call("length", node.this), INT))  # both count code points
    return INT


@handles(exp.Upper, exp.Lower)
def _h_case_map(c: Checker, node: exp.Expression) -> SparkType:
    _string_args(c, [node.this], spark_name(node))
    name = "upper" if isinstance(node, exp.Upper) else "lower"
    arg = node.this
    unsafe = call("regexp_matches", arg.copy(), exp.Literal.string(_CASE_UNSAFE))
    node.replace(raise_if(unsafe, call(name, arg), f"{name}() of characters whose case mapping differs"))
    return STRING


@handles(exp.Concat, exp.DPipe)
def _h_concat(c: Checker, node: exp.Expression) -> SparkType:
    parts = [node.this, node.expression] if isinstance(node, exp.DPipe) else list(node.expressions)
    if not parts:
        raise Refuse("concat() without arguments")
    for t, p in [c.typed(p) for p in parts]:
        if t.kind in INTEGRAL:
            coerce(p, t, STRING)
        elif t not in (STRING, NULL):
            raise Refuse(f"concat of a {t} value is not checked")
    parts = [node.this, node.expression] if isinstance(node, exp.DPipe) else list(node.expressions)
    joined = parts[0]
    for p in parts[1:]:
        joined = exp.DPipe(this=joined, expression=p)  # `||` is NULL if any part is, like Spark's concat
    node.replace(cast(joined, STRING) if len(parts) == 1 else joined)
    return STRING


@handles(exp.ConcatWs)
def _h_concat_ws(c: Checker, node: exp.ConcatWs) -> SparkType:
    parts = list(node.expressions)
    if len(parts) < 2:
        raise Refuse("concat_ws with fewer than two arguments")
    _string_args(c, parts, "concat_ws")
    node.replace(call("concat_ws", *node.expressions))
    return STRING


@handles(exp.Trim)
def _h_trim(c: Checker, node: exp.Trim) -> SparkType:
    only(node, {"this", "position"})
    _string_args(c, [node.this], "trim")
    name = {"LEADING": "ltrim", "TRAILING": "rtrim"}.get(str(node.args.get("position") or "").upper(), "trim")
    node.replace(call(name, node.this))  # both strip ASCII spaces only
    return STRING


@handles(exp.Replace)
def _h_replace(c: Checker, node: exp.Replace) -> SparkType:
    args = [node.this, node.expression, node.args.get("replacement") or exp.Literal.string("")]
    if any(a is not node.this and str_literal(a) is None for a in args):
        raise Refuse("replace() with a non-literal search or replacement")
    _string_args(c, args[:1], "replace")
    node.replace(call("replace", *args))
    return STRING


@handles(exp.Pad)
def _h_pad(c: Checker, node: exp.Pad) -> SparkType:
    _string_args(c, [node.this], "lpad/rpad")
    width = _literal_arg(node.expression, "pad length")
    fill = str_literal(node.args.get("fill_pattern") or exp.Literal.string(" "))
    if width < 0 or not fill:
        raise Refuse("lpad/rpad with a negative length or empty padding")
    node.replace(call("lpad" if node.args.get("is_left") else "rpad", node.this, exp.Literal.number(width),
                     exp.Literal.string(fill)))
    return STRING


@handles(exp.StrPosition)
def _h_instr(c: Checker, node: exp.StrPosition) -> SparkType:
    only(node, {"this", "substr"})
    _string_args(c, [node.this, node.args["substr"]], "instr")
    node.replace(cast(call("instr", node.this, node.args["substr"]), INT))
    return INT


@handles(exp.StartsWith, exp.EndsWith, exp.Contains)
def _h_contains(c: Checker, node: exp.Expression) -> SparkType:
    only(node, {"this", "expression"})
    _string_args(c, [node.this, node.expression], spark_name(node))
    names: dict[type, str] = {exp.StartsWith: "starts_with", exp.EndsWith: "ends_with"}
    name = names.get(type(node), "contains")
    node.replace(call(name, node.this, node.expression))
    return BOOL


@handles(exp.Repeat)
def _h_repeat(c: Checker, node: exp.Repeat) -> SparkType:
    _string_args(c, [node.this], "repeat")
    if c.expr(node.args["times"]).kind not in ("byte", "short", "int"):
        raise Refuse("repeat count must be an INT")
    node.replace(call("repeat", node.this, node.args["times"]))
    return STRING


def _date_arg(c: Checker, node: exp.Expression, allow: tuple[SparkType, ...]) -> SparkType:
    t = c.expr(node)
    if t not in allow and t != NULL:
        raise Refuse(f"a date function on a {t} value is not checked")
    return t


@handles(*_DATE_PARTS)
def _h_date_part(c: Checker, node: exp.Expression) -> SparkType:
    only(node, {"this"})
    _date_arg(c, node.this, (DATE, TS, TS_NTZ))
    node.replace(cast(call(_DATE_PARTS[type(node)], node.this), INT))
    return INT


@handles(*_TIME_PARTS)
def _h_time_part(c: Checker, node: exp.Expression) -> SparkType:
    only(node, {"this"})
    _date_arg(c, node.this, (TS, TS_NTZ))
    node.replace(cast(call(_TIME_PARTS[type(node)], node.this), INT))
    return INT


@handles(exp.DayOfWeek)
def _h_dayofweek(c: Checker, node: exp.DayOfWeek) -> SparkType:
    _date_arg(c, node.this, (DATE, TS, TS_NTZ))
    # Spark: 1 = Sunday ... 7 = Saturday; DuckDB: 0 = Sunday
    node.replace(cast(exp.Add(this=call("dayofweek", node.this), expression=exp.Literal.number(1)), INT))
    return INT


@handles(exp.Extract)
def _h_extract(c: Checker, node: exp.Extract) -> SparkType:
    unit = node.this.name.upper() if isinstance(node.this, (exp.Var, exp.Identifier)) else ""
    names = {"YEAR": "year", "MONTH": "month", "DAY": "day", "QUARTER": "quarter", "HOUR": "hour", "MINUTE": "minute"}
    if unit not in names:
        raise Refuse(f"EXTRACT({unit or '?'}) is not checked")
    _date_arg(c, node.expression, (DATE, TS, TS_NTZ) if unit not in ("HOUR", "MINUTE") else (TS, TS_NTZ))
    node.replace(cast(call(names[unit], node.expression), INT))
    return INT


@handles(exp.TsOrDsAdd)
def _h_date_add(c: Checker, node: exp.TsOrDsAdd) -> SparkType:
    only(node, {"this", "expression", "unit"})
    if str(node.args.get("unit") or "DAY").upper() != "DAY":
        raise Refuse("date arithmetic in units other than days is not checked")
    t = _date_arg(c, node.this, (DATE, TS, TS_NTZ))
    n = c.expr(node.expression)
    if n.kind not in ("byte", "short", "int"):
        raise Refuse("date_add/date_sub need an INT number of days")
    day = node.this if t == DATE else cast(node.this, DATE)
    node.replace(exp.Add(this=day, expression=cast(node.expression, INT)))
    return DATE


@handles(exp.DateDiff)
def _h_datediff(c: Checker, node: exp.DateDiff) -> SparkType:
    only(node, {"this", "expression", "unit"})
    if str(node.args.get("unit") or "DAY").upper() not in ("DAY", "'DAY'"):
        raise Refuse("datediff in units other than days is not checked")
    _date_arg(c, node.this, (DATE,))
    _date_arg(c, node.expression, (DATE,))
    node.replace(cast(call("date_diff", exp.Literal.string("day"), node.expression, node.this), INT))
    return INT


def _unit(node: exp.Expression | None) -> str:
    text = node.name if isinstance(node, (exp.Var, exp.Identifier, exp.Literal)) else ""
    unit = _TRUNC_UNITS.get(text.lower())
    if unit is None:
        raise Refuse(f"truncation unit {text!r} is not checked")
    return unit


@handles(exp.TimestampTrunc)
def _h_date_trunc(c: Checker, node: exp.TimestampTrunc) -> SparkType:
    only(node, {"this", "unit"})
    unit = _unit(node.args.get("unit"))
    t = _date_arg(c, node.this, (DATE, TS))
    value = node.this if t != DATE else cast(node.this, TS)
    node.replace(call("date_trunc", exp.Literal.string(unit), value))
    return TS


@handles(exp.DateTrunc)
def _h_trunc(c: Checker, node: exp.DateTrunc) -> SparkType:
    only(node, {"this", "unit"})
    unit = _unit(node.args.get("unit"))
    if unit not in ("year", "quarter", "month", "week"):
        raise Refuse(f"trunc(date, {unit!r}) is not checked")
    t = _date_arg(c, node.this, (DATE, TS))
    value = node.this if t == DATE else cast(node.this, DATE)
    node.replace(cast(call("date_trunc", exp.Literal.string(unit), value), DATE))
    return DATE


@handles(exp.LastDay)
def _h_last_day(c: Checker, node: exp.LastDay) -> SparkType:
    only(node, {"this"})
    _date_arg(c, node.this, (DATE,))
    node.replace(call("last_day", node.this))
    return DATE


@handles(exp.AddMonths)
def _h_add_months(c: Checker, node: exp.AddMonths) -> SparkType:
    only(node, {"this", "expression"})
    _date_arg(c, node.this, (DATE,))
    if c.expr(node.expression).kind not in ("byte", "short", "int"):
        raise Refuse("add_months needs an INT number of months")
    months = call("to_months", cast(node.expression, INT))
    node.replace(cast(exp.Add(this=node.this, expression=months), DATE))
    return DATE


@handles(exp.Abs)
def _h_abs(c: Checker, node: exp.Abs) -> SparkType:
    t = c.expr(node.this)
    if not numeric(t):
        raise Refuse(f"abs of {t}")
    return t


@handles(exp.Round)
def _h_round(c: Checker, node: exp.Round) -> SparkType:
    only(node, {"this", "decimals"})
    t = c.expr(node.this)
    digits = 0 if node.args.get("decimals") is None else _literal_arg(node.args["decimals"], "round scale")
    if digits < 0:
        raise Refuse("round to a negative scale is not checked")
    if t.kind in INTEGRAL:
        node.replace(node.this)
        return t
    if t.kind != "decimal":
        raise Refuse(f"round of {t} (Spark rounds HALF_UP on the decimal value) is not checked")
    scale = min(digits, t.scale)
    result = SparkType("decimal", min(t.precision - t.scale + scale + 1, 38), scale)
    node.replace(cast(call("round", node.this, exp.Literal.number(scale)), result))
    return result


@handles(exp.Floor, exp.Ceil)
def _h_floor(c: Checker, node: exp.Expression) -> SparkType:
    only(node, {"this"})
    t = c.expr(node.this)
    name = "floor" if isinstance(node, exp.Floor) else "ceil"
    if t.kind in INTEGRAL:
        node.replace(cast(node.this, LONG))
        return LONG
    if t.kind in ("double", "float"):
        node.replace(cast(call(name, node.this), LONG))
        return LONG
    if t.kind == "decimal":
        result = SparkType("decimal", min(t.precision - t.scale + 1, 38), 0)
        node.replace(cast(call(name, node.this), result))
        return result
    raise Refuse(f"{name} of {t}")


@handles(exp.Sqrt, exp.Pow, exp.Sign)
def _h_math(c: Checker, node: exp.Expression) -> SparkType:
    args = [node.this] + ([node.expression] if isinstance(node, exp.Pow) else [])
    for t, a in [c.typed(a) for a in args]:
        if not numeric(t) or t.kind == "float":
            raise Refuse(f"{spark_name(node)} of {t}")
        coerce(a, t, DOUBLE)
    args = [node.this] + ([node.expression] if isinstance(node, exp.Pow) else [])
    names: dict[type, str] = {exp.Sqrt: "sqrt", exp.Pow: "pow", exp.Sign: "sign"}
    result = cast(call(names[type(node)], *args), DOUBLE)
    if isinstance(node, exp.Sign):  # Spark: signum(NaN) is NaN; DuckDB: 0
        result = exp.Case(ifs=[exp.If(this=call("isnan", args[0].copy()), true=args[0].copy())], default=result)
    node.replace(result)
    return DOUBLE


@handles(exp.Anonymous)
def _h_anonymous(c: Checker, node: exp.Anonymous) -> SparkType:
    name = str(node.name).lower()
    args = list(node.expressions)
    if name in ("isnull", "isnotnull") and len(args) == 1:
        _, arg = c.typed(args[0])
        test: exp.Expression = exp.Is(this=arg, expression=exp.Null())
        node.replace(test if name == "isnull" else exp.Not(this=test))
        return BOOL
    if name == "weekday" and len(args) == 1:  # Spark: 0 = Monday; DuckDB isodow: 1 = Monday
        _date_arg(c, args[0], (DATE, TS, TS_NTZ))
        node.replace(cast(exp.Sub(this=call("isodow", node.expressions[0]), expression=exp.Literal.number(1)), INT))
        return INT
    raise Refuse(f"function '{name}' is not on the checked list")


# ---- aggregates and windows: they return a type and whether DuckDB's result needs a cast


def _aggregate(c: Checker, node: exp.Expression) -> tuple[SparkType, bool]:
    if isinstance(node, exp.Count):
        only(node, {"this", "big_int"})
        arg = node.this
        if isinstance(arg, exp.Distinct):
            if len(arg.expressions) != 1:
                raise Refuse("count(DISTINCT a, b) is not checked")
            c.orderable(c.expr(arg.expressions[0]), "count(DISTINCT)")
        elif arg is not None and not isinstance(arg, exp.Star):
            c.expr(arg)
        return LONG, False
    arg = node.this
    inner = arg.expressions[0] if isinstance(arg, exp.Distinct) and len(arg.expressions) == 1 else arg
    if isinstance(arg, exp.Distinct) and not isinstance(node, (exp.Sum, exp.Avg, exp.Min, exp.Max)):
        raise Refuse(f"DISTINCT in {spark_name(node)} is not checked")
    if inner is None or isinstance(inner, exp.Distinct):
        raise Refuse(f"{spark_name(node)} form is not checked")
    t, inner = c.typed(inner)
    if isinstance(node, (exp.Min, exp.Max)):
        c.orderable(t, spark_name(node))
        return t, False
    if isinstance(node, (exp.CountIf, exp.LogicalAnd, exp.LogicalOr)):
        if t not in (BOOL, NULL):
            raise Refuse(f"{spark_name(node)} of {t}")
        if isinstance(node, exp.CountIf):
            return LONG, True
        node.replace(call("bool_and" if isinstance(node, exp.LogicalAnd) else "bool_or", inner))
        return BOOL, False
    if not numeric(t):
        raise Refuse(f"{spark_name(node)} of {t}")
    if isinstance(node, exp.Sum):
        if t.kind in INTEGRAL:
            return LONG, True
        if t.kind == "decimal":
            return SparkType("decimal", min(t.precision + 10, 38), t.scale), True
        coerce(inner, t, DOUBLE)
        return DOUBLE, False
    if isinstance(node, exp.Avg):
        if t.kind == "decimal":
            raise Refuse("avg of a decimal (Spark keeps a decimal with 4 more digits) is not checked")
        return DOUBLE, False
    coerce(inner, t, DOUBLE)
    node.replace(call(_STAT_NAMES[type(node)], node.this))  # Spark computes these on DOUBLE
    return DOUBLE, False


def _h_aggregate(c: Checker, node: exp.Expression) -> SparkType:
    t, needs_cast = _aggregate(c, node)
    if needs_cast:
        wrap(node, lambda n: cast(n, t))
    return t


for _agg_class in _AGGREGATES:
    HANDLERS[_agg_class] = _h_aggregate


@handles(exp.Filter)
def _h_filter(c: Checker, node: exp.Filter) -> SparkType:
    if not isinstance(node.this, _AGGREGATES):
        raise Refuse("FILTER on a non-aggregate")
    t, needs_cast = _aggregate(c, node.this)
    c.condition(node.expression.this)
    if needs_cast:
        wrap(node, lambda n: cast(n, t))
    return t


def _window_function(c: Checker, fn: exp.Expression, ordered: bool, framed: bool) -> tuple[SparkType, bool]:
    if isinstance(fn, _AGGREGATES):
        return _aggregate(c, fn)
    if not isinstance(fn, _WINDOW_ONLY):
        raise Refuse(f"window function '{spark_name(fn)}' is not on the checked list")
    if not ordered:
        raise Refuse(f"{spark_name(fn)} needs ORDER BY in its window")
    if framed:
        raise Refuse(f"a frame on {spark_name(fn)} is not checked")
    if isinstance(fn, (exp.RowNumber, exp.Rank, exp.DenseRank)):
        if fn.expressions or fn.args.get("this"):
            raise Refuse(f"{spark_name(fn)} with arguments")
        return INT, True
    if isinstance(fn, (exp.PercentRank, exp.CumeDist)):
        if fn.expressions:
            raise Refuse(f"{spark_name(fn)} with arguments")
        return DOUBLE, False
    if isinstance(fn, exp.Ntile):
        if _literal_arg(fn.this, "ntile buckets") <= 0:
            raise Refuse("ntile needs a positive bucket count")
        return INT, True
    only(fn, {"this", "offset", "default"})
    t = c.expr(fn.this)
    if fn.args.get("offset") is not None and _literal_arg(fn.args["offset"], "lag/lead offset") < 0:
        raise Refuse("negative lag/lead offset")
    default = fn.args.get("default")
    if default is not None:
        dt, default = c.typed(default)
        if dt != t and dt != NULL:
            if not (numeric(t) and int_literal(default) is not None):
                raise Refuse(f"lag/lead default of type {dt} for a {t} value")
            coerce(default, dt, t)
    return t, False


@handles(exp.Window)
def _h_window(c: Checker, node: exp.Window) -> SparkType:
    only(node, {"this", "partition_by", "order", "spec", "over"})
    for e in list(node.args.get("partition_by") or []):
        c.orderable(c.expr(e), "PARTITION BY")
    order = node.args.get("order")
    if order is not None:
        c.ordering(order)
    spec = node.args.get("spec")
    if spec is not None:
        only(spec, {"kind", "start", "start_side", "end", "end_side"})
        for key in ("start", "end"):
            bound = spec.args.get(key)
            if str(bound).upper() in ("UNBOUNDED", "CURRENT ROW"):
                continue
            if spec.args.get("kind") != "ROWS" or int_literal(bound) is None:
                raise Refuse("only ROWS frames with literal offsets are checked")
    t, needs_cast = _window_function(c, node.this, order is not None, spec is not None)
    if needs_cast:
        wrap(node, lambda n: cast(n, t))
    return t
