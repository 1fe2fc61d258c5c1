"""Plan and reconcile a flow: stages in dependency order, independent ones at once.

Each stage is planned with the same pure function `plan` uses, but against the real
versions of its inputs, then its tasks run (reusing any stored object with the same
fingerprint), and finally its new partitions become current in one metadata
transaction. A failed task fails its stage, which keeps its previous version; stages
downstream of it are skipped, unrelated branches finish.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from jupyter_dataflow.core import fingerprint as fpmod
from jupyter_dataflow.core.errors import (
    ConfigError,
    DataflowError,
    SourceError,
    StageExecutionError,
)
from jupyter_dataflow.core.graph import Graph
from jupyter_dataflow.core.stage import Sink, Source, Transform
from jupyter_dataflow.execute.runner import ExternalData, Staged
from jupyter_dataflow.plan.planner import (
    OUTPUT,
    PARTIAL,
    PARTIAL_SUFFIX,
    ROLLUP,
    ModeInfo,
    Outcome,
    Plan,
    StagePlan,
    Task,
    plan_derived,
    plan_source,
)
from jupyter_dataflow.plan.resolve import output_key, resolve_modes
from jupyter_dataflow.reconciler import events as ev
from jupyter_dataflow.reconciler.leases import Leases
from jupyter_dataflow.reconciler.view import MetaView
from jupyter_dataflow.store import listing as listmod
from jupyter_dataflow.store.metadata import Metadata, ObjectRecord, Publish, StageState, fault_point
from jupyter_dataflow.store.objects import ObjectStore


@dataclass
class RunResult:
    """What a run did: tasks executed, reused from the store, failed and skipped."""

    executed: list[Task] = field(default_factory=list)
    reused: list[Task] = field(default_factory=list)
    failed: list[Task] = field(default_factory=list)
    skipped: list[Task] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.errors

    def summary(self) -> str:
        text = (f"{len(self.executed)} executed, {len(self.reused)} reused, {len(self.failed)} failed"
                f" in {self.seconds:.1f}s")
        if self.skipped:
            text += f" ({len(self.skipped)} skipped downstream of failures)"
        return text


class Reconciler:
    """Plans and runs one flow of a home."""

    def __init__(self, flow: str, graph: Graph, meta: Metadata, store: ObjectStore, bus: ev.EventBus,
                 runner: Callable[[], Any], parallelism: int = 4,
                 modes: Mapping[str, ModeInfo] | None = None, leases: Leases | None = None,
                 batch_size: int = 64) -> None:
        self.flow = flow
        self.graph = graph
        self.meta = meta
        self.store = store
        self.bus = bus
        self._runner_factory = runner
        self.parallelism = parallelism
        self.batch_size = batch_size
        self.modes = dict(modes) if modes is not None else resolve_modes(graph)
        self.leases = leases or Leases(meta)
        self._lock = threading.Lock()
        self._listings: Mapping[str, Mapping[str, listmod.SourcePartition]] = {}

    # planning ---------------------------------------------------------------------
    def _scope(self, target: str | None) -> list[str]:
        if target is None:
            return self.graph.order()
        name = self.graph.resolve(target)
        wanted = {*self.graph.upstream(name), name}
        return [s for s in self.graph.order() if s in wanted]

    def listings(self, names: list[str]) -> dict[str, dict[str, listmod.SourcePartition]]:
        out = {}
        for n in names:
            st = self.graph[n]
            if isinstance(st, Source):
                out[n] = listmod.partitions(st.path, st.partition_by, st.name, self.meta)
        return out

    def plan(self, target: str | None = None) -> Plan:
        """What a run would do now, and why. Reads the store and lists sources; no Spark."""
        names = self._scope(target)
        modes = self.modes
        view = MetaView(self.meta, self.flow, self.store.exists)
        listings = self.listings(names)
        outcomes: dict[str, Outcome] = {}
        stages: list[StagePlan] = []
        for name in names:
            sp = self._plan_stage(name, modes[name], view, listings, outcomes)
            outcomes[name] = self._predicted(name, sp, modes[name], view)
            stages.append(self._with_rollup(name, sp))
        return Plan(self.flow, tuple(stages))

    def _with_rollup(self, name: str, sp: StagePlan) -> StagePlan:
        """`sp` with the rollup a run would build (or drop) before the stage's combine."""
        from jupyter_dataflow.reconciler import rollup
        from jupyter_dataflow.reconciler.compute import partial_plan

        stage = self.graph[name]
        if sp.mode.mode != "partial" or not isinstance(stage, Transform) or stage.sql is None \
                or not any(t.role == OUTPUT for t in sp.tasks):
            return sp
        task = rollup.predicted(self, stage, sp.mode, partial_plan(self, stage).rollup_sql, sp.tasks)
        return sp if task is None else dataclasses.replace(sp, tasks=(*sp.tasks, task))

    def _plan_stage(self, name: str, mode: ModeInfo, view: MetaView,
                    listings: Mapping[str, Mapping[str, listmod.SourcePartition]],
                    outcomes: Mapping[str, Outcome]) -> StagePlan:
        stage = self.graph[name]
        if isinstance(stage, Source):
            schema = self.meta.source_schema(self.flow, name, stage.definition_hash())
            return plan_source(stage, listings[name], schema, view)
        assert isinstance(stage, (Transform, Sink))
        upstream = {i: outcomes[self.graph.resolve(i)] for i in stage.inputs}
        return plan_derived(stage, mode, upstream, view)

    def _predicted(self, name: str, sp: StagePlan, mode: ModeInfo, view: MetaView) -> Outcome:
        key = output_key(self.graph[name], mode)
        if not sp.tasks:
            return self._committed_outcome(name, key, view)
        # Partitions with a task may change; the others keep their committed versions.
        changed = frozenset(t.partition for t in sp.tasks if t.role == OUTPUT)
        gone = frozenset(t.partition for t in sp.tasks if t.role == OUTPUT and t.reason == "deleted")
        if any(t.role == OUTPUT and t.partition == "" for t in sp.tasks) or key is None:
            changed = frozenset(p for p in changed) | {""}

        def load() -> dict[str, str]:
            return {c.partition: c.data_version for c in self.meta.current(self.flow, name, OUTPUT)
                    if c.partition not in changed}

        state = view.state(name)
        base = state.output_version if state is not None and state.state == "fresh" else None
        return Outcome(key, None, load, changed, base, gone)

    def _committed_outcome(self, name: str, key: str | None, view: MetaView) -> Outcome:
        state = view.state(name)

        def load() -> dict[str, str]:
            return {c.partition: c.data_version for c in self.meta.current(self.flow, name, OUTPUT)}

        if state is not None and state.state == "fresh" and state.output_version is not None:
            return Outcome(key, state.output_version, load, base=state.output_version)
        versions = load()
        version = fpmod.combine(versions.items())
        return Outcome(key, version, lambda: versions, base=version)

    # running ----------------------------------------------------------------------
    def run(self, target: str | None = None) -> RunResult:
        """Reconcile the flow (or `target` and its upstream) and report what happened.

        One reconciler per flow at a time, across processes: a second one waits for
        the first to finish (and then usually finds nothing left to do).
        """
        with self._lock, self.leases.hold(f"flow:{self.flow}"):
            return self._run(target)

    def _run(self, target: str | None) -> RunResult:
        started = time.time()
        result = RunResult()
        names = self._scope(target)
        modes = self.modes
        view = MetaView(self.meta, self.flow, self.store.exists)
        run_id = self.meta.start_run(self.flow)
        self.bus.emit(ev.Event(ev.RUN_STARTED, self.flow, total=len(names)))
        outcomes: dict[str, Outcome] = {}
        failed_stages: set[str] = set()
        futures: dict[str, Future[Outcome | None]] = {}
        try:
            listings = self.listings(names)
        except SourceError as err:
            self._fail_source_listing(err, result)
            listings = None
        with ThreadPoolExecutor(self.parallelism, thread_name_prefix="dataflow-stage") as stages_pool, \
                ThreadPoolExecutor(self.parallelism, thread_name_prefix="dataflow-task") as tasks_pool:

            def run_stage(name: str) -> Outcome | None:
                stage = self.graph[name]
                deps = [self.graph.resolve(i) for i in stage.inputs]
                for d in deps:
                    futures[d].result()
                if listings is None or any(d in failed_stages for d in deps) or (
                        isinstance(stage, Source) and name in result.errors):
                    self._skip(name, result, failed_stages, "upstream failed")
                    return None
                try:
                    out = self._execute_stage(name, modes[name], view, listings, outcomes, tasks_pool, result)
                    outcomes[name] = out
                    return out
                except ConfigError:
                    raise  # the engine is unusable: the whole run fails, no stage is to blame
                except DataflowError as err:
                    failed_stages.add(name)
                    self._record_failure(name, err, result)
                    return None

            self._listings = listings or {}
            for name in names:
                futures[name] = stages_pool.submit(run_stage, name)
            for name in names:
                futures[name].result()
        result.seconds = time.time() - started
        self.meta.finish_run(run_id, len(result.executed), len(result.reused), len(result.failed))
        self.bus.emit(ev.Event(ev.RUN_FINISHED, self.flow, detail=result.summary(), seconds=result.seconds,
                               state="failed" if result.failed or result.errors else "fresh"))
        return result

    def _fail_source_listing(self, err: SourceError, result: RunResult) -> None:
        stage = err.stage or ""
        result.errors[stage] = str(err)
        self._put_state(stage, "failed", str(err))
        self.bus.emit(ev.Event(ev.TASK_FAILED, self.flow, stage, detail=str(err), state="failed"))

    def _skip(self, name: str, result: RunResult, failed_stages: set[str], why: str) -> None:
        failed_stages.add(name)
        task = Task(name, "", "skipped", OUTPUT, why)
        result.skipped.append(task)
        self.bus.emit(ev.Event(ev.TASK_SKIPPED, self.flow, name, reason="skipped", detail=why))

    def _record_failure(self, name: str, err: DataflowError, result: RunResult) -> None:
        result.errors[name] = str(err)
        self._put_state(name, "failed", str(err))
        self.bus.emit(ev.Event(ev.STAGE_FINISHED, self.flow, name, state="failed", detail=str(err)))

    def _put_state(self, name: str, state: str, error: str | None) -> None:
        if not name or name not in self.graph:
            return
        old = self.meta.states(self.flow).get(name)
        self.meta.put_state(self.flow, StageState(
            name, state, error, old.def_hash if old else None, None, old.output_version if old else None,
            old.detail if old else {}, time.time()))

    def _execute_stage(self, name: str, mode: ModeInfo, view: MetaView,
                       listings: Mapping[str, Mapping[str, listmod.SourcePartition]],
                       outcomes: Mapping[str, Outcome], pool: ThreadPoolExecutor, result: RunResult) -> Outcome:
        stage = self.graph[name]
        key = output_key(stage, mode)
        if isinstance(stage, Source):
            self._ensure_schema(stage, listings[name])
        sp = self._plan_stage(name, mode, view, listings, outcomes)
        self.bus.emit(ev.Event(ev.STAGE_PLANNED, self.flow, name, total=len(sp.tasks)))
        if sp.fresh:
            if isinstance(stage, Source):
                self._note_listing(name, sp, view)
            self.bus.emit(ev.Event(ev.STAGE_FINISHED, self.flow, name, state="fresh"))
            return self._committed_outcome(name, key, view)
        waiting = self._without_data(stage)
        if waiting:
            # Nothing has ever arrived upstream (an empty source): there is no schema to
            # compute with. Not a failure; the stage runs once data lands.
            why = f"waiting for data: {', '.join(waiting)} has none yet"
            result.skipped.append(Task(name, "", "waiting", OUTPUT, why))
            self.bus.emit(ev.Event(ev.TASK_SKIPPED, self.flow, name, reason="waiting", detail=why))
            self.bus.emit(ev.Event(ev.STAGE_FINISHED, self.flow, name, state="waiting", detail=why))
            return self._committed_outcome(name, key, view)
        publishes: list[Publish] = []
        if mode.mode == "partial":
            partial_tasks = [t for t in sp.tasks if t.role == PARTIAL]
            publishes += self._run_tasks(stage, mode, partial_tasks, outcomes, pool, result)
            if publishes:
                self.meta.commit(self.flow, publishes)
            publishes = []
            sp = self._plan_stage(name, mode, view, listings, outcomes)
            if isinstance(stage, Transform) and any(t.role == OUTPUT for t in sp.tasks):
                self._roll_up(stage, mode, outcomes, pool, result)
        publishes += self._run_tasks(stage, mode, [t for t in sp.tasks if t.role != PARTIAL], outcomes, pool, result)
        versions = {c.partition: c.data_version for c in self.meta.current(self.flow, name, OUTPUT)}
        for p in publishes:
            if p.role == OUTPUT:
                if p.object is None:
                    versions.pop(p.partition, None)
                else:
                    versions[p.partition] = p.object.data_version
        out_version = fpmod.combine(versions.items())
        recorded_inputs = {i: outcomes[self.graph.resolve(i)].version for i in stage.inputs}
        state = StageState(name, "fresh", None, sp.def_hash, sp.inputs_version, out_version,
                           {"mode": mode.mode, "key": mode.key, "mode_reason": mode.reason,
                            "inputs": recorded_inputs}, time.time())
        self.meta.commit(self.flow, publishes, state)
        view.refresh()
        changed = frozenset(p.partition for p in publishes if p.role == OUTPUT)
        self.bus.emit(ev.Event(ev.STAGE_FINISHED, self.flow, name, state="fresh", total=len(publishes)))
        return Outcome(key, out_version, lambda: dict(versions), changed, out_version)

    def _roll_up(self, stage: Transform, mode: ModeInfo, outcomes: Mapping[str, Outcome],
                 pool: ThreadPoolExecutor, result: RunResult) -> None:
        """Build (or drop) the stage's rollup before its combine, when one is due."""
        from jupyter_dataflow.reconciler import rollup
        from jupyter_dataflow.reconciler.compute import partial_plan

        task = rollup.task(self, stage, mode, partial_plan(self, stage).rollup_sql)
        if task is not None:
            self.meta.commit(self.flow, self._run_tasks(stage, mode, [task], outcomes, pool, result))

    def _note_listing(self, name: str, sp: StagePlan, view: MetaView) -> None:
        """Record the listing of a source found fresh partition by partition.

        Its recorded listing version differed although no partition changed (a home
        whose version was recorded in an older form), so the next plan can again tell
        it is fresh from the version alone.
        """
        state = view.state(name)
        if state is not None and state.state == "fresh" and state.inputs_version != sp.inputs_version:
            self.meta.put_state(self.flow, dataclasses.replace(state, inputs_version=sp.inputs_version))

    def _without_data(self, stage: Any) -> list[str]:
        """Inputs of `stage` that never produced any output, in this flow or another."""
        if isinstance(stage, Source):
            return []
        names = sorted({self.graph.resolve(i) for i in stage.inputs})
        return [n for n in names if not self.meta.has_current(self.flow, n) and self.meta.last_schema(n) is None]

    def _ensure_schema(self, stage: Source, parts: Mapping[str, listmod.SourcePartition]) -> None:
        def_hash = stage.definition_hash()
        if self.meta.source_schema(self.flow, stage.name, def_hash) is None and parts:
            schema, key_type = self._runner().infer_source_schema(stage, parts)
            self.meta.put_source_schema(self.flow, stage.name, def_hash, schema, key_type)

    def _runner(self) -> Any:
        return self._runner_factory()

    def _run_tasks(self, stage: Any, mode: ModeInfo, tasks: list[Task], outcomes: Mapping[str, Outcome],
                   pool: ThreadPoolExecutor, result: RunResult) -> list[Publish]:
        publishes: list[Publish] = []
        errors: list[StageExecutionError | DataflowError] = []
        todo: list[Task] = []
        for t in tasks:
            if t.reason == "deleted":
                publishes.append(Publish(t.stage, t.role, t.partition, None, "deleted"))
                result.executed.append(t)
                continue
            existing = self.meta.object(t.fingerprint) if t.fingerprint else None
            if existing is not None and self.store.exists(existing.path):
                publishes.append(Publish(t.stage, t.role, t.partition, existing, t.reason))
                result.reused.append(t)
                self.bus.emit(ev.Event(ev.TASK_REUSED, self.flow, t.stage, t.partition, t.reason, rows=existing.rows))
                continue
            todo.append(t)
            self.bus.emit(ev.Event(ev.TASK_QUEUED, self.flow, t.stage, t.partition, t.reason, t.cause))
        futures = self._submit(stage, mode, todo, outcomes, pool)
        for t, fut in futures:
            try:
                obj, reused = fut.result()
            except DataflowError as err:
                errors.append(err)
                result.failed.append(t)
                self.bus.emit(ev.Event(ev.TASK_FAILED, self.flow, t.stage, t.partition, t.reason, str(err),
                                       state="failed"))
                continue
            publishes.append(Publish(t.stage, t.role, t.partition, obj, t.reason))
            if reused:
                result.reused.append(t)
                self.bus.emit(ev.Event(ev.TASK_REUSED, self.flow, t.stage, t.partition, t.reason, rows=obj.rows))
                continue
            result.executed.append(t)
            self.bus.emit(ev.Event(ev.TASK_COMMITTED, self.flow, t.stage, t.partition, t.reason, rows=obj.rows,
                                   seconds=obj.finished_at - obj.started_at))
        if errors:
            raise errors[0]
        return publishes

    def _submit(self, stage: Any, mode: ModeInfo, todo: list[Task], outcomes: Mapping[str, Outcome],
                pool: ThreadPoolExecutor) -> list[tuple[Task, Future[tuple[ObjectRecord, bool]]]]:
        """Start the tasks: in batches of up to `batch_size` partitions per Spark job where
        the stage allows, one job per task otherwise and for whatever a batch left."""
        from jupyter_dataflow.reconciler.compute import batchable

        if self.batch_size < 2 or len(todo) < 2 or not batchable(stage, mode, todo):
            return [(t, pool.submit(self._compute, stage, mode, t, outcomes)) for t in todo]
        # Few, large jobs: a job's fixed cost is what batching saves; both cores already
        # work on one job's Spark tasks.
        jobs = -(-len(todo) // self.batch_size)
        groups = [todo[i::jobs] for i in range(jobs)]
        batches = [(g, pool.submit(self._compute_batch, stage, mode, g)) for g in groups]
        futures: list[tuple[Task, Future[tuple[ObjectRecord, bool]]]] = []
        for group, fut in batches:
            done, started = fut.result()
            for t in group:
                if t.fingerprint in done:
                    ready: Future[tuple[ObjectRecord, bool]] = Future()
                    ready.set_result(done[t.fingerprint])
                    futures.append((t, ready))
                else:  # already announced as started if the batch tried it
                    futures.append((t, pool.submit(self._compute, stage, mode, t, outcomes, t in started)))
        return futures

    def _compute_batch(self, stage: Any, mode: ModeInfo,
                       tasks: list[Task]) -> tuple[dict[str, tuple[ObjectRecord, bool]], list[Task]]:
        """Compute several tasks in one Spark job under their leases: by fingerprint, what
        was made (or found made by another process), and the tasks announced as started.
        Tasks missing from the answer, for whatever reason, are left to the one-task
        path, which reports their errors."""
        from jupyter_dataflow.reconciler.compute import compute_batch

        done: dict[str, tuple[ObjectRecord, bool]] = {}
        with contextlib.ExitStack() as held:
            for fp in sorted({t.fingerprint for t in tasks if t.fingerprint}):
                held.enter_context(self.leases.hold(f"task:{fp}"))
            todo = []
            for t in tasks:
                assert t.fingerprint is not None, f"task {t} has no fingerprint at execution"
                existing = self.meta.object(t.fingerprint)
                if existing is not None and self.store.exists(existing.path):
                    done[t.fingerprint] = (existing, True)
                else:
                    todo.append(t)
            if len(todo) < 2:
                return done, []
            for t in todo:
                self.bus.emit(ev.Event(ev.TASK_STARTED, self.flow, t.stage, t.partition, t.reason))
            started = time.time()
            try:
                written = compute_batch(self, stage, mode, todo)
            except DataflowError as err:  # NotBatchable too
                log.info("%s: %d partitions computed one by one: %s", stage.name, len(todo), err)
                return done, todo
            try:
                for t in todo:
                    staged = written.staged.get(t.partition)
                    if staged is not None:
                        done[t.fingerprint] = (self._record(stage, t, staged, started), False)  # type: ignore[index]
            finally:
                self.store.discard(written.directory)
        return done, todo

    def _compute(self, stage: Any, mode: ModeInfo, task: Task, outcomes: Mapping[str, Outcome],
                 announced: bool = False) -> tuple[ObjectRecord, bool]:
        """Compute one task under its lease; (object, True) if another process made it meanwhile."""
        assert task.fingerprint is not None, f"task {task} has no fingerprint at execution"
        with self.leases.hold(f"task:{task.fingerprint}"):
            # Look again under the lease: another process may have committed this output
            # after we planned, whether or not we had to wait for it.
            existing = self.meta.object(task.fingerprint)
            if existing is not None and self.store.exists(existing.path):
                return existing, True
            return self._compute_now(stage, mode, task, announced), False

    def _compute_now(self, stage: Any, mode: ModeInfo, task: Task, announced: bool = False) -> ObjectRecord:
        from jupyter_dataflow.reconciler.compute import compute_task

        assert task.fingerprint is not None
        if not announced:
            self.bus.emit(ev.Event(ev.TASK_STARTED, self.flow, task.stage, task.partition, task.reason))
        started = time.time()
        return self._record(stage, task, compute_task(self, stage, mode, task), started)

    def _record(self, stage: Any, task: Task, staged: Staged | ExternalData | None, started: float) -> ObjectRecord:
        """Publish a staged output to its content address and record its object."""
        assert task.fingerprint is not None
        owner = task.stage + PARTIAL_SUFFIX if task.role in (PARTIAL, ROLLUP) else task.stage
        inputs = [[i.stage, i.partition, i.version] for i in task.inputs]
        if isinstance(staged, ExternalData):
            obj = ObjectRecord(task.fingerprint, staged.path, staged.rows, staged.bytes, task.fingerprint,
                               staged.schema, dict(task.parts), inputs, stage.code(), owner,
                               task.partition, started, time.time())
        elif staged is None:  # sinks write outside the store
            obj = ObjectRecord(task.fingerprint, "", 0, 0, task.fingerprint, "{}", dict(task.parts),
                               inputs, stage.code(), owner, task.partition, started, time.time())
        else:
            fault_point("staged", {task.stage})
            path = self.store.publish(staged.path, task.fingerprint)
            fault_point("published", {task.stage})
            obj = ObjectRecord(task.fingerprint, str(path), staged.rows, staged.bytes, staged.data_version,
                               staged.schema, dict(task.parts), inputs, stage.code(), owner,
                               task.partition, started, time.time())
        self.meta.add_object(obj)
        return obj


log = logging.getLogger(__name__)
