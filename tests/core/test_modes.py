"""Partition modes inferred from SQL: a corpus of queries with the expected mode and key.

Inputs: `orders` and `events` are partitioned by `date`, `clicks` by `day`;
`customers` and `products` are small unpartitioned dimensions.
"""

from __future__ import annotations

import pytest

from jupyter_dataflow.core.errors import SqlError, StageDefinitionError
from jupyter_dataflow.core.modes import PARTIALS_TABLE, ModeDecision, infer_mode, partial_plan
from jupyter_dataflow.core.sql import referenced_tables

INPUTS: dict[str, str | None] = {
    "orders": "date",
    "events": "date",
    "clicks": "day",
    "customers": None,
    "products": None,
}

MAP = [
    ("filter-project", "SELECT date, id, amount * 2 AS doubled FROM orders WHERE amount > 0", "date"),
    ("select-star", "SELECT * FROM orders", "date"),
    ("star-except-other", "SELECT * EXCEPT (amount) FROM orders", "date"),
    ("group-by-date", "SELECT date, sum(amount) AS revenue FROM orders GROUP BY date", "date"),
    ("group-by-date-customer", "SELECT date, customer, count(*) AS n FROM orders GROUP BY date, customer", "date"),
    ("group-by-ordinal", "SELECT date, count(*) FROM orders GROUP BY 1", "date"),
    ("group-by-all", "SELECT date, customer, sum(amount) AS s FROM orders GROUP BY ALL", "date"),
    ("count-distinct-per-date", "SELECT date, count(DISTINCT customer) AS buyers FROM orders GROUP BY date", "date"),
    ("having-per-date", "SELECT date, count(*) AS n FROM orders GROUP BY date HAVING count(*) > 10", "date"),
    ("window-by-date", "SELECT *, row_number() OVER (PARTITION BY date ORDER BY amount DESC) AS rk FROM orders", "date"),
    ("window-by-date-customer", "SELECT date, sum(amount) OVER (PARTITION BY customer, date) AS t FROM orders", "date"),
    ("named-window-by-date", "SELECT date, rank() OVER w AS r FROM orders WINDOW w AS (PARTITION BY date ORDER BY id)", "date"),
    ("join-dimension", "SELECT o.*, c.name FROM orders o JOIN customers c ON o.customer = c.id", "date"),
    ("left-join-dimension", "SELECT o.date, o.id, c.segment FROM orders o LEFT JOIN customers c ON o.customer = c.id", "date"),
    ("semi-join-dimension", "SELECT * FROM orders o LEFT SEMI JOIN customers c ON o.customer = c.id", "date"),
    ("join-inputs-on-date", "SELECT o.date, o.id, e.kind FROM orders o JOIN events e ON o.date = e.date AND o.id = e.order_id", "date"),
    ("join-using-date", "SELECT * FROM orders JOIN events USING (date, id)", "date"),
    ("comma-join-where-date", "SELECT o.date, e.kind FROM orders o, events e WHERE o.date = e.date AND o.id = e.id", "date"),
    ("left-join-inputs-on-date", "SELECT o.date, e.kind FROM orders o LEFT JOIN events e ON o.date = e.date AND o.id = e.id", "date"),
    ("cte-filter", "WITH big AS (SELECT * FROM orders WHERE amount > 100) SELECT date, id FROM big", "date"),
    ("subquery-grouped-by-date", "SELECT d.date, d.total FROM (SELECT date, sum(amount) AS total FROM orders GROUP BY date) d WHERE d.total > 10", "date"),
    ("union-all-inputs", "SELECT date, id FROM orders UNION ALL SELECT date, id FROM events", "date"),
    ("alias-keeps-name", "SELECT o.date AS date, amount FROM orders o", "date"),
    ("case-insensitive-names", "SELECT DATE, Amount FROM ORDERS", "date"),
    ("distinct-keeps-key", "SELECT DISTINCT date, customer FROM orders", "date"),
    ("in-subquery-dimension", "SELECT * FROM orders WHERE customer IN (SELECT id FROM customers WHERE vip)", "date"),
    ("order-by-without-limit", "SELECT date, amount FROM orders ORDER BY amount", "date"),
    ("lateral-view", "SELECT date, item FROM orders LATERAL VIEW explode(items) t AS item", "date"),
    ("other-key-name", "SELECT day, count(*) AS n FROM clicks GROUP BY day", "day"),
]

