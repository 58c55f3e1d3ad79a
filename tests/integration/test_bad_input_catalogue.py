"""The bad-input catalogue: every case through the whole offline pipeline, each with its expected
outcome — a per-row reject with line number and reason, or a job-level error with a clear message.
Never a crash, never a silent drop: for every finished job rows in = imported + provider errors + rejected.
Bad API bodies (wrong types, missing or extra fields, oversized, not JSON) are in test_api.py.

Decision on duplicate uids in one file: every row is sent (FullStory upserts users by uid, so the
last row processed wins); nothing is dropped or merged by the tracker. Rows of one file may land in
different batches that FullStory processes in parallel, so "last" is not guaranteed to be file order:
upload one row per uid when order matters.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from typing import Any

import pytest

from jobtracker.local.session import OfflineSession
from jobtracker.simulators.fullstory import SimulatorConfig
from tests.integration.helpers import read_ndjson

GZIP_CAP = 4 * 1024 * 1024


@dataclass
class Case:
    name: str
    key: str
    body: bytes
    job_error: str | None = None  # expected job-level error code, or None
    rejects: list[tuple[int, str]] | None = None  # expected (line, code) of rejected rows
    imported: int | None = None
    message_contains: str | None = None


def _nd(*rows: Any) -> bytes:
    return b"\n".join(r if isinstance(r, bytes) else json.dumps(r).encode() for r in rows) + b"\n"


OK = {"uid": "ok", "email": "ok@example.com"}
CASES = [
    Case(
        "malformed CSV quoting",
        "inbox/users/quoting.csv",
        b'uid,email\nu1,u1@example.com\n"u2,u2@example.com\nu3,"u3"x@example.com\n',
        rejects=None,
        message_contains=None,
    ),
    Case(
        "invalid UTF-8 in one line",
        "inbox/users/utf8.ndjson",
        _nd(OK, b'{"uid": "caf\xe9"}', {"uid": "ok2"}),
        rejects=[(2, "invalid_utf8")],
        imported=2,
    ),
    Case(
        "UTF-8 BOM before the CSV header",
        "inbox/users/bom.csv",
        b"\xef\xbb\xbfuid,email\nu1,u1@example.com\n",
        rejects=[],
        imported=1,
    ),
    Case(
        "CRLF line endings",
        "inbox/users/crlf.csv",
        b"uid,email\r\nu1,u1@example.com\r\nu2,u2@example.com\r\n",
        rejects=[],
        imported=2,
    ),
    Case("empty file", "inbox/users/empty.ndjson", b"", job_error="empty_file"),
    Case("CSV header only", "inbox/users/header-only.csv", b"uid,email\n", job_error="empty_file"),
    Case(
        "a line over 1 MB",
        "inbox/users/long-line.ndjson",
        _nd(OK, {"uid": "big", "properties": {"blob": "x" * (1024 * 1024 + 10)}}, {"uid": "ok2"}),
        rejects=[(2, "line_too_long")],
        imported=2,
    ),
    Case(
        "gzip bomb past the decompression cap",
        "inbox/users/bomb.ndjson.gz",
        gzip.compress(b" " * (GZIP_CAP * 3)),
        job_error="too_large",
    ),
    Case(
        "truncated gzip",
        "inbox/users/truncated.ndjson.gz",
        gzip.compress(_nd(*({"uid": f"u{i}"} for i in range(2000))))[:-200],
        job_error="corrupt_gzip",
    ),
    Case(
        "JSON document that is not an array or object",
        "inbox/users/scalar.json",
        b"42\n",
        job_error="invalid_json_document",
    ),
    Case(
        "JSON requests that are not a list",
        "inbox/users/not-list.json",
        b'{"requests": "nope"}',
        job_error="invalid_json_document",
    ),
    Case(
        "NDJSON line that is an array",
        "inbox/users/array-line.ndjson",
        _nd(OK, [1, 2]),
        rejects=[(2, "invalid_json")],
        imported=1,
    ),
    Case(
        "more than 500 properties",
        "inbox/users/many-props.ndjson",
        _nd({"uid": "p", "properties": {f"p{i}": i for i in range(501)}}, OK),
        rejects=[(1, "too_many_properties")],
        imported=1,
    ),
    Case(
        "invalid property names",
        "inbox/users/prop-names.ndjson",
        _nd({"uid": "a", "properties": {"first name": "x"}}, {"uid": "b", "properties": {"9lives": 1}}, OK),
        rejects=[(1, "invalid_property_name"), (2, "invalid_property_name")],
        imported=1,
    ),
    Case(
        "over-long uid and email",
        "inbox/users/long-fields.ndjson",
        _nd({"uid": "u" * 257}, {"uid": "e", "email": "e" * 120 + "@example.com"}, OK),
        rejects=[(1, "value_too_long"), (2, "value_too_long")],
        imported=1,
    ),
    Case(
        "duplicate uids in one file (all sent; documented)",
        "inbox/users/dups.ndjson",
        _nd({"uid": "same", "properties": {"n": 1}}, {"uid": "same", "properties": {"n": 2}}),
        rejects=[],
        imported=2,
    ),
    Case(
        "key with spaces and unicode (URL-encoded in the event)",
        "inbox/users/Müller list 2026 (final).ndjson",
        _nd(OK),
        rejects=[],
        imported=1,
    ),
    Case("unsupported extension", "inbox/users/people.xlsx", b"PK\x03\x04", job_error="unsupported_format"),
    Case("unknown prefix", "inbox/accounts/a.csv", b"id\n1\n", job_error="unknown_prefix"),
    Case(
        "CSV row with the wrong number of cells",
        "inbox/users/cells.csv",
        b"uid,email\nu1,u1@example.com\nu2,u2@example.com,extra\n",
        rejects=[(3, "csv_column_count")],
        imported=1,
    ),
    Case(
        "CSV properties cell that is not JSON",
        "inbox/users/props-cell.csv",
        b'uid,properties\nu1,"{""a"": 1}"\nu2,"{not json"\n',
        rejects=[(3, "invalid_json")],
        imported=1,
    ),
    Case(
        "event without a name",
        "inbox/events/no-name.ndjson",
        _nd({"name": "Signed Up", "user": {"uid": "a"}}, {"user": {"uid": "b"}}),
        rejects=[(2, "missing_field")],
        imported=1,
    ),
    Case(
        "event with a bad timestamp",
        "inbox/events/bad-time.ndjson",
        _nd({"name": "A", "timestamp": "yesterday"}, {"name": "B", "timestamp": "2026-11-23T10:00:00Z"}),
        rejects=[(1, "invalid_timestamp")],
        imported=1,
    ),
    Case(
        "unknown top-level field",
        "inbox/users/unknown-field.ndjson",
        _nd({"uid": "a", "plan": "pro"}, OK),
        rejects=[(1, "unknown_field")],
        imported=1,
    ),
]


@pytest.fixture(scope="module")
def session():
    params = {"PollMinSeconds": 0, "PollMaxSeconds": 0, "MaxUncompressedBytes": GZIP_CAP}
    with OfflineSession(
        parameters=params, simulator_config=SimulatorConfig(polls_to_complete=1), retry_time_scale=0.0
    ) as running:
        yield running


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(session, case: Case) -> None:
    stack = session.stack
    stack.upload(case.key, case.body)
    job_id = stack.wait_until(
        lambda: next((j["id"] for j in stack.jobs() if j["source"]["key"] == case.key), None), what=case.name
    )
    job = stack.wait_for_job(job_id, timeout=60)
    assert not stack.function_errors, stack.function_errors  # never a crash
    if case.job_error:
        assert job["state"] == "FAILED"
        assert job["error"]["code"] == case.job_error
        assert job["error"]["message"]
        assert int(job.get("batchCount", 0)) == 0  # no part of an unreadable file is sent
        return
    assert job["state"] == "COMPLETED", job.get("error")
    assert job["accounting"]["balanced"], job["accounting"]["check"]
    rejected = read_ndjson(session, job["resultKeys"]["rejected"])
    if case.rejects is not None:
        assert [(r["line"], r["code"]) for r in rejected] == case.rejects
    assert all(r["reason"] and "line" in r for r in rejected)
    if case.imported is not None:
        assert job["imported"] == case.imported


def test_malformed_csv_quoting_rejects_the_broken_records_and_keeps_the_rest(session) -> None:
    job = next(j for j in session.stack.jobs() if j["source"]["key"] == "inbox/users/quoting.csv")
    rejected = read_ndjson(session, job["resultKeys"]["rejected"])
    assert job["imported"] >= 1
    assert {r["code"] for r in rejected} <= {"csv_malformed", "csv_column_count", "value_too_long"}
    assert job["accounting"]["balanced"]


def test_an_object_deleted_before_intake_reads_it_fails_the_job_clearly(session) -> None:
    ghost = {
        "eventSource": "aws:s3",
        "s3": {
            "bucket": {"name": session.stack.inbox_bucket},
            "object": {"key": "inbox/users/ghost.csv", "size": 10, "eTag": "abc", "sequencer": "01"},
        },
    }
    event = {
        "Records": [
            {
                "messageId": "m1",
                "receiptHandle": "r",
                "body": json.dumps({"Records": [ghost]}),
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
                "awsRegion": "us-east-1",
            }
        ]
    }
    assert session.stack.invoke("IntakeFunction", event) == {"batchItemFailures": []}
    job = next(j for j in session.stack.jobs() if j["source"]["key"] == "inbox/users/ghost.csv")
    assert job["state"] == "FAILED"
    assert job["error"]["code"] == "source_not_found"
