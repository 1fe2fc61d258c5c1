"""The planner's read-only window onto the metadata database, with per-call caching."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jupyter_dataflow.store.metadata import CurrentRecord, Metadata, StageState


class MetaView:
    """Implements the planner's `StoreView` over one flow of a metadata database."""

    def __init__(self, meta: Metadata, flow: str, exists: Callable[[str], bool]) -> None:
        self.meta = meta
        self.flow = flow
        self._exists = exists  # whether an object's data is still in the store
        self._states: dict[str, StageState] | None = None

    def current(self, stage: str) -> Mapping[tuple[str, str], CurrentRecord]:
        return {(c.role, c.partition): c for c in self.meta.current(self.flow, stage)}

    def committed_inputs(self, stage: str) -> Mapping[str, tuple[str, str | None]]:
        return self.meta.committed_inputs(self.flow, stage)

    def object_parts(self, fingerprints: Sequence[str]) -> Mapping[str, tuple[dict[str, str], list[list[str]]]]:
        return {fp: (o.parts, o.inputs) for fp, o in self.meta.objects(fingerprints).items()}

    def has_objects(self, fingerprints: Sequence[str]) -> set[str]:
        found = self.meta.objects(fingerprints)
        return {fp for fp, o in found.items() if self._exists(o.path)}

    def state(self, stage: str) -> Any | None:
        if self._states is None:
            self._states = self.meta.states(self.flow)
        return self._states.get(stage)

    def partitions(self, stage: str, role: str, pids: Sequence[str]) -> set[str]:
        """Which of `pids` the stage has committed under `role`."""
        found: set[str] = set()
        for i in range(0, len(pids), 500):
            chunk = list(pids[i:i + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.meta.query(f"SELECT partition FROM current WHERE flow = ? AND stage = ? AND role = ? "
                                   f"AND partition IN ({marks})", [self.flow, stage, role, *chunk])
            found |= {r["partition"] for r in rows}
        return found

    def refresh(self) -> None:
        self._states = None
