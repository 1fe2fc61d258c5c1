"""Define Python functions from text without running them, so transforms can be captured.

Exports read Python from files (a bundle's `stages/*.py`) and from notebook cells that
were never executed here. To capture a transform by source, its helper functions must
exist as function objects whose source `inspect` can find: this module compiles the
definitions (with the text registered in `linecache`), runs the imports and literal
assignments, and skips every other statement. It never calls a defined function.
"""

from __future__ import annotations

import ast
import itertools
import linecache
from typing import Any

from jupyter_dataflow.core.errors import DataflowError, StageDefinitionError

_COUNTER = itertools.count()


def _literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def definitions(source: str) -> list[ast.stmt]:
    """The top-level imports, function definitions and literal assignments of some code.

    Raises:
        SyntaxError: the code does not parse.
    """
    tree = ast.parse(source)
    return [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef))
            or (isinstance(n, ast.Assign) and all(isinstance(t, ast.Name) for t in n.targets) and _literal(n.value))]


def namespace_of(statements: list[ast.stmt], label: str, stage: str | None = None) -> dict[str, Any]:
    """Run definitions (from `definitions`) in a fresh namespace, their source findable.

    Args:
        statements: top-level definition statements.
        label: names the text in tracebacks and in `inspect` (`<label>`).
        stage: the stage this is for, named in errors.

    Raises:
        DataflowError: an import fails.
    """
    text = ast.unparse(ast.Module(body=statements, type_ignores=[])) + "\n" if statements else ""
    filename = f"<{label} {next(_COUNTER)}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    try:
        exec(compile(text, filename, "exec"), namespace)
    except ImportError as err:
        where = f"stage {stage!r}: " if stage else ""
        raise DataflowError(f"{where}cannot import what the transform needs: {err}") from None
    return namespace


def define(module: str, entry: str, label: str, stage: str) -> tuple[Any, dict[str, Any]]:
    """Define the functions of module text and return the entry function and its namespace.

    Raises:
        StageDefinitionError: the text does not parse or has no function `entry`.
    """
    try:
        statements = definitions(module)
    except SyntaxError as err:
        raise StageDefinitionError(f"Python syntax error at line {err.lineno}: {err.msg}", stage) from None
    namespace = namespace_of(statements, label, stage)
    func = namespace.get(entry)
    if not callable(func):
        raise StageDefinitionError(f"function {entry!r} not found in the code", stage)
    return func, namespace
