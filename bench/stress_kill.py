"""Crash safety under SIGKILL: kill `jupyter-dataflow run` anywhere, then check the home.

Each trial changes the source of a small flow (a new partition, a late file in an old
partition, or a rewritten file), starts `jupyter-dataflow run` on it and SIGKILLs the
process at a random point: after a random delay (usually in the middle of Spark
writes), or exactly at a named fault point (`staged`: output written to staging, not
yet moved; `published`: moved into the store, not yet recorded; `commit`: inside the
metadata transaction) of a random stage and task. After each kill it checks:

  a. `PRAGMA integrity_check` of the metadata database is `ok`;
  b. every stage's committed output equals exactly its complete old or its complete new
     version, both computed independently with pandas (the output is read from the
     store's Parquet with pyarrow, without Spark);
  c. the next run succeeds, leaves nothing to do, and its outputs equal the pandas
     computation over the new source (what a from-scratch run yields);
  d. staging directories left by the killed process are removed by the next run or by
     `jupyter-dataflow gc`.

All runs share one Spark JVM: a Spark Connect server the script starts (or `--spark
URL` of a running one), so a trial costs seconds, not a JVM start.

    python bench/stress_kill.py [--trials 50] [--seed 1] [--spark sc://host:port]

Prints kills per point, failures and the median time per trial; exits 1 if any check
failed.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

POINTS = ("timer", "staged", "published", "commit")
STAGES = ("events", "clean", "by_k", "summary")
CLEAN_SQL = "SELECT day, id, k, v * 2 AS v2 FROM events WHERE v % 5 <> 0"
BY_K_SQL = "SELECT k, count(*) AS n, sum(v2) AS total FROM clean GROUP BY k"
SUMMARY_SQL = "SELECT count(*) AS keys, sum(n) AS n, max(total) AS top FROM by_k"
CONF = ("spark.sql.shuffle.partitions=2",)


# engine -----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def connect_server(work: Path, timeout: float = 180.0) -> Iterator[str]:
    """A Spark Connect server (local[2]) in its own process group; yields its URL."""
    import pyspark

    spark_home = Path(pyspark.__file__).resolve().parent
    work.mkdir(parents=True, exist_ok=True)
    (work / "conf").mkdir(exist_ok=True)
    env = {**os.environ, "SPARK_HOME": str(spark_home), "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_CONF_DIR": str(work / "conf"), "PYSPARK_PYTHON": sys.executable}
    port = _free_port()
    log = (work / "connect.log").open("wb")
    proc = subprocess.Popen([str(spark_home / "bin" / "spark-submit"),
                             "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
                             "--conf", f"spark.connect.grpc.binding.port={port}",
                             "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
                             "--conf", "spark.driver.memory=1g", "--conf", "spark.ui.enabled=false",
                             "--conf", "spark.sql.session.timeZone=UTC",
                             "--master", "local[2]", "spark-internal"],
                            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    try:
        deadline = time.monotonic() + timeout
        while not _port_open(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Spark Connect server did not come up; see {work / 'connect.log'}")
            time.sleep(0.5)
        yield f"sc://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


# the source and what each stage must hold --------------------------------------------
class Source:
    """A day-partitioned CSV folder that changes a little before every trial."""

    def __init__(self, root: Path, rng: random.Random) -> None:
        self.root = root
        self.rng = rng
        self.next_id = 0
        self.days = 0

    def _rows(self) -> str:
        n = self.rng.randrange(20, 60)
        lines = []
        for _ in range(n):
            lines.append(f"{self.next_id},{self.rng.randrange(6)},{self.rng.randrange(-50, 200)}\n")
            self.next_id += 1
        return "id,k,v\n" + "".join(lines)

    def _write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("." + path.name + ".tmp")   # hidden while written: never listed half-done
        tmp.write_text(self._rows())
        os.replace(tmp, path)

    def add_day(self) -> str:
        self.days += 1
        path = self.root / f"day=2024-01-{self.days:02d}" / "part-0.csv"
        self._write(path)
        return f"new-partition {path.parent.name}"

    def late_file(self) -> str:
        day = self.rng.choice(sorted(self.root.glob("day=*")))
        path = day / f"part-{len(list(day.glob('*.csv')))}.csv"
        self._write(path)
        return f"late-file {day.name}/{path.name}"

    def rewrite(self) -> str:
        path = self.rng.choice(sorted(self.root.glob("day=*/*.csv")))
        self._write(path)
        return f"rewrote {path.parent.name}/{path.name}"

    def change(self) -> str:
        return self.rng.choice([self.add_day, self.late_file, self.rewrite])()


def expected(root: Path) -> dict[str, pd.DataFrame]:
    """Every stage's output over the files in `root`, computed with pandas alone."""
    frames = []
    for day in sorted(root.glob("day=*")):
        for f in sorted(day.glob("*.csv")):
            df = pd.read_csv(f)
            df["day"] = day.name.split("=", 1)[1]
            frames.append(df)
    events = pd.concat(frames, ignore_index=True)
    clean = events[events.v % 5 != 0].assign(v2=lambda d: d.v * 2)[["day", "id", "k", "v2"]]
    by_k = clean.groupby("k").agg(n=("id", "size"), total=("v2", "sum")).reset_index()
    summary = pd.DataFrame({"keys": [len(by_k)], "n": [by_k.n.sum()], "top": [by_k.total.max()]})
    return {"events": events, "clean": clean, "by_k": by_k, "summary": summary}


