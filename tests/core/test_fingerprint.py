"""Fingerprints: cosmetic edits keep them, semantic edits change the expected part."""

from __future__ import annotations

import pytest

from jupyter_dataflow.core import fingerprint as fp
from jupyter_dataflow.core import normalize_py, sql
from jupyter_dataflow.core.fingerprint import InputVersion
from jupyter_dataflow.core.stage import Transform

BASE = "SELECT date, sum(amount) AS revenue FROM orders WHERE amount > 0 GROUP BY date"


@pytest.mark.parametrize("variant", [
    "select date, SUM(amount) as revenue from orders where amount > 0 group by date",
    "SELECT   date,\n  sum(amount)   AS revenue\nFROM orders\n-- only paid orders\nWHERE amount > 0\nGROUP BY date",
    "SELECT date, sum(amount) AS revenue /* total */ FROM orders WHERE (amount > 0) GROUP BY date",
    "SELECT DATE, SUM(AMOUNT) AS REVENUE FROM ORDERS WHERE ((AMOUNT) > 0) GROUP BY DATE",
], ids=["keyword-case", "whitespace-comments", "block-comment-parens", "identifier-case"])
def test_cosmetic_sql_edits_keep_the_canonical_form(variant: str) -> None:
    assert sql.canonical(variant) == sql.canonical(BASE)


@pytest.mark.parametrize("variant", [
    "SELECT date, sum(amount) AS revenue FROM orders WHERE amount >= 0 GROUP BY date",
    "SELECT date, max(amount) AS revenue FROM orders WHERE amount > 0 GROUP BY date",
    "SELECT date, sum(amount) AS income FROM orders WHERE amount > 0 GROUP BY date",
    "SELECT date, sum(amount) AS revenue FROM orders WHERE amount > 0 AND 'a' = 'A' GROUP BY date",
], ids=["operator", "function", "alias", "string-literal-case"])
def test_semantic_sql_edits_change_the_canonical_form(variant: str) -> None:
    assert sql.canonical(variant) != sql.canonical(BASE)


def test_parentheses_that_bind_are_kept() -> None:
    assert sql.canonical("SELECT (a + b) * c FROM t") != sql.canonical("SELECT a + b * c FROM t")


def test_golden_sql_fingerprint() -> None:
    """Pinned value: changing normalization or hashing must be a deliberate decision."""
    t = Transform.from_sql("daily", BASE)
    f = fp.compute(t.code(), t.config(), [InputVersion("orders", "date=2024-01-01", "v1")])
    assert t.code() == "SELECT date, SUM(amount) AS revenue FROM orders WHERE amount > 0 GROUP BY date"
    assert f.digest == GOLDEN_SQL_DIGEST


GOLDEN_SQL_DIGEST = "fdcc0a4d1692a597d74e5dbf0cf985dd597428d510ac7e8b20cf5789d913a9f0"


def test_parts_name_what_changed() -> None:
    a = fp.compute("code", {"k": 1}, [InputVersion("s", "p", "1")])
    assert a.changed_parts(fp.compute("code", {"k": 1}, [InputVersion("s", "p", "2")]).parts()) == ["inputs"]
    assert a.changed_parts(fp.compute("code2", {"k": 1}, [InputVersion("s", "p", "1")]).parts()) == ["code"]
    assert a.changed_parts(fp.compute("code", {"k": 2}, [InputVersion("s", "p", "1")]).parts()) == ["config"]


def test_the_inputs_part_alone_is_the_one_compute_gives() -> None:
    ins = [InputVersion("file", "d=2/b.csv", "v2"), InputVersion("file", "d=2/a.csv", "v1")]
    assert fp.inputs_part(ins) == fp.compute("code", {"k": 1}, ins).inputs == fp.inputs_part(ins[::-1])
    assert fp.inputs_part(ins[:1]) != fp.inputs_part(ins)


def test_inputs_are_order_independent_and_length_prefixed() -> None:
    i1, i2 = InputVersion("a", "p1", "x"), InputVersion("b", "p2", "y")
    assert fp.compute("c", {}, [i1, i2]).digest == fp.compute("c", {}, [i2, i1]).digest
    # "ab"+"c" must not collide with "a"+"bc"
    assert fp.compute("c", {}, [InputVersion("ab", "c", "")]).digest != fp.compute(
        "c", {}, [InputVersion("a", "bc", "")]).digest


PY_BASE = '''
def enriched(daily, customers):
    return daily.join(customers, "customer_id").filter("revenue > 0")
'''


@pytest.mark.parametrize("variant", [
    '''
def enriched(daily, customers):
    """Join daily revenue to customers."""
    # keep positive revenue only
    return daily.join(customers,
                      'customer_id').filter('revenue > 0')
''',
    '''
def enriched(daily,customers):
    return (daily.join(customers, "customer_id")
                 .filter("revenue > 0"))
''',
], ids=["docstring-comment-quotes", "layout"])
def test_cosmetic_python_edits_keep_the_canonical_form(variant: str) -> None:
    a = normalize_py.capture(PY_BASE, "enriched")
    b = normalize_py.capture(variant, "enriched")
    assert normalize_py.canonical(a.module) == normalize_py.canonical(b.module)


def test_semantic_python_edit_changes_the_canonical_form() -> None:
    a = normalize_py.capture(PY_BASE, "enriched")
    b = normalize_py.capture(PY_BASE.replace("revenue > 0", "revenue >= 0"), "enriched")
    assert normalize_py.canonical(a.module) != normalize_py.canonical(b.module)


def test_notebook_helper_change_changes_the_transform() -> None:
    src = "def enriched(daily):\n    return daily.withColumn('x', helper(1))\n"

    def helper_v1(x):
        return x + 1

    def helper_v2(x):
        return x + 2

    a = normalize_py.capture(src, "enriched", {"helper": helper_v1})
    b = normalize_py.capture(src, "enriched", {"helper": helper_v2})
    assert "x + 1" in a.module and "x + 2" in b.module
    ta = Transform.from_python("enriched", a)
    tb = Transform.from_python("enriched", b)
    assert ta.definition_hash() != tb.definition_hash()


def test_captured_constants_and_imports_travel_with_the_code() -> None:
    import math

    src = "def f(orders):\n    return orders.limit(LIMIT + int(math.floor(1.5)))\n"
    code = normalize_py.capture(src, "f", {"LIMIT": 10, "math": math})
    assert "import math" in code.module and "LIMIT = 10" in code.module
    func = normalize_py.load(code, "f")
    assert func.__name__ == "f"
