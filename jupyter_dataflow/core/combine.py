"""Decomposition of an aggregate SELECT into per-partition partials and their combine.

`Combiner` rewrites one aggregate query that `modes` has found to read a single
partitioned input row by row into three queries: a partial aggregate run once per input
partition, a rollup that merges any number of partials into fewer rows of the same
columns and types, and a combine over the union of partials (`PARTIALS_TABLE`) whose
output equals the original query's, column names and types included. An aggregate that
does not decompose raises `Refusal` naming it. This module does not choose the mode;
like `modes` it must not import Spark, touch files or keep state.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import cast

import sqlglot
from sqlglot import exp

from jupyter_dataflow.core.sql import DIALECT
from jupyter_dataflow.core.sqltree import AGG_KINDS, Refusal, fn_name, is_aggregate, short, unparen

# The table the combine and rollup read: the union of all partial outputs.
PARTIALS_TABLE = "__dataflow_partials"
_ANONYMOUS_KINDS = {"every": "bool_and", "some": "bool_or", "mean": "avg"}
_OPERATORS: dict[type[exp.Expression], str] = {
    exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.Div: "/", exp.Mod: "%", exp.GT: ">",
    exp.GTE: ">=", exp.LT: "<", exp.LTE: "<=", exp.EQ: "=", exp.And: "AND", exp.Or: "OR",
}
_SIMPLE_PARTIALS: dict[str, type[exp.Expression]] = {
    "min": exp.Min, "max": exp.Max, "bool_and": exp.LogicalAnd, "bool_or": exp.LogicalOr,
}
_HLL_DEFAULT_LG_K = 12


def _sql(text: str) -> exp.Expression:
    return cast(exp.Expression, sqlglot.parse_one(text, read=DIALECT))


def _output_name(item: exp.Expression) -> str:
    """The column name Spark gives a SELECT item (from the query as typed)."""
    if isinstance(item, exp.Alias):
        return item.alias
    name = _spark_name(item)
    if name is None:
        raise Refusal(f"unaliased output {short(item)} needs AS <name>")
    return name


def _spark_name(node: exp.Expression) -> str | None:
    """Spark's generated name for an unaliased expression, for the forms known here."""
    node = unparen(node)
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
        function = None if isinstance(node, exp.Any) else AGG_KINDS.get(type(node))
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
    return [unparen(a) for a in node.iter_expressions()]


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


class Combiner:
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
                        raise Refusal(f"{n.name!r} in {clause} is both a column and an output alias")
                return exp.column(f"__k{key}")
            if isinstance(n, exp.Filter) or is_aggregate(n):
                return self._finish(n)
            if isinstance(n, (exp.Query, exp.Window)):
                raise Refusal(f"{n.key.upper()} inside an aggregate query's {clause}")
            if isinstance(n, exp.Column):
                alias = aliases.get(n.name.lower()) if not n.table else None
                if alias is None:
                    raise Refusal(f"column {short(n)} is neither grouped nor aggregated")
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
            raise Refusal("approx_count_distinct with a non-literal relativeSD")
        lg_k = min(21, max(4, math.ceil(2 * math.log2(1.04 / float(rsd.name)))))
    value = args[0].sql(dialect=DIALECT)
    # hll_sketch_agg takes only int, bigint, string or binary: sketch a 64-bit hash.
    return _sql(f"HLL_SKETCH_AGG(CASE WHEN ({value}) IS NULL THEN NULL ELSE XXHASH64({value}) END, {lg_k})")


def _decomposable_kind(agg: exp.Expression) -> str:
    if isinstance(agg, exp.Anonymous):
        name = agg.name.lower()
        if name not in _ANONYMOUS_KINDS or len(agg.expressions) != 1:
            raise Refusal(f"{name}() does not decompose over partitions")
        kind = _ANONYMOUS_KINDS[name]
    else:
        found = AGG_KINDS.get(type(agg))
        if found is None:
            raise Refusal(f"{fn_name(agg)}() does not decompose over partitions")
        kind = found
    if any(isinstance(a, exp.Distinct) for a in agg.iter_expressions()) and kind not in ("min", "max"):
        raise Refusal(f"{kind}(DISTINCT ...) does not decompose over partitions")
    if kind not in ("count", "approx_count_distinct") and len(_agg_args(agg)) != 1:
        raise Refusal(f"{kind}() with {len(_agg_args(agg))} arguments")
    return kind