PARTIAL = [
    ("group-by-customer", "SELECT customer, sum(amount) AS revenue FROM orders GROUP BY customer"),
    ("global-count", "SELECT count(*) AS n FROM orders"),
    ("global-unaliased", "SELECT count(*), sum(amount), min(amount), max(amount) FROM orders"),
    ("avg-having", "SELECT customer, avg(amount) AS a FROM orders GROUP BY customer HAVING count(*) > 3"),
    ("order-by-limit-after-aggregate", "SELECT customer, sum(amount) AS s FROM orders GROUP BY customer ORDER BY s DESC LIMIT 10"),
    ("join-dimension-aggregate", "SELECT c.region, count(*) AS n FROM orders o JOIN customers c ON o.customer = c.id GROUP BY c.region"),
    ("approx-distinct", "SELECT approx_count_distinct(customer) AS buyers FROM orders"),
    ("post-aggregate-expressions", "SELECT customer, sum(amount) / count(*) AS mean, round(avg(amount), 2) AS r FROM orders GROUP BY customer"),
    ("cte-then-aggregate", "WITH x AS (SELECT *, amount * qty AS v FROM orders WHERE qty > 0) SELECT product, sum(v) AS v FROM x GROUP BY product"),
    ("key-renamed-in-group", "SELECT date AS d, count(*) AS n FROM orders GROUP BY date"),
    ("boolean-aggregates", "SELECT customer, bool_and(paid) AS all_paid, every(paid), some(refunded) AS any_refund FROM orders GROUP BY customer"),
    ("min-max-strings", "SELECT product, min(date) AS first_day, max(date) AS last_day FROM orders GROUP BY product"),
    ("count-if-and-filter", "SELECT count_if(amount > 100) AS big, sum(amount) FILTER (WHERE paid) AS paid_total FROM orders"),
    ("group-by-expression-alias", "SELECT date_trunc('MONTH', ts) AS month, count(*) AS n FROM orders GROUP BY month"),
    ("mean-alias", "SELECT product, mean(amount) AS m FROM orders GROUP BY product"),
    ("distinct-over-aggregates", "SELECT DISTINCT count(*) AS n FROM orders GROUP BY customer"),
    ("subquery-drops-key", "SELECT region, sum(amount) AS s FROM (SELECT o.amount, c.region FROM orders o JOIN customers c ON o.customer = c.id) GROUP BY region"),
]

