"""ingest, the core reading: formats, gzip, encodings, line numbers, streaming, CSV mapping and rejects,
with FullStory's row rules as the rules passed in (they have tests of their own: test_fullstory_rules.py),
and with rules of another shape to show the readers know no provider."""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import itertools
import json
import os
import tracemalloc
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
from tracker import ingest
from tracker.ingest import (
    CsvColumn,
    InputError,
    InputFormat,
    InputLayout,
    Rejected,
    Row,
    RowInvalid,
    RowRules,
    detect_format,
    read_requests,
)
from tracker.limits import MAX_LINE_BYTES
from tracker.providers.fullstory import EVENT_RULES as EVENTS
from tracker.providers.fullstory import USER_RULES as USERS

BOM = b"\xef\xbb\xbf"


def read(data: bytes, kind: str, job: RowRules = USERS, *, gz: bool = False, **kwargs: Any) -> list[Row | Rejected]:
    if gz:
        data = gzip.compress(data)
    return list(read_requests(io.BytesIO(data), InputFormat(kind, gz), job, **kwargs))  # type: ignore[arg-type]


def summary(items: list[Row | Rejected]) -> list[tuple]:
    """(line, request) for rows, (line, code) for rejects."""
    return [(i.line, i.request) if isinstance(i, Row) else (i.line, i.code) for i in items]


def read_error(data: bytes, kind: str, job: RowRules = USERS, **kwargs: Any) -> tuple[InputError, list]:
    got: list = []
    with pytest.raises(InputError) as info:
        for item in read_requests(io.BytesIO(data), InputFormat(kind, kwargs.pop("gz", False)), job, **kwargs):  # type: ignore[arg-type]
            got.append(item)
    return info.value, got


class ChunkedStream:
    """A read()-only stream returning at most `size` bytes per call (like a network body)."""

    def __init__(self, data: bytes, size: int) -> None:
        self._data = io.BytesIO(data)
        self._size = size

    def read(self, n: int = -1) -> bytes:
        return self._data.read(min(n, self._size) if n >= 0 else self._size)


# --- detect_format ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "kind", "gz"),
    [
        ("inbox/users.csv", "csv", False),
        ("inbox/users.CSV.GZ", "csv", True),
        ("a/b/events.ndjson", "ndjson", False),
        ("events.ndjson.gz", "ndjson", True),
        ("events.jsonl", "ndjson", False),
        ("events.jsonl.gz", "ndjson", True),
        ("x.json", "json", False),
        ("dir.v2/x.json.gz", "json", True),
        ("users.tsv", "csv", False),  # delimited text: the delimiter is told from the header
        ("Unicode Text.txt", "csv", False),  # Excel's "Unicode Text" (UTF-16, tab-separated)
        ("users.TXT.gz", "csv", True),
    ],
)
def test_detect_format(key: str, kind: str, gz: bool) -> None:
    assert detect_format(key) == InputFormat(kind=kind, gzip=gz)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["users.xml", "users", "users.gz", "users.csv.zip", "csv", "dir.csv/file", ""])
def test_detect_format_unsupported(key: str) -> None:
    with pytest.raises(InputError) as info:
        detect_format(key)
    assert info.value.code == "unsupported_format"
    assert ".csv" in info.value.message


# --- every format, with and without gzip and BOM -------------------------------------------------

REQUESTS = [
    {"uid": "u1", "email": "a@example.com", "properties": {"plan": "pro"}},
    {"uid": "u2", "display_name": 'Zoë, "the" one'},
    {"uid": "u3", "properties": {"seats": "5"}},
]
EXPECTED_ROWS = [(i + 2, r) for i, r in enumerate(REQUESTS)]  # JSON/CSV below put row i on line i+2


def as_ndjson() -> bytes:
    return b"\n" + b"\n".join(json.dumps(r, ensure_ascii=False).encode() for r in REQUESTS) + b"\n"


def as_json() -> bytes:
    return b"[\n" + b",\n".join(json.dumps(r, ensure_ascii=False).encode() for r in REQUESTS) + b"\n]\n"


def as_json_object() -> bytes:
    return b'{"requests": [\n' + b",\n".join(json.dumps(r, ensure_ascii=False).encode() for r in REQUESTS) + b"]}"


def as_csv() -> bytes:
    return (
        'uid,email,display_name,plan,seats\r\nu1,a@example.com,,pro,\r\nu2,,"Zoë, ""the"" one",,\r\nu3,,,,5\r\n'
    ).encode()


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("bom", [False, True], ids=["nobom", "bom"])
@pytest.mark.parametrize(
    ("kind", "make"),
    [("ndjson", as_ndjson), ("json", as_json), ("json", as_json_object), ("csv", as_csv)],
    ids=["ndjson", "json-array", "json-object", "csv"],
)
def test_every_format(kind: str, make: Any, gz: bool, bom: bool) -> None:
    data = (BOM if bom else b"") + make()
    items = read(data, kind, gz=gz)
    assert summary(items) == EXPECTED_ROWS
    for item in items:
        assert isinstance(item, Row)
        assert json.loads(item.encoded) == item.request
        assert item.encoded == json.dumps(item.request, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
@pytest.mark.parametrize(
    ("kind", "make"),
    [("ndjson", as_ndjson), ("json", as_json), ("json", as_json_object), ("csv", as_csv)],
    ids=["ndjson", "json-array", "json-object", "csv"],
)
def test_tiny_chunks_give_the_same_result(kind: str, make: Any, chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "_CHUNK", chunk)
    data = BOM + make()
    items = list(read_requests(ChunkedStream(data, chunk), InputFormat(kind, False), USERS))  # type: ignore[arg-type]
    assert summary(items) == EXPECTED_ROWS


def test_numbers_split_across_chunks_in_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "_CHUNK", 5)
    data = b'[{"properties":{"n":123456789}}, 7, 12345678901234567890, {"uid":"x"}]'
    items = read(data, "json")
    assert summary(items) == [
        (1, {"properties": {"n": 123456789}}),
        (1, "invalid_json"),
        (1, "invalid_json"),
        (1, {"uid": "x"}),
    ]
    assert items[2].source == 12345678901234567890  # type: ignore[union-attr]


