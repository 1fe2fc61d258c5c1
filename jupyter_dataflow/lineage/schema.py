"""Recorded schemas as plain column lists.

A committed stage records its schema as Spark's StructType JSON. This module turns
that JSON (text or parsed) into `Column` values named and typed the way Spark SQL
prints them (`bigint`, `array<string>`, `struct<a:int>`). It must stay pure: no
Spark, no store, no Flow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

# StructType JSON names that differ from Spark SQL's type names.
_SIMPLE = {"long": "bigint", "integer": "int", "short": "smallint", "byte": "tinyint"}


class Column(NamedTuple):
    """One output column of a stage; `type` is "" when not known yet."""

    name: str
    type: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type}


def spark_type(data: Any) -> str:
    """The Spark SQL name of a type given in StructType JSON form.

    Args:
        data: a type as it appears in `StructType.json()`: a string such as
            "long" or "decimal(10,2)", or a dict for struct, array, map and UDT types.

    Returns:
        The type as Spark SQL prints it, e.g. "bigint" or "map<string,array<int>>".
    """
    if isinstance(data, str):
        return _SIMPLE.get(data, data)
    if not isinstance(data, Mapping):
        return str(data)
    kind = data.get("type")
    if kind == "struct":
        fields = ",".join(f"{f.get('name')}:{spark_type(f.get('type'))}" for f in data.get("fields") or ())
        return f"struct<{fields}>"
    if kind == "array":
        return f"array<{spark_type(data.get('elementType'))}>"
    if kind == "map":
        return f"map<{spark_type(data.get('keyType'))},{spark_type(data.get('valueType'))}>"
    if kind == "udt":
        return spark_type(data.get("sqlType", "binary"))
    return spark_type(kind) if isinstance(kind, str) else json.dumps(data, sort_keys=True)


def columns_of(schema: str | Mapping[str, Any] | Sequence[Any] | None) -> list[Column] | None:
    """The columns of a recorded schema, or None when there is none.

    Args:
        schema: StructType JSON (text or parsed), a list of {"name", "type"} dicts,
            or None.

    Returns:
        The columns in order, or None when `schema` is None or cannot be read.
    """
    if schema is None:
        return None
    data: Any = schema
    if isinstance(schema, str):
        try:
            data = json.loads(schema)
        except ValueError:
            return None
    if isinstance(data, Mapping):
        fields = data.get("fields")
        if not isinstance(fields, list):
            return None
        return [Column(str(f.get("name")), spark_type(f.get("type"))) for f in fields if isinstance(f, Mapping)]
    if isinstance(data, Sequence):
        out = []
        for item in data:
            if isinstance(item, Mapping) and "name" in item:
                out.append(Column(str(item["name"]), str(item.get("type") or "")))
        return out
    return None
