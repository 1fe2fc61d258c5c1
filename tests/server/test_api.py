"""The REST API against a real Jupyter server (pytest-jupyter's jp_fetch).

Homes are built on the shared local SparkSession (see conftest.py); the server
reads them without Spark, and runs start the real CLI in a subprocess.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import io
import json
import pkgutil
import threading
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import tornado.web
from jupyter_server.utils import url_path_join
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets.config import Config

import jupyter_dataflow as jd
import jupyter_dataflow.server
from jupyter_dataflow.server.handlers import handlers

from .conftest import BIG_ARROW_BYTES, BIG_ROWS, DAYS, ROWS_PER_DAY, server_config

API = ("dataflow", "api")


@pytest.fixture
def served_home(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The home the server serves: the built one the test asks for, else an empty one."""
    for name in ("dataflow_home", "big_home"):
        if name in request.fixturenames:
            home: Path = request.getfixturevalue(name)
            return home
    return tmp_path / "empty" / ".dataflow"


@pytest.fixture
def jp_server_config(served_home: Path) -> Config:
    return Config(server_config(served_home))


async def get_json(jp_fetch: Any, *parts: str, **kwargs: Any) -> Any:
    response = await jp_fetch(*API, *parts, **kwargs)
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    return json.loads(response.body)


async def error_of(jp_fetch: Any, *parts: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(*API, *parts, **kwargs)
    error = info.value
    body = error.response.body if error.response is not None else b""
    try:
        payload = json.loads(body) if body else {}
    except ValueError:
        payload = {}
    return error.code, payload


def committed_table(home: Path, flow: str, stage: str, partition: str | None = None) -> pa.Table:
    f = jd.Flow.open(home=home, name=flow)
    try:
        schema = f.arrow_schema(stage)
        return pa.Table.from_batches(
            list(f.record_batches(stage, partition=partition)), schema=schema
        )
    finally:
        f.close()


# -- authentication ---------------------------------------------------------------------

_AUTHENTICATED_CODE = tornado.web.authenticated(lambda self: None).__code__


def test_every_handler_method_is_authenticated() -> None:
    """Each HTTP method of each handler class in the server package goes through
    `tornado.web.authenticated` (its wrapper's code object is shared by all uses)."""
    checked = []
    package = jupyter_dataflow.server
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or not issubclass(cls, tornado.web.RequestHandler):
                continue
            for verb in cls.SUPPORTED_METHODS:
                method = vars(cls).get(verb.lower())
                if method is None:
                    continue
                assert method.__code__ is _AUTHENTICATED_CODE, (
                    f"{cls.__qualname__}.{verb.lower()} lacks @tornado.web.authenticated"
                )
                checked.append(f"{cls.__name__}.{verb.lower()}")
    routed = {handler for _, handler in handlers("/")}
    for handler in routed:
        assert any(name.startswith(handler.__name__ + ".") for name in checked), handler
    assert len(checked) >= len(routed)


NO_TOKEN = {"Authorization": ""}

ENDPOINTS = [
    ("GET", ("flows",)),
    ("GET", ("flows", "default", "graph")),
    ("GET", ("flows", "default", "stages", "orders")),
    ("GET", ("flows", "default", "stages", "orders", "records")),
    ("POST", ("flows", "default", "run")),
    ("POST", ("flows", "default", "export")),
    ("GET", ("flows", "default", "runs", "abc")),
]


@pytest.mark.parametrize(("method", "parts"), ENDPOINTS)
async def test_requests_without_token_are_forbidden(
    jp_fetch: Any, method: str, parts: tuple[str, ...]
) -> None:
    body = "{}" if method == "POST" else None
    code, _ = await error_of(jp_fetch, *parts, method=method, body=body, headers=dict(NO_TOKEN))
    assert code == 403


async def test_records_without_token_are_forbidden_even_with_a_format(jp_fetch: Any) -> None:
    code, _ = await error_of(
        jp_fetch,
        "flows",
        "default",
        "stages",
        "orders",
        "records",
        params={"format": "parquet", "limit": "5"},
        headers={"Authorization": "token wrong"},
    )
    assert code == 403


# -- names and unknowns -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "parts"),
    [
        ("GET", ("flows", "bad-name", "graph")),
        ("GET", ("flows", "1flow", "stages", "orders")),
        ("GET", ("flows", "default", "stages", "no.dots")),
        ("GET", ("flows", "white space", "graph")),
        ("GET", ("flows", "default", "stages", "x-y", "records")),
        ("POST", ("flows", "bad-name", "run")),
        ("POST", ("flows", "bad-name", "export")),
        ("GET", ("flows", "bad-name", "runs", "abc")),
    ],
)
async def test_bad_names_are_rejected_with_a_message(
    jp_fetch: Any, method: str, parts: tuple[str, ...]
) -> None:
    body = "{}" if method == "POST" else None
    code, payload = await error_of(jp_fetch, *parts, method=method, body=body)
    assert code == 400
    assert "name" in payload["message"] and "letters" in payload["message"]