def test_non_object_with_unpaired_surrogate_has_a_text_source() -> None:
    items = read(b'["\\ud800"]', "json")
    assert summary(items) == [(1, "invalid_json")]
    assert items[0].source == '"\\ud800"'  # type: ignore[union-attr]


# --- NDJSON ----------------------------------------------------------------------------------------


def test_ndjson_lines_blank_lines_and_rejects() -> None:
    data = b"\n".join(
        [
            b'{"uid":"a"}',  # 1
            b"",  # 2 blank
            b"   \t",  # 3 blank
            b'{"uid":"b"}\r',  # 4 CRLF
            b"[1, 2]",  # 5 not an object
            b'"text"',  # 6 not an object
            b'{"uid": ',  # 7 truncated
            b'{"uid": NaN}',  # 8 non-standard
            b'{"uid": "caf\xe9"}',  # 9 latin-1 byte
            b'{"uid": "\\ud800"}',  # 10 unpaired surrogate escape
            b'{"properties": {"n": 1e999}}',  # 11 overflowing number
            b'{"uid":"c"} {"uid":"d"}',  # 12 two objects on a line
            b'{"uid":"e"}',  # 13
        ]
    )
    assert summary(read(data, "ndjson")) == [
        (1, {"uid": "a"}),
        (4, {"uid": "b"}),
        (5, "invalid_json"),
        (6, "invalid_json"),
        (7, "invalid_json"),
        (8, "invalid_json"),
        (9, "invalid_utf8"),
        (10, "invalid_utf8"),
        (11, "invalid_json"),
        (12, "invalid_json"),
        (13, {"uid": "e"}),
    ]


def test_ndjson_reject_sources() -> None:
    items = read(b'[1]\n{bad\n{"uid": "caf\xe9"}\n{"uid": 5}\n', "ndjson")
    assert [i.source for i in items] == [[1], "{bad", '{"uid": "caf\ufffd"}', {"uid": 5}]  # type: ignore[union-attr]
    for item in items:
        json.dumps(item.source, ensure_ascii=False).encode()  # always writable as UTF-8 JSON


def test_ndjson_empty_file_is_zero_rows() -> None:
    assert read(b"", "ndjson") == []
    assert read(b"\n\n  \n", "ndjson") == []
    assert read(BOM, "ndjson") == []


def line_of(size: int) -> bytes:
    """A valid users request line of exactly `size` bytes (whitespace padded)."""
    base = b'{"uid":"a"}'
    return base[:-1] + b" " * (size - len(base)) + b"}"


@pytest.mark.parametrize("gz", [False, True])
def test_ndjson_line_over_max_is_rejected_without_loading(gz: bool) -> None:
    at_limit = line_of(MAX_LINE_BYTES)
    over = line_of(MAX_LINE_BYTES + 1)
    huge = b'{"uid":"' + b"x" * (5 * MAX_LINE_BYTES) + b'"}'
    data = b"\n".join([at_limit, over, b'{"uid":"b"}', huge, b'{"uid":"c"}', huge])
    items = read(data, "ndjson", gz=gz)
    assert summary(items) == [
        (1, {"uid": "a"}),
        (2, "line_too_long"),
        (3, {"uid": "b"}),
        (4, "line_too_long"),
        (5, {"uid": "c"}),
        (6, "line_too_long"),
    ]
    assert len(items[3].source) == 1024  # type: ignore[union-attr]
    assert str(MAX_LINE_BYTES) in items[1].reason  # type: ignore[union-attr]


def test_iter_lines_never_holds_a_long_line() -> None:
    """A 50 MiB line is skipped in chunks: peak memory stays around MAX_LINE_BYTES + chunk."""

    def body() -> Iterator[bytes]:
        yield b'{"uid":"a"}\n{"uid":"'
        for _ in range(200):
            yield b"x" * 256 * 1024
        yield b'"}\n{"uid":"b"}\n'

    tracemalloc.start()
    try:
        items = list(read_requests(GeneratorStream(body()), InputFormat("ndjson", False), USERS))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary(items) == [(1, {"uid": "a"}), (2, "line_too_long"), (3, {"uid": "b"})]
    assert peak < 4 * MAX_LINE_BYTES


# --- JSON document ---------------------------------------------------------------------------------


def test_json_pretty_printed_line_numbers() -> None:
    doc = {"requests": [{"uid": "a", "properties": {"x": 1}}, {"uid": "b"}, 5, {"nope": 1}]}
    data = json.dumps(doc, indent=2).encode()
    # {                      1
    #   "requests": [        2
    #     {                  3 <- a
    #       "uid": "a",  ... (6 lines for a)
    #     {                  9 <- b ...
    items = read(data, "json")
    assert summary(items) == [
        (3, {"uid": "a", "properties": {"x": 1}}),
        (9, {"uid": "b"}),
        (12, "invalid_json"),
        (13, "unknown_field"),
    ]
    assert data.decode().splitlines()[12 - 1].strip() == "5,"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"[]", []),
        (b"  [ ]  \n", []),
        (b'{"requests": []}', []),
        (b'[{"uid":"a"},{"uid":"b"}]', [(1, {"uid": "a"}), (1, {"uid": "b"})]),
        (b'\n\n[\n\n{"uid":"a"}\n,\n\n{"uid":"b"}]', [(5, {"uid": "a"}), (8, {"uid": "b"})]),
        (b'{ "requests" : [ {"uid":"a"} ] }\n', [(1, {"uid": "a"})]),
        (b'[{"uid":"a\\n\\"]"}, null]', [(1, {"uid": 'a\n"]'}), (1, "invalid_json")]),
    ],
)
def test_json_documents(data: bytes, expected: list) -> None:
    assert summary(read(data, "json")) == expected


