"""Record encoders and the chunked stream, on Arrow data made here (no Spark)."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from jupyter_dataflow.server.records import CHUNK_BYTES, RecordStream


def sample(n: int = 10, offset: int = 0) -> pa.RecordBatch:
    return pa.record_batch(
        {
            "id": pa.array(range(offset, offset + n), type=pa.int64()),
            "x": pa.array([float("nan") if i % 4 == 3 else i / 2 for i in range(n)]),
            "day": pa.array([dt.date(2024, 1, 1 + i % 28) for i in range(n)]),
            "price": pa.array([decimal.Decimal(f"{i}.25") for i in range(n)], pa.decimal128(10, 2)),
            "tags": pa.array([["a", "b"] if i % 2 else [] for i in range(n)]),
            "blob": pa.array([bytes([i % 256]) for i in range(n)], pa.binary()),
            "note": pa.array([None if i % 5 == 0 else f'v "{i}", ok' for i in range(n)]),
        }
    )


def drain(stream: RecordStream) -> list[bytes]:
    chunks = []
    while (chunk := stream.next_chunk()) is not None:
        chunks.append(chunk)
    return chunks


def test_jsonl_is_valid_json_with_nan_as_null_and_iso_dates() -> None:
    batch = sample(8)
    stream = RecordStream("jsonl", batch.schema, iter([batch]), None)
    rows = [json.loads(line) for line in b"".join(drain(stream)).decode().splitlines()]
    assert [r["id"] for r in rows] == list(range(8))
    assert rows[3]["x"] is None  # NaN is not valid JSON
    assert rows[1]["day"] == "2024-01-02"
    assert rows[2]["price"] == "2.25"
    assert rows[1]["tags"] == ["a", "b"]
    assert rows[0]["note"] is None
    assert stream.rows == 8


def test_csv_has_one_header_and_quotes_values() -> None:
    batches = [sample(5), sample(5, offset=5)]
    stream = RecordStream("csv", batches[0].schema, iter(batches), None)
    text = b"".join(drain(stream))
    assert text.count(b'"id"') == 1
    table = pacsv.read_csv(io.BytesIO(text))
    assert table.column("id").to_pylist() == list(range(10))
    notes = table.column("note").to_pylist()
    assert notes[1] == 'v "1", ok'
    assert json.loads(table.column("tags").to_pylist()[1]) == ["a", "b"]


def test_csv_header_is_written_for_an_empty_result() -> None:
    batch = sample(3)
    stream = RecordStream("csv", batch.schema, iter([]), None)
    text = b"".join(drain(stream)).decode()
    assert text.splitlines() == ['"id","x","day","price","tags","blob","note"']


def test_parquet_stream_is_one_valid_file_across_batches() -> None:
    batches = [sample(7, offset=i * 7) for i in range(3)]
    stream = RecordStream("parquet", batches[0].schema, iter(batches), None)
    chunks = drain(stream)
    data = b"".join(chunks)
    assert data[:4] == b"PAR1" and data[-4:] == b"PAR1"
    table = pq.read_table(io.BytesIO(data))
    assert table.column("id").to_pylist() == list(range(21))
    assert pq.ParquetFile(io.BytesIO(data)).metadata.num_row_groups == 3
    assert len(chunks) >= 3  # bytes leave as each row group is written


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize("limit", [0, 1, 6, 13, 100])
def test_limit_cuts_across_batches(fmt: str, limit: int) -> None:
    batches = [sample(6), sample(6, offset=6)]
    stream = RecordStream(fmt, batches[0].schema, iter(batches), limit)
    data = b"".join(drain(stream))
    expected = min(limit, 12)
    if fmt == "parquet":
        assert pq.read_table(io.BytesIO(data)).num_rows == expected
    elif fmt == "csv":
        assert pacsv.read_csv(io.BytesIO(data)).num_rows == expected
    else:
        assert len(data.decode().splitlines()) == expected
    assert stream.rows == expected


def test_text_chunks_stay_near_the_chunk_size_for_big_batches() -> None:
    n = 200_000
    batch = pa.record_batch({"s": pa.array(["y" * 40] * n), "i": pa.array(range(n))})
    stream = RecordStream("csv", batch.schema, iter([batch]), None)
    chunks = drain(stream)
    assert max(len(c) for c in chunks) < 3 * CHUNK_BYTES
    assert len(pacsv.read_csv(io.BytesIO(b"".join(chunks)))) == n


def test_the_iterator_is_read_lazily() -> None:
    pulled = []

    def batches():  # type: ignore[no-untyped-def]
        for i in range(100):
            pulled.append(i)
            yield sample(4, offset=i * 4)

    stream = RecordStream("jsonl", sample(1).schema, batches(), None)
    stream.next_chunk()  # header
    stream.next_chunk()
    assert pulled == [0]
