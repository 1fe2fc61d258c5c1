"""Column lineage of single queries: direct versus indirect, through every SQL shape."""

from __future__ import annotations

import pytest

from jupyter_dataflow.lineage import DIRECT, INDIRECT, LineageUnavailable, analyze

ORDERS = [("order_id", "bigint"), ("customer_id", "bigint"), ("amount", "double"), ("date", "string")]
CUSTOMERS = [("customer_id", "bigint"), ("Name", "string"), ("country", "string")]
INPUTS = {"orders": ORDERS, "customers": CUSTOMERS}


def deps(sql: str, inputs: dict = INPUTS) -> dict[str, dict[str, str]]:
    q = analyze(sql, inputs)
    return {out: {f"{s}.{c}": k for (s, c), k in q.deps[out].items()} for out in q.outputs}


def test_projection_is_direct_and_where_only_use_is_indirect() -> None:
    d = deps("SELECT order_id, amount * 2 AS doubled FROM orders WHERE date > '2024-01-01'")
    assert d == {
        "order_id": {"orders.order_id": DIRECT, "orders.date": INDIRECT},
        "doubled": {"orders.amount": DIRECT, "orders.date": INDIRECT},
    }


def test_group_by_and_having_are_indirect_for_every_output() -> None:
    d = deps("SELECT date, sum(amount) AS revenue, count(*) AS n FROM orders "
             "GROUP BY date HAVING max(customer_id) > 3")
    assert d["date"] == {"orders.date": DIRECT, "orders.customer_id": INDIRECT}
    assert d["revenue"] == {"orders.amount": DIRECT, "orders.date": INDIRECT, "orders.customer_id": INDIRECT}
    assert d["n"] == {"orders.date": INDIRECT, "orders.customer_id": INDIRECT}


def test_select_star_expands_with_the_known_columns_and_keeps_recorded_case() -> None:
    d = deps("SELECT * FROM customers")
    assert list(d) == ["customer_id", "name", "country"]
    assert d["name"] == {"customers.Name": DIRECT}


def test_join_keys_are_indirect_and_aliases_resolve() -> None:
    d = deps("SELECT o.order_id AS id, c.name AS who FROM orders AS o "
             "JOIN customers c ON o.customer_id = c.customer_id")
    keys = {"orders.customer_id": INDIRECT, "customers.customer_id": INDIRECT}
    assert d["id"] == {"orders.order_id": DIRECT, **keys}
    assert d["who"] == {"customers.Name": DIRECT, **keys}


def test_join_using_with_star_depends_on_both_keys() -> None:
    d = deps("SELECT * FROM orders JOIN customers USING (customer_id)")
    assert d["customer_id"] == {"orders.customer_id": DIRECT, "customers.customer_id": DIRECT}
    assert d["country"]["customers.country"] == DIRECT


def test_ctes_carry_their_filters_downstream() -> None:
    d = deps("WITH big AS (SELECT * FROM orders WHERE amount > 10), "
             "named AS (SELECT b.order_id, c.name FROM big b JOIN customers c USING (customer_id)) "
             "SELECT order_id AS id, name FROM named")
    assert d["id"]["orders.order_id"] == DIRECT
    assert d["id"]["orders.amount"] == INDIRECT
    assert d["name"]["customers.Name"] == DIRECT
    assert d["name"]["orders.customer_id"] == INDIRECT


def test_count_over_a_filtered_subquery_depends_only_indirectly() -> None:
    assert deps("SELECT count(*) AS n FROM (SELECT * FROM orders WHERE amount > 3) f") == {
        "n": {"orders.amount": INDIRECT}}


def test_window_partition_and_order_are_indirect_for_that_column() -> None:
    d = deps("SELECT order_id, sum(amount) OVER (PARTITION BY customer_id ORDER BY date) AS running "
             "FROM orders")
    assert d["order_id"] == {"orders.order_id": DIRECT}
    assert d["running"] == {"orders.amount": DIRECT, "orders.customer_id": INDIRECT, "orders.date": INDIRECT}


def test_case_conditions_are_indirect_results_direct() -> None:
    d = deps("SELECT CASE WHEN amount > 100 THEN 'big' ELSE country END AS size "
             "FROM orders JOIN customers USING (customer_id)")
    assert d["size"]["orders.amount"] == INDIRECT
    assert d["size"]["customers.country"] == DIRECT


def test_predicate_subqueries_are_indirect_scalar_subqueries_direct() -> None:
    d = deps("SELECT o.order_id, (SELECT max(amount) FROM orders) AS top FROM orders o "
             "WHERE EXISTS (SELECT 1 FROM customers c WHERE c.customer_id = o.customer_id AND c.country = 'FR')")
    assert d["order_id"]["orders.order_id"] == DIRECT
    assert d["order_id"]["customers.country"] == INDIRECT
    assert d["order_id"]["orders.customer_id"] == INDIRECT
    assert d["top"]["orders.amount"] == DIRECT


def test_union_takes_each_branch_by_position() -> None:
    d = deps("SELECT order_id AS id FROM orders UNION ALL SELECT customer_id FROM customers WHERE country = 'FR'")
    assert d == {"id": {"orders.order_id": DIRECT, "customers.customer_id": DIRECT,
                        "customers.country": INDIRECT}}


def test_order_by_counts_only_under_a_limit() -> None:
    assert deps("SELECT order_id FROM orders ORDER BY amount") == {"order_id": {"orders.order_id": DIRECT}}
    assert deps("SELECT order_id FROM orders ORDER BY amount LIMIT 3")["order_id"]["orders.amount"] == INDIRECT


def test_stage_names_match_case_insensitively() -> None:
    assert deps("SELECT Order_ID FROM ORDERS") == {"order_id": {"orders.order_id": DIRECT}}


def test_unknown_input_columns_with_one_source_still_trace() -> None:
    d = deps("SELECT a, b + 1 AS c FROM raw WHERE d > 0", {"raw": None})
    assert d == {"a": {"raw.a": DIRECT, "raw.d": INDIRECT}, "c": {"raw.b": DIRECT, "raw.d": INDIRECT}}


def test_star_over_unknown_columns_is_unavailable() -> None:
    with pytest.raises(LineageUnavailable, match="not known yet"):
        analyze("SELECT * FROM raw", {"raw": None})


def test_recorded_names_win_by_position() -> None:
    q = analyze("SELECT date, count(*) FROM orders GROUP BY date", INPUTS, recorded=["date", "count(1)"])
    assert q.outputs == ("date", "count(1)")
    assert q.deps["count(1)"] == {("orders", "date"): INDIRECT}


def test_recorded_names_match_by_name_when_spark_reorders() -> None:
    # Spark puts a USING key first, even in o.*.
    q = analyze("SELECT o.*, c.name FROM orders o JOIN customers c USING (customer_id)", INPUTS,
                recorded=["customer_id", "order_id", "amount", "date", "Name"])
    assert q.outputs == ("customer_id", "order_id", "amount", "date", "Name")
    assert q.deps["customer_id"][("orders", "customer_id")] == DIRECT
    assert q.deps["order_id"][("orders", "order_id")] == DIRECT
    assert q.deps["Name"][("customers", "Name")] == DIRECT
    q = analyze("SELECT order_id, order_id, amount + 1 FROM orders", INPUTS,
                recorded=["order_id", "order_id", "(amount + 1)"])
    assert q.outputs == ("order_id", "order_id", "(amount + 1)")
    assert q.deps["(amount + 1)"] == {("orders", "amount"): DIRECT}