@pytest.mark.parametrize(
    ("data", "code", "rows_before"),
    [
        (b"", "empty_file", 0),
        (b"  \n ", "empty_file", 0),
        (b"42", "invalid_json_document", 0),
        (b'"requests"', "invalid_json_document", 0),
        (b"null", "invalid_json_document", 0),
        (b"{}", "invalid_json_document", 0),
        (b'{"rows": []}', "invalid_json_document", 0),
        (b'{"requests": {}}', "invalid_json_document", 0),
        (b'{"requests": [], "extra": 1}', "invalid_json_document", 0),
        (b'{"requests": [{"uid":"a"}], "requests": []}', "invalid_json_document", 1),
        (b'{"shared": {}, "requests": []}', "invalid_json_document", 0),  # users have no shared
        (b'[{"uid":"a"}] [', "invalid_json_document", 1),
        (b'[{"uid":"a"},]', "invalid_json_document", 1),
        (b'[{"uid":"a"} {"uid":"b"}]', "invalid_json_document", 1),
        (b'[{"uid":"a"}, {"uid": x}]', "invalid_json_document", 1),
        (b'[{"uid": NaN}]', "invalid_json_document", 0),
        (b'[{"uid":"a"}', "truncated_json", 1),
        (b'[{"uid":"a"},', "truncated_json", 1),
        (b'[{"uid":"a"}, {"uid": "b', "truncated_json", 1),
        (b'[{"uid":"a"}, {"uid": "b"', "truncated_json", 1),
        (b'{"requests": [{"uid":"a"}]', "truncated_json", 1),
        (b"[", "truncated_json", 0),
        (b'{"requests"', "truncated_json", 0),
        (b"{", "truncated_json", 0),
        (b'{"requests": ', "truncated_json", 0),
        (b'{"requests" [', "invalid_json_document", 0),
        (b"{requests: []}", "invalid_json_document", 0),
    ],
)
def test_json_document_errors(data: bytes, code: str, rows_before: int) -> None:
    error, got = read_error(data, "json")
    assert error.code == code, error.message
    assert len(got) == rows_before
    assert error.message


def test_json_shared_is_a_job_level_error_for_events() -> None:
    error, got = read_error(b'{"requests": [{"name": "a"}], "shared": {"context": {}}}', "json", EVENTS)
    assert error.code == "unsupported_shared"
    assert summary(got) == [(1, {"name": "a"})]
    error, got = read_error(b'{"shared": {"context": {}}, "requests": [{"name": "a"}]}', "json", EVENTS)
    assert (error.code, got) == ("unsupported_shared", [])


def test_json_syntax_error_reports_position() -> None:
    error, _ = read_error(b'[\n{"uid":"a"},\n{"uid": x}]', "json")
    assert "line 3 column 9" in error.message


def test_json_invalid_utf8_inside_a_string_rejects_the_element() -> None:
    data = b'[{"uid":"a"},\n{"uid":"caf\xe9"},\n{"uid":"\\udfff"},\n{"uid":"b"}]'
    items = read(data, "json")
    assert summary(items) == [(1, {"uid": "a"}), (2, "invalid_utf8"), (3, "invalid_utf8"), (4, {"uid": "b"})]
    assert items[1].source == '{"uid":"caf\ufffd"}'  # type: ignore[union-attr]
    error, _ = read_error(b'[{"uid":"a"}\xff]', "json")
    assert error.code == "invalid_json_document"


@pytest.mark.parametrize("chunk", [7, 256 * 1024])
def test_json_element_over_max_is_skipped(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "_CHUNK", chunk if chunk > 100 else 64 * 1024)
    tricky = {
        "uid": "a",
        "properties": {"s": ']}\\"[{,' + "x" * (2 * MAX_LINE_BYTES), "list": [[1], {"a": "]"}]},
    }
    big_string = '"' + "y" * (MAX_LINE_BYTES + 10) + '\\""'
    data = ('[{"uid":"first"},\n' + json.dumps(tricky) + ",\n" + big_string + ',\n{"uid":"last"}\n]').encode()
    items = read(data, "json")
    assert summary(items) == [
        (1, {"uid": "first"}),
        (2, "request_too_large"),
        (3, "request_too_large"),
        (4, {"uid": "last"}),
    ]
    assert len(items[1].source) == 1024  # type: ignore[union-attr]


def test_json_element_at_max_is_loaded() -> None:
    element = line_of(MAX_LINE_BYTES)
    items = read(b"[" + element + b",\n" + line_of(MAX_LINE_BYTES + 1) + b"]", "json")
    assert summary(items) == [(1, {"uid": "a"}), (2, "request_too_large")]


# --- gzip ------------------------------------------------------------------------------------------


def ndjson_rows(n: int) -> bytes:
    return b"".join(b'{"uid":"u%d","properties":{"i":%d}}\n' % (i, i) for i in range(n))


