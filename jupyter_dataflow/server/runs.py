"""Runs started from the REST API: one CLI subprocess per run, tracked in memory.

The server never computes anything itself: a run is `jupyter-dataflow run ...` in
its own process (Spark and all), so a long reconcile cannot stall the server and a
crash cannot take it down. This module only starts, watches and reports them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import uuid
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Run:
    """One subprocess run and what it printed (the tail of it)."""

    id: str
    flow: str
    stage: str | None
    command: str
    argv: list[str]
    started: str = field(default_factory=_now)
    finished: str | None = None
    exit_code: int | None = None
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)
    _tail: deque[bytes] = field(default_factory=deque, repr=False)
    _tail_bytes: int = 0
    _limit: int = 65536
    _done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def state(self) -> str:
        if self.exit_code is None:
            return "running"
        return "succeeded" if self.exit_code == 0 else "failed"

    @property
    def output(self) -> str:
        return b"".join(self._tail).decode("utf-8", errors="replace")

    def _append(self, chunk: bytes) -> None:
        self._tail.append(chunk)
        self._tail_bytes += len(chunk)
        while self._tail_bytes > self._limit and len(self._tail) > 1:
            self._tail_bytes -= len(self._tail.popleft())
        if self._tail_bytes > self._limit:  # one huge chunk: keep its end
            only = self._tail.pop()[-self._limit :]
            self._tail.append(only)
            self._tail_bytes = len(only)

    async def wait(self) -> int:
        """Wait for the process to end; its exit code."""
        await self._done.wait()
        assert self.exit_code is not None
        return self.exit_code

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.id,
            "flow": self.flow,
            "stage": self.stage,
            "command": self.command,
            "state": self.state,
            "exit_code": self.exit_code,
            "started": self.started,
            "finished": self.finished,
            "output": self.output,
        }


class RunManager:
    """Start CLI runs as subprocesses and remember the latest `max_runs` of them."""

    def __init__(self, *, output_tail: int = 65536, max_runs: int = 100) -> None:
        self.output_tail = output_tail
        self.max_runs = max_runs
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    def get(self, run_id: str) -> Run | None:
        return self._runs.get(run_id)

    def active(self, flow: str, command: str = "run") -> Run | None:
        """The running `command` (a run, by default) of `flow`, if any."""
        for run in self._runs.values():
            if run.flow == flow and run.command == command and run.state == "running":
                return run
        return None

    async def start(
        self,
        argv: Sequence[str],
        *,
        flow: str,
        stage: str | None,
        command: str,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Run:
        """Start `argv` in a new session; returns once the process exists."""
        run = Run(
            id=uuid.uuid4().hex[:12],
            flow=flow,
            stage=stage,
            command=command,
            argv=list(argv),
            _limit=self.output_tail,
        )
        full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        try:
            run.process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=cwd,
                env=full_env,
                start_new_session=True,
            )
        except OSError as error:
            run._append(f"cannot start {argv[0]}: {error}\n".encode())
            run.exit_code = 127
            run.finished = _now()
            run._done.set()
        else:
            task = asyncio.get_running_loop().create_task(self._watch(run))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._remember(run)
        return run

    async def _watch(self, run: Run) -> None:
        process = run.process
        assert process is not None and process.stdout is not None
        try:
            while chunk := await process.stdout.read(8192):
                run._append(chunk)
            run.exit_code = await process.wait()
        except asyncio.CancelledError:
            run.exit_code = process.returncode if process.returncode is not None else -1
            raise
        finally:
            if run.exit_code is None:
                run.exit_code = -1
            run.finished = _now()
            run._done.set()
            log.info("dataflow %s %s ended with %s", run.command, run.id, run.exit_code)

    def _remember(self, run: Run) -> None:
        self._runs[run.id] = run
        finished = [r.id for r in self._runs.values() if r.state != "running"]
        while len(self._runs) > self.max_runs and finished:
            del self._runs[finished.pop(0)]

    def terminate_all(self) -> None:
        """Stop every running process group (server shutdown)."""
        for run in self._runs.values():
            process = run.process
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGTERM)