REDUCE = [
    ("count-distinct", "SELECT count(DISTINCT customer) AS n FROM orders", "count(DISTINCT ...) does not decompose"),
    ("count-distinct-grouped", "SELECT product, count(DISTINCT customer) AS n FROM orders GROUP BY product", "count(DISTINCT"),
    ("sum-distinct", "SELECT sum(DISTINCT amount) AS s FROM orders", "sum(DISTINCT"),
    ("window-by-customer", "SELECT *, sum(amount) OVER (PARTITION BY customer) AS total FROM orders", "window sum() is not partitioned by 'date'"),
    ("window-unpartitioned", "SELECT *, rank() OVER (ORDER BY amount) AS r FROM orders", "window rank() is not partitioned by 'date'"),
    ("join-inputs-on-id", "SELECT o.date, e.kind FROM orders o JOIN events e ON o.id = e.order_id", "joins 'o' and 'e' without equating partition key 'date'"),
    ("key-renamed", "SELECT date AS d, amount FROM orders", "partition key 'date' is renamed to 'd'"),
    ("key-computed", "SELECT CAST(date AS DATE) AS date, amount FROM orders", "output column 'date' is computed"),
    ("key-dropped", "SELECT id, amount FROM orders", "output drops partition key 'date'"),
    ("star-except-key", "SELECT * EXCEPT (date) FROM orders", "output drops partition key 'date'"),
    ("limit", "SELECT * FROM orders LIMIT 10", "LIMIT"),
    ("order-by-limit", "SELECT * FROM orders ORDER BY amount DESC LIMIT 5", "LIMIT"),
    ("collect-list", "SELECT customer, collect_list(id) AS ids FROM orders GROUP BY customer", "collect_list() does not decompose"),
    ("percentile", "SELECT percentile(amount, 0.5) AS p FROM orders", "percentile() does not decompose"),
    ("stddev", "SELECT customer, stddev(amount) AS sd FROM orders GROUP BY customer", "stddev() does not decompose"),
    ("first", "SELECT customer, first(amount) AS f FROM orders GROUP BY customer", "first() does not decompose"),
    ("scalar-subquery-over-input", "SELECT * FROM orders WHERE amount > (SELECT avg(amount) FROM orders)", "subquery over partitioned input 'orders'"),
    ("no-partitioned-input", "SELECT * FROM customers", "no partitioned input"),
    ("different-keys", "SELECT o.date, c.day FROM orders o JOIN clicks c ON o.date = c.day", "different keys"),
    ("input-null-supplied", "SELECT c.id, o.date FROM customers c LEFT JOIN orders o ON c.id = o.customer", "may be NULL from an outer join"),
    ("full-join-inputs", "SELECT o.date FROM orders o FULL JOIN events e ON o.date = e.date", "may be NULL from an outer join"),
    ("union-with-dimension", "SELECT date, id FROM orders UNION ALL SELECT date, id FROM customers", "UNION branch reads no partitioned input"),
    ("union-key-positions", "SELECT date, id FROM orders UNION ALL SELECT id, date FROM events", "same position"),
    ("rollup", "SELECT date, customer, sum(amount) AS s FROM orders GROUP BY ROLLUP(date, customer)", "ROLLUP"),
    ("aggregate-over-aggregate", "SELECT avg(total) AS a FROM (SELECT customer, sum(amount) AS total FROM orders GROUP BY customer)", "is not row-level"),
    ("self-join-aggregate", "SELECT count(*) AS n FROM orders a JOIN orders b ON a.id = b.id", "2 times"),
    ("two-inputs-aggregate", "SELECT count(*) AS n FROM orders o JOIN events e ON o.date = e.date", "several partitioned inputs"),
    ("cte-not-row-level", "WITH t AS (SELECT customer, sum(amount) AS s FROM orders GROUP BY customer) SELECT * FROM t", "GROUP BY customer omits partition key 'date'"),
    ("tablesample", "SELECT * FROM orders TABLESAMPLE (10 PERCENT)", "TABLESAMPLE"),
    ("pivot", "SELECT * FROM orders PIVOT (sum(amount) FOR product IN ('a', 'b'))", "PIVOT"),
    ("distinct-subquery-aggregate", "SELECT count(*) AS n FROM (SELECT DISTINCT customer FROM orders)", "not row-level"),
    ("window-over-aggregate", "SELECT customer, rank() OVER (ORDER BY sum(amount)) AS r FROM orders GROUP BY customer", "window function over an aggregate"),
    ("unaliased-unknown-name", "SELECT customer, sum(abs(amount)) FROM orders GROUP BY customer", "needs AS <name>"),
    ("dimension-left-join-aggregate", "SELECT c.id, count(o.id) AS n FROM customers c LEFT JOIN orders o ON c.id = o.customer GROUP BY c.id", "null-supplied"),
]


@pytest.mark.parametrize(("sql", "key"), [(s, k) for _, s, k in MAP], ids=[i for i, _, _ in MAP])
def test_map_queries(sql: str, key: str) -> None:
    decision = infer_mode(sql, INPUTS)
    assert (decision.mode, decision.key) == ("map", key), decision.reason
    assert decision.reason