@pytest.mark.parametrize("kind", ["ndjson", "json", "csv"])
def test_truncated_gzip_keeps_earlier_rows(kind: str) -> None:
    if kind == "ndjson":
        raw = ndjson_rows(60_000)
    elif kind == "json":
        raw = b"[" + ndjson_rows(60_000).replace(b"\n", b",") + b'{"uid":"end"}]'
    else:
        raw = b"uid,i\n" + b"".join(b"u%d,%d\n" % (i, i) for i in range(60_000))
    compressed = gzip.compress(raw)
    error, got = read_error(compressed[: len(compressed) // 2], kind, gz=True)
    assert error.code == "corrupt_gzip"
    assert len(got) > 1000
    assert all(isinstance(g, Row) for g in got)


@pytest.mark.parametrize(
    "data",
    [b"definitely not gzip", gzip.compress(b'{"uid":"a"}\n')[:5], b"\x1f\x8b\x08\x00garbage-after-magic"],
)
def test_corrupt_gzip(data: bytes) -> None:
    error, got = read_error(data, "ndjson", gz=True)
    assert (error.code, got) == ("corrupt_gzip", [])


def test_gzip_crc_mismatch_is_corrupt() -> None:
    compressed = bytearray(gzip.compress(b'{"uid":"a"}\n'))
    compressed[-8] ^= 0xFF  # CRC32 in the trailer
    error, _ = read_error(bytes(compressed), "ndjson", gz=True)
    assert error.code == "corrupt_gzip"


def test_gzip_over_the_cap() -> None:
    raw = ndjson_rows(10_000)
    assert len(read(raw, "ndjson", gz=True, max_uncompressed_bytes=len(raw))) == 10_000
    error, _ = read_error(gzip.compress(raw), "ndjson", gz=True, max_uncompressed_bytes=len(raw) - 1)
    assert error.code == "too_large"
    assert str(len(raw) - 1) in error.message


def test_gzip_bomb_stops_early() -> None:
    bomb = gzip.compress(b"\n" * (64 * 1024 * 1024), compresslevel=9)  # ~64 KiB compressed
    assert len(bomb) < 200_000
    error, _ = read_error(bomb, "ndjson", gz=True, max_uncompressed_bytes=1024 * 1024)
    assert error.code == "too_large"


def test_multi_member_gzip() -> None:
    data = gzip.compress(b'{"uid":"a"}\n') + gzip.compress(b'{"uid":"b"}\n')
    items = list(read_requests(io.BytesIO(data), InputFormat("ndjson", True), USERS))
    assert summary(items) == [(1, {"uid": "a"}), (2, {"uid": "b"})]


# --- CSV -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_file"),
        (b"\n\n\r\n", "empty_file"),
        (BOM, "empty_file"),
        (b",,\nu1,,\n", "missing_header"),
        (b"uid,email,uid\nu1,a,b\n", "invalid_header"),
        (b'uid,"email\n', "csv_malformed"),
        (b"uid,caf\xe9\nu1,x\n", "invalid_utf8"),
        (b"uid," + b"x" * MAX_LINE_BYTES + b"\nu1,x\n", "line_too_long"),
    ],
)
def test_csv_header_errors(data: bytes, code: str) -> None:
    error, got = read_error(data, "csv")
    assert (error.code, got) == (code, [])


def test_csv_events_need_a_name_column() -> None:
    error, _ = read_error(b"timestamp,plan\n2024-01-01T00:00:00Z,pro\n", "csv", EVENTS)
    assert error.code == "missing_column"


@pytest.mark.parametrize("data", [b"uid,email\n", b"uid,email", b"\n\nuid,email\r\n\r\n"])
def test_csv_header_only_is_zero_rows(data: bytes) -> None:
    assert read(data, "csv") == []


def test_csv_users_mapping() -> None:
    data = (
        b"uid,display_name,email,properties,plan, seats \n"
        b'u1,Ann,ann@example.com,"{""nested"": {""a"": 1}, ""flag"": true}",pro,3\n'
        b"u2,,,,,\n"
        b",,,,,\n"  # only empty cells: skipped like a blank line
        b',,,"{""plan"": ""x""}",free,\n'
    )
    items = read(data, "csv")
    assert summary(items) == [
        (
            2,
            {
                "uid": "u1",
                "display_name": "Ann",
                "email": "ann@example.com",
                "properties": {"nested": {"a": 1}, "flag": True, "plan": "pro", "seats": "3"},
            },
        ),
        (3, {"uid": "u2"}),
        (5, "duplicate_property"),
    ]
    assert "'plan'" in items[2].reason  # type: ignore[union-attr]


def test_csv_events_mapping() -> None:
    data = (
        b"name,timestamp,user,session,context,properties,plan\n"
        b'Signed Up,2024-01-02T03:04:05Z,"{""uid"": ""u1""}",,"{""browser"": {""url"": ""https://x""}}",'
        b'"{""n"": 1}",pro\n'
        b'Viewed,,,"{""id"": ""1:2""}",,,\n'
        b",2024-01-02,,,,,\n"
    )
    assert summary(read(data, "csv", EVENTS)) == [
        (
            2,
            {
                "name": "Signed Up",
                "timestamp": "2024-01-02T03:04:05Z",
                "user": {"uid": "u1"},
                "context": {"browser": {"url": "https://x"}},
                "properties": {"n": 1, "plan": "pro"},
            },
        ),
        (3, {"name": "Viewed", "session": {"id": "1:2"}}),
        (4, "missing_field"),
    ]


