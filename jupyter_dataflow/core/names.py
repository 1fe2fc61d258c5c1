"""Stage and flow names: validation and "did you mean" hints."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from jupyter_dataflow.core.errors import StageDefinitionError

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Names that would shadow SQL keywords or our own internal views.
_RESERVED = frozenset({"select", "from", "where", "table", "values", "null", "true", "false"})


def is_identifier(name: object) -> bool:
    return isinstance(name, str) and bool(_IDENT.match(name)) and len(name) <= 128


def check_name(name: object, what: str = "stage") -> str:
    """Return `name` if it is a valid identifier, else raise `StageDefinitionError`."""
    if not isinstance(name, str) or not name:
        raise StageDefinitionError(f"{what} name must be a non-empty string, got {name!r}")
    if not is_identifier(name):
        raise StageDefinitionError(
            f"invalid {what} name {name!r}: use letters, digits and underscores, "
            "starting with a letter or underscore"
        )
    if name.lower() in _RESERVED:
        raise StageDefinitionError(f"{what} name {name!r} is a reserved word")
    if name.startswith("__dataflow"):
        raise StageDefinitionError(f"{what} name {name!r} is reserved for internal use")
    return name


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """A suffix like `; did you mean 'orders'?`, or '' when nothing is close."""
    known = list(known)
    lowered = {k.lower(): k for k in known}
    if name.lower() in lowered:
        return f"; did you mean {lowered[name.lower()]!r}?"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
