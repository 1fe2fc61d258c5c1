"""Rollups: a `partial` stage's partials merged ahead of its combine.

The combine of a partial stage reads every partial, one object per input partition,
so on its own it costs as much per run as the stage has partitions. A rollup is one
object with the partials' own columns (`PartialPlan.rollup_sql`) standing in for the
partials it covers; it records which partials, at which data versions, those are.

While every partial a rollup covers is still current at the version it covered, and
the stage's rollup query is still the one that made it, the rollup is valid and the
combine reads it plus the partials it does not cover. Appending partitions keeps it
valid, so an append costs one partial and a combine over a few objects. A new rollup
is built once more than `SLACK` partials would be left out: from the valid rollup and
those partials, or, when a covered partial changed or went away, from all partials (a
max cannot be taken back out of a merged row). Stages with at most `SLACK` partials
read their partials directly and keep no rollup.

A rollup is an ordinary task under its own fingerprint (the stage's code, the rollup
query and the versions of the partials it covers), so it is computed once, under a
lease, and reused by any flow or branch that needs the same one.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jupyter_dataflow.core import fingerprint as fpmod
from jupyter_dataflow.core.fingerprint import InputVersion
from jupyter_dataflow.plan.planner import (
    PARTIAL,
    PARTIAL_SUFFIX,
    ROLLUP,
    WHOLE,
    ModeInfo,
    Task,
    task_config,
)
from jupyter_dataflow.store.metadata import ObjectRecord

if TYPE_CHECKING:
    from jupyter_dataflow.core.stage import Transform
    from jupyter_dataflow.reconciler.loop import Reconciler

# Partials a combine may read beside a valid rollup before a new rollup is built.
SLACK = 8


@dataclass(frozen=True)
class Partials:
    """A partial stage's current partials, and its rollup if that is still valid."""

    stage: str
    paths: dict[str, str]       # partition -> object path
    versions: dict[str, str]    # partition -> data version
    schema: str | None
    rollup: ObjectRecord | None

    def covered(self) -> set[str]:
        return {pid for _, pid, _ in self.rollup.inputs} if self.rollup is not None else set()

    def uncovered(self) -> list[str]:
        covered = self.covered()
        return sorted(p for p in self.paths if p not in covered)

    def combine_paths(self) -> list[str]:
        """What the combine (or a new rollup) reads: the rollup and the partials it leaves out."""
        head = [self.rollup.path] if self.rollup is not None else []
        return head + sorted(self.paths[p] for p in self.uncovered())

    def inputs(self) -> tuple[InputVersion, ...]:
        return tuple(InputVersion(self.stage + PARTIAL_SUFFIX, p, v) for p, v in sorted(self.versions.items()))


def partials(rec: Reconciler, stage: Transform, mode: ModeInfo, rollup_sql: str) -> Partials:
    """The stage's committed partials and its rollup, the rollup only if still valid:
    made by the same rollup query, from partials all still current at those versions."""
    config = fpmod.compute(stage.code(), _config(stage, mode, rollup_sql), ()).config
    current = rec.meta.current(rec.flow, stage.name)
    parts = [c for c in current if c.role == PARTIAL]
    rolled = next((c for c in current if c.role == ROLLUP), None)
    objects = rec.meta.objects([c.fingerprint for c in parts] + ([rolled.fingerprint] if rolled else []))
    paths = {c.partition: objects[c.fingerprint].path for c in parts if c.fingerprint in objects}
    versions = {c.partition: c.data_version for c in parts if c.fingerprint in objects}
    schema = next((objects[c.fingerprint].schema for c in parts if c.fingerprint in objects), None)
    if schema is None:
        schema = rec.meta.last_schema(stage.name + PARTIAL_SUFFIX)
    rollup = objects.get(rolled.fingerprint) if rolled is not None else None
    if rollup is not None and not _valid(rec, rollup, versions, schema, config):
        rollup = None
    return Partials(stage.name, paths, versions, schema, rollup)


def _config(stage: Transform, mode: ModeInfo, rollup_sql: str) -> dict[str, Any]:
    return {**task_config(stage, mode), "role": ROLLUP, "partition": WHOLE, "rollup": rollup_sql}


def _valid(rec: Reconciler, rollup: ObjectRecord, versions: dict[str, str], schema: str | None,
           config: str) -> bool:
    # Partials of the same data can stand for another query (a max changed to a min over
    # one row per group): only a rollup made by the same rollup query stands for them.
    covered = rollup.inputs
    if rollup.parts.get("config") != config or not covered:
        return False
    if any(versions.get(pid) != version for _, pid, version in covered):
        return False
    return schema is not None and _columns(rollup.schema) == _columns(schema) and rec.store.exists(rollup.path)


def _columns(schema_json: str) -> list[tuple[str, Any]]:
    """Names and types; nullability differs with how Spark computed the same values."""
    return [(f["name"], f["type"]) for f in json.loads(schema_json).get("fields", [])]


def task(rec: Reconciler, stage: Transform, mode: ModeInfo, rollup_sql: str) -> Task | None:
    """The rollup to build before the combine runs, if one is due; a `deleted` task drops a
    rollup that no longer stands for anything (its stage has too few partials left)."""
    state = partials(rec, stage, mode, rollup_sql)
    due = _due(rec, stage, state.rollup is not None, len(state.uncovered()))
    if due is None or due.reason == "deleted":
        return due
    inputs = state.inputs()
    fp = fpmod.compute(stage.code(), _config(stage, mode, rollup_sql), inputs)
    return dataclasses.replace(due, fingerprint=fp.digest, inputs=inputs, parts=fp.parts())


def predicted(rec: Reconciler, stage: Transform, mode: ModeInfo, rollup_sql: str,
              planned: Sequence[Task]) -> Task | None:
    """The rollup `task` would give once the stage's `planned` partials ran, as a plan shows
    it: without a fingerprint, which waits for the partials' versions. A changed partial
    the rollup covers is taken to change its data (a recomputed one may not)."""
    state = partials(rec, stage, mode, rollup_sql)
    changed = {t.partition for t in planned if t.role == PARTIAL}
    gone = {t.partition for t in planned if t.role == PARTIAL and t.reason == "deleted"}
    covered = state.covered()
    valid = state.rollup is not None and not covered & changed
    after = (set(state.paths) | changed) - gone
    return _due(rec, stage, valid, len(after - covered) if valid else len(after))


def _due(rec: Reconciler, stage: Transform, valid: bool, left_out: int) -> Task | None:
    """The rollup task, its fingerprint aside, given whether the stage's rollup is (still)
    valid and how many partials it leaves out."""
    had = rec.meta.has_current(rec.flow, stage.name, ROLLUP)
    if left_out <= SLACK:
        if not valid and had:
            return Task(stage.name, WHOLE, "deleted", ROLLUP, "too few partials to keep a rollup")
        return None
    cause = f"{'the rollup and ' if valid else ''}{left_out} partials"
    return Task(stage.name, WHOLE, "input_changed" if had else "new", ROLLUP, cause)
