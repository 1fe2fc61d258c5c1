"""Decide what must run, and why, without running anything.

`plan_stage` looks at one stage: its definition, the versions of its inputs and what
the store holds for it, and returns the tasks that would make it fresh, each with a
reason and a cause. The whole-flow plan chains it in graph order; the executor calls
the same function stage by stage once upstream outputs are known, so a plan and a run
can never disagree about what "fresh" means.

Planning cost follows what changed: a stage whose definition and input versions match
what was recorded at its last reconcile is fresh without loading its partitions, and a
changed source fingerprints only the partitions whose files changed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from jupyter_dataflow.core import fingerprint as fpmod
from jupyter_dataflow.core.fingerprint import InputVersion
from jupyter_dataflow.core.stage import Sink, Source, Stage, Transform

OUTPUT, PARTIAL, SINK = "output", "partial", "sink"
ROLLUP = "rollup"  # partials of a `partial` stage merged ahead of its combine
PARTIAL_SUFFIX = "#partial"  # objects of a stage's partials and rollups are stored under its name + this
WHOLE = ""  # partition id of a stage that is not partitioned


@dataclass(frozen=True)
class Task:
    """One partition of one stage to compute (or to remove, for `deleted`)."""

    stage: str
    partition: str
    reason: str
    role: str = OUTPUT
    cause: str = ""
    fingerprint: str | None = None
    inputs: tuple[InputVersion, ...] = ()
    parts: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __str__(self) -> str:
        where = f"{self.stage}/{self.partition}" if self.partition else self.stage
        if self.role in (PARTIAL, ROLLUP):
            where += f" ({self.role})"
        return f"{where}: {self.reason}" + (f" ({self.cause})" if self.cause else "")


@dataclass(frozen=True)
class ModeInfo:
    mode: str          # "map" | "partial" | "reduce" (transforms); "source" | "sink" otherwise
    key: str | None    # the partition key of the stage's output partitions
    reason: str
    partitioned_input: str | None = None


@dataclass(frozen=True)
class StagePlan:
    stage: str
    kind: str
    mode: ModeInfo
    tasks: tuple[Task, ...]
    fresh: bool
    def_hash: str
    inputs_version: str | None
    blocked_by: tuple[str, ...] = ()   # upstream stages whose outcome is not known yet


@dataclass(frozen=True)
class Plan:
    flow: str
    stages: tuple[StagePlan, ...]

    @property
    def tasks(self) -> list[Task]:
        return [t for s in self.stages for t in s.tasks]

    def stage(self, name: str) -> StagePlan:
        for s in self.stages:
            if s.stage == name:
                return s
        raise KeyError(name)

    def __str__(self) -> str:
        if not self.tasks:
            return "nothing to do: every stage is fresh"
        return "\n".join(str(t) for t in self.tasks)


@dataclass
class Outcome:
    """What downstream stages can know about a stage's output partitions."""

    key: str | None
    version: str | None                    # combined version of all partitions; None if pending
    load: Callable[[], dict[str, str]]     # partition -> data version (lazy)
    changed: frozenset[str] | None = None  # partitions that changed in this plan/run, if known
    base: str | None = None                # committed version before this plan/run's changes
    gone: frozenset[str] = frozenset()     # of the changed partitions, those planned to be deleted
    _cache: dict[str, str] | None = None

    @property
    def versions(self) -> dict[str, str]:
        if self._cache is None:
            self._cache = self.load()
        return self._cache

    @property
    def pending(self) -> bool:
        return self.version is None


class StoreView(Protocol):
    """The read-only view of stored state the planner needs."""

    def current(self, stage: str) -> Mapping[tuple[str, str], Any]: ...
    def committed_inputs(self, stage: str) -> Mapping[str, tuple[str, str | None]]: ...
    def object_parts(self, fingerprints: Sequence[str]) -> Mapping[str, tuple[dict[str, str], list[list[str]]]]: ...
    def has_objects(self, fingerprints: Sequence[str]) -> set[str]: ...
    def state(self, stage: str) -> Any | None: ...
    def partitions(self, stage: str, role: str, pids: Sequence[str]) -> set[str]: ...


