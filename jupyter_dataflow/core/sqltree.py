"""Questions about one parsed Spark SQL tree, shared by mode inference and the combine.

Small pure helpers over sqlglot nodes: which nodes are aggregates, which belong to one
SELECT's own clauses, how Spark names a function, a short quotation for messages, and
`Refusal`, raised when a query cannot run in the mode being checked. Nothing here
decides a mode or builds SQL, and like `modes` and `combine` it must not import Spark,
touch files or keep state.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import cast

from sqlglot import exp

from jupyter_dataflow.core.sql import DIALECT


class Refusal(Exception):
    """Why a query cannot run in the mode being checked; `specific` if it is the best reason."""

    def __init__(self, reason: str, *, specific: bool = True) -> None:
        super().__init__(reason)
        self.specific = specific


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
# sqlglot's aggregate nodes -> the Spark aggregate they stand for.
AGG_KINDS: dict[type[exp.Expression], str] = {
    exp.Count: "count", exp.CountIf: "count_if", exp.Sum: "sum", exp.Avg: "avg",
    exp.Min: "min", exp.Max: "max", exp.LogicalAnd: "bool_and", exp.LogicalOr: "bool_or",
    exp.ApproxDistinct: "approx_count_distinct", exp.Any: "bool_or",
}
_CLAUSES = ("expressions", "where", "group", "having", "qualify", "order", "windows",
            "laterals", "distribute", "sort", "cluster")


def clause_nodes(select: exp.Select, *, skip_windows: bool = False) -> Iterator[exp.Expression]:
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


def is_aggregate(node: exp.Expression) -> bool:
    """Whether `node` is a call of a Spark aggregate function."""
    if isinstance(node, exp.Any):
        return not isinstance(node.this, exp.Query)
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()  # sketch aggregates follow Spark's *_agg[_type] naming
        return name in _SPARK_AGGREGATES or re.search(r"_agg(_|$)", name) is not None
    return isinstance(node, exp.AggFunc)


def has_aggregate(select: exp.Select) -> bool:
    """Whether the SELECT's own clauses call an aggregate, outside windows and subqueries."""
    return any(is_aggregate(n) for n in clause_nodes(select, skip_windows=True))


def conjuncts(cond: exp.Expression | None) -> list[exp.Expression]:
    """The operands of a chain of ANDs, parentheses removed; [] for no condition."""
    if cond is None:
        return []
    cond = unparen(cond)
    if not isinstance(cond, exp.And):
        return [cond]
    return [unparen(cast(exp.Expression, c)) for c in cond.flatten()]


def unparen(node: exp.Expression) -> exp.Expression:
    """`node` without its enclosing parentheses."""
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def table_name(table: exp.Table) -> str | None:
    """The lower-case name of a table reference, or None when it is qualified or computed."""
    if not isinstance(table.this, exp.Identifier) or table.args.get("db") or table.args.get("catalog"):
        return None
    return table.name.lower()


def is_star(item: exp.Expression) -> bool:
    """Whether a SELECT item is `*` or `t.*`."""
    return isinstance(item, exp.Star) or (isinstance(item, exp.Column) and isinstance(item.this, exp.Star))


def short(node: exp.Expression, limit: int = 40) -> str:
    """The node's SQL for a message, cut to `limit` characters."""
    text = node.sql(dialect=DIALECT)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fn_name(node: exp.Expression) -> str:
    """The lower-case Spark name of a function call."""
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    return AGG_KINDS.get(type(node)) or node.sql(dialect=DIALECT).split("(")[0].lower()
