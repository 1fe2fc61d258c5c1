"""One place that turns an engine setting into a SparkSession.

`local[*]`, `spark://…`, `k8s://…` become a classic session; `sc://…` a Spark Connect
session. Sessions are cached per (master, conf) so that a notebook, its tests and the
reconciler share one JVM.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from typing import Any

from jupyter_dataflow.core.errors import ConfigError

_LOCK = threading.Lock()
_SESSIONS: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}

DEFAULT_CONF: dict[str, str] = {
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.scheduler.mode": "FAIR",
    "spark.sql.parquet.compression.codec": "snappy",
    "spark.ui.enabled": "false",
}

_VALID_PREFIXES = ("local", "spark://", "sc://", "k8s://", "yarn")


def is_connect(master: str) -> bool:
    return master.startswith("sc://")


def check_engine(master: object) -> str:
    """Return `master` if it names an engine we can start, else raise `ConfigError`."""
    if not isinstance(master, str) or not master.startswith(_VALID_PREFIXES):
        raise ConfigError(
            f"unknown Spark engine {master!r}: use local[*], spark://host:port, "
            "sc://host:port or k8s://https://host"
        )
    return master


def get_session(master: str = "local[*]", conf: Mapping[str, str] | None = None) -> Any:
    """Return a (cached) SparkSession for `master`, creating it on first use."""
    check_engine(master)
    settings = {**DEFAULT_CONF, **dict(conf or {})}
    key = (master, tuple(sorted(settings.items())))
    with _LOCK:
        cached = _SESSIONS.get(key)
        if cached is not None and _alive(cached):
            return cached
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        from pyspark.sql import SparkSession

        builder = SparkSession.builder
        if is_connect(master):
            builder = builder.remote(master)
            settings = {k: v for k, v in settings.items() if not _static_only(k)}
        else:
            builder = builder.master(master).appName("jupyter-dataflow")
        for k, v in settings.items():
            builder = builder.config(k, v)
        try:
            session = builder.getOrCreate()
        except Exception as err:  # the JVM or the remote server refused
            raise ConfigError(f"cannot start Spark on {master!r}: {err}") from err
        if not is_connect(master):
            session.sparkContext.setLogLevel("ERROR")
        _SESSIONS[key] = session
        return session


def _static_only(key: str) -> bool:
    return key.startswith(("spark.ui.", "spark.scheduler.", "spark.driver.", "spark.executor."))


def _alive(session: Any) -> bool:
    try:
        if hasattr(session, "sparkContext") and not is_connect_session(session):
            return session.sparkContext._jsc is not None
        return True
    except Exception:
        return False


def is_connect_session(session: Any) -> bool:
    return type(session).__module__.startswith("pyspark.sql.connect")