def source_version(partitions: Mapping[str, Any]) -> str:
    """A version for a whole source listing: partition ids and every file's identity.

    Checked on every plan for every source, so it is one hash over one JSON encoding of
    the listing, not a hash per file: a listing of 10,000 files costs a few
    milliseconds. Only a source whose version moved goes on to fingerprint its
    partitions one by one.

    The encoding is the text `json.dumps(listing, separators=(",", ":"))` gives for
    `listing = [[pid, [[relpath, size, mtime_ns, content_hash], ...]], ...]` (sorted),
    written directly: building those lists made three garbage-collected objects per
    partition on every plan, as much collector work as the listing itself.
    """
    text = []
    for pid in sorted(partitions):
        files = partitions[pid].files
        entries = _file_json(files[0]) if len(files) == 1 else ",".join(
            [_file_json(f) for f in sorted(files, key=lambda f: f.relpath)])
        text.append(f"[{_json_str(pid)},[{entries}]]")
    return fpmod.digest("listing", "[" + ",".join(text) + "]")


_json_str = json.encoder.encode_basestring_ascii  # how json.dumps writes a str (ensure_ascii)


def _file_json(f: Any) -> str:
    content = "null" if f.content_hash is None else _json_str(f.content_hash)
    return f"[{_json_str(f.relpath)},{f.size},{f.mtime_ns},{content}]"


def inputs_version(stage: Stage, upstream: Mapping[str, Outcome]) -> str | None:
    versions = []
    for name in stage.inputs:
        out = upstream.get(name)
        if out is None or out.version is None:
            return None
        versions.append((name, out.version))
    return fpmod.combine(versions)


def _reason(task_fp: fpmod.Fingerprint, stored: tuple[dict[str, str], list[list[str]]] | None,
            new_inputs: Sequence[InputVersion], late: str) -> tuple[str, str]:
    if stored is None:
        return "new", ""
    parts, old_inputs = stored
    changed = task_fp.changed_parts(parts)
    if "code" in changed:
        return "code_changed", ""
    if "config" in changed:
        return "config_changed", ""
    old = {(s, p): v for s, p, v in old_inputs}
    new = {(i.stage, i.partition): i.version for i in new_inputs}
    causes = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            causes.append(f"{key[0]}/{key[1]} new" if key[1] else f"{key[0]} new")
        elif key not in new:
            causes.append(f"{key[0]}/{key[1]} removed" if key[1] else f"{key[0]} removed")
        elif old[key] != new[key]:
            causes.append(f"{key[0]}/{key[1]} changed" if key[1] else f"{key[0]} changed")
    return late, ", ".join(causes[:5]) + (f", +{len(causes) - 5} more" if len(causes) > 5 else "")


