"""REST handlers under `/dataflow/api/`: flows, graph, stages, records, runs.

Handlers are thin: validate names, call the `Flow` facade off the event loop,
serialize. Computation happens in CLI subprocesses (see `runs.py`); reading
committed records streams Arrow batches without Spark. Every method is
`@tornado.web.authenticated` (a test checks it).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado.iostream import StreamClosedError

from jupyter_dataflow.core.names import is_identifier
from jupyter_dataflow.server.config import Dataflow
from jupyter_dataflow.server.records import FORMATS, RecordStream
from jupyter_dataflow.server.runs import RunManager

T = TypeVar("T")

API_PREFIX = "dataflow/api"
# Route patterns accept any segment so that bad names get a clear 400, not a 404.
_NAME = r"([^/]+)"


def _engine() -> Any:
    """The public Python API, imported on first use so loading the server is cheap."""
    import jupyter_dataflow as jd

    return jd


class DataflowHandler(APIHandler):
    """Shared helpers: settings, name checks, flow access off the event loop."""

    @property
    def dataflow(self) -> Dataflow:
        return self.settings["dataflow_config"]

    @property
    def home(self) -> Path:
        return self.settings["dataflow_home"]

    @property
    def runs(self) -> RunManager:
        return self.settings["dataflow_runs"]

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking engine call (SQLite, Parquet) in the default executor."""
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def check_name(self, name: str, what: str) -> str:
        if not is_identifier(name):
            raise tornado.web.HTTPError(
                400,
                f"invalid {what} name {name!r}: use letters, digits and underscores, "
                "starting with a letter or underscore",
            )
        return name

    def list_flows(self) -> list[str]:
        if not self.home.exists():
            return []
        return sorted(_engine().list_flows(str(self.home)))

    async def open_flow(self, name: str) -> Any:
        """Open flow `name` (no Spark); 400 for a bad name, 404 if it does not exist."""
        self.check_name(name, "flow")
        flows = await self.blocking(self.list_flows)
        if name not in flows:
            raise tornado.web.HTTPError(404, f"unknown flow {name!r} in {self.home}")
        return await self.blocking(
            lambda: _engine().Flow.open(home=str(self.home), name=name, spark=None)
        )

    async def close_flow(self, flow: Any) -> None:
        await self.blocking(flow.close)

    async def with_flow(self, name: str, fn: Callable[[Any], T]) -> T:
        """Open the flow, run `fn(flow)` off the loop, close it; map engine errors."""
        flow = await self.open_flow(name)
        try:
            return await self.blocking(lambda: self.engine_call(fn, flow))
        finally:
            await self.close_flow(flow)

    def engine_call(self, fn: Callable[[Any], T], flow: Any) -> T:
        jd = _engine()
        try:
            return fn(flow)
        except jd.UnknownStageError as error:
            raise tornado.web.HTTPError(404, str(error)) from error
        except jd.DataflowError as error:
            raise tornado.web.HTTPError(400, str(error)) from error

    def write_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(payload, default=str))


