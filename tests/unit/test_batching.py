"""BatchSplitter: split by request count and by body bytes; bodies are valid JSON that round-trip."""

from __future__ import annotations

import io
import json

import pytest
from tracker.batching import BatchBody, BatchSplitter
from tracker.ingest import InputFormat, Row, read_requests
from tracker.limits import (
    BATCH_ENVELOPE_BYTES,
    DEFAULT_MAX_BATCH_BYTES,
    MAX_LINE_BYTES,
    MAX_REQUESTS_PER_BATCH,
)
from tracker.providers.fullstory import USER_RULES

MIN_BYTES = MAX_LINE_BYTES + BATCH_ENVELOPE_BYTES


def encoded(i: int, pad: int = 0) -> bytes:
    return json.dumps({"uid": f"u{i}", "properties": {"pad": "x" * pad}}, separators=(",", ":")).encode()


def split(rows: list[bytes], **kwargs: int) -> list[BatchBody]:
    splitter = BatchSplitter(**kwargs)
    out = [b for b in map(splitter.add, rows) if b is not None]
    last = splitter.finish()
    if last is not None:
        out.append(last)
    return out


def requests_of(batch: BatchBody) -> list[dict]:
    body = json.loads(batch.body)
    assert list(body) == ["requests"]
    assert len(body["requests"]) == batch.rows
    return body["requests"]


def test_defaults_match_limits() -> None:
    splitter = BatchSplitter()
    assert splitter._max_requests == MAX_REQUESTS_PER_BATCH == 50_000
    assert splitter._max_bytes == DEFAULT_MAX_BATCH_BYTES == 8 * 1024 * 1024


@pytest.mark.parametrize(
    ("n_rows", "max_requests", "expected_sizes"),
    [
        (0, 3, []),
        (1, 3, [1]),
        (3, 3, [3]),
        (4, 3, [3, 1]),
        (7, 3, [3, 3, 1]),
        (9, 3, [3, 3, 3]),
        (5, 1, [1, 1, 1, 1, 1]),
    ],
)
def test_split_by_count(n_rows: int, max_requests: int, expected_sizes: list[int]) -> None:
    rows = [encoded(i) for i in range(n_rows)]
    batches = split(rows, max_requests=max_requests)
    assert [b.rows for b in batches] == expected_sizes
    assert [b.index for b in batches] == list(range(1, len(batches) + 1))
    round_trip = [r for b in batches for r in requests_of(b)]
    assert round_trip == [json.loads(r) for r in rows]


def test_add_returns_the_closed_batch_and_the_row_starts_the_next() -> None:
    splitter = BatchSplitter(max_requests=2)
    assert splitter.add(b'{"uid":"a"}') is None
    assert splitter.add(b'{"uid":"b"}') is None
    first = splitter.add(b'{"uid":"c"}')
    assert first == BatchBody(index=1, rows=2, body=b'{"requests":[{"uid":"a"},{"uid":"b"}]}')
    assert splitter.finish() == BatchBody(index=2, rows=1, body=b'{"requests":[{"uid":"c"}]}')
    assert splitter.finish() is None
    assert splitter.batches_emitted == 2


def test_split_by_bytes_exact_fit_and_one_over() -> None:
    max_bytes = MIN_BYTES
    a = encoded(1, 300_000)
    b = encoded(2, 300_000)
    # Body = envelope + a + "," + b + "," + c: choose c so the three fill max_bytes exactly.
    c_len = max_bytes - BATCH_ENVELOPE_BYTES - len(a) - len(b) - 2
    c = encoded(3, c_len - len(encoded(3, 0)))
    assert len(c) == c_len

    exact = split([a, b, c, a], max_bytes=max_bytes)
    assert [x.rows for x in exact] == [3, 1]
    assert len(exact[0].body) == max_bytes

    c_over = encoded(3, c_len + 1 - len(encoded(3, 0)))
    over = split([a, b, c_over, a], max_bytes=max_bytes)
    assert [x.rows for x in over] == [2, 2]
    for batch in over + exact:
        assert len(batch.body) <= max_bytes
        requests_of(batch)


def test_split_by_bytes_and_count_together() -> None:
    rows = [encoded(i, 200_000) for i in range(12)]
    batches = split(rows, max_requests=4, max_bytes=MIN_BYTES)
    # 5 rows of ~200 kB fit in ~1 MiB, but the count limit closes batches at 4.
    assert [b.rows for b in batches] == [4, 4, 4]
    batches = split(rows, max_requests=50, max_bytes=MIN_BYTES)
    assert [b.rows for b in batches] == [5, 5, 2]
    assert [r["uid"] for b in batches for r in requests_of(b)] == [f"u{i}" for i in range(12)]