@pytest.mark.parametrize("sql", [s for _, s in PARTIAL], ids=[i for i, _ in PARTIAL])
def test_partial_queries(sql: str) -> None:
    decision = infer_mode(sql, INPUTS)
    assert (decision.mode, decision.key) == ("partial", "date"), decision.reason
    assert "decompose per partition" in decision.reason


@pytest.mark.parametrize(("sql", "reason"), [(s, r) for _, s, r in REDUCE], ids=[i for i, _, _ in REDUCE])
def test_reduce_queries(sql: str, reason: str) -> None:
    decision = infer_mode(sql, INPUTS)
    assert (decision.mode, decision.key) == ("reduce", None)
    assert reason in decision.reason


def test_corpus_size() -> None:
    assert len(MAP) + len(PARTIAL) + len(REDUCE) >= 40


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT date, sum(amount) AS revenue FROM orders GROUP BY date", "GROUP BY includes partition key 'date'"),
        ("SELECT * FROM orders WHERE amount > 0", "row-level query keeps partition key 'date'"),
        ("SELECT o.date, e.x FROM orders o JOIN events e ON o.date = e.date", "joins 'o' and 'e' on partition key 'date'"),
        ("SELECT date, rank() OVER (PARTITION BY date ORDER BY x) AS r FROM orders", "window PARTITION BY includes partition key 'date'"),
        (
            "SELECT customer, sum(amount) AS s FROM orders GROUP BY customer",
            "GROUP BY customer omits partition key 'date'; aggregates (sum) over 'orders' decompose per partition",
        ),
        ("SELECT count(DISTINCT customer) AS n FROM orders", "count(DISTINCT ...) does not decompose over partitions"),
    ],
    ids=["group-by-key", "row-level", "join-on-key", "window-on-key", "partial", "distinct-count"],
)
def test_reason_sentences(sql: str, reason: str) -> None:
    assert infer_mode(sql, INPUTS).reason == reason


# -- forced modes ---------------------------------------------------------------------

REFUSED = [
    ("map", "SELECT customer, sum(amount) AS s FROM orders GROUP BY customer", "cannot run as map: GROUP BY customer omits partition key 'date'"),
    ("map", "SELECT count(*) AS n FROM orders", "cannot run as map: global aggregate"),
    ("map", "SELECT *, sum(amount) OVER (PARTITION BY customer) AS t FROM orders", "cannot run as map: window sum() is not partitioned by 'date'"),
    ("map", "SELECT o.date FROM orders o JOIN events e ON o.id = e.id", "cannot run as map: joins 'o' and 'e' without equating partition key 'date'"),
    ("map", "SELECT * FROM orders ORDER BY amount LIMIT 3", "cannot run as map: LIMIT"),
    ("map", "SELECT * FROM customers", "cannot run as map: no partitioned input"),
    ("partial", "SELECT * FROM orders", "cannot run as partial: no aggregation"),
    ("partial", "SELECT count(DISTINCT customer) AS n FROM orders", "cannot run as partial: count(DISTINCT ...)"),
    ("partial", "SELECT percentile(amount, 0.5) AS p FROM orders", "cannot run as partial: percentile() does not decompose"),
    ("partial", "SELECT customer, collect_set(id) AS ids FROM orders GROUP BY customer", "cannot run as partial: collect_set()"),
    ("partial", "SELECT count(*) AS n FROM customers", "cannot run as partial: no partitioned input"),
    ("partial", "SELECT date, count(*) AS n FROM orders GROUP BY date UNION ALL SELECT date, 1 FROM events", "cannot run as partial: UNION"),
]


@pytest.mark.parametrize(
    ("mode", "sql", "message"),
    REFUSED,
    ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(REFUSED)],
)
def test_forced_mode_refused_with_reason(mode: str, sql: str, message: str) -> None:
    with pytest.raises(StageDefinitionError, match="^stage 'daily': " + _escape(message)):
        infer_mode(sql, INPUTS, stage="daily", requested=mode)  # type: ignore[arg-type]


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_forced_reduce_is_always_allowed() -> None:
    decision = infer_mode("SELECT * FROM orders", INPUTS, requested="reduce")
    assert decision == ModeDecision("reduce", None, "reduce requested")