class FlowsHandler(DataflowHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        flows = await self.blocking(self.list_flows)
        self.write_json({"flows": flows, "home": str(self.home)})


def graph_payload(flow: Any) -> dict[str, Any]:
    """The lineage payload of an open flow (nodes, edges), as the panel draws it."""
    payload: dict[str, Any] = flow.graph_payload()
    return payload


def run_scope(payload: dict[str, Any], stage: str | None) -> set[str]:
    """Stages a run of `stage` (or of the whole flow) may compute."""
    ids = {n["id"] for n in payload["nodes"]}
    if stage is None:
        return ids
    parents: dict[str, list[str]] = {}
    for e in payload["edges"]:
        parents.setdefault(e["target"], []).append(e["source"])
    scope, todo = set(), [stage]
    while todo:
        name = todo.pop()
        if name not in scope:
            scope.add(name)
            todo += parents.get(name, [])
    return scope & ids


class GraphHandler(DataflowHandler):
    @tornado.web.authenticated
    async def get(self, flow: str) -> None:
        payload = await self.with_flow(flow, graph_payload)
        run = self.runs.active(flow)
        if run is not None:
            # The run is another process: show what it is working on as running.
            scope = run_scope(payload, run.stage)
            for node in payload["nodes"]:
                if node["id"] in scope and node["state"] != "fresh":
                    node["state"] = "running"
        self.write_json(payload)


class StageHandler(DataflowHandler):
    @tornado.web.authenticated
    async def get(self, flow: str, stage: str) -> None:
        self.check_name(flow, "flow")
        self.check_name(stage, "stage")
        info = await self.with_flow(flow, lambda f: f.stage_info(stage))
        run = self.runs.active(flow)
        if run is not None and info.get("state") != "fresh":
            payload = await self.with_flow(flow, graph_payload)
            if info.get("name", stage) in run_scope(payload, run.stage):
                info["state"] = "running"
        self.write_json(info)


class RecordsHandler(DataflowHandler):
    """Stream a stage's committed records as CSV, JSON Lines or Parquet.

    One Arrow batch is read and encoded at a time in the executor, written and
    flushed before the next is read, so memory stays bounded by a batch whatever
    the stage size, and a client that goes away stops the reading.
    """

    @tornado.web.authenticated
    async def get(self, flow_name: str, stage: str) -> None:
        self.check_name(flow_name, "flow")
        self.check_name(stage, "stage")
        fmt = self.get_query_argument("format", "csv")
        if fmt not in FORMATS:
            raise tornado.web.HTTPError(
                400, f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}"
            )
        limit = self._limit()
        partition = self.get_query_argument("partition", None)

        # One thread for the whole stream: reads and encodes happen in order, and
        # the allocator reuses one arena instead of growing one per pool thread.
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataflow-records")
        try:
            await self._serve(executor, flow_name, stage, fmt, limit, partition)
        finally:
            executor.shutdown(wait=False)

    async def _serve(
        self,
        executor: ThreadPoolExecutor,
        flow_name: str,
        stage: str,
        fmt: str,
        limit: int | None,
        partition: str | None,
    ) -> None:
        def on_thread(fn: Callable[[], T]) -> Awaitable[T]:
            return asyncio.get_running_loop().run_in_executor(executor, fn)

        flow = await self.open_flow(flow_name)
        batches: Iterator[pa.RecordBatch] | None = None
        try:
            info = await on_thread(lambda: self.engine_call(lambda f: f.stage_info(stage), flow))
            committed = info.get("partitions") or []
            if not committed:
                raise tornado.web.HTTPError(404, f"stage {stage!r} has no committed records yet")
            if partition is not None and partition not in [p.get("partition") for p in committed]:
                raise tornado.web.HTTPError(
                    404, f"stage {stage!r} has no committed partition {partition!r}"
                )
            schema = await on_thread(
                lambda: self.engine_call(lambda f: f.arrow_schema(stage), flow)
            )
            batches = opened = await on_thread(
                lambda: self.engine_call(
                    lambda f: iter(
                        f.record_batches(
                            stage, partition=partition, batch_size=self.dataflow.batch_size
                        )
                    ),
                    flow,
                )
            )
            await self._stream(RecordStream(fmt, schema, opened, limit), stage, fmt, on_thread)
        finally:
            if batches is not None:
                close = getattr(batches, "close", None)
                if close is not None:
                    await on_thread(close)
            await self.close_flow(flow)

    def _limit(self) -> int | None:
        raw = self.get_query_argument("limit", None)
        if raw is None or raw == "":
            return None
        try:
            limit = int(raw)
        except ValueError:
            limit = -1
        if limit < 0:
            raise tornado.web.HTTPError(400, f"limit must be a non-negative integer, got {raw!r}")
        return limit

    async def _stream(
        self,
        stream: RecordStream,
        stage: str,
        fmt: str,
        on_thread: Callable[[Callable[[], bytes | None]], Awaitable[bytes | None]],
    ) -> None:
        self.set_header("Content-Type", stream.content_type)
        self.set_header("Content-Disposition", f'inline; filename="{stage}.{fmt}"')
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        stats: Counter[str] = self.settings["dataflow_streams"]
        stats["started"] += 1
        try:
            # Write and flush each chunk before reading the next: the socket's pace
            # is the reading pace, so nothing piles up in memory.
            while (chunk := await on_thread(stream.next_chunk)) is not None:
                if chunk:
                    self.write(chunk)
                    await self.flush()
            await self.finish(set_content_type=stream.content_type)
            stats["completed"] += 1
        except StreamClosedError:
            stats["aborted"] += 1
            self.log.info(
                "dataflow records of %s: client went away after %d rows, stopped streaming",
                stage,
                stream.rows,
            )


