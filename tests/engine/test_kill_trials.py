"""SIGKILL trials: a `jupyter-dataflow run` killed anywhere loses nothing and shows no half-write.

The Spark trials are a few rounds of `bench/stress_kill.py` (which runs 50): one kill
after a random delay and one at each fault point (`staged`, `published`, `commit`),
each followed by the checks the bench makes (integrity, old-or-new outputs, a correct
next run, staging cleaned). The fast tests pin the pieces that make this hold: a dead
process's lease is taken over at once, and abandoned staging directories are swept
only while no reconciler can be writing.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import jupyter_dataflow as jd
from bench.stress_kill import Bench, connect_server
from jupyter_dataflow.reconciler.leases import Leases, holder_gone
from jupyter_dataflow.store.metadata import Metadata

HOLDER = """
import sys, time
from pathlib import Path
from jupyter_dataflow.reconciler.leases import Leases
from jupyter_dataflow.store.metadata import Metadata
leases = Leases(Metadata(Path(sys.argv[1])))
with leases.hold(sys.argv[2]):
    print(leases.owner, flush=True)
    time.sleep(600)
"""


def _holder(db: Path, name: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(db), name], text=True, stdout=subprocess.PIPE,
                            start_new_session=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def test_a_killed_holders_lease_is_taken_over_at_once(tmp_path: Path) -> None:
    db = tmp_path / "metadata.db"
    proc, owner = _holder(db, "flow:default")
    try:
        assert not holder_gone(owner)
        with pytest.raises(jd.DataflowError, match="held by"), Leases(Metadata(db)).hold("flow:default", wait=1):
            pass
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert holder_gone(owner)
    meta = Metadata(db)
    assert meta.live_leases()["flow:default"] == owner   # not expired: its lifetime is a minute
    with Leases(meta).hold("flow:default", wait=1) as waited:
        assert not waited, "a dead holder on this machine must not make anyone wait"


def test_a_holder_on_another_machine_is_never_judged_dead() -> None:
    assert not holder_gone("elsewhere/1:1:abcd")
    assert not holder_gone(f"nonsense:{os.getpid()}:x")


def _abandoned(home: Path, age: float) -> Path:
    staged = home / "store" / "staging" / "clean-0123"
    (staged / "_temporary" / "0").mkdir(parents=True)
    part = staged / "_temporary" / "0" / "part-0.parquet"
    part.write_bytes(b"half")
    old = time.time() - age
    for p in (part, part.parent, part.parent.parent, staged):
        os.utime(p, (old, old))
    return staged


def test_run_and_gc_sweep_abandoned_staging_but_never_under_a_live_writer(tmp_path: Path) -> None:
    home = tmp_path / ".dataflow"
    flow = jd.Flow.open(home=home)
    flow.meta.ensure_flow("other")
    staged = _abandoned(home, age=3600)
    proc, _owner = _holder(home / "metadata.db", "flow:other")   # another process is reconciling
    try:
        flow._sweep_staging()
        assert staged.exists(), "a live reconciler may be writing it"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    fresh = (staged.parent / "clean-4567")
    fresh.mkdir()
    flow._sweep_staging()                                          # the holder is gone: sweep
    assert not staged.exists()
    assert fresh.exists(), "touched seconds ago: a remote engine may still be writing it"
    report = flow.gc(grace=0)
    assert report.staging == [str(fresh)] and not fresh.exists()
    flow.close()


# SIGKILL trials on Spark --------------------------------------------------------------------
@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    work = tmp_path_factory.mktemp("kill-trials")
    with connect_server(work / "engine") as url:
        b = Bench(work / "flow", url, random.Random(7))
        b.work.mkdir()
        b.setup()
        yield b


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.parametrize("point", ["timer", "staged", "published", "commit"])
def test_sigkill_trial(bench: Bench, point: str) -> None:
    trial = bench.trial(len(bench.run_times) + 1, point)
    assert trial.failures == [], "\n".join(trial.failures)
    if point != "timer":
        assert trial.killed, f"the run ended before reaching {point} ({trial.target})"