def plan_source(stage: Source, listing: Mapping[str, Any], schema: tuple[str, str | None] | None,
                view: StoreView) -> StagePlan:
    """Tasks that ingest new, changed or deleted partitions of a source.

    Only the partitions whose files changed are fingerprinted (`_changed_files`), and
    only their stored records are loaded to say why they are stale.
    """
    def_hash = stage.definition_hash()
    mode = ModeInfo("source", stage.partition_by, "partitioned by " + (
        f"directory key {stage.partition_by!r}" if stage.partition_by else "file"))
    version = source_version(listing)
    state = view.state(stage.name)
    if state is not None and state.state == "fresh" and state.def_hash == def_hash and state.inputs_version == version:
        return StagePlan(stage.name, "source", mode, (), True, def_hash, version)
    committed = view.committed_inputs(stage.name)
    inputs = {pid: tuple(InputVersion("file", f.relpath, f.identity) for f in part.files)
              for pid, part in listing.items()}
    fps: dict[str, fpmod.Fingerprint] = {}
    if schema is None:
        stale = list(listing)  # nothing was ever read: no schema to fingerprint with yet
    else:
        code = stage.code()
        base = {**stage.config(), "path": stage.path, "schema": schema[0], "key_type": schema[1]}

        def fingerprint(pid: str) -> fpmod.Fingerprint:
            return fpmod.compute(code, {**base, "partition": pid, "value": listing[pid].value}, inputs[pid])

        same_def = state is not None and state.def_hash == def_hash
        fps = {pid: fingerprint(pid) for pid in _changed_files(inputs, committed, fingerprint, same_def)}
        stale = [pid for pid, fp in fps.items() if committed.get(pid, ("",))[0] != fp.digest]
    # What the stale partitions were made from, to say why they are stale: loaded for
    # them alone, so one late file in a thousand partitions reads one stored record.
    stored = view.object_parts([committed[pid][0] for pid in stale if pid in committed])
    tasks: list[Task] = []
    for pid in stale:
        cur = committed.get(pid)
        fp = fps.get(pid)
        old = stored.get(cur[0]) if cur is not None else None
        if fp is None:
            reason, cause = ("new", "") if cur is None else ("late_data", "")
        else:
            reason, cause = _reason(fp, old, inputs[pid], "late_data")
            if reason == "late_data":
                cause = _file_cause(old, inputs[pid])
        tasks.append(Task(stage.name, pid, reason, OUTPUT, cause, fp.digest if fp else None, inputs[pid],
                          fp.parts() if fp else {}))
    for pid in sorted(committed):
        if pid not in listing:
            tasks.append(Task(stage.name, pid, "deleted", OUTPUT, "files removed from the source"))
    return StagePlan(stage.name, "source", mode, tuple(tasks), not tasks, def_hash, version)


def _changed_files(inputs: Mapping[str, tuple[InputVersion, ...]], committed: Mapping[str, tuple[str, str | None]],
                   fingerprint: Callable[[str], fpmod.Fingerprint], same_def: bool) -> list[str]:
    """The listed partitions whose fingerprints may differ from the committed ones.

    A fingerprint's code and configuration parts are the same for every partition of a
    source but for the partition's own id, so while they are unchanged only a partition
    whose files changed (its inputs part differs from the recorded one) can have a new
    fingerprint. They are unchanged when the definition is the one last reconciled
    (every committed partition was fingerprinted with it) and one partition whose files
    did not change recomputes to its committed fingerprint (so the inferred schema,
    which the definition does not cover, is the same too). Otherwise every partition
    is checked; so is one whose inputs part was never recorded (an older version
    committed it).
    """
    if not same_def:
        return list(inputs)
    changed: list[str] = []
    unchanged: str | None = None
    for pid, ins in inputs.items():
        recorded = committed[pid][1] if pid in committed else None
        if recorded is None or recorded != fpmod.inputs_part(ins):
            changed.append(pid)
        elif unchanged is None:
            unchanged = pid
    if unchanged is not None and fingerprint(unchanged).digest != committed[unchanged][0]:
        return list(inputs)
    return changed


def _file_cause(old: tuple[dict[str, str], list[list[str]]] | None, new: Sequence[InputVersion]) -> str:
    if old is None:
        return ""
    before = {p: v for _s, p, v in old[1]}
    after = {i.partition: i.version for i in new}
    added = sorted(set(after) - set(before))
    changed = sorted(p for p in set(after) & set(before) if after[p] != before[p])
    removed = sorted(set(before) - set(after))
    bits = [f"new file {p}" for p in added] + [f"changed file {p}" for p in changed] + [f"removed file {p}" for p in removed]
    return ", ".join(bits[:4]) + (f", +{len(bits) - 4} more" if len(bits) > 4 else "")