def canonical(df: pd.DataFrame) -> list[tuple[str, ...]]:
    """Rows as sorted tuples of text, columns in name order: equal iff same rows."""
    cols = sorted(df.columns)
    rows = sorted(tuple(str(v) for v in row) for row in df[cols].itertuples(index=False, name=None))
    return [tuple(cols), *rows]


def committed(home: Path) -> dict[str, pd.DataFrame | None]:
    """Every stage's committed output, read from the store's Parquet without Spark."""
    import pyarrow as pa

    import jupyter_dataflow as jd

    flow = jd.Flow.open(home=home)
    try:
        out: dict[str, pd.DataFrame | None] = {}
        for stage in STAGES:
            if not flow.meta.current(flow.name, stage, "output"):
                out[stage] = None
                continue
            batches = list(flow.record_batches(stage))
            out[stage] = pa.Table.from_batches(batches).to_pandas() if batches else pd.DataFrame()
        return out
    finally:
        flow.close()


# one home, its runs and its checks --------------------------------------------------
def cli() -> list[str]:
    script = Path(sys.executable).with_name("jupyter-dataflow")
    return [str(script)] if script.exists() else [sys.executable, "-m", "jupyter_dataflow.cli"]


@dataclass
class Trial:
    number: int
    change: str
    point: str
    target: str = ""
    killed: bool = False
    seconds: float = 0.0
    staging_left: int = 0
    staging_after_run: int = 0
    committed: str = ""   # per stage after the kill: N (new version) or o (old), in STAGES order
    failures: list[str] = field(default_factory=list)


