"""The blueprint: stages by name, their dependencies, a deterministic order.

Graph values are immutable; `with_stage` and `without` return new graphs after
checking names, references and cycles, so a failed change never leaves a half-built
graph behind.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from jupyter_dataflow.core.errors import CycleError, StageDefinitionError, UnknownStageError
from jupyter_dataflow.core.stage import Stage


@dataclass(frozen=True)
class Graph:
    """An immutable mapping of stage name to stage, closed under references."""

    stages: Mapping[str, Stage] = field(default_factory=dict)

    def __contains__(self, name: object) -> bool:
        return name in self.stages

    def __getitem__(self, name: str) -> Stage:
        try:
            return self.stages[name]
        except KeyError:
            raise UnknownStageError(name, list(self.stages)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.order())

    def __len__(self) -> int:
        return len(self.stages)

    def resolve(self, name: str) -> str:
        """The stage name as registered, matching case-insensitively like Spark SQL."""
        if name in self.stages:
            return name
        lowered = self._lowered
        if name.lower() in lowered:
            return lowered[name.lower()]
        raise UnknownStageError(name, list(self.stages))

    @cached_property
    def _lowered(self) -> dict[str, str]:
        return {k.lower(): k for k in self.stages}

    @cached_property
    def _edges(self) -> tuple[dict[str, tuple[str, ...]], dict[str, list[str]]]:
        """Inputs and children of every stage, computed once per (immutable) graph."""
        lowered = {k.lower(): k for k in self.stages}
        inputs = {n: tuple(lowered.get(i.lower(), i) for i in st.inputs) for n, st in self.stages.items()}
        children: dict[str, list[str]] = {n: [] for n in self.stages}
        for n, ins in inputs.items():
            for i in set(ins):
                if i in children:
                    children[i].append(n)
        return inputs, {n: sorted(c) for n, c in children.items()}

    def inputs(self, name: str) -> tuple[str, ...]:
        return self._edges[0][name]

    def downstream(self, name: str) -> list[str]:
        """Every stage that depends on `name`, directly or not, in graph order."""
        result: set[str] = set()
        frontier = [name]
        while frontier:
            for child in self.children(frontier.pop()):
                if child not in result:
                    result.add(child)
                    frontier.append(child)
        return [s for s in self.order() if s in result]

    def upstream(self, name: str) -> list[str]:
        result: set[str] = set()
        frontier = [name]
        while frontier:
            for dep in self.inputs(frontier.pop()):
                if dep not in result:
                    result.add(dep)
                    frontier.append(dep)
        return [s for s in self.order() if s in result]

    def children(self, name: str) -> list[str]:
        return self._edges[1][name]

    @cached_property
    def _order(self) -> tuple[str, ...] | None:
        import heapq

        indegree = {n: len(set(self.inputs(n))) for n in self.stages}
        ready = [n for n, d in indegree.items() if d == 0]
        heapq.heapify(ready)
        out: list[str] = []
        while ready:
            n = heapq.heappop(ready)
            out.append(n)
            for child in self.children(n):
                indegree[child] -= 1
                if indegree[child] == 0:
                    heapq.heappush(ready, child)
        return tuple(out) if len(out) == len(self.stages) else None

    def order(self) -> list[str]:
        """Topological order, ties broken by name, so every machine agrees."""
        if self._order is None:
            raise CycleError(self._find_cycle())
        return list(self._order)

    def _find_cycle(self) -> list[str]:
        state: dict[str, int] = {}
        stack: list[str] = []

        def visit(n: str) -> list[str] | None:
            state[n] = 1
            stack.append(n)
            for dep in sorted(set(self.inputs(n))):
                if state.get(dep) == 1:
                    return [*stack[stack.index(dep):], dep]
                if dep not in state:
                    found = visit(dep)
                    if found:
                        return found
            stack.pop()
            state[n] = 2
            return None

        for n in sorted(self.stages):
            if n not in state:
                found = visit(n)
                if found:
                    return list(reversed(found))
        return []

    def with_stage(self, stage: Stage) -> Graph:
        """A new graph with `stage` added or replaced; references and cycles checked."""
        existing = {k.lower(): k for k in self.stages}
        clash = existing.get(stage.name.lower())
        if clash is not None and clash != stage.name:
            raise StageDefinitionError(f"a stage named {clash!r} already exists (names are case-insensitive)", stage.name)
        for ref in stage.inputs:
            if ref.lower() == stage.name.lower():
                raise CycleError([stage.name, stage.name])
            if ref.lower() not in existing:
                raise UnknownStageError(ref, list(self.stages), stage=stage.name)
        if stage.kind != "sink":
            for ref in stage.inputs:
                target = self.stages[existing[ref.lower()]]
                if target.kind == "sink":
                    raise StageDefinitionError(f"{ref!r} is a sink; read the stage it writes instead", stage.name)
        graph = Graph({**self.stages, stage.name: stage})
        graph.order()  # raises CycleError with the path
        return graph

    def without(self, name: str) -> Graph:
        name = self.resolve(name)
        dependents = self.children(name)
        if dependents:
            raise StageDefinitionError(
                f"cannot drop: {', '.join(dependents)} read{'s' if len(dependents) == 1 else ''} it; drop those first",
                name,
            )
        return Graph({k: v for k, v in self.stages.items() if k != name})