async def test_empty_home_has_no_flows_and_unknown_flows_are_404(
    jp_fetch: Any, served_home: Path
) -> None:
    reply = await get_json(jp_fetch, "flows")
    assert reply == {"flows": [], "home": str(served_home)}
    code, payload = await error_of(jp_fetch, "flows", "default", "graph")
    assert code == 404
    assert "unknown flow 'default'" in payload["message"]
    code, _ = await error_of(jp_fetch, "flows", "default", "run", method="POST", body="{}")
    assert code == 404
    code, _ = await error_of(jp_fetch, "flows", "default", "runs", "0123abcd")
    assert code == 404
    assert not served_home.exists(), "reading must not create the home"


# -- flows, graph, stages -----------------------------------------------------------------


@pytest.mark.spark
async def test_flows_graph_and_stage_details(jp_fetch: Any, dataflow_home: Path) -> None:
    flows = await get_json(jp_fetch, "flows")
    assert "default" in flows["flows"]
    assert flows["home"] == str(dataflow_home)

    graph = await get_json(jp_fetch, "flows", "default", "graph")
    assert graph["flow"] == "default"
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert set(nodes) == {"orders", "daily", "later"}
    assert {(e["source"], e["target"]) for e in graph["edges"]} == {
        ("orders", "daily"),
        ("daily", "later"),
    }
    assert nodes["orders"]["kind"] == "source"
    assert nodes["daily"]["kind"] == "transform"
    assert nodes["orders"]["state"] == "fresh"
    assert nodes["daily"]["state"] == "fresh"
    assert nodes["later"]["state"] == "never run"
    assert nodes["orders"]["partitions"] == len(DAYS)
    assert nodes["orders"]["rows"] == len(DAYS) * ROWS_PER_DAY
    assert "revenue" in {c["name"] for c in nodes["daily"]["columns"]}
    assert "sum(amount)" in nodes["daily"]["code"]

    info = await get_json(jp_fetch, "flows", "default", "stages", "orders")
    assert info["name"] == "orders"
    assert info["state"] == "fresh"
    assert sorted(p["partition"] for p in info["partitions"]) == [f"date={d}" for d in DAYS]
    assert all(p["fingerprint"] and p["committed_at"] for p in info["partitions"])
    assert info["schema"], info
    assert info["provenance"]["stage"] == "orders"

    later = await get_json(jp_fetch, "flows", "default", "stages", "later")
    assert later["state"] == "never run"
    assert later["partitions"] == []


@pytest.mark.spark
async def test_unknown_stage_is_404(jp_fetch: Any, dataflow_home: Path) -> None:
    for parts in (("stages", "nope"), ("stages", "dayly", "records")):
        code, payload = await error_of(jp_fetch, "flows", "default", *parts)
        assert code == 404
        assert "unknown stage" in payload["message"]
    code, payload = await error_of(jp_fetch, "flows", "default", "stages", "dayly")
    assert "did you mean 'daily'" in payload["message"]
    code, _ = await error_of(
        jp_fetch, "flows", "default", "run", method="POST", body=json.dumps({"stage": "nope"})
    )
    assert code == 404


# -- records ------------------------------------------------------------------------------


async def fetch_records(jp_fetch: Any, stage: str, **params: str) -> Any:
    return await jp_fetch(*API, "flows", "default", "stages", stage, "records", params=params)


