"""PySpark transforms as data: capture a function with what it needs, normalize it.

A Python transform is kept as *module text*: the function's source plus the imports,
constants and notebook helper functions it refers to, so that it can run again in a
new process and so that changing a helper changes the fingerprint. Normalization goes
through `ast`: comments, docstrings and formatting do not count.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import textwrap
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jupyter_dataflow.core.errors import StageDefinitionError

_SIMPLE = (int, float, str, bool, bytes, type(None))


@dataclass(frozen=True)
class PythonCode:
    """A captured transform: runnable module text, the entry function and its inputs."""

    module: str
    function: str
    params: tuple[str, ...]


def _is_simple(value: Any) -> bool:
    if isinstance(value, _SIMPLE):
        return True
    if isinstance(value, (tuple, list, frozenset, set)):
        return all(_is_simple(v) for v in value)
    if isinstance(value, dict):
        return all(_is_simple(k) and _is_simple(v) for k, v in value.items())
    return False


def _free_names(tree: ast.AST) -> list[str]:
    """Names loaded anywhere in `tree` that it never binds itself (order kept)."""
    bound: set[str] = set()
    loaded: dict[str, None] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
            if not isinstance(node, ast.ClassDef):
                args = node.args
                for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
                    bound.add(a.arg)
                for extra in (args.vararg, args.kwarg):
                    if extra is not None:
                        bound.add(extra.arg)
        elif isinstance(node, ast.Lambda):
            for a in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
                bound.add(a.arg)
        elif isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                loaded.setdefault(node.id, None)
            else:
                bound.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bound.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return [n for n in loaded if n not in bound and not hasattr(builtins, n)]


def _function_node(tree: ast.Module, name: str | None, stage: str) -> ast.FunctionDef:
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    if name is not None:
        for f in funcs:
            if f.name == name:
                return f
    if len(funcs) == 1:
        return funcs[0]
    if not funcs:
        raise StageDefinitionError("a Python transform must define a function", stage)
    names = ", ".join(f.name for f in funcs)
    raise StageDefinitionError(
        f"cannot tell which function is the transform among {names}; "
        f"name one of them {stage!r}", stage
    )


def capture(
    code: str | Callable[..., Any],
    stage: str,
    namespace: Mapping[str, Any] | None = None,
) -> PythonCode:
    """Capture a transform given as a callable or as source text.

    Free names are resolved in `namespace` (or the function's globals): modules become
    imports, functions from installed modules become `from m import f`, functions
    defined in the notebook are captured recursively, and simple constants are
    written out. Anything else cannot be carried into a new process and is refused.
    """
    if callable(code) and not isinstance(code, str):
        func = code
        try:
            source = textwrap.dedent(inspect.getsource(func))
        except (OSError, TypeError) as err:
            raise StageDefinitionError(f"cannot read the source of {func!r}: {err}", stage) from None
        ns: Mapping[str, Any] = dict(getattr(func, "__globals__", {}))
        if namespace:
            ns = {**ns, **namespace}
        entry = getattr(func, "__name__", None)
    else:
        source = textwrap.dedent(str(code))
        ns = namespace or {}
        entry = None
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise StageDefinitionError(
            f"Python syntax error at line {err.lineno}, column {err.offset}: {err.msg}", stage
        ) from None
    # A cell may define helpers beside the transform: the function named like the
    # stage is the transform.
    target = _function_node(tree, entry if entry not in (None, "<lambda>") else stage, stage)
    if any(a for a in (target.args.vararg, target.args.kwarg)):
        raise StageDefinitionError("a transform function takes named input stages only, not *args/**kwargs", stage)
    params = tuple(a.arg for a in [*target.args.posonlyargs, *target.args.args])
    if not params:
        raise StageDefinitionError("a transform function needs at least one input stage parameter", stage)

    header: dict[str, str] = {}
    helpers: dict[str, str] = {}
    own = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    pending: list[tuple[str, Mapping[str, Any]]] = [(n, ns) for n in _free_names(target)]
    # Other top-level code in the cell text (imports, helpers) comes along as written.
    for node in tree.body:
        if node is target:
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            header[ast.unparse(node)] = ""
        elif isinstance(node, ast.FunctionDef):
            helpers[node.name] = ast.unparse(node)
            pending.extend((n, ns) for n in _free_names(node))
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            helpers[",".join(t.id for t in node.targets if isinstance(t, ast.Name))] = ast.unparse(node)
    seen: set[str] = set()
    while pending:
        name, scope = pending.pop(0)
        if name in seen or name in own or name in helpers:
            continue
        seen.add(name)
        if name not in scope:
            raise StageDefinitionError(f"name {name!r} is not defined for the Python transform", stage)
        value = scope[name]
        if isinstance(value, types.ModuleType):
            header[f"import {value.__name__} as {name}" if value.__name__ != name else f"import {name}"] = ""
        elif _is_simple(value):
            helpers[name] = f"{name} = {value!r}"
        elif isinstance(value, types.FunctionType) and _user_code(value):
            # Notebook or project code: captured by source so that editing it changes
            # the fingerprint; its own free names resolve in its own globals.
            try:
                src = textwrap.dedent(inspect.getsource(value))
            except (OSError, TypeError) as err:
                raise StageDefinitionError(f"cannot read the source of helper {name!r}: {err}", stage) from None
            helper_tree = ast.parse(src)
            fn = next((n for n in helper_tree.body if isinstance(n, ast.FunctionDef)), None)
            if fn is not None and fn.name != name:
                fn.name = name
            helpers[name] = ast.unparse(helper_tree)
            pending.extend((n, value.__globals__) for n in _free_names(helper_tree))
        elif callable(value) and getattr(value, "__module__", None) and "<locals>" not in getattr(
                value, "__qualname__", "<locals>"):
            mod, qual = value.__module__, getattr(value, "__qualname__", name)
            header[f"from {mod} import {qual}" + (f" as {name}" if qual != name else "")] = ""
        else:
            raise StageDefinitionError(
                f"global {name!r} ({type(value).__name__}) cannot be captured into the transform; "
                "use a constant, an import, or a function defined in the notebook",
                stage,
            )
    body = ast.unparse(target)
    module = "\n".join([*sorted(header), *(helpers[k] for k in sorted(helpers)), body]) + "\n"
    return PythonCode(module=module, function=target.name, params=params)


def _user_code(func: types.FunctionType) -> bool:
    """Whether a function is the user's own code rather than an installed library's."""
    import sysconfig

    if func.__module__ in (None, "__main__") or "<locals>" in func.__qualname__:
        return True
    filename = func.__code__.co_filename
    if filename.startswith("<"):
        return True  # defined in a notebook cell or exec'd text
    library_roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return not any(filename.startswith(root) for root in library_roots)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = node.body
            first = body[0] if body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def canonical(module: str) -> str:
    """Canonical dump of module text: comments, docstrings and layout do not count."""
    tree = _strip_docstrings(ast.parse(module))
    return ast.dump(tree, annotate_fields=True, include_attributes=False)


def load(code: PythonCode, stage: str) -> Callable[..., Any]:
    """Execute captured module text in a fresh namespace and return the entry function."""
    namespace: dict[str, Any] = {"__name__": f"jupyter_dataflow_stage_{stage}"}
    exec(compile(code.module, f"<transform {stage}>", "exec"), namespace)
    func = namespace.get(code.function)
    if not callable(func):
        raise StageDefinitionError(f"function {code.function!r} not found", stage)
    return func
