"""The exception tree every user-facing failure belongs to.

Front ends catch `DataflowError` and print its message without a traceback; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence


class DataflowError(Exception):
    """Root of every error a user can cause or fix."""


class StageDefinitionError(DataflowError):
    """A stage cannot be registered as written (bad name, option, reference)."""

    def __init__(self, message: str, stage: str | None = None) -> None:
        self.stage = stage
        super().__init__(f"stage {stage!r}: {message}" if stage else message)


class UnknownStageError(StageDefinitionError):
    """A name refers to no stage of the flow."""

    def __init__(self, name: str, known: Sequence[str], stage: str | None = None) -> None:
        from jupyter_dataflow.core.names import did_you_mean

        self.name = name
        hint = did_you_mean(name, known)
        where = f"referenced by {stage!r}" if stage else "in this flow"
        super().__init__(f"unknown stage {name!r} {where}{hint}")
        self.stage = stage


class CycleError(StageDefinitionError):
    """The graph would contain a dependency cycle."""

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = list(cycle)
        super().__init__("dependency cycle: " + " -> ".join(self.cycle))


class SqlError(StageDefinitionError):
    """SQL that does not parse, with the position of the problem."""

    def __init__(
        self,
        message: str,
        *,
        stage: str | None = None,
        line: int | None = None,
        column: int | None = None,
        text: str | None = None,
    ) -> None:
        self.line = line
        self.column = column
        self.text = text
        self.reason = message
        where = f" at line {line}, column {column}" if line is not None else ""
        detail = f"SQL error{where}: {message}"
        if text is not None and line is not None and column is not None:
            lines = text.splitlines() or [""]
            if 1 <= line <= len(lines):
                src = lines[line - 1]
                detail += f"\n  {src}\n  {' ' * max(column - 1, 0)}^"
        super().__init__(detail, stage)


class SourceError(DataflowError):
    """A source cannot be listed or read (missing path, corrupt file)."""

    def __init__(self, message: str, stage: str | None = None, partition: str | None = None) -> None:
        self.stage = stage
        self.partition = partition
        where = f"source {stage!r}" if stage else "source"
        if partition:
            where += f" partition {partition!r}"
        super().__init__(f"{where}: {message}")


class StageExecutionError(DataflowError):
    """User code or Spark failed while computing one task."""

    def __init__(self, stage: str, partition: str, message: str) -> None:
        self.stage = stage
        self.partition = partition
        self.reason = message
        where = f"stage {stage!r}" + (f" partition {partition!r}" if partition else "")
        super().__init__(f"{where} failed: {message}")


class ExpectationError(StageExecutionError):
    """Staged output violated a declared expectation; nothing was published."""


class CommitError(DataflowError):
    """Publishing a staged output failed; the previous version stays current."""


class ConfigError(DataflowError):
    """A setting (home, engine URL, option value) is not usable."""