def plan_derived(stage: Transform | Sink, mode: ModeInfo, upstream: Mapping[str, Outcome],
                 view: StoreView) -> StagePlan:
    """Tasks for a transform or a sink given its inputs' outcomes."""
    def_hash = stage.definition_hash()
    kind = stage.kind
    in_version = inputs_version(stage, upstream)
    state = view.state(stage.name)
    if (in_version is not None and state is not None and state.state == "fresh"
            and state.def_hash == def_hash and state.inputs_version == in_version):
        return StagePlan(stage.name, kind, mode, (), True, def_hash, in_version)
    pending = tuple(n for n in stage.inputs if upstream[n].pending)
    quick = _predict_from_changes(stage, mode, upstream, state, def_hash, pending, view)
    if quick is not None:
        return quick
    current = view.current(stage.name)
    code = stage.code()
    config = task_config(stage, mode)
    role = SINK if kind == "sink" else OUTPUT

    def whole_inputs(names: Sequence[str]) -> tuple[InputVersion, ...]:
        return tuple(InputVersion(n, p, v) for n in names for p, v in sorted(upstream[n].versions.items()))

    wanted: dict[tuple[str, str], tuple[InputVersion, ...] | None] = {}
    if mode.mode == "map":
        parted = [n for n in stage.inputs if upstream[n].key is not None]
        others = [n for n in stage.inputs if upstream[n].key is None]
        pids = _union(current, upstream, parted, OUTPUT) if any(upstream[n].pending for n in parted) else \
            sorted({p for n in parted for p in upstream[n].versions})
        rest = None if any(upstream[n].pending for n in others) else whole_inputs(others)
        for pid in pids:
            if rest is None or any(_unsettled(upstream[n], pid) for n in parted):
                wanted[(OUTPUT, pid)] = None
            else:
                own = tuple(InputVersion(n, pid, upstream[n].versions[pid]) for n in parted if pid in upstream[n].versions)
                wanted[(OUTPUT, pid)] = own + rest
    elif mode.mode == "partial":
        src = mode.partitioned_input or stage.inputs[0]
        others = [n for n in stage.inputs if n != src]
        rest = None if any(upstream[n].pending for n in others) else whole_inputs(others)
        up = upstream[src]
        for pid in _union(current, upstream, [src], PARTIAL) if up.pending else sorted(up.versions):
            settled = rest is not None and not _unsettled(up, pid) and pid in up.versions
            wanted[(PARTIAL, pid)] = (InputVersion(src, pid, up.versions[pid]), *(rest or ())) if settled else None
        wanted[(OUTPUT, WHOLE)] = None  # depends on the partials: known once they are
    else:
        wanted[(role, WHOLE)] = None if pending else whole_inputs(stage.inputs)

    fps = {k: fpmod.compute(code, {**config, "role": k[0], "partition": k[1]}, ins)
           for k, ins in wanted.items() if ins is not None}
    if mode.mode == "partial" and all(k in fps for k in wanted if k[0] == PARTIAL):
        partial_versions = _partial_versions(view, current, fps)
        if partial_versions is not None:
            combine_ins = tuple(InputVersion(stage.name + PARTIAL_SUFFIX, p, v)
                                for p, v in sorted(partial_versions.items()))
            wanted[(OUTPUT, WHOLE)] = combine_ins
            fps[(OUTPUT, WHOLE)] = fpmod.compute(code, {**config, "role": OUTPUT, "partition": WHOLE}, combine_ins)
    stored = view.object_parts([c.fingerprint for c in current.values()])
    tasks: list[Task] = []
    for key, ins in wanted.items():
        cur = current.get(key)
        fp = fps.get(key)
        if fp is not None and cur is not None and cur.fingerprint == fp.digest:
            continue
        if fp is None:
            reason = "new" if cur is None else "input_changed"
            cause = ("waiting for " + ", ".join(pending)) if pending else ""
            tasks.append(Task(stage.name, key[1], reason, key[0], cause))
            continue
        old = stored.get(cur.fingerprint) if cur is not None else None
        reason, cause = _reason(fp, old, ins or (), "input_changed")
        tasks.append(Task(stage.name, key[1], reason, key[0], cause, fp.digest, ins or (), fp.parts()))
    for key in sorted(current):
        if key not in wanted and key[0] in (OUTPUT, PARTIAL, SINK):
            tasks.append(Task(stage.name, key[1], "deleted", key[0], "input partition removed"))
    return StagePlan(stage.name, kind, mode, tuple(tasks), not tasks, def_hash, in_version, pending)


