"""Encode Arrow record batches into CSV, JSON Lines or a Parquet byte stream.

Each encoder turns one batch into the bytes to send for it, so the server can
stream a stage of any size chunk by chunk with memory bounded by one batch. Pure
pyarrow: no Tornado, no engine.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import io
import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}

FORMATS = tuple(CONTENT_TYPES)

# Text formats are encoded in slices of about this many bytes of Arrow data, so the
# transient copies (encoder buffer, bytes, socket buffer) stay small whatever the
# batch size.
CHUNK_BYTES = 1 << 20


class _Drain(io.RawIOBase):
    """A write-only sink whose written bytes can be taken out as they come.

    `tell()` keeps counting across `take()`, because the Parquet writer records
    absolute offsets of column chunks in the footer.
    """

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


class Encoder:
    """Stateful encoder: `header()`, then `encode(batch)` per batch, then `close()`.

    Every call returns the bytes to send next (possibly empty).
    """

    content_type: str = "application/octet-stream"

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema

    def header(self) -> bytes:
        return b""

    def encode(self, batch: pa.RecordBatch) -> bytes:
        raise NotImplementedError

    def close(self) -> bytes:
        return b""


class CsvEncoder(Encoder):
    """RFC 4180 CSV with one header line, written even when there are no rows."""

    content_type = CONTENT_TYPES["csv"]

    def header(self) -> bytes:
        buf = io.BytesIO()
        empty = pa.Table.from_batches([], schema=_csv_schema(self.schema))
        pacsv.write_csv(empty, buf, pacsv.WriteOptions(include_header=True))
        return buf.getvalue()

    def encode(self, batch: pa.RecordBatch) -> bytes:
        if batch.num_rows == 0:
            return b""
        buf = io.BytesIO()
        table = _csv_table(pa.Table.from_batches([batch]))
        pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False))
        return buf.getvalue()


class JsonLinesEncoder(Encoder):
    """One JSON object per line; dates ISO 8601, decimals as strings, NaN as null."""

    content_type = CONTENT_TYPES["jsonl"]

    def encode(self, batch: pa.RecordBatch) -> bytes:
        lines = [
            json.dumps(_clean(row), default=_json_default, ensure_ascii=False, allow_nan=False)
            for row in batch.to_pylist()
        ]
        return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


class ParquetEncoder(Encoder):
    """A valid Parquet file, one row group per batch, streamed as it is written."""

    content_type = CONTENT_TYPES["parquet"]

    def __init__(self, schema: pa.Schema) -> None:
        super().__init__(schema)
        self._sink = _Drain()
        self._writer = pq.ParquetWriter(self._sink, schema, compression="snappy")

    def header(self) -> bytes:
        return self._sink.take()

    def encode(self, batch: pa.RecordBatch) -> bytes:
        if batch.num_rows:
            self._writer.write_batch(batch)
        return self._sink.take()

    def close(self) -> bytes:
        self._writer.close()
        return self._sink.take()


ENCODERS: dict[str, Callable[[pa.Schema], Encoder]] = {
    "csv": CsvEncoder,
    "jsonl": JsonLinesEncoder,
    "parquet": ParquetEncoder,
}


def make_encoder(fmt: str, schema: pa.Schema) -> Encoder:
    """The encoder for `fmt` (one of `FORMATS`)."""
    return ENCODERS[fmt](schema)


def _csv_writable(t: pa.DataType) -> bool:
    """Whether pyarrow's CSV writer handles the type as is."""
    return not (
        pa.types.is_nested(t)
        or pa.types.is_dictionary(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
    )


def _csv_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema(
        [f if _csv_writable(f.type) else pa.field(f.name, pa.string()) for f in schema]
    )


def _csv_table(table: pa.Table) -> pa.Table:
    """Turn columns the CSV writer cannot write (lists, structs, binary) into JSON text."""
    if all(_csv_writable(f.type) for f in table.schema):
        return table
    columns = []
    for f, column in zip(table.schema, table.columns, strict=True):
        if _csv_writable(f.type):
            columns.append(column)
        else:
            values = [
                None
                if v is None
                else json.dumps(_clean(v), default=_json_default, ensure_ascii=False)
                for v in column.to_pylist()
            ]
            columns.append(pa.array(values, type=pa.string()))
    return pa.Table.from_arrays(columns, schema=_csv_schema(table.schema))


def _clean(value: Any) -> Any:
    """Replace non-finite floats (not valid JSON) by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)


class RecordStream:
    """Pull encoded chunks out of an iterator of record batches, honouring a row limit.

    `next_chunk()` returns the next bytes to send (possibly empty) or None at the end;
    it reads at most one batch per call and never holds more than that batch.
    """

    def __init__(
        self, fmt: str, schema: pa.Schema, batches: Iterator[pa.RecordBatch], limit: int | None
    ) -> None:
        self.encoder = make_encoder(fmt, schema)
        self._batches = batches
        self._remaining = limit
        self._pending: pa.RecordBatch | None = None
        self._sliced = fmt != "parquet"  # Parquet keeps one row group per batch
        self._started = False
        self._done = False
        self.rows = 0

    @property
    def content_type(self) -> str:
        return self.encoder.content_type

    def next_chunk(self) -> bytes | None:
        if not self._started:
            self._started = True
            return self.encoder.header()
        if self._done:
            return None
        batch = self._take()
        if batch is None:
            self._done = True
            return self.encoder.close()
        self.rows += batch.num_rows
        return self.encoder.encode(batch)

    def _take(self) -> pa.RecordBatch | None:
        if self._remaining == 0:
            return None
        if self._pending is None or self._pending.num_rows == 0:
            self._pending = next(self._batches, None)
            if self._pending is None:
                return None
        batch = self._pending
        n = batch.num_rows
        if self._sliced and n:
            n = max(1, min(n, int(CHUNK_BYTES * n / max(batch.nbytes, 1))))
        if self._remaining is not None:
            n = min(n, self._remaining)
            self._remaining -= n
        self._pending = batch.slice(n)
        return batch.slice(0, n)
