"""`Flow.query_result`: DuckDB answers when it is safe, Spark otherwise; same answers."""

from __future__ import annotations

from pathlib import Path

import pytest

import jupyter_dataflow as jd
from tests.engine import conftest as engine_fixtures
from tests.engine.conftest import build_standard

orders_dir = engine_fixtures.orders_dir  # the engine tests' data fixture, shared

pytestmark = pytest.mark.spark


@pytest.fixture
def flow(request: pytest.FixtureRequest, tmp_path: Path, spark) -> jd.Flow:
    request.getfixturevalue("orders_dir")
    f = jd.Flow.open(home=tmp_path / ".dataflow", spark=spark)
    build_standard(f)
    assert f.run().ok
    return f


SQL = "SELECT customer_id, n, revenue FROM by_customer WHERE n > 0 ORDER BY customer_id"


def test_auto_uses_duckdb_and_matches_spark(flow: jd.Flow) -> None:
    fast = flow.query_result(SQL)
    slow = flow.query_result(SQL, engine="spark")
    assert fast.engine == "duckdb" and slow.engine == "spark"
    assert fast.arrow.column_names == slow.arrow.column_names
    assert fast.arrow.to_pylist() == slow.arrow.to_pylist()


def test_limit_applies_in_the_engine(flow: jd.Flow) -> None:
    for engine in ("auto", "spark"):
        assert flow.query_result(SQL, engine=engine, limit=3).num_rows == 3


def test_unsupported_sql_falls_back_to_spark_with_a_reason(flow: jd.Flow) -> None:
    result = flow.query_result("SELECT from_json('{\"a\": 1}', 'a INT') AS j FROM daily LIMIT 1")
    assert result.engine == "spark" and result.reason
    with pytest.raises(jd.DataflowError, match="DuckDB cannot answer"):
        flow.query_result("SELECT from_json('{\"a\": 1}', 'a INT') AS j FROM daily", engine="duckdb")


def test_bad_engine_and_unknown_stage(flow: jd.Flow) -> None:
    with pytest.raises(jd.ConfigError, match="engine must be one of"):
        flow.query_result(SQL, engine="presto")
    with pytest.raises(jd.UnknownStageError, match="did you mean 'daily'"):
        flow.query_result("SELECT * FROM dailly")