def task_config(stage: Transform | Sink, mode: ModeInfo) -> dict[str, Any]:
    """The configuration part of a derived stage's task fingerprints (role and partition aside)."""
    config = {**stage.config(), "mode": mode.mode, "key": mode.key}
    if isinstance(stage, Sink):
        config["path"] = stage.path
    return config


def _predict_from_changes(stage: Transform | Sink, mode: ModeInfo, upstream: Mapping[str, Outcome],
                          state: Any, def_hash: str, pending: Sequence[str], view: StoreView) -> StagePlan | None:
    """Plan a map or partial stage from its inputs' changed partitions alone.

    When the stage was fresh for exactly the inputs it sees now, except that some
    partitioned inputs have known changed partitions pending, only those partitions
    can change: no need to load the stage's partitions. `None` when this does not apply.
    """
    if not pending or state is None or state.state != "fresh" or state.def_hash != def_hash:
        return None
    recorded = (state.detail or {}).get("inputs")
    if not recorded or mode.mode not in ("map", "partial"):
        return None
    affected: set[str] = set()
    deleted: list[frozenset[str]] = []
    for n in stage.inputs:
        out = upstream[n]
        if not out.pending:
            if recorded.get(n) != out.version:
                return None
            continue
        if out.key is None or out.changed is None or recorded.get(n) != out.base:
            return None
        if mode.mode == "partial" and n != mode.partitioned_input:
            return None
        affected |= out.changed
        deleted.append(out.gone)
    # A partition goes when every changed input deletes it and no other input keeps it.
    gone = set(frozenset.intersection(*deleted))
    for n in stage.inputs:
        if gone and not upstream[n].pending and upstream[n].key is not None:
            gone -= set(upstream[n].versions)
    role = PARTIAL if mode.mode == "partial" else OUTPUT
    existing = view.partitions(stage.name, role, sorted(affected))
    cause = "waiting for " + ", ".join(pending)
    tasks = []
    for pid in sorted(affected):
        if pid not in gone:
            tasks.append(Task(stage.name, pid, "input_changed" if pid in existing else "new", role, cause))
        elif pid in existing:
            tasks.append(Task(stage.name, pid, "deleted", role, "input partition removed"))
    if mode.mode == "partial":
        tasks.append(Task(stage.name, WHOLE, "input_changed", OUTPUT, cause))
    return StagePlan(stage.name, stage.kind, mode, tuple(tasks), not tasks, def_hash, None, tuple(pending))


def _unsettled(outcome: Outcome, pid: str) -> bool:
    """Whether partition `pid` of a pending input may still change in this run."""
    return outcome.pending and (outcome.changed is None or pid in outcome.changed)


def _union(current: Mapping[tuple[str, str], Any], upstream: Mapping[str, Outcome], names: Sequence[str],
           role: str) -> list[str]:
    """Partitions to expect while an input is still pending: what exists now, or will."""
    pids = {p for (r, p) in current if r == role}
    for n in names:
        changed = upstream[n].changed
        if changed is not None:
            pids |= set(changed)
        pids |= set(upstream[n].versions)
    return sorted(pids)


def _partial_versions(view: StoreView, current: Mapping[tuple[str, str], Any],
                      fps: Mapping[tuple[str, str], fpmod.Fingerprint]) -> dict[str, str] | None:
    """Data versions of the partials, when every wanted partial is already stored."""
    out: dict[str, str] = {}
    for (role, pid), fp in fps.items():
        if role != PARTIAL:
            continue
        cur = current.get((role, pid))
        if cur is None or cur.fingerprint != fp.digest:
            return None
        out[pid] = cur.data_version
    return out