def test_forced_map_and_partial_when_possible() -> None:
    grouped = "SELECT date, count(*) AS n FROM orders GROUP BY date"
    assert infer_mode(grouped, INPUTS, requested="map").mode == "map"
    assert infer_mode(grouped, INPUTS, requested="partial") == ModeDecision(
        "partial", "date", "aggregates (count) over 'orders' decompose per partition"
    )


def test_unknown_requested_mode() -> None:
    with pytest.raises(StageDefinitionError, match="unknown mode 'fast'"):
        infer_mode("SELECT * FROM orders", INPUTS, requested="fast")  # type: ignore[arg-type]


def test_bad_sql_is_a_sql_error() -> None:
    with pytest.raises(SqlError):
        infer_mode("SELECT FROM WHERE", INPUTS, stage="daily")


def test_input_names_and_keys_resolve_case_insensitively() -> None:
    decision = infer_mode("SELECT Day, n FROM Clicks", {"clicks": "DAY"})
    assert (decision.mode, decision.key) == ("map", "DAY")


def test_tables_outside_inputs_count_as_unpartitioned() -> None:
    decision = infer_mode("SELECT o.* FROM orders o JOIN reference.rates r ON o.currency = r.code", INPUTS)
    assert decision.mode == "map"
    assert infer_mode("SELECT * FROM elsewhere", INPUTS).reason == "no partitioned input"


# -- partial plans (text only; test_partial_spark.py runs them) ----------------------------


def test_partial_plan_reads_the_input_and_combine_reads_the_partials() -> None:
    plan = partial_plan(
        "SELECT c.region, sum(o.amount) AS revenue FROM orders o JOIN customers c ON o.customer = c.id "
        "GROUP BY c.region HAVING sum(o.amount) > 10 ORDER BY revenue DESC LIMIT 5",
        INPUTS,
    )
    assert plan.partitioned_input == "orders"
    assert sorted(referenced_tables(plan.partial_sql)) == ["customers", "orders"]
    assert referenced_tables(plan.combine_sql) == [PARTIALS_TABLE]
    for clause in ("HAVING", "ORDER BY", "LIMIT"):
        assert clause not in plan.partial_sql
    assert "LIMIT 5" in plan.combine_sql
    assert plan.partial_sql.startswith("SELECT c.region AS __k0, SUM(o.amount) AS __p0 FROM orders AS o")


def test_partial_plan_keeps_output_names_as_spark_names_them() -> None:
    plan = partial_plan(
        "SELECT Customer, count(*), SUM(Amount), sum(amount * 2), avg(x) AS `Mean X` FROM orders GROUP BY Customer",
        INPUTS,
    )
    for name in ("`Customer`", "`count(1)`", "`sum(Amount)`", "`sum((amount * 2))`", "`Mean X`"):
        assert f"AS {name}" in plan.combine_sql


def test_partial_plan_is_deterministic_and_ignores_cosmetics() -> None:
    a = partial_plan("SELECT customer, sum(amount) AS s FROM orders GROUP BY customer", INPUTS)
    b = partial_plan("select  customer ,SUM(amount) as s -- total\nfrom ORDERS group by customer", INPUTS)
    assert a == b


def test_partial_plan_global_aggregate_has_no_group_by() -> None:
    plan = partial_plan("SELECT count(*) AS n, avg(amount) AS a FROM orders WHERE paid", INPUTS)
    assert "GROUP BY" not in plan.partial_sql
    assert "GROUP BY" not in plan.combine_sql
    assert "WHERE paid" in plan.partial_sql


def test_partial_plan_refuses_non_decomposable() -> None:
    with pytest.raises(StageDefinitionError, match="cannot run as partial: count\\(DISTINCT"):
        partial_plan("SELECT count(DISTINCT customer) FROM orders", INPUTS, stage="daily")
