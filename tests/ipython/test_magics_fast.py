"""Magics that only register stages or parse options: no Spark session is started."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ipython.conftest import Cells, text_of

SUBCOMMANDS = ["open", "status", "plan", "run", "watch", "explain", "lineage", "promote", "drop", "branch",
               "export"]


def test_extension_registers_every_magic(cells: Cells) -> None:
    ip = cells.ip
    assert ip.find_line_magic("dataflow") is not None
    for name in ("source", "transform", "sink", "query"):
        assert ip.find_cell_magic(name) is not None, name
    assert any(type(c).__name__ == "Dataflow" for c in ip.configurables)


@pytest.mark.parametrize("magic", ["%%source --help\n", "%%transform --help\nSELECT 1",
                                   "%%sink -h\n", "%%query --help\nSELECT 1"])
def test_cell_magics_have_help(cells: Cells, magic: str) -> None:
    out = cells(magic).stdout
    assert out.startswith("usage: %%"), out
    assert "--" in out


def test_dataflow_help_lists_every_subcommand(cells: Cells) -> None:
    for line in ("%dataflow", "%dataflow --help", "%dataflow -h"):
        out = cells(line).stdout
        for sub in SUBCOMMANDS:
            assert f"%dataflow {sub}" in out, (line, sub)


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_every_subcommand_has_help(cells: Cells, sub: str) -> None:
    out = cells(f"%dataflow {sub} --help").stdout
    assert out.startswith(f"usage: %dataflow {sub}"), out


def test_unknown_subcommand_suggests_the_closest(cells: Cells) -> None:
    msg = cells.error("%dataflow staus")
    assert "unknown %dataflow command 'staus'" in msg and "did you mean 'status'?" in msg


@pytest.mark.parametrize(("cell", "expected"), [
    ("%dataflow run --bogus", "unrecognized arguments: --bogus"),
    ("%dataflow export out", "the following arguments are required: --to"),
    ("%dataflow export out --to zip", "invalid choice: 'zip'"),
    ("%dataflow watch maybe", "invalid choice: 'maybe'"),
    ("%%transform t --mode everything\nSELECT 1", "invalid choice: 'everything'"),
    ("%%source s --path 'data\n", "cannot read the options"),
    ("%%source s --path data --option header\n", "--option expects KEY=VALUE, got 'header'"),
    ("%%source s --format csv\n", "the following arguments are required: --path"),
    ("%%sink s --path out\n", "the following arguments are required: --from"),
    ("%%source s --path data\nheader=true", "%%source takes no body"),
    ("%%query 1bad\nSELECT 1", "not a valid Python name"),
    ("%dataflow promote q INTO t", "expected 'QUERY AS STAGE'"),
    ("%dataflow open --name 'not a name'", "invalid flow name"),
])
def test_bad_options_give_a_short_message(cells: Cells, cell: str, expected: str) -> None:
    assert expected in cells.error(cell)


def _stages(cells: Cells) -> dict[str, str]:
    return {n: s.definition_hash() for n, s in cells.flow.graph.stages.items()}


def _register_base(cells: Cells) -> None:
    cells("%%source orders --format csv --path data/orders --partition-by date --option header=true\n")
    cells("%%transform daily\nSELECT date, sum(amount) AS revenue FROM orders GROUP BY date")
    cells("%%sink daily_out --from daily --format csv --path out/daily")


def test_rerunning_a_cell_is_a_no_op_and_a_change_says_what_is_stale(cells: Cells) -> None:
    out = cells("%%source orders --format csv --path data/orders --partition-by date --option header=true\n")
    assert out.stdout.strip() == "source orders: added"
    sql = "SELECT date, sum(amount) AS revenue FROM orders GROUP BY date"
    assert cells(f"%%transform daily\n{sql}").stdout.strip() == "transform daily: added"
    cells("%%sink daily_out --from daily --format csv --path out/daily")
    again = cells("%%transform daily\n-- same query, different layout\nselect date,\n  SUM(amount) as revenue\n"
                  "from orders group by date")
    assert "transform daily: unchanged" in again.stdout
    changed = cells("%%transform daily\nSELECT date, max(amount) AS revenue FROM orders GROUP BY date")
    assert "transform daily: replaced; now stale: daily, daily_out" in changed.stdout


def test_user_mistakes_are_short_precise_and_change_nothing(cells: Cells) -> None:
    _register_base(cells)
    before = _stages(cells)

    msg = cells.error("%%transform daily\nSELECT date,\n  sum(amount AS revenue\nFROM orders GROUP BY date")
    assert "line 2" in msg and "column" in msg and "^" in msg, msg

    msg = cells.error("%%transform weekly\nSELECT * FROM ordrs")
    assert "unknown stage 'ordrs'" in msg and "did you mean 'orders'?" in msg

    cells("%%transform a\nSELECT * FROM daily")
    cells("%%transform b\nSELECT * FROM a")
    before = _stages(cells)
    msg = cells.error("%%transform a\nSELECT * FROM b")
    assert "cycle" in msg and "a" in msg and "b" in msg

    msg = cells.error("%%sink daily_out --from dialy --format csv --path out/daily")
    assert "did you mean 'daily'?" in msg

    msg = cells.error("%%transform 2fast\nSELECT 1 AS x FROM orders")
    assert "invalid stage name" in msg

    msg = cells.error("%%transform f --lang python\ndef f(orders:\n    return orders")
    assert "Python syntax error" in msg

    msg = cells.error("%dataflow explain dayly")
    assert "did you mean 'daily'?" in msg

    msg = cells.error("%dataflow drop nosuch")
    assert "unknown stage 'nosuch'" in msg

    assert _stages(cells) == before


def test_python_transform_captures_notebook_helpers(cells: Cells) -> None:
    _register_base(cells)
    cells("def big(df):\n    return df.filter(df.amount > 10)\n")
    out = cells("%%transform big_orders --lang python\ndef big_orders(orders):\n    return big(orders)")
    assert "transform big_orders: added" in out.stdout
    # The helper is part of the definition: editing it makes the stage stale.
    cells("def big(df):\n    return df.filter(df.amount > 20)\n")
    out = cells("%%transform big_orders\ndef big_orders(orders):\n    return big(orders)")
    assert "replaced" in out.stdout


def test_promote_registers_the_query_and_offers_the_cell(cells: Cells) -> None:
    _register_base(cells)
    cells.magics.queries["top"] = "SELECT date, revenue FROM daily WHERE revenue > 10"
    out = cells("%dataflow promote top AS top_days --mode map")
    assert "transform top_days: added" in out.stdout
    assert cells.flow.graph.stages["top_days"].inputs == ("daily",)
    # No comm target outside a kernel: IPython's next input carries the new cell.
    assert cells.ip.rl_next_input.startswith("%%transform top_days --mode map\nSELECT date, revenue")
    msg = cells.error("%dataflow promote tpo AS other")
    assert "no query named 'tpo'" in msg and "did you mean 'top'?" in msg


def test_drop_and_branch(cells: Cells) -> None:
    _register_base(cells)
    assert "dropped stage daily_out" in cells("%dataflow drop daily_out").stdout
    assert "daily_out" not in cells.flow.graph.stages
    out = cells("%dataflow branch dev")
    assert "created branch 'dev' from 'default'" in out.stdout
    assert cells.flow.name == "dev"
    cells("%%transform only_dev\nSELECT * FROM daily")
    cells("%dataflow open --name default")
    assert cells.flow.name == "default" and "only_dev" not in cells.flow.graph.stages


def test_config_traits_reopen_the_flow(cells: Cells, tmp_path: Path) -> None:
    _register_base(cells)
    out = cells("%config Dataflow")
    for trait in ("home", "flow", "spark", "conf", "query_limit", "watch_interval"):
        assert f"Dataflow.{trait}" in out.stdout, trait
    other = tmp_path / "elsewhere" / ".dataflow"
    cells(f"%config Dataflow.home = {str(other)!r}")
    assert cells.flow.home == other and len(cells.flow.graph) == 0
    cells("%config Dataflow.watch_interval = -1")   # refused by the trait's validator
    assert cells.magics.settings.watch_interval == 10.0
    cells("%config Dataflow.query_limit = 5")
    assert cells.magics.settings.query_limit == 5


def test_lineage_and_export(cells: Cells, tmp_path: Path) -> None:
    _register_base(cells)
    flow = cells.flow
    if not hasattr(flow, "lineage"):
        assert "lineage is not available" in cells("%dataflow lineage daily --columns").stdout
    if not hasattr(flow, "export"):
        assert "export is not available" in cells.error("%dataflow export out --to bundle")
        return
    out = cells(f"%dataflow export {tmp_path / 'bundle'} --to bundle").stdout
    assert f"exported flow 'default' as bundle to {tmp_path / 'bundle'}" in out
    assert any((tmp_path / "bundle").iterdir())


def test_every_stage_option_reaches_the_definition(cells: Cells) -> None:
    cells("%%source events --path 'data/my events' --format parquet --no-ingest\n")
    cells("%%source orders --format csv --path data/orders --partition-by date "
          "--option header=true --option sep=; inferSchema=true\n")
    cells("%%transform clean --partition-by date --mode map --expect 'amount >= 0' "
          "--expect \"order_id IS NOT NULL\" --expect-action drop\nSELECT date, order_id, amount FROM orders")
    cells("%%transform py --lang python --expect-action warn\ndef py(clean):\n    return clean\n")
    cells("%%sink clean_out --from clean --format json --path out/clean --option compression=gzip")
    stages = cells.flow.graph.stages
    assert (stages["events"].path, stages["events"].ingest) == ("data/my events", False)
    orders = stages["orders"]
    assert (orders.format, orders.partition_by) == ("csv", "date")
    assert dict(orders.options) == {"header": "true", "sep": ";", "inferSchema": "true"}
    clean = stages["clean"]
    assert (clean.partition_by, clean.mode, clean.expect_action) == ("date", "map", "drop")
    assert clean.expect == ("amount >= 0", "order_id IS NOT NULL")
    assert stages["py"].python is not None and stages["py"].expect_action == "warn"
    sink = stages["clean_out"]
    assert (sink.source, sink.format, sink.path, dict(sink.options)) == ("clean", "json", "out/clean",
                                                                          {"compression": "gzip"})


def test_open_options_and_first_magic_default(cells: Cells, tmp_path: Path) -> None:
    cells("%dataflow open --name other --spark local[1] --conf spark.sql.shuffle.partitions=1 a.b=c")
    settings = cells.magics.settings
    assert (settings.flow, settings.spark) == ("other", "local[1]")
    assert settings.conf == {"spark.sql.shuffle.partitions": "1", "a.b": "c"}
    assert cells.flow.name == "other"
    assert "invalid flow name" in cells.error("%dataflow open --name 'bad name' --conf x=y")
    assert settings.flow == "other" and "x" not in settings.conf      # a failed open changes nothing
    # Without %dataflow open, the first magic opens ./.dataflow, flow "default", on local[*].
    cells.ip.extension_manager.unload_extension("jupyter_dataflow")
    cells("%load_ext jupyter_dataflow")
    cells("%%source s --path data/s\n")
    assert cells.flow.home == tmp_path / ".dataflow" and cells.flow.name == "default"
    assert cells.magics.settings.spark == "local[*]"


def test_plan_and_status_without_running(cells: Cells, orders: Path) -> None:
    _register_base(cells)
    plan = cells("%dataflow plan")
    text = text_of(plan)
    assert "orders" in text and "date=2024-01-01" in text and "new" in text
    status = cells("%dataflow status")
    assert "never run" in text_of(status)
    assert "#6e7781" in "".join(o.data.get("text/html", "") for o in status.outputs)


def test_store_root_from_open_and_config(cells: Cells, tmp_path: Path) -> None:
    # The fixture's home already records its default root, <home>/store.
    assert cells.flow.store_root == str(tmp_path / ".dataflow" / "store")
    assert "keeps its data in" in cells.error("%dataflow open --store s3a://bucket/other")
    assert cells.magics.settings.store is None                      # a failed open changes nothing
    shared = tmp_path / "shared"
    cells(f"%dataflow open --home {tmp_path / 'h2'} --store file://{shared}")
    assert cells.flow.store_root == f"file://{shared}" and cells.magics.settings.store == f"file://{shared}"
    cells(f"%config Dataflow.home = '{tmp_path / 'h3'}'")
    cells(f"%config Dataflow.store = '{tmp_path / 'local-store'}'")
    cells("%%source s --path data/s\n")
    assert cells.flow.home == tmp_path / "h3" and cells.flow.store_root == str(tmp_path / "local-store")
    assert (tmp_path / "local-store" / "objects").is_dir()
