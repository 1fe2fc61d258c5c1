"""The user-code error boundary: whatever a task raises comes out naming its stage.

Spark's own messages are kept (they say which column or function is wrong) but cut
before the JVM stack trace, which helps nobody reading a notebook.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from jupyter_dataflow.core.errors import DataflowError, StageExecutionError

_PY4J_CALL = re.compile(r"^An error occurred while calling [\w.$]+\.?$")


def engine_lines(text: str) -> list[str]:
    """The non-blank lines of an engine error, cut before any JVM stack trace."""
    for marker in ("\n\nJVM stacktrace:", "\nJVM stacktrace:", "\n\tat "):
        text = text.split(marker, 1)[0]
    return [ln.rstrip() for ln in text.strip().splitlines() if ln.strip()]


def capped(lines: list[str], limit: int) -> list[str]:
    """At most `limit` lines, then "..." if there were more."""
    return lines[:limit] + (["..."] if len(lines) > limit else [])


def short_message(err: BaseException, limit: int = 12) -> str:
    """An error as a stage failure reason: the engine's words without its stack."""
    full = str(err) or type(err).__name__
    lines = engine_lines(full)
    if type(err).__name__ == "Py4JJavaError":
        # Which Java method py4j called says nothing to the user; the root cause does
        # (a malformed value, a header that does not match the schema).
        lines = [ln.lstrip(": ") for ln in lines if not _PY4J_CALL.match(ln.strip())]
        causes = re.findall(r"^Caused by: (.+)$", full, re.MULTILINE)
        if causes and causes[-1].strip() not in "\n".join(lines):
            lines.append("caused by: " + causes[-1].strip())
        return "\n".join(capped(lines, limit)) or type(err).__name__
    name = type(err).__name__
    body = "\n".join(capped(lines, limit))
    return body if body.startswith(name) or "[" in body[:40] else f"{name}: {body}"


@contextmanager
def boundary(stage: str, partition: str) -> Iterator[None]:
    """Re-raise anything from user code or Spark as `StageExecutionError`."""
    try:
        yield
    except StageExecutionError:
        raise
    except DataflowError as err:
        raise StageExecutionError(stage, partition, str(err)) from err
    except Exception as err:
        raise StageExecutionError(stage, partition, short_message(err)) from err
