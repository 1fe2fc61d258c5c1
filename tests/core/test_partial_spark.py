"""Partial plans computed partition by partition equal the original query, on real Spark.

Each query runs three ways over a generated `orders` table partitioned by `date`
(ints, doubles, floats, decimals, strings, NULLs, a NaN, and one empty partition):
the original SQL over the whole table, and `partial_sql` once per partition followed by
`combine_sql` over the union of the partials. Schemas (names and types) must be equal,
and so must rows: exactly for integers, decimals, strings and booleans; doubles within
a relative tolerance of 1e-9 (partial sums add in a different order); and
approx_count_distinct columns within 5% (HLL sketches are a different approximation).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from decimal import Decimal
from functools import reduce
from typing import Any

import pytest

from jupyter_dataflow.core.modes import PARTIALS_TABLE, infer_mode, partial_plan
from jupyter_dataflow.core.sql import rename_tables

pytestmark = pytest.mark.spark

INPUTS = {"orders": "date", "customers": None}
DATES = ["2024-01-01", "2024-01-02", "2024-01-03"]
EMPTY_DATE = "2024-01-04"  # a partition that exists but holds no rows
DOUBLE_REL_TOL = 1e-9
APPROX_REL_TOL = 0.05

SCHEMA = (
    "date STRING, customer STRING, name STRING, qty INT, i8 TINYINT, price DECIMAL(10,2), "
    "big_dec DECIMAL(38,10), score DOUBLE, fl FLOAT"
)

QUERIES = {
    "group-sum-count-avg-decimal": (
        "SELECT customer, count(*) AS n, sum(qty) AS q, sum(price) AS revenue, avg(price) AS avg_price "
        "FROM orders GROUP BY customer"
    ),
    "global-unaliased-names": "SELECT count(*), sum(qty), min(price), max(price), avg(qty), count(score) FROM orders",
    "unaliased-expressions": (
        "SELECT customer, sum(qty * 2), count_if(qty > 3), sum(price) / count(*), "
        "approx_count_distinct(name, 0.1), max(score) - min(score), count(1) FROM orders GROUP BY customer"
    ),
    "global-over-zero-rows": "SELECT count(*) AS n, sum(price) AS s, avg(score) AS a, max(name) AS m FROM orders WHERE qty > 1000",
    "grouped-over-zero-rows": "SELECT customer, count(*) AS n FROM orders WHERE qty > 1000 GROUP BY customer",
    "doubles-and-strings": (
        "SELECT customer, sum(score) AS s, avg(score) AS a, min(score), max(name) AS mx FROM orders GROUP BY customer"
    ),
    "having-order-limit": (
        "SELECT customer, count(qty) AS c, count(score) AS cs, count_if(qty > 3) AS big FROM orders "
        "GROUP BY customer HAVING count(*) > 2 ORDER BY c DESC, customer LIMIT 3"
    ),
    "join-dimension": (
        "SELECT c.region, sum(o.price) AS revenue, count(*) AS n FROM orders o "
        "JOIN customers c ON o.customer = c.id GROUP BY c.region"
    ),
    "left-join-null-group": (
        "SELECT c.region, count(o.qty) AS n, avg(o.price) AS p FROM orders o "
        "LEFT JOIN customers c ON o.customer = c.id GROUP BY c.region"
    ),
    "post-aggregate-expressions": (
        "SELECT upper(name) AS u, round(avg(price), 2) AS r, sum(price) / count(*) AS ratio, "
        "sum(qty) * 2 + 1 AS q2 FROM orders GROUP BY upper(name)"
    ),
    "boolean-aggregates": (
        "SELECT customer, bool_and(qty > 0) AS all_pos, every(qty > 1) AS e, bool_or(score > 50) AS any_big, "
        "some(qty > 8) AS s FROM orders GROUP BY customer"
    ),
    "approx-distinct": "SELECT name, approx_count_distinct(customer) AS approx_customers FROM orders GROUP BY name",
    "filter-clause-group-all": (
        "SELECT customer, sum(qty) FILTER (WHERE score > 10) AS f, avg(qty) AS a FROM orders GROUP BY ALL"
    ),
    "subquery-drops-partition-key": (
        "SELECT region, count(*) AS n, sum(price) AS s FROM (SELECT o.price, c.region FROM orders o "
        "JOIN customers c ON o.customer = c.id) GROUP BY region"
    ),
    "cte-map-then-aggregate": (
        "WITH big AS (SELECT *, price * qty AS value FROM orders WHERE price > 10) "
        "SELECT customer, sum(value) AS v, max(value) AS mv FROM big GROUP BY 1"
    ),
    "distinct-over-groups": "SELECT DISTINCT count(*) AS n FROM orders GROUP BY customer",
    "wide-decimal-and-mean": (
        "SELECT qty % 3 AS bucket, mean(price) AS m, avg(big_dec) AS a, sum(big_dec) AS s "
        "FROM orders GROUP BY qty % 3"
    ),
    "float-and-tinyint": "SELECT sum(fl) AS sf, avg(fl) AS af, sum(i8) AS si, avg(i8) AS ai FROM orders",
    "group-by-partition-key": "SELECT date, count(*) AS n, sum(price) AS s FROM orders GROUP BY date",
    "group-by-output-alias": "SELECT upper(name) AS label, count(*) AS n FROM orders GROUP BY label ORDER BY label",
    "having-alias-order-ordinal": (
        "SELECT name AS product, sum(qty) AS total FROM orders GROUP BY name HAVING total > 5 ORDER BY 2 DESC, 1"
    ),
}


def _orders(seed: int, rows: int = 240) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    customers = ["alice", "bob", "carol", "dave", "erin", None]
    names = ["apple", "Banana", "cherry", "apple pie"]
    out = []
    for _ in range(rows):
        qty = rng.choice([None, *range(0, 10)])
        price = None if rng.random() < 0.1 else Decimal(rng.randint(0, 99999)) / 100
        big = Decimal(rng.randint(-10**15, 10**15)) / Decimal(10**10)
        score = None if rng.random() < 0.1 else rng.uniform(-100, 100)
        out.append((rng.choice(DATES), rng.choice(customers), rng.choice(names), qty,
                    rng.randint(-128, 127), price, big, score, rng.uniform(0, 10)))
    out[7] = (*out[7][:7], float("nan"), out[7][8])  # one NaN score
    return out


# Tiny inputs: interpreted expressions and static plans cost far less than code generation
# and adaptive re-planning. None of these settings changes a result.
FAST_CONF = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
    "spark.sql.adaptive.enabled": "false",
}


@pytest.fixture(scope="module", autouse=True)
def fast_small_queries(spark: Any) -> Iterator[None]:
    saved = {key: spark.conf.get(key, None) for key in FAST_CONF}
    for key, value in FAST_CONF.items():
        spark.conf.set(key, value)
    yield
    for key, value in saved.items():
        if value is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, value)


@pytest.fixture(scope="module")
def tables(spark: Any) -> Any:
    customers = [("alice", "north"), ("bob", "south"), ("carol", "north"), ("zed", "west")]
    spark.createDataFrame(customers, "id STRING, region STRING").createOrReplaceTempView("customers")
    return spark.createDataFrame(_orders(seed=7), SCHEMA)


def _run_partial(spark: Any, sql: str, orders: Any, rolled: bool = False) -> Any:
    """The partials' combine; `rolled`: with the empty partition's partial and the next two
    merged by `rollup_sql` in two steps (a rollup, then a rollup of it and one more
    partial) standing in for them."""
    plan = partial_plan(sql, INPUTS)
    assert plan.partitioned_input == "orders"
    partials = []
    for i, date in enumerate([*DATES, EMPTY_DATE]):
        orders.where(orders.date == date).createOrReplaceTempView(f"orders_p{i}")
        partials.append(spark.sql(rename_tables(plan.partial_sql, {"orders": f"orders_p{i}"})))
    if rolled:
        first = _rollup(spark, plan.rollup_sql, [partials[-1], partials[0]])
        second = _rollup(spark, plan.rollup_sql, [first, partials[1]])
        for rollup in (first, second):
            assert [(f.name, f.dataType) for f in rollup.schema] == [(f.name, f.dataType) for f in partials[0].schema]
        partials = [second, *partials[2:-1]]
    reduce(lambda a, b: a.unionAll(b), partials).createOrReplaceTempView(PARTIALS_TABLE)
    return spark.sql(plan.combine_sql)


def _rollup(spark: Any, rollup_sql: str, frames: list[Any]) -> Any:
    reduce(lambda a, b: a.unionAll(b), frames).createOrReplaceTempView(PARTIALS_TABLE)
    return spark.createDataFrame(spark.sql(rollup_sql).collect(), spark.sql(rollup_sql).schema)


def _run_whole(spark: Any, sql: str, orders: Any) -> Any:
    orders.createOrReplaceTempView("orders")
    return spark.sql(sql)


def _same_value(a: Any, b: Any, approx: bool) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=DOUBLE_REL_TOL, abs_tol=1e-12)
    if approx:
        return abs(a - b) <= APPROX_REL_TOL * max(abs(a), abs(b), 1)
    return bool(a == b) and type(a) is type(b)


def _sort_key(row: Any) -> tuple[tuple[bool, str], ...]:
    return tuple((v is None, str(v)) for v in row if not isinstance(v, float))


def _assert_same(expected: Any, actual: Any, ordered: bool) -> None:
    assert [(f.name, f.dataType) for f in actual.schema] == [(f.name, f.dataType) for f in expected.schema]
    exp_rows, act_rows = expected.collect(), actual.collect()
    if not ordered:
        exp_rows, act_rows = sorted(exp_rows, key=_sort_key), sorted(act_rows, key=_sort_key)
    assert len(act_rows) == len(exp_rows), (exp_rows, act_rows)
    names = expected.columns
    for want, got in zip(exp_rows, act_rows, strict=True):
        for name, a, b in zip(names, want, got, strict=True):
            assert _same_value(a, b, approx=name.startswith("approx")), (name, want, got)


@pytest.mark.parametrize("sql", list(QUERIES.values()), ids=list(QUERIES))
def test_partial_then_combine_equals_whole(spark: Any, tables: Any, sql: str) -> None:
    assert infer_mode(sql, INPUTS, requested="partial").mode == "partial"
    expected = _run_whole(spark, sql, tables)
    actual = _run_partial(spark, sql, tables)
    _assert_same(expected, actual, ordered="ORDER BY" in sql)


@pytest.mark.parametrize("sql", list(QUERIES.values()), ids=list(QUERIES))
def test_rolled_up_partials_stand_in_for_their_partials(spark: Any, tables: Any, sql: str) -> None:
    expected = _run_whole(spark, sql, tables)
    _assert_same(expected, _run_partial(spark, sql, tables, rolled=True), ordered="ORDER BY" in sql)


@pytest.mark.parametrize("seed", [1, 2])
def test_randomized_data(spark: Any, tables: Any, seed: int) -> None:
    orders = spark.createDataFrame(_orders(seed=seed, rows=random.Random(seed).randint(1, 120)), SCHEMA)
    for key in ("wide-decimal-and-mean", "join-dimension"):
        sql = QUERIES[key]
        _assert_same(_run_whole(spark, sql, orders), _run_partial(spark, sql, orders), ordered=False)
