"""The refusal, and the Spark SQL types the DuckDB translation reasons about.

`DuckdbRefusal` is what callers get instead of an answer; `Refuse` is the internal signal
that becomes one. `SparkType` reduces a Spark data type to what the checks need; here are
its DuckDB and Arrow counterparts and Spark's rules for common and decimal types. This
module knows no query structure and must not read files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass

import pyarrow as pa
from sqlglot import exp

__all__ = ["DuckdbRefusal"]


@dataclass(frozen=True)
class DuckdbRefusal:
    """Why a query must run on Spark instead of DuckDB."""

    reason: str  # e.g. "function 'from_json' is not on the checked list"


class Refuse(Exception):
    """Internal signal: stop translating and refuse with this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- types


@dataclass(frozen=True)
class SparkType:
    """A Spark SQL data type, reduced to what the checks need."""

    kind: str
    precision: int = 0
    scale: int = 0

    def __str__(self) -> str:
        return f"decimal({self.precision},{self.scale})" if self.kind == "decimal" else self.kind


NULL, BOOL, STRING, DATE, TS, TS_NTZ = (SparkType(k) for k in ("null", "boolean", "string", "date", "timestamp", "timestamp_ntz"))
BYTE, SHORT, INT, LONG, FLOAT, DOUBLE = (SparkType(k) for k in ("byte", "short", "int", "long", "float", "double"))
BINARY, OTHER = SparkType("binary"), SparkType("other")

INTEGRAL = ("byte", "short", "int", "long")
_INT_DIGITS = {"byte": 3, "short": 5, "int": 10, "long": 20}
INT_RANGE = {"byte": 2**7, "short": 2**15, "int": 2**31, "long": 2**63}
ORDERABLE = {*INTEGRAL, "float", "double", "decimal", "string", "date", "timestamp", "timestamp_ntz", "boolean", "null"}

_TYPE_NAMES = {
    "boolean": BOOL, "byte": BYTE, "tinyint": BYTE, "short": SHORT, "smallint": SHORT,
    "integer": INT, "int": INT, "long": LONG, "bigint": LONG, "float": FLOAT, "real": FLOAT,
    "double": DOUBLE, "string": STRING, "date": DATE, "timestamp": TS, "timestamp_ltz": TS,
    "timestamp_ntz": TS_NTZ, "binary": BINARY, "void": NULL,
}
_DUCK_TYPES = {
    "boolean": "BOOLEAN", "byte": "TINYINT", "short": "SMALLINT", "int": "INTEGER", "long": "BIGINT",
    "float": "FLOAT", "double": "DOUBLE", "string": "VARCHAR", "date": "DATE",
    "timestamp": "TIMESTAMPTZ", "timestamp_ntz": "TIMESTAMP", "binary": "BLOB",
}
CAST_TARGETS = {
    exp.DataType.Type.BOOLEAN: BOOL, exp.DataType.Type.TINYINT: BYTE, exp.DataType.Type.SMALLINT: SHORT,
    exp.DataType.Type.INT: INT, exp.DataType.Type.BIGINT: LONG, exp.DataType.Type.FLOAT: FLOAT,
    exp.DataType.Type.DOUBLE: DOUBLE, exp.DataType.Type.TEXT: STRING, exp.DataType.Type.DATE: DATE,
    exp.DataType.Type.TIMESTAMPTZ: TS, exp.DataType.Type.TIMESTAMPNTZ: TS_NTZ,
}


def spark_type(spec: object) -> SparkType:
    """A `SparkType` from a Spark schema JSON type or a `simpleString` such as 'decimal(10,2)'."""
    if not isinstance(spec, str):
        return OTHER
    name = spec.strip().lower()
    found = re.fullmatch(r"decimal\((\d+),\s*(\d+)\)", name)
    if found:
        return SparkType("decimal", int(found.group(1)), int(found.group(2)))
    if name == "decimal":
        return SparkType("decimal", 10, 0)
    if re.fullmatch(r"(var)?char\(\d+\)", name):
        return STRING
    return _TYPE_NAMES.get(name, OTHER)


def numeric(t: SparkType) -> bool:
    return t.kind in INTEGRAL or t.kind in ("float", "double", "decimal")


# In a UTC session, Spark TIMESTAMP values are computed on DuckDB's zone-less TIMESTAMP holding
# UTC wall time: identical results, without a time-zone library call per row.
NAIVE_UTC: ContextVar[bool] = ContextVar("naive_utc", default=False)


def duck_type(t: SparkType) -> exp.DataType:
    if t == TS and NAIVE_UTC.get():
        return exp.DataType.build("TIMESTAMP", dialect="duckdb")
    if t.kind == "decimal":
        return exp.DataType.build(f"DECIMAL({t.precision},{t.scale})", dialect="duckdb")
    if t.kind not in _DUCK_TYPES:
        raise Refuse(f"no DuckDB type checked for Spark type {t}")
    return exp.DataType.build(_DUCK_TYPES[t.kind], dialect="duckdb")


def arrow_type(t: SparkType, timezone: str) -> pa.DataType | None:
    simple: dict[str, pa.DataType] = {
        "boolean": pa.bool_(), "byte": pa.int8(), "short": pa.int16(), "int": pa.int32(),
        "long": pa.int64(), "float": pa.float32(), "double": pa.float64(), "string": pa.string(),
        "date": pa.date32(), "timestamp": pa.timestamp("us", tz="UTC"),  # Spark's Arrow is UTC-labelled
        "timestamp_ntz": pa.timestamp("us"), "binary": pa.binary(), "null": pa.null(),
    }
    if t.kind == "decimal":
        return pa.decimal128(t.precision, t.scale)
    return simple.get(t.kind)


def as_decimal(t: SparkType, literal: int | None = None) -> SparkType:
    """Spark's view of an exact numeric as a decimal (integral literals get their own width)."""
    if t.kind == "decimal":
        return t
    if literal is not None:
        return SparkType("decimal", max(len(str(abs(literal))), 1), 0)
    return SparkType("decimal", _INT_DIGITS[t.kind], 0)


def wider(types: Sequence[SparkType]) -> SparkType:
    """Spark's common type for CASE / COALESCE / GREATEST branches, or a refusal."""
    known = [t for t in types if t != NULL]
    if not known:
        return NULL
    first = known[0]
    if all(t == first for t in known):
        return first
    if all(numeric(t) for t in known):
        if any(t.kind == "float" for t in known):
            raise Refuse("mixing FLOAT with other numeric types is not checked")
        if any(t.kind == "double" for t in known):
            return DOUBLE
        if all(t.kind in INTEGRAL for t in known):
            return max(known, key=lambda t: INTEGRAL.index(t.kind))
        decs = [as_decimal(t) for t in known]
        scale = max(d.scale for d in decs)
        precision = max(d.precision - d.scale for d in decs) + scale
        if precision > 38:
            raise Refuse("a decimal common type beyond 38 digits loses precision in Spark")
        return SparkType("decimal", precision, scale)
    raise Refuse(f"values of types {', '.join(sorted({str(t) for t in known}))} are mixed")
