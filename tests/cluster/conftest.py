"""Real Spark services for cluster tests: a standalone master and worker, a Connect server.

Each service is a JVM started from the pip package's own scripts (SPARK_HOME is the
pyspark package folder), on free ports, in its own process group, with its logs under
the pytest temporary directory. Teardown stops exactly the processes started here, by
process-group id. When a test in this folder fails, the tail of every service log is
attached to its report.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

STARTUP_TIMEOUT = 120.0
_LOGS: list[Path] = []


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def service_env(work: Path) -> dict[str, str]:
    """Environment for Spark JVMs and the drivers that talk to them."""
    env = dict(os.environ)
    env.update({
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(work / "logs"),
        "SPARK_WORKER_DIR": str(work / "worker"),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_CONF_DIR": str(work / "conf"),
    })
    (work / "conf").mkdir(parents=True, exist_ok=True)
    return env


@dataclass
class Service:
    """One started JVM: its process, its log and what it took to come up."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)
    ready_after: float = 0.0

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        pgid = self.process.pid  # started with start_new_session: group id == pid
        try:
            os.killpg(pgid, signal.SIGTERM)
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass


def start(name: str, argv: list[str], work: Path, env: dict[str, str]) -> Service:
    log = work / f"{name}.log"
    _LOGS.append(log)
    out = log.open("wb")
    proc = subprocess.Popen(argv, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    out.close()
    return Service(name, proc, log)


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as err:
        return f"(no log: {err})"


def wait_until(service: Service, ready: Any, what: str, timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.alive():
            raise RuntimeError(f"{service.name} exited with status {service.process.returncode} before {what}:\n"
                               f"{tail(service.log)}")
        if ready():
            service.ready_after = time.monotonic() - service.started
            return
        time.sleep(0.5)
    service.stop()
    raise RuntimeError(f"{service.name}: no {what} after {timeout:.0f}s:\n{tail(service.log)}")


def _alive_workers(webui_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{webui_port}/json/", timeout=2) as resp:
            state = json.load(resp)
    except (OSError, ValueError):
        return 0
    return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")


@dataclass(frozen=True)
class Standalone:
    """A running standalone cluster: its master URL and how to reach it from a driver."""

    url: str
    env: dict[str, str]
    work: Path
    startup_seconds: float

    def conf(self) -> dict[str, str]:
        """Spark settings a driver on this machine needs for this small cluster."""
        return {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
                "spark.driver.memory": "512m", "spark.executor.memory": "512m",
                "spark.cores.max": "1", "spark.sql.shuffle.partitions": "2"}


@dataclass(frozen=True)
class Connect:
    """A running Spark Connect server."""

    url: str
    env: dict[str, str]
    work: Path
    startup_seconds: float


@pytest.fixture(scope="session")
def standalone_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    """A real standalone master with one worker (1 core, 1 GB), for the whole session."""
    work = tmp_path_factory.mktemp("standalone")
    env = service_env(work)
    spark_class = str(spark_home() / "bin" / "spark-class")
    port, webui = free_port(), free_port()
    began = time.monotonic()
    master = start("master", [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                              "--port", str(port), "--webui-port", str(webui)], work, env)
    services = [master]
    try:
        wait_until(master, lambda: port_open(port) and port_open(webui), "master port")
        url = f"spark://127.0.0.1:{port}"
        worker = start("worker", [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                                  "--cores", "1", "--memory", "1g", "--webui-port", str(free_port()),
                                  "--work-dir", str(work / "worker"), url], work, env)
        services.append(worker)
        wait_until(worker, lambda: _alive_workers(webui) >= 1, "registered worker")
        yield Standalone(url, env, work, time.monotonic() - began)
    finally:
        for s in reversed(services):
            s.stop()


@pytest.fixture(scope="session")
def connect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Connect]:
    """A real Spark Connect server (local[2] behind it), for the whole session."""
    work = tmp_path_factory.mktemp("connect")
    env = service_env(work)
    port = free_port()
    began = time.monotonic()
    server = start("connect", [str(spark_home() / "bin" / "spark-submit"),
                               "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
                               "--conf", f"spark.connect.grpc.binding.port={port}",
                               "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
                               "--conf", "spark.driver.memory=1g",
                               "--conf", "spark.ui.enabled=false",
                               "--conf", "spark.sql.session.timeZone=UTC",
                               "--master", "local[2]", "spark-internal"], work, env)
    try:
        wait_until(server, lambda: port_open(port), "Connect port")
        yield Connect(f"sc://127.0.0.1:{port}", env, work, time.monotonic() - began)
    finally:
        server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and _LOGS:
        for log in _LOGS:
            report.sections.append((f"{log.stem} log (tail)", tail(log)))