class Bench:
    """A scratch folder with a source, a home holding the flow, and the engine URL."""

    def __init__(self, work: Path, spark: str, rng: random.Random) -> None:
        self.work = work
        self.spark = spark
        self.rng = rng
        self.home = work / ".dataflow"
        self.source = Source(work / "data" / "events", rng)
        self.baseline = 10.0
        self.run_times: list[float] = []

    def setup(self) -> None:
        """Three days of data, the flow registered, and a first complete run."""
        import jupyter_dataflow as jd

        for _ in range(3):
            self.source.add_day()
        flow = jd.Flow.open(home=self.home)
        flow.source("events", path="data/events", format="csv", partition_by="day",
                    options={"header": "true", "inferSchema": "true"})
        flow.transform("clean", CLEAN_SQL)
        flow.transform("by_k", BY_K_SQL)
        flow.transform("summary", SUMMARY_SQL)
        modes = {s: flow.stage_info(s)["mode"] for s in STAGES[1:]}
        flow.close()
        assert modes == {"clean": "map", "by_k": "partial", "summary": "reduce"}, modes
        began = time.monotonic()
        done = self.run()
        self.baseline = time.monotonic() - began
        if done.returncode != 0:
            raise RuntimeError(f"the first run failed:\n{done.stdout}")
        missing = self.compare(expected(self.source.root))
        if missing:
            raise RuntimeError(f"the first run is wrong: {missing}")

    def command(self) -> list[str]:
        argv = [*cli(), "run", "--home", str(self.home), "--spark", self.spark, "--quiet"]
        for c in CONF:
            argv += ["--conf", c]
        return argv

    def start(self, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(self.command(), cwd=self.work, env={**os.environ, **(env or {})}, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)

    def run(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(), cwd=self.work, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=600)

    def gc(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli(), "gc", "--home", str(self.home), "--grace", "0"], cwd=self.work, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)

    def planned(self) -> Counter[tuple[str, str]]:
        """(stage, fault point) -> how often the next run reaches that point."""
        import jupyter_dataflow as jd

        flow = jd.Flow.open(home=self.home)
        try:
            tasks = flow.plan().tasks
        finally:
            flow.close()
        hits: Counter[tuple[str, str]] = Counter()
        for t in tasks:
            hits[(t.stage, "staged")] += 1
            hits[(t.stage, "published")] += 1
        for stage in {t.stage for t in tasks}:
            roles = {t.role for t in tasks if t.stage == stage}
            hits[(stage, "commit")] = 2 if len(roles) > 1 else 1   # a partial stage commits its partials first
        return hits

    def integrity(self) -> str:
        db = sqlite3.connect(self.home / "metadata.db")
        try:
            return str(db.execute("PRAGMA integrity_check").fetchone()[0])
        finally:
            db.close()

    def compare(self, want: dict[str, pd.DataFrame], old: dict[str, pd.DataFrame] | None = None,
                seen: dict[str, str] | None = None) -> list[str]:
        """Stages whose committed output is neither `want` nor (if given) `old`.

        `seen` receives, per stage, which version it holds: "new" or "old".
        """
        got = committed(self.home)
        wrong = []
        for stage in STAGES:
            have = got[stage]
            if have is None:
                wrong.append(f"{stage}: no committed output")
                continue
            rows = canonical(have)
            if rows == canonical(want[stage]):
                if seen is not None:
                    seen[stage] = "new"
            elif old is not None and rows == canonical(old[stage]):
                if seen is not None:
                    seen[stage] = "old"
            else:
                wrong.append(f"{stage}: {len(have)} committed rows match neither the old "
                             f"({len(old[stage]) if old else '-'}) nor the new ({len(want[stage])}) version")
        return wrong

    def staging(self) -> list[Path]:
        folder = self.home / "store" / "staging"
        return sorted(folder.iterdir()) if folder.exists() else []

    def trial(self, number: int, point: str) -> Trial:
        began = time.monotonic()
        old = expected(self.source.root)
        change = self.source.change()
        new = expected(self.source.root)
        t = Trial(number, change, point)
        marker_dir = self.work / "faults"
        shutil.rmtree(marker_dir, ignore_errors=True)
        marker_dir.mkdir()
        env: dict[str, str] = {}
        if point != "timer":
            reachable = [(s, n) for (s, p), n in sorted(self.planned().items()) if p == point and n]
            if not reachable:
                t.point = point = "timer"
            else:
                stage, hits = self.rng.choice(reachable)
                skip = self.rng.randrange(hits)
                t.target = f"{stage}#{skip + 1}"
                env = {"JUPYTER_DATAFLOW_FAULT": f"{point}:{stage}", "JUPYTER_DATAFLOW_FAULT_SKIP": str(skip),
                       "JUPYTER_DATAFLOW_FAULT_ACTION": "kill", "JUPYTER_DATAFLOW_FAULT_DIR": str(marker_dir)}
        proc = self.start(env)
        if point == "timer":
            # A warm run's length (not the first run's, which includes warm-up): most
            # kills land while Spark writes, a few before it starts or after it ends.
            typical = statistics.median(self.run_times) if self.run_times else self.baseline
            delay = self.rng.uniform(0.3, 1.1 * typical)
            t.target = f"{delay:.1f}s"
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate(timeout=600)
        t.killed = proc.returncode == -signal.SIGKILL
        if not t.killed and proc.returncode != 0:
            t.failures.append(f"the run to be killed failed on its own (status {proc.returncode}):\n{output}")
        t.staging_left = len(self.staging())

        integrity = self.integrity()                                                   # (a)
        if integrity != "ok":
            t.failures.append(f"integrity_check: {integrity}")
        seen: dict[str, str] = {}
        t.failures += [f"after the kill, {w}" for w in self.compare(new, old, seen)]    # (b)
        t.committed = "".join("N" if seen.get(s) == "new" else "o" for s in STAGES)

        ran = time.monotonic()
        done = self.run()                                                              # (c)
        self.run_times.append(time.monotonic() - ran)
        if done.returncode != 0:
            t.failures.append(f"the next run failed (status {done.returncode}):\n{done.stdout}")
        t.failures += [f"after the next run, {w}" for w in self.compare(new)]
        import jupyter_dataflow as jd

        flow = jd.Flow.open(home=self.home)
        leftover = flow.plan().tasks
        flow.close()
        if leftover:
            t.failures.append(f"after the next run, still to do: {leftover}")

        t.staging_after_run = len(self.staging())                                      # (d)
        swept = self.gc()
        if swept.returncode != 0:
            t.failures.append(f"gc failed:\n{swept.stdout}")
        if self.staging():
            t.failures.append(f"staging not cleaned by the next run nor gc: {[p.name for p in self.staging()]}")
        t.seconds = time.monotonic() - began
        return t