def test_csv_json_cells_errors() -> None:
    data = b'uid,properties\nu1,{not json}\nu2,[1]\nu3,"{""ok"": 1}"\nu4,"{""a"": ""\\ud800""}"\n'
    items = read(data, "csv")
    assert summary(items) == [
        (2, "invalid_json"),
        (3, "invalid_type"),
        (4, {"uid": "u3", "properties": {"ok": 1}}),
        (5, "invalid_utf8"),
    ]
    assert items[0].source == {"uid": "u1", "properties": "{not json}"}  # type: ignore[union-attr]


def test_csv_record_problems_and_line_numbers() -> None:
    data = (
        b"uid,email,note\n"  # 1
        b'u1,a@x,"multi\nline\nnote"\n'  # 2-4
        b"u2,b@x\n"  # 5: too few cells
        b'u3,"bad"quote,x\n'  # 6: malformed quoting
        b"u4,c@x,d,extra\n"  # 7: too many cells
        b"\n"  # 8 blank
        b"u5,caf\xe9,x\n"  # 9 invalid UTF-8
        b'u6,"a\nb\xff",x\n'  # 10-11 invalid UTF-8 inside a multi-line record
        b",,x\n"  # 12: anonymous with a property
        b"u7,e@x," + b"z" * (MAX_LINE_BYTES + 1) + b"\n"  # 13: too long
        b"u8,f@x,ok"  # 14: no final newline
    )
    items = read(data, "csv")
    assert summary(items) == [
        (2, {"uid": "u1", "email": "a@x", "properties": {"note": "multi\nline\nnote"}}),
        (5, "csv_column_count"),
        (6, "csv_malformed"),
        (7, "csv_column_count"),
        (9, "invalid_utf8"),
        (10, "invalid_utf8"),
        (12, {"properties": {"note": "x"}}),
        (13, "line_too_long"),
        (14, {"uid": "u8", "email": "f@x", "properties": {"note": "ok"}}),
    ]
    by_line = {i.line: i for i in items}
    assert by_line[5].source == ["u2", "b@x"]  # type: ignore[union-attr]
    assert by_line[6].source == 'u3,"bad"quote,x'  # type: ignore[union-attr]
    assert "line 6" in by_line[6].reason  # type: ignore[union-attr]
    assert by_line[9].source == "u5,caf\ufffd,x"  # type: ignore[union-attr]
    assert "2 cells" in by_line[5].reason and "3 columns" in by_line[5].reason  # type: ignore[union-attr]


def test_csv_unclosed_quote_at_end_is_rejected() -> None:
    items = read(b'uid,email\nu1,a\nu2,"never closed\nmore\n', "csv")
    assert summary(items) == [(2, {"uid": "u1", "email": "a"}), (3, "csv_malformed")]


def test_csv_unnamed_column() -> None:
    items = read(b"uid,,email\nu1,,a\nu2,x,b\n", "csv")
    assert summary(items) == [(2, {"uid": "u1", "email": "a"}), (3, "invalid_property_name")]


def test_csv_invalid_header_name_rejects_rows_by_validation() -> None:
    items = read(b"uid,First Name\nu1,Ann\nu2,\n", "csv")
    assert summary(items) == [(2, "invalid_property_name"), (3, {"uid": "u2"})]


# --- files as people export them: encodings, delimiters, line ends, what is not text ------------------

# (codec, BOM written): Excel's "Unicode Text" is UTF-16LE with a BOM; UTF-16 without a BOM is told by its zeros.
ENCODINGS = [
    ("utf-16-le", codecs.BOM_UTF16_LE),
    ("utf-16-be", codecs.BOM_UTF16_BE),
    ("utf-32-le", codecs.BOM_UTF32_LE),
    ("utf-32-be", codecs.BOM_UTF32_BE),
    ("utf-16-le", b""),
    ("utf-16-be", b""),
]


def layout_of(data: bytes, kind: str, job: RowRules = USERS, *, gz: bool = False) -> InputLayout:
    if gz:
        data = gzip.compress(data)
    return read_requests(io.BytesIO(data), InputFormat(kind, gz), job).layout  # type: ignore[arg-type]


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize(("codec", "bom"), ENCODINGS, ids=[f"{c}{'-bom' if b else ''}" for c, b in ENCODINGS])
@pytest.mark.parametrize(
    ("kind", "make"),
    [("ndjson", as_ndjson), ("json", as_json), ("json", as_json_object), ("csv", as_csv)],
    ids=["ndjson", "json-array", "json-object", "csv"],
)
def test_every_format_in_utf16_and_utf32(kind: str, make: Any, codec: str, bom: bytes, gz: bool) -> None:
    data = bom + make().decode("utf-8").encode(codec)
    assert summary(read(data, kind, gz=gz)) == EXPECTED_ROWS
    layout = layout_of(data, kind, gz=gz)
    assert (layout.encoding, layout.bom, layout.gzip) == (codec, bool(bom), gz)


@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_utf16_split_anywhere_between_chunks(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "_CHUNK", chunk)
    data = codecs.BOM_UTF16_LE + as_csv().decode("utf-8").encode("utf-16-le")
    items = list(read_requests(ChunkedStream(data, chunk), InputFormat("csv", False), USERS))  # type: ignore[arg-type]
    assert summary(items) == EXPECTED_ROWS