class RunHandler(DataflowHandler):
    """Start `jupyter-dataflow run` for the flow (or one stage and its inputs)."""

    @tornado.web.authenticated
    async def post(self, flow: str) -> None:
        self.check_name(flow, "flow")
        body = self._body()
        stage = body.get("stage")
        if stage is not None:
            if not isinstance(stage, str):
                raise tornado.web.HTTPError(400, "stage must be a string")
            self.check_name(stage, "stage")
        flows = await self.blocking(self.list_flows)
        if flow not in flows:
            raise tornado.web.HTTPError(404, f"unknown flow {flow!r} in {self.home}")
        if stage is not None:
            # 404 for an unknown stage now, rather than a failed run later.
            await self.with_flow(flow, lambda f: f.stage_info(stage))
        busy = self.runs.active(flow)
        if busy is not None:
            self.set_status(409)
            self.finish(
                json.dumps(
                    {"message": f"flow {flow!r} is already running ({busy.id})", "run": busy.id}
                )
            )
            return
        argv = [*self.dataflow.cli, "run", "--home", str(self.home), "--flow", flow]
        if stage is not None:
            argv += ["--stage", stage]
        run = await self.runs.start(
            argv, flow=flow, stage=stage, command="run", cwd=self.settings["dataflow_root"]
        )
        self.set_header(
            "Location", url_path_join(self.base_url, API_PREFIX, "flows", flow, "runs", run.id)
        )
        self.write_json({"run": run.id}, status=202)

    def _body(self) -> dict[str, Any]:
        return self._parse_body(self.request.body)

    @staticmethod
    def _parse_body(raw: bytes) -> dict[str, Any]:
        if not raw or not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError as error:
            raise tornado.web.HTTPError(400, f"body is not JSON: {error}") from error
        if not isinstance(body, dict):
            raise tornado.web.HTTPError(400, "body must be a JSON object")
        return body


EXPORT_TARGETS = ("spark-pipelines", "bundle", "k8s")


class ExportHandler(DataflowHandler):
    """Start `jupyter-dataflow export HOME --flow F --to T -o DIR` (DIR under the root)."""

    @tornado.web.authenticated
    async def post(self, flow: str) -> None:
        self.check_name(flow, "flow")
        body = RunHandler._parse_body(self.request.body)
        target = body.get("to")
        if target not in EXPORT_TARGETS:
            raise tornado.web.HTTPError(
                400, f"'to' must be one of {', '.join(EXPORT_TARGETS)}, got {target!r}"
            )
        output = body.get("output")
        if not isinstance(output, str) or not output.strip():
            raise tornado.web.HTTPError(400, "'output' must be a directory below the server root")
        root = Path(self.settings["dataflow_root"]).resolve()
        where = (root / output).resolve()
        if where != root and root not in where.parents:
            raise tornado.web.HTTPError(400, f"output {output!r} is outside the server root")
        flows = await self.blocking(self.list_flows)
        if flow not in flows:
            raise tornado.web.HTTPError(404, f"unknown flow {flow!r} in {self.home}")
        argv = [*self.dataflow.cli, "export", str(self.home), "--flow", flow]
        argv += ["--to", target, "-o", str(where)]
        run = await self.runs.start(argv, flow=flow, stage=None, command="export", cwd=str(root))
        self.write_json({"run": run.id, "output": str(where)}, status=202)


class RunStatusHandler(DataflowHandler):
    @tornado.web.authenticated
    async def get(self, flow: str, run_id: str) -> None:
        self.check_name(flow, "flow")
        run = self.runs.get(run_id)
        if run is None or run.flow != flow:
            raise tornado.web.HTTPError(404, f"unknown run {run_id!r} of flow {flow!r}")
        self.write_json(run.to_json())


def handlers(base_url: str) -> list[tuple[str, type[DataflowHandler]]]:
    """The URL routes of the API below `base_url`."""

    def route(*parts: str) -> str:
        return url_path_join(base_url, API_PREFIX, *parts)

    return [
        (route("flows"), FlowsHandler),
        (route("flows", _NAME, "graph"), GraphHandler),
        (route("flows", _NAME, "stages", _NAME), StageHandler),
        (route("flows", _NAME, "stages", _NAME, "records"), RecordsHandler),
        (route("flows", _NAME, "run"), RunHandler),
        (route("flows", _NAME, "export"), ExportHandler),
        (route("flows", _NAME, "runs", _NAME), RunStatusHandler),
    ]