def test_empty_splitter_finishes_with_none() -> None:
    assert BatchSplitter().finish() is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_requests": 0}, "max_requests"),
        ({"max_requests": MAX_REQUESTS_PER_BATCH + 1}, "max_requests"),
        ({"max_bytes": MIN_BYTES - 1}, "max_bytes"),
        ({"max_bytes": 1000}, "max_bytes"),
    ],
)
def test_rejects_unusable_limits(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BatchSplitter(**kwargs)


def test_minimum_max_bytes_holds_one_max_size_row() -> None:
    splitter = BatchSplitter(max_bytes=MIN_BYTES)
    row = b'"' + b"x" * (MAX_LINE_BYTES - 2) + b'"'
    assert splitter.add(row) is None
    batch = splitter.finish()
    assert batch is not None and len(batch.body) == MIN_BYTES


def test_row_bigger_than_a_batch_is_an_error() -> None:
    splitter = BatchSplitter(max_bytes=MIN_BYTES)
    splitter.add(b'{"uid":"a"}')
    with pytest.raises(ValueError, match="cannot fit"):
        splitter.add(b"x" * MIN_BYTES)


def test_read_and_split_round_trip_with_unicode() -> None:
    lines = [json.dumps({"uid": f"ü{i}", "display_name": 'Zoë\n"quoted"', "properties": {"k": i}}) for i in range(25)]
    stream = io.BytesIO("\n".join(lines).encode())
    rows = [r for r in read_requests(stream, InputFormat("ndjson", False), USER_RULES) if isinstance(r, Row)]
    batches = split([r.encoded for r in rows], max_requests=10)
    assert [b.rows for b in batches] == [10, 10, 5]
    assert [r for b in batches for r in requests_of(b)] == [json.loads(line) for line in lines]
    assert "ü".encode() in batches[0].body  # UTF-8, not \\u escapes


# -- reading a batch back, line runs, and the order of upserted identities --------------------------------
def test_a_batch_body_reads_back_request_by_request():
    from tracker.batching import iter_requests

    splitter = BatchSplitter(max_requests=10)
    for encoded in (b'{"uid":"a"}', b'{"uid":"b,]}","p":{"x":[1,2]}}', b"{}"):
        assert splitter.add(encoded) is None
    batch = splitter.finish()
    assert list(iter_requests(batch.body)) == [{"uid": "a"}, {"uid": "b,]}", "p": {"x": [1, 2]}}, {}]
    with pytest.raises(ValueError):
        list(iter_requests(b'[{"uid":"a"}]'))


def test_line_runs_round_trip():
    from tracker.batching import expand_runs, line_runs

    lines = [2, 3, 4, 7, 9, 10]
    assert line_runs(lines) == [[2, 3], [7, 1], [9, 2]]
    assert expand_runs(line_runs(lines)) == lines and line_runs([]) == []


def test_a_batch_repeating_an_earlier_batchs_uid_follows_the_latest_such_batch():
    from tracker.batching import UpsertOrder

    order = UpsertOrder("uid")
    for uid in ("a", "b", "a"):  # batch 1: a repeat inside the batch is no dependency
        order.add({"uid": uid}, 1)
    assert order.close(1) == 0
    order.add({"uid": "c"}, 2)
    order.add({"email": "no uid"}, 2)
    assert order.close(2) == 0
    order.add({"uid": "b"}, 3)
    order.add({"uid": "c"}, 3)
    assert order.close(3) == 2  # the latest earlier batch holding one of its uids
    order.add({"uid": "b"}, 4)
    assert order.close(4) == 3  # b was last in batch 3 now


def test_past_its_memory_every_later_batch_follows_the_one_before():
    from tracker.batching import UpsertOrder

    order = UpsertOrder("uid", max_ids=2)
    order.add({"uid": "a"}, 1)
    order.add({"uid": "b"}, 1)
    assert order.close(1) == 0
    order.add({"uid": "z"}, 2)  # not remembered: a later z could not be told from a new uid
    assert order.close(2) == 1
    order.add({"uid": "q"}, 3)
    assert order.close(3) == 2


def test_rows_without_an_identity_field_never_wait():
    from tracker.batching import UpsertOrder

    order = UpsertOrder(None)
    order.add({"name": "e"}, 1)
    order.add({"name": "e"}, 2)
    assert (order.close(1), order.close(2)) == (0, 0)