def test_excel_unicode_text_is_read() -> None:
    """Excel "Save as: Unicode Text": UTF-16LE with a BOM, tab-separated, CRLF line ends, text cells quoted
    only when they hold a tab, a quote or a line break."""
    text = 'uid\temail\tdisplay_name\tnote\r\nu1\ta@example.com\tZoë\t"two\r\nlines"\r\nu2\tb@example.com\tJo\t\r\n'
    reading = read_requests(
        io.BytesIO(codecs.BOM_UTF16_LE + text.encode("utf-16-le")), InputFormat("csv", False), USERS
    )
    assert summary(list(reading)) == [
        (2, {"uid": "u1", "email": "a@example.com", "display_name": "Zoë", "properties": {"note": "two\r\nlines"}}),
        (4, {"uid": "u2", "email": "b@example.com", "display_name": "Jo"}),
    ]
    assert reading.layout.as_dict() == {
        "format": "csv",
        "gzip": False,
        "encoding": "utf-16-le",
        "bom": True,
        "newlines": "LF or CRLF",
        "delimiter": "\t",
    }


def test_utf16_is_decoded_as_it_streams() -> None:
    """A UTF-16 file is transcoded chunk by chunk: the first row arrives long before the end, and memory
    stays flat (never the whole file)."""
    encoded = (line.decode().encode("utf-16-le") for line in csv_lines(50_000))
    stream = GeneratorStream(itertools.chain([codecs.BOM_UTF16_LE], encoded))
    tracemalloc.start()
    try:
        rows = read_requests(stream, InputFormat("csv", False), USERS)  # type: ignore[arg-type]
        assert isinstance(next(rows), Row)
        assert not stream.exhausted and stream.produced < 2 * 1024 * 1024
        assert sum(1 for _ in rows) == 50_000 - 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stream.produced > 9 * 1024 * 1024  # the peak is a fraction of the file
    assert peak < 3 * 1024 * 1024, peak


def test_utf16_unpaired_surrogate_rejects_its_row_and_truncated_utf16_fails_the_file() -> None:
    data = codecs.BOM_UTF16_LE + "uid\nu1\n\ud800x\nu3\n".encode("utf-16-le", "surrogatepass")
    items = read(data, "csv")
    assert summary(items) == [(2, {"uid": "u1"}), (3, "invalid_utf16"), (4, {"uid": "u3"})]
    assert items[1].reason == "Line 3 is not valid UTF-16 (an unpaired surrogate)."  # type: ignore[union-attr]
    error, before = read_error(data + b"x", "csv")  # an odd number of bytes: cut in the middle of a character
    assert error.code == "invalid_utf16"
    assert "not valid UTF-16" in error.message and "truncated" in error.message
    assert summary(before) == [(2, {"uid": "u1"}), (3, "invalid_utf16"), (4, {"uid": "u3"})]


@pytest.mark.parametrize(
    ("header", "delimiter"),
    [
        ("uid,email", ","),
        ("uid;email;display_name", ";"),
        ("uid\temail", "\t"),
        ("uid|email|plan", "|"),
        ("uid", ","),  # one column: every delimiter reads it the same
        ('"uid","email"', ","),
        ('"uid";"email"', ";"),  # quoted names: a comma reading would break the quoting
        ('uid;"plan, yearly";email', ";"),  # a quoted name may hold another candidate
        ('"plan;tier",uid', ","),
        ("uid;email,phone", ";"),  # both read 2 columns: the reading that names a known column wins
        ("uid,email;phone", ","),
        ("a;b,c", ","),  # nothing known, same count: the first of , ; tab |
        ("uid;email;plan;tier|x", ";"),  # more columns
        ("name\ttimestamp\tuser", "\t"),
    ],
)
def test_csv_delimiter_is_told_from_the_header(header: str, delimiter: str) -> None:
    job = EVENTS if header.startswith("name") else USERS
    assert layout_of(f"{header}\n".encode(), "csv", job).delimiter == delimiter


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_csv_with_another_delimiter_reads_like_comma(delimiter: str) -> None:
    text = as_csv().decode()
    quoted = text.replace('"Zoë, ""the"" one"', "\x00")  # keep the quoted cell whole while swapping delimiters
    swapped = quoted.replace(",", delimiter).replace("\x00", f'"Zoë{delimiter} ""the"" one"')
    items = read(("\n\n" + swapped).encode(), "csv")  # blank lines first: the header is the first non-blank line
    expected = [(line + 2, row) for line, row in EXPECTED_ROWS]
    expected[1] = (5, {"uid": "u2", "display_name": f'Zoë{delimiter} "the" one'})
    assert summary(items) == expected