@pytest.mark.spark
async def test_records_csv_equal_the_committed_rows(jp_fetch: Any, dataflow_home: Path) -> None:
    expected = committed_table(dataflow_home, "default", "orders")
    response = await fetch_records(jp_fetch, "orders", format="csv")
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    got = pacsv.read_csv(
        io.BytesIO(response.body),
        convert_options=pacsv.ConvertOptions(
            column_types=expected.schema, strings_can_be_null=True, quoted_strings_can_be_null=False
        ),
    )
    assert got.column_names == expected.column_names
    assert got.num_rows == expected.num_rows == len(DAYS) * ROWS_PER_DAY
    assert (
        got.select(["order_id", "customer", "amount", "note"]).to_pylist()
        == expected.select(["order_id", "customer", "amount", "note"]).to_pylist()
    )
    # Multi-line and quoted values survive CSV quoting.
    assert "new\nline" in got.column("note").to_pylist()
    assert 'quote " inside' in got.column("note").to_pylist()


@pytest.mark.spark
async def test_records_jsonl_equal_the_committed_rows(jp_fetch: Any, dataflow_home: Path) -> None:
    expected = committed_table(dataflow_home, "default", "orders").to_pylist()
    response = await fetch_records(jp_fetch, "orders", format="jsonl")
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    lines = response.body.decode("utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected, strict=True):
        assert got["order_id"] == want["order_id"]
        assert got["note"] == want["note"]
        assert got["amount"] == want["amount"]
        assert got["placed_at"] == want["placed_at"].isoformat()
    assert any(r["amount"] is None for r in rows)
    assert "ünïcødé ✓" in {r["note"] for r in rows}


@pytest.mark.spark
async def test_records_parquet_is_a_valid_file_with_the_committed_rows(
    jp_fetch: Any, dataflow_home: Path
) -> None:
    expected = committed_table(dataflow_home, "default", "daily")
    response = await fetch_records(jp_fetch, "daily", format="parquet")
    assert response.headers["Content-Type"] == "application/vnd.apache.parquet"
    got = pq.read_table(io.BytesIO(response.body))
    assert got.schema.equals(expected.schema)
    assert got.equals(expected)
    assert got.num_rows == len(DAYS)


@pytest.mark.spark
async def test_records_limit_partition_and_errors(jp_fetch: Any, dataflow_home: Path) -> None:
    response = await fetch_records(jp_fetch, "orders", format="jsonl", limit="20")
    assert len(response.body.decode().splitlines()) == 20
    response = await fetch_records(jp_fetch, "orders", format="csv", limit="0")
    assert response.body.decode().splitlines()[0].startswith('"order_id"')
    assert len(pacsv.read_csv(io.BytesIO(response.body))) == 0

    day = f"date={DAYS[1]}"
    expected = committed_table(dataflow_home, "default", "orders", partition=day)
    response = await fetch_records(jp_fetch, "orders", format="parquet", partition=day)
    got = pq.read_table(io.BytesIO(response.body))
    assert got.num_rows == ROWS_PER_DAY
    assert got.column("order_id").to_pylist() == expected.column("order_id").to_pylist()

    async def code_of(stage: str, **params: str) -> tuple[int, str]:
        with pytest.raises(HTTPClientError) as info:
            await fetch_records(jp_fetch, stage, **params)
        assert info.value.response is not None
        return info.value.code, json.loads(info.value.response.body)["message"]

    assert (await code_of("orders", format="xml"))[0] == 400
    assert (await code_of("orders", limit="-1"))[0] == 400
    assert (await code_of("orders", limit="ten"))[0] == 400
    code, message = await code_of("orders", partition="date=1999-01-01")
    assert code == 404 and "partition" in message
    code, message = await code_of("later", format="csv")
    assert code == 404 and "no committed records" in message


# -- streaming at scale -------------------------------------------------------------------


class PeakRss:
    """Sample this process's RSS in a thread; the server runs in this process."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.before = self.process.memory_info().rss
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.before


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
async def test_streaming_a_million_rows_keeps_memory_bounded(
    big_home: Path,
    fmt: str,
    jp_fetch: Any,  # starts the HTTP server on jp_http_port
    jp_http_port: int,
    jp_base_url: str,
    jp_serverapp: Any,
) -> None:
    """The whole stage goes through the server while its RSS stays far below the size
    of the data, and a second full export adds (almost) nothing: memory does not
    grow with the data, only with a batch."""
    # A client of its own: the fixture's client caps bodies at 100 MB.
    client = AsyncHTTPClient(force_instance=True, max_body_size=1 << 40)
    path = url_path_join(jp_base_url, *API, "flows", "big", "stages", "events", "records")
    token = jp_serverapp.identity_provider.token

    async def export(query: str) -> tuple[int, int, bytes, PeakRss]:
        received = newlines = 0
        tail = b""

        def on_chunk(chunk: bytes) -> None:
            nonlocal received, newlines, tail
            received += len(chunk)
            newlines += chunk.count(b"\n")
            tail = (tail + chunk)[-4:]

        with PeakRss() as rss:
            response = await client.fetch(
                f"http://127.0.0.1:{jp_http_port}{path}?format={fmt}{query}",
                headers={"Authorization": f"token {token}"},
                streaming_callback=on_chunk,
                request_timeout=600,
            )
        assert response.code == 200
        return received, newlines, tail, rss

    baseline = psutil.Process().memory_info().rss
    try:
        # A first full export also pays one-time costs (allocator pools, threads).
        first_size, first_lines, first_tail, first = await export("")
        quarter_size, _, _, quarter = await export("&partition=part%3D0")  # 250,000 rows
        full_size, _, _, full = await export("")
    finally:
        client.close()

    if fmt == "csv":
        assert first_lines == BIG_ROWS + 1  # header + one line per row
    else:
        assert first_tail == b"PAR1"
    assert full_size == first_size > 3 * quarter_size
    for label, rss, size in (
        ("first full", first, first_size),
        ("quarter", quarter, quarter_size),
        ("full", full, full_size),
    ):
        print(
            f"{fmt} {label} export: sent {size / 2**20:.1f} MiB; server RSS "
            f"{baseline / 2**20:.0f} MiB at start, peak {rss.peak / 2**20:.0f} MiB "
            f"(+{(rss.peak - baseline) / 2**20:.1f} MiB); data {BIG_ARROW_BYTES / 2**20:.0f} MiB"
        )
    # Memory does not follow the data: were it proportional, the full export would
    # peak three quarters of the data above the quarter's peak; it stays within a
    # quarter of the data (a few batches), and even the first export holds nothing
    # like the data.
    assert full.peak - quarter.peak < BIG_ARROW_BYTES / 4
    assert first.peak - baseline < BIG_ARROW_BYTES * 0.9


@pytest.mark.spark
@pytest.mark.slow
async def test_client_leaving_mid_stream_stops_the_stream(
    jp_fetch: Any, big_home: Path, jp_http_port: int, jp_base_url: str, jp_serverapp: Any
) -> None:
    stats = jp_serverapp.web_app.settings["dataflow_streams"]
    aborted_before = stats.get("aborted", 0)
    path = url_path_join(jp_base_url, *API, "flows", "big", "stages", "events", "records")
    token = jp_serverapp.identity_provider.token
    reader, writer = await asyncio.open_connection("127.0.0.1", jp_http_port)
    writer.write(
        f"GET {path}?format=csv HTTP/1.1\r\nHost: 127.0.0.1:{jp_http_port}\r\n"
        f"Authorization: token {token}\r\n\r\n".encode()
    )
    await writer.drain()
    received = 0
    while received < 4 * 1024 * 1024:
        chunk = await reader.read(1 << 16)
        assert chunk, "server closed the connection early"
        received += len(chunk)
    writer.close()
    await writer.wait_closed()

    for _ in range(600):  # the handler notices at its next write
        if stats.get("aborted", 0) > aborted_before:
            break
        await asyncio.sleep(0.1)
    assert stats.get("aborted", 0) == aborted_before + 1
    # The server is fine and answers the next request.
    flows = await get_json(jp_fetch, "flows")
    assert flows["flows"] == ["big"]


# -- runs ---------------------------------------------------------------------------------


async def wait_for_run(jp_fetch: Any, flow: str, run_id: str) -> dict[str, Any]:
    for _ in range(1200):
        status = await get_json(jp_fetch, "flows", flow, "runs", run_id)
        if status["state"] != "running":
            return status  # type: ignore[no-any-return]
        await asyncio.sleep(0.5)
    raise AssertionError(f"run {run_id} of {flow} did not finish: {status}")


@pytest.mark.spark
@pytest.mark.slow
async def test_runs_start_the_cli_and_report_their_outcome(
    jp_fetch: Any, dataflow_home: Path, spark: Any
) -> None:
    orders = committed_table(dataflow_home, "default", "orders")
    assert orders.num_rows
    # Two more flows in the same home: one that works, one whose SQL fails at run time.
    source_path = dataflow_home.parent / "data" / "orders"
    ok = jd.Flow.open(home=dataflow_home, name="second", spark=spark)
    bad = jd.Flow.open(home=dataflow_home, name="broken", spark=spark)
    try:
        for f in (ok, bad):
            f.source("src", path=str(source_path), format="parquet", partition_by="date")
        ok.transform("per_customer", "SELECT customer, count(*) AS n FROM src GROUP BY customer")
        ok.transform("top", "SELECT * FROM per_customer WHERE n > 10")
        bad.transform("boom", "SELECT raise_error('no good') AS x FROM src")
    finally:
        ok.close()
        bad.close()

    response = await jp_fetch(
        *API, "flows", "second", "run", method="POST", body=json.dumps({"stage": "per_customer"})
    )
    assert response.code == 202
    run_id = json.loads(response.body)["run"]
    assert response.headers["Location"].endswith(f"/dataflow/api/flows/second/runs/{run_id}")
    busy_code, busy = await error_of(jp_fetch, "flows", "second", "run", method="POST", body="")
    assert busy_code == 409
    assert busy["run"] == run_id

    broken = await jp_fetch(*API, "flows", "broken", "run", method="POST", body="{}")
    broken_id = json.loads(broken.body)["run"]

    status = await wait_for_run(jp_fetch, "second", run_id)
    assert status["state"] == "succeeded", status["output"]
    assert status["exit_code"] == 0
    assert status["stage"] == "per_customer"
    assert status["finished"]
    graph = await get_json(jp_fetch, "flows", "second", "graph")
    states = {n["id"]: n["state"] for n in graph["nodes"]}
    assert states == {"src": "fresh", "per_customer": "fresh", "top": "never run"}

    failed = await wait_for_run(jp_fetch, "broken", broken_id)
    assert failed["state"] == "failed"
    assert failed["exit_code"] not in (0, None)
    assert "no good" in failed["output"]
    info = await get_json(jp_fetch, "flows", "broken", "stages", "boom")
    assert info["state"] == "failed"
    assert "no good" in (info["error"] or "")

    code, _ = await error_of(jp_fetch, "flows", "second", "run", method="POST", body="[1]")
    assert code == 400
    code, _ = await error_of(jp_fetch, "flows", "second", "run", method="POST", body="{nope")
    assert code == 400


@pytest.mark.parametrize(
    "body",
    [
        {"to": "zip", "output": "out"},
        {"output": "out"},
        {"to": "bundle"},
        {"to": "bundle", "output": "../outside"},
        {"to": "bundle", "output": "/tmp/elsewhere"},
    ],
)
async def test_export_rejects_bad_targets_and_paths_outside_the_root(
    jp_fetch: Any, body: dict[str, str]
) -> None:
    code, payload = await error_of(
        jp_fetch, "flows", "default", "export", method="POST", body=json.dumps(body)
    )
    assert code == 400
    assert payload["message"]


@pytest.mark.spark
@pytest.mark.slow
async def test_export_writes_a_bundle_below_the_root(
    jp_fetch: Any, dataflow_home: Path, jp_root_dir: Path
) -> None:
    response = await jp_fetch(
        *API,
        "flows",
        "default",
        "export",
        method="POST",
        body=json.dumps({"to": "bundle", "output": "exports/default"}),
    )
    assert response.code == 202
    reply = json.loads(response.body)
    assert reply["output"] == str((jp_root_dir / "exports" / "default").resolve())
    status = await wait_for_run(jp_fetch, "default", reply["run"])
    assert status["command"] == "export"
    assert status["state"] == "succeeded", status["output"]
    written = [p for p in (jp_root_dir / "exports" / "default").rglob("*") if p.is_file()]
    assert written, status["output"]
