"""Planning cost on a large home: 1,000 stages x 1,000 committed partitions.

Builds a synthetic home through the store layer (no Spark): 10 sources with 1,000
Hive partitions each, and 990 map transforms in 10 chains of 99, every stage with
1,000 committed partitions (1,000,000 partition records). Then times `plan()` when
nothing changed and when one source partition changed, each run right after a
listing of the sources so that what planning costs beyond the listing is measured
pair by pair, and reports peak memory.

    python bench/noop_plan.py [--sources 10] [--chain 99] [--partitions 1000] [--repeat 11]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import resource
import shutil
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import jupyter_dataflow as jd
from jupyter_dataflow.core import fingerprint as fpmod
from jupyter_dataflow.plan.planner import OUTPUT, plan_source, source_version
from jupyter_dataflow.store import listing as listmod
from jupyter_dataflow.store.metadata import ObjectRecord, StageState

SCHEMA = json.dumps({"type": "struct", "fields": [{"name": "x", "type": "long", "nullable": True, "metadata": {}}]})


class _Empty:
    def current(self, stage):
        return {}

    def committed_inputs(self, stage):
        return {}

    def object_parts(self, fps):
        return {}

    def has_objects(self, fps):
        return set()

    def state(self, stage):
        return None

    def partitions(self, stage, role, pids):
        return set()


def _h(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def build(root: Path, sources: int, chain: int, partitions: int) -> jd.Flow:
    for s in range(sources):
        for p in range(partitions):
            d = root / f"src{s}" / f"day={p:05d}"
            d.mkdir(parents=True)
            (d / "part-0.csv").write_text(f"x\n{p}\n")
    flow = jd.Flow.open(home=root / ".dataflow")
    for s in range(sources):
        flow.source(f"src{s}", path=f"src{s}", format="csv", partition_by="day", options={"header": "true"})
        prev = f"src{s}"
        for j in range(chain):
            name = f"t{s}_{j}"
            flow.transform(name, f"SELECT * FROM {prev} WHERE x > {j}")
            prev = name
    meta = flow.meta
    now = time.time()
    graph = flow._resolved()
    out_version: dict[str, str] = {}
    objects: list[ObjectRecord] = []
    current: list[tuple] = []
    states: list[StageState] = []
    for name in graph.order():
        st = graph[name]
        versions: dict[str, str] = {}
        if st.kind == "source":
            meta.put_source_schema(flow.name, name, st.definition_hash(), SCHEMA, "int")
            listing = listmod.partitions(st.path, st.partition_by, name, meta)
            sp = plan_source(st, listing, (SCHEMA, "int"), _Empty())
            for t in sp.tasks:
                versions[t.partition] = _h("dv", t.fingerprint or "")
                objects.append(ObjectRecord(t.fingerprint or "", "", 1, 100, versions[t.partition], SCHEMA, dict(t.parts),
                                            [[i.stage, i.partition, i.version] for i in t.inputs], "", name,
                                            t.partition, now, now))
            inputs_version, detail = source_version(listing), {}
        else:
            up = st.inputs[0]
            for p in range(partitions):
                pid = f"day={p:05d}"
                fp = _h(name, pid)
                versions[pid] = _h("dv", fp)
                objects.append(ObjectRecord(fp, "", 1, 100, versions[pid], SCHEMA, {}, [], "", name, pid, now, now))
            inputs_version = fpmod.combine([(up, out_version[up])])
            detail = {"inputs": {up: out_version[up]}, "mode": "map", "key": "day"}
        out_version[name] = fpmod.combine(versions.items())
        current += [(flow.name, name, OUTPUT, pid, o.fingerprint, o.data_version, now, "new")
                    for pid, o in zip(versions, objects[-len(versions):], strict=False)]
        states.append(StageState(name, "fresh", None, st.definition_hash(), inputs_version, out_version[name],
                                 detail, now))
    with meta.transaction() as db:
        db.executemany("INSERT OR IGNORE INTO objects VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       [(o.fingerprint, o.path, o.rows, o.bytes, o.data_version, o.schema, json.dumps(o.parts),
                         json.dumps(o.inputs), o.code, o.stage, o.partition, o.started_at, o.finished_at)
                        for o in objects])
        db.executemany("INSERT INTO current VALUES (?, ?, ?, ?, ?, ?, ?, ?)", current)
        # What a commit records for a source partition besides its object.
        db.executemany("INSERT OR IGNORE INTO inputs_parts VALUES (?, ?)",
                       [(o.fingerprint, o.parts["inputs"]) for o in objects if "inputs" in o.parts])
    for s in states:
        meta.put_state(flow.name, s)
    return flow


def paired(fn, listing, repeat: int) -> tuple[float, float, float, object]:
    """Medians of `listing()`, of `fn()` and of their paired differences, and fn's result.

    Each `fn()` is timed right after a `listing()`, and "beyond the listing" is the
    median of those per-pair differences: a difference of tens of milliseconds between
    two ~300 ms figures is otherwise lost to whatever else the machine did between
    two separate batches. Every call starts from a collected heap, so it pays for the
    collections its own allocations cause and not for a full collection (~30 ms here)
    that the garbage of earlier calls happens to trigger during it.
    """
    listed, took, result = [], [], None
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        listing()
        listed.append(time.perf_counter() - t)
        gc.collect()
        t = time.perf_counter()
        result = fn()
        took.append(time.perf_counter() - t)
    beyond = statistics.median(b - a for a, b in zip(listed, took, strict=True))
    return statistics.median(listed), statistics.median(took), beyond, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", type=int, default=10)
    ap.add_argument("--chain", type=int, default=99)
    ap.add_argument("--partitions", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=11)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="noop-plan-"))
    try:
        t0 = time.perf_counter()
        build(root, args.sources, args.chain, args.partitions)
        stages = args.sources * (args.chain + 1)
        print(f"built {stages} stages x {args.partitions} partitions "
              f"({stages * args.partitions:,} partition records) in {time.perf_counter() - t0:.1f}s")
        flow = jd.Flow.open(home=root / ".dataflow")   # a fresh process view, as after a restart
        rec = flow._reconciler()
        names = flow.graph.order()
        def listing() -> object:
            return rec.listings(names)

        listing_s, noop_s, noop_beyond, plan = paired(flow.plan, listing, args.repeat)
        tracemalloc.start()  # memory in a separate pass: tracing slows Python several-fold
        flow.plan()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert not plan.tasks, f"expected a no-op plan, got {len(plan.tasks)} tasks"
        target = root / "src3" / f"day={args.partitions // 2:05d}" / "part-0.csv"
        target.write_text(target.read_text() + "999\n")
        _, changed_s, changed_beyond, plan = paired(flow.plan, listing, args.repeat)
        tasks = plan.tasks
        src_tasks = [t for t in tasks if t.stage == "src3"]
        assert len(src_tasks) == 1 and src_tasks[0].reason == "late_data", tasks[:3]
        assert len(tasks) == 1 + args.chain, len(tasks)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{'measure':44} {'median':>10}")
        print(f"{'source listing (' + str(args.sources * args.partitions) + ' files)':44} {listing_s * 1000:9.0f}ms")
        print(f"{'plan(), nothing changed':44} {noop_s * 1000:9.0f}ms")
        print(f"{'  beyond the listing':44} {noop_beyond * 1000:9.0f}ms")
        print(f"{'plan(), one source partition changed':44} {changed_s * 1000:9.0f}ms")
        print(f"{'  beyond the listing':44} {changed_beyond * 1000:9.0f}ms")
        print(f"{'  tasks planned':44} {len(tasks):>10}")
        print(f"{'peak Python memory during plan()':44} {peak / 2**20:8.0f}MB")
        print(f"{'peak process RSS':44} {rss_mb:8.0f}MB")
        print("targets: no-op < 1000ms and < 500MB; one change < 50ms beyond the listing")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