def test_the_delimiter_is_told_once_per_file(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    detect = ingest._detect_delimiter

    def counted(header: str, rules: RowRules) -> str:
        calls.append(header)
        return detect(header, rules)

    monkeypatch.setattr(ingest, "_detect_delimiter", counted)
    data = b"uid;plan\n" + b"".join(b"u%d;pro\n" % i for i in range(5000))
    assert sum(isinstance(item, Row) for item in read(data, "csv")) == 5000
    assert calls == ["uid;plan"]


def test_a_users_csv_needs_uid_and_the_message_says_what_was_read() -> None:
    error, rows = read_error(b"user_id;email\nu1;a@example.com\n", "csv")
    assert (error.code, rows) == ("missing_column", [])
    assert error.message == (
        "A CSV of users needs a 'uid' column; the header, read with a semicolon (;) as the delimiter, has 2 columns: "
        "'user_id', 'email'."
    )
    error, _ = read_error(b"UID,email\nu1,a@example.com\n", "csv")
    assert error.message.endswith("Column 'UID' differs only in case: rename it 'uid'.")


def xlsx(*, sheet_first: bool = False) -> bytes:
    """A workbook as Excel writes it, or (sheet_first) with the sheet's data ahead of xl/workbook.xml."""
    out = io.BytesIO()
    names = ["[Content_Types].xml", "_rels/.rels", "xl/workbook.xml", "xl/worksheets/sheet1.xml"]
    if sheet_first:
        names = ["docProps/app.xml", "xl/worksheets/sheet1.xml", "xl/workbook.xml", "[Content_Types].xml"]
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            archive.writestr(name, os.urandom(300_000) if name.endswith("sheet1.xml") else b"<x/>")
    return out.getvalue()


def zipped(name: str, data: bytes, *, stored_first: tuple[str, bytes] | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        if stored_first:
            archive.writestr(zipfile.ZipInfo(stored_first[0]), stored_first[1])
        archive.writestr(name, data)
    return out.getvalue()


NOT_TEXT = [
    ("xlsx", xlsx(), "an Excel workbook (.xlsx)"),
    ("xlsx-sheet-first", xlsx(sheet_first=True), "an Excel workbook (.xlsx)"),
    ("xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500), "an Excel 97-2003 workbook (.xls)"),
    (
        "ods",
        zipped("content.xml", b"<x/>", stored_first=("mimetype", b"application/vnd.oasis.opendocument.spreadsheet")),
        "an OpenDocument spreadsheet (.ods)",
    ),
    ("zip", zipped("users.csv", b"uid\nu1\n"), "a ZIP archive"),
    ("parquet", b"PAR1\x15\x04\x15" + bytes(100) + b"PAR1", "a Parquet file"),
    ("pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "a PDF document"),
    ("7z", b"7z\xbc\xaf\x27\x1c\x00\x04", "a 7-Zip archive"),
    ("bzip2", bz2.compress(b"uid\nu1\n"), "a bzip2-compressed file"),
    ("png", b"\x89PNG\r\n\x1a\n" + bytes(20), "a PNG image"),
    ("nul-bytes", os.urandom(100) + bytes(1000), "binary data"),
]


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize(("data", "what"), [(d, w) for _, d, w in NOT_TEXT], ids=[n for n, _, _ in NOT_TEXT])
@pytest.mark.parametrize("kind", ["csv", "ndjson", "json"])
def test_what_is_not_text_is_named_before_any_row(kind: str, data: bytes, what: str, gz: bool) -> None:
    error, rows = read_error(gzip.compress(data) if gz else data, kind, gz=gz)
    assert (error.code, rows) == ("unsupported_format", [])
    assert error.message.startswith(f"The file is {what}")
    assert f"not {ingest._KIND_NAMES[kind]} text" in error.message


def test_an_excel_workbook_says_save_it_as_csv_utf8() -> None:
    error, _ = read_error(xlsx(), "csv")
    assert error.message == (
        'The file is an Excel workbook (.xlsx), not CSV text: save it as "CSV UTF-8 (Comma delimited)" and '
        "upload the .csv."
    )


def test_an_upload_without_a_known_extension_is_named_by_its_content() -> None:
    unnamed = InputError("unsupported_format", "The name must end in .csv.")
    named = ingest.unsupported_upload("inbox/users/people.xlsx", unnamed, io.BytesIO(xlsx()))
    assert (named.code, named.message) == (
        "unsupported_format",
        "'inbox/users/people.xlsx' is an Excel workbook (.xlsx): save it as \"CSV UTF-8 (Comma delimited)\" and "
        "upload the .csv.",
    )
    assert ingest.unsupported_upload("inbox/users/x.txt", unnamed, io.BytesIO(b"uid\nu1\n")) is unnamed


def test_gzip_content_under_a_plain_name_is_decompressed() -> None:
    data = gzip.compress(as_ndjson())
    assert summary(read(data, "ndjson")) == EXPECTED_ROWS
    assert layout_of(data, "ndjson").gzip


def test_classic_mac_line_ends_are_line_ends() -> None:
    data = as_csv().replace(b"\r\n", b"\r")
    assert summary(read(data, "csv")) == EXPECTED_ROWS
    assert layout_of(data, "csv").cr_newlines
    assert not layout_of(as_csv(), "csv").cr_newlines


def test_windows_1252_is_named() -> None:
    error, _ = read_error("uid,prénom\nu1,José\n".encode("cp1252"), "csv")
    assert error.code == "invalid_utf8"
    assert error.message.startswith("The CSV header is not valid UTF-8 (byte 0xE9 at character 7)")
    assert "Windows-1252" in error.message and "CSV UTF-8" in error.message
    items = read("uid,name\nu1,José\nu2,Jo\n".encode("cp1252"), "csv")
    assert summary(items) == [(2, "invalid_utf8"), (3, {"uid": "u2", "properties": {"name": "Jo"}})]
    assert items[0].reason == (  # type: ignore[union-attr]
        "Line 2 is not valid UTF-8 (byte 0xE9 at character 7): the file may be in Windows-1252 or ISO-8859-1; "
        "save it as UTF-8."
    )


def test_csv_errors_are_in_plain_words() -> None:
    items = read(b"uid,email\nu1,a\rb@example.com\nu2,c@example.com\n", "csv")
    assert summary(items) == [(2, "csv_malformed"), (3, {"uid": "u2", "email": "c@example.com"})]
    reason = items[0].reason  # type: ignore[union-attr]
    assert "carriage return" in reason and "universal-newline" not in reason
    error, _ = read_error(b'"uid"x,email\nu1,a\n', "csv")
    assert error.code == "csv_malformed"
    assert "a quoted cell is followed by other characters" in error.message


# --- rules of another provider ---------------------------------------------------------------------


def _validate_order(request: dict, size: int) -> None:
    if not isinstance(request.get("sku"), str):
        raise RowInvalid("missing_sku", "Field 'sku' is required.")


ORDERS = RowRules(
    rows="orders",
    validate=_validate_order,
    csv_columns={"sku": CsvColumn.TEXT, "lines": CsvColumn.JSON},
    csv_properties="attributes",
    csv_required=("sku",),
    refused_document_keys={"defaults": ("unsupported_defaults", "Defaults are not supported.")},
)


def test_the_readers_apply_the_rules_they_are_given() -> None:
    data = b'{"sku": "a-1", "id": 5}\n{"id": 6}\n{"uid": "u"}\n'
    expected = [(1, {"sku": "a-1", "id": 5}), (2, "missing_sku"), (3, "missing_sku")]
    assert summary(read(data, "ndjson", ORDERS)) == expected
    assert summary(read(b'{"uid": "u"}\n', "ndjson", USERS)) == [(1, {"uid": "u"})]  # FullStory's rules: fine


def test_csv_columns_properties_and_required_columns_come_from_the_rules() -> None:
    data = b'sku,lines,colour,attributes\na-1,"[1, 2]",red,"{""size"": ""L""}"\n'
    assert summary(read(data, "csv", ORDERS)) == [
        (2, {"sku": "a-1", "lines": [1, 2], "attributes": {"size": "L", "colour": "red"}})
    ]
    error, _ = read_error(b"colour\nred\n", "csv", ORDERS)
    assert (error.code, error.message) == (
        "missing_column",
        "A CSV of orders needs a 'sku' column; the header, read with a comma (,) as the delimiter, has 1 column: "
        "'colour'.",
    )
    items = read(b'sku,attributes\na,"[1]"\n', "csv", ORDERS)
    assert [(i.code, i.reason) for i in items] == [("invalid_type", "Column 'attributes' must hold a JSON object.")]


def test_refused_document_keys_come_from_the_rules() -> None:
    error, rows = read_error(b'{"requests": [{"sku": "a"}], "defaults": {}}', "json", ORDERS)
    assert (error.code, len(rows)) == ("unsupported_defaults", 1)
    error, _ = read_error(b'{"requests": [{"name": "n"}], "defaults": {}}', "json", EVENTS)
    assert error.code == "invalid_json_document"  # another provider's rules do not refuse it by name


# --- streaming -------------------------------------------------------------------------------------


class GeneratorStream:
    """read(n) over a generator of byte blocks; records how much has been produced."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks
        self._buf = b""
        self.exhausted = False
        self.produced = 0

    def read(self, n: int = -1) -> bytes:
        while not self.exhausted and (n < 0 or len(self._buf) < n):
            try:
                block = next(self._blocks)
            except StopIteration:
                self.exhausted = True
                break
            self.produced += len(block)
            self._buf += block
        if n < 0:
            n = len(self._buf)
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


N_ROWS = 200_000


def user_lines(n: int) -> Iterator[bytes]:
    for i in range(n):
        yield (
            b'{"uid":"user-%08d","display_name":"Person %d","email":"p%d@example.com",'
            b'"properties":{"plan":"pro","seats":%d,"score":%d.5,"active":true,"country":"DE"}}\n'
            % (i, i, i, i % 500, i)
        )


def csv_lines(n: int) -> Iterator[bytes]:
    yield b"uid,display_name,email,plan,seats,country,properties\n"
    for i in range(n):
        yield b'user-%08d,Person %d,p%d@example.com,pro,%d,DE,"{""score"": %d.5, ""active"": true}"\n' % (
            i,
            i,
            i,
            i % 500,
            i,
        )


def json_blocks(n: int) -> Iterator[bytes]:
    yield b'{"requests": [\n'
    for i, line in enumerate(user_lines(n)):
        yield (b",\n" if i else b"") + line.rstrip()
    yield b"\n]}"


@pytest.mark.parametrize(("kind", "blocks"), [("ndjson", user_lines), ("csv", csv_lines), ("json", json_blocks)])
def test_first_row_arrives_before_the_stream_is_exhausted(kind: str, blocks: Any) -> None:
    stream = GeneratorStream(blocks(N_ROWS))
    rows = read_requests(stream, InputFormat(kind, False), USERS)  # type: ignore[arg-type]
    first = next(rows)
    assert isinstance(first, Row)
    assert not stream.exhausted
    assert stream.produced < 2 * 1024 * 1024


def gzip_blocks(blocks: Iterator[bytes]) -> Iterator[bytes]:
    sink = io.BytesIO()
    with gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=1) as archive:
        for block in blocks:
            archive.write(block)
            if sink.tell() > 64 * 1024:
                yield sink.getvalue()
                sink.seek(0)
                sink.truncate()
    yield sink.getvalue()


@pytest.mark.parametrize(("kind", "gz"), [("ndjson", False), ("ndjson", True), ("json", False), ("csv", False)])
def test_memory_stays_flat(kind: str, gz: bool) -> None:
    """50k rows (~8 MB; fewer than N_ROWS because tracemalloc slows every allocation) stream
    through with a peak a fraction of the input size and of what the parsed rows would take."""
    rows = 50_000
    source = {"ndjson": user_lines, "json": json_blocks, "csv": csv_lines}[kind](rows)
    stream = GeneratorStream(gzip_blocks(source) if gz else source)
    count = 0
    tracemalloc.start()
    try:
        for item in read_requests(stream, InputFormat(kind, gz), USERS):  # type: ignore[arg-type]
            assert isinstance(item, Row)
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == rows
    assert stream.exhausted
    assert peak < 3 * 1024 * 1024, peak
    if not gz:
        assert peak < stream.produced / 2, (peak, stream.produced)