def report(trials: list[Trial], startup: float, baseline: float) -> str:
    lines = [f"{'kill point':12} {'trials':>6} {'killed':>6} {'ran out':>7} {'failed':>6}"]
    for point in POINTS:
        these = [t for t in trials if t.point == point]
        lines.append(f"{point:12} {len(these):6d} {sum(t.killed for t in these):6d} "
                     f"{sum(not t.killed for t in these):7d} {sum(bool(t.failures) for t in these):6d}")
    lines.append(f"{'total':12} {len(trials):6d} {sum(t.killed for t in trials):6d} "
                 f"{sum(not t.killed for t in trials):7d} {sum(bool(t.failures) for t in trials):6d}")
    changes = Counter(t.change.split(" ", 1)[0] for t in trials)
    left = [t for t in trials if t.staging_left]
    states = Counter(t.committed for t in trials if t.killed)
    lines += [
        "",
        f"source changes: {', '.join(f'{k} x{v}' for k, v in sorted(changes.items()))}",
        f"versions visible after a kill ({'/'.join(STAGES)}; N new, o old): "
        + ", ".join(f"{k} x{v}" for k, v in sorted(states.items())),
        f"staging left by a kill: {len(left)} trials; cleaned by the next run itself: "
        f"{sum(1 for t in left if t.staging_after_run == 0)}, by gc: {sum(1 for t in left if t.staging_after_run)}",
        f"engine start {startup:.1f}s, first full run {baseline:.1f}s, "
        f"median per trial {statistics.median(t.seconds for t in trials):.1f}s "
        f"(kill, 4 checks, next run, gc)" if trials else "no trials",
        f"checks failed: {sum(len(t.failures) for t in trials)}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--spark", default=None, help="a running engine (sc://host:port); default: start a Connect server")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="stress-kill-"))
    trials: list[Trial] = []
    try:
        began = time.monotonic()
        with contextlib_or_server(args.spark, work / "engine") as url:
            startup = time.monotonic() - began
            bench = Bench(work / "flow", url, rng)
            bench.work.mkdir()
            bench.setup()
            print(f"engine {url} up in {startup:.1f}s; first run {bench.baseline:.1f}s; scratch {work}", flush=True)
            for i in range(args.trials):
                point = POINTS[i % len(POINTS)] if i < len(POINTS) else rng.choice(POINTS)
                t = bench.trial(i + 1, point)
                trials.append(t)
                state = "killed" if t.killed else "ran out"
                print(f"trial {t.number:3d}  {t.point:9} {t.target:14} {state:8} {t.committed:5} "
                      f"{t.seconds:5.1f}s  {t.change}"
                      + ("" if not t.failures else "\n    FAILED: " + "\n    FAILED: ".join(t.failures)),
                      flush=True)
        print()
        print(report(trials, startup, bench.baseline))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if any(t.failures for t in trials) else 0


@contextmanager
def contextlib_or_server(url: str | None, work: Path) -> Iterator[str]:
    if url:
        yield url
    else:
        with connect_server(work) as started:
            yield started


if __name__ == "__main__":
    sys.exit(main())
