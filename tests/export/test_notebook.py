"""A notebook's flow is read from its cells, with the magics' own parsers, without running it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import jupyter_dataflow as jd
from jupyter_dataflow.cli import main
from jupyter_dataflow.core.errors import DataflowError
from jupyter_dataflow.export import notebook
from tests.cluster.helpers import quickstart


def write_notebook(path: Path, cells: list[str]) -> Path:
    doc = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
           "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "execution_count": None, "outputs": [],
                      "source": src.splitlines(keepends=True)} for i, src in enumerate(cells)]
           + [{"cell_type": "markdown", "id": "m", "metadata": {}, "source": ["%%source not_code --path x"]}]}
    path.write_text(json.dumps(doc))
    return path


# The README example, written as a notebook user would write it.
EXAMPLE_CELLS = [
    "%load_ext jupyter_dataflow",
    "%dataflow open --name default --conf spark.sql.shuffle.partitions=4 spark.hadoop.fs.s3a.secret.key=xyz",
    '%%source orders --format csv --path data/orders --partition-by date --option header=true inferSchema=true',
    '%%source customers --format csv --path data/customers --option header=true inferSchema=true',
    '%%transform daily --expect "revenue >= 0"\n'
    "SELECT date, count(*) AS orders, round(sum(amount), 2) AS revenue\nFROM orders GROUP BY date",
    "%%transform daily_customers\nSELECT date, customer_id, sum(amount) AS revenue\n"
    "FROM orders GROUP BY date, customer_id",
    'def by_segment(daily_customers, customers):\n    """Revenue per customer segment, in PySpark."""\n'
    "    from pyspark.sql import functions as F\n\n"
    '    joined = daily_customers.join(customers, "customer_id")\n'
    '    return joined.groupBy("segment").agg(F.sum("revenue").alias("revenue"))\n',
    "%%transform by_segment --lang python\n"
    'def by_segment(daily_customers, customers):\n    """Revenue per customer segment, in PySpark."""\n'
    "    from pyspark.sql import functions as F\n\n"
    '    joined = daily_customers.join(customers, "customer_id")\n'
    '    return joined.groupBy("segment").agg(F.sum("revenue").alias("revenue"))\n',
    "%%sink daily_out --from daily --path out/daily --format csv",
]


def test_notebook_flow_has_the_same_definitions_as_the_python_api(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "flow.ipynb", EXAMPLE_CELLS)
    spec = notebook.read(nb)
    with jd.Flow.open(home=tmp_path / "api" / ".dataflow") as flow:
        quickstart().build(flow)
        expected = {n: flow.graph[n].definition_hash() for n in flow.graph.order()}
    assert [s.name for s in spec.stages] == list(expected)
    for s in spec.stages:
        assert s.definition_hash == expected[s.name], s.name
    assert spec.name == "default"
    assert spec.data_root == tmp_path
    assert spec.conf == {"spark.hadoop.fs.s3a.secret.key": "${SPARK_HADOOP_FS_S3A_SECRET_KEY}",
                         "spark.sql.shuffle.partitions": "4"}


def test_python_transforms_see_helpers_and_constants_of_plain_cells_which_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    nb = write_notebook(tmp_path / "helpers.ipynb", [
        "%%source orders --format csv --path data/orders --partition-by date",
        f"import math\nRATE = 2\nopen({str(marker)!r}, 'w').write('ran')\n"
        "def double(frame):\n    open('should-not-exist', 'w')\n    return frame.withColumn('x', frame.amount * RATE)\n"
        "%matplotlib inline\n!echo shell\n",
        "%%transform doubled\ndef doubled(orders):\n    return double(orders)",
        "%%query big\nSELECT * FROM doubled WHERE x > 10",
        "%dataflow promote big AS big_rows",
        "%sink rows_out --from big_rows --path out/rows\n%dataflow drop rows_out",
    ])
    spec = notebook.read(nb)
    assert not marker.exists(), "plain code ran"
    assert [s.name for s in spec.stages] == ["orders", "doubled", "big_rows"]
    module = spec.stage("doubled").code or ""
    assert "def double(frame):" in module and "RATE = 2" in module
    assert spec.stage("big_rows").code == "SELECT * FROM doubled WHERE x > 10"


def test_a_bad_cell_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "bad.ipynb", [
        "%%source orders --format csv --path data/orders",
        "%%transform daily\nSELECT date, count(*) FROM ordrs GROUP BY date",
    ])
    with pytest.raises(DataflowError, match=r"bad\.ipynb, cell 2: .*ordrs.*did you mean 'orders'"):
        notebook.read(nb)
    assert main(["export", str(nb), "--to", "bundle", "-o", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_bad_options_are_reported_with_the_cell(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "opts.ipynb", ["%%source orders --format csv"])
    with pytest.raises(DataflowError, match="cell 1"):
        notebook.read(nb)


def test_fallback_parsers_accept_what_the_magics_accept(tmp_path: Path) -> None:
    magic = notebook._magic_parsers()
    assert magic is not None, "the magics' parsers should be importable here"
    fallback = notebook._fallback_parsers()
    lines = {"source": "orders --path data/orders --format csv --partition-by date --option a=1 b=2 --no-ingest",
             "transform": 'daily --partition-by date --mode map --expect "x > 0" --expect-action drop --lang sql',
             "sink": "out --from daily --path out/daily --format json --option compression=none"}
    for kind, line in lines.items():
        a = vars(magic[kind].parse_args(notebook._split(line)))
        b = vars(fallback[kind].parse_args(notebook._split(line)))
        a.pop("help", None)
        assert a == b, kind


def test_cli_exports_a_notebook_and_a_home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nb = write_notebook(tmp_path / "flow.ipynb", EXAMPLE_CELLS)
    assert main(["export", str(nb), "--to", "bundle", "-o", str(tmp_path / "nb-bundle")]) == 0
    assert "exported" in capsys.readouterr().out
    doc = json.loads((tmp_path / "nb-bundle" / "flow.json").read_text())
    assert sorted(s["name"] for s in doc["stages"]) == sorted(
        ["orders", "customers", "daily", "daily_customers", "by_segment", "daily_out"])
    with jd.Flow.open(home=tmp_path / "h" / ".dataflow") as flow:
        quickstart().build(flow)
    assert main(["export", str(tmp_path / "h" / ".dataflow"), "--to", "k8s", "-o", str(tmp_path / "k"),
                 "--namespace", "etl"]) == 0
    assert "namespace: etl" in (tmp_path / "k" / "k8s" / "base.yaml").read_text()
    assert main(["export", str(tmp_path / "h" / ".dataflow"), "--to", "bundle", "-o", str(tmp_path / "x"),
                 "--namespace", "etl"]) == 2
    assert "--namespace applies to --to k8s only" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing.txt"), "--to", "bundle", "-o", str(tmp_path / "y")]) == 2
