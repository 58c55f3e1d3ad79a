"""The bad-input catalogue: every case through the whole offline pipeline, each with its expected
outcome — a per-row reject with line number and reason, or a job-level error with a clear message.
Never a crash, never a silent drop: for every finished job rows in = imported + provider errors + rejected.
Bad API bodies (wrong types, missing or extra fields, oversized, not JSON) are in test_api.py.

Files as people export them are cases too: other delimiters, Excel's "CSV UTF-8" and "Unicode Text",
classic Mac line ends, gzip under a plain name, Windows-1252, workbooks and other files that are not
text. README.md's "Bad-input catalogue" table is what these cases measured: each case checks its row
there (state, code and message as the pipeline answered), so the table cannot drift from the code.

Decision on duplicate uids in one file: every row is sent (FullStory upserts users by uid, so the
last row processed wins); nothing is dropped or merged by the tracker. Rows of one file may land in
different batches that FullStory processes in parallel, so "last" is not guaranteed to be file order:
upload one row per uid when order matters.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import zipfile
from dataclasses import dataclass
from typing import Any

import pytest

from jobtracker.local.session import OfflineSession
from jobtracker.local.stack import REPO_ROOT
from jobtracker.simulators.fullstory import SimulatorConfig
from tests.integration.helpers import read_json, read_ndjson

GZIP_CAP = 4 * 1024 * 1024
README_TABLE = "### Bad-input catalogue"


@dataclass
class Case:
    name: str
    key: str
    body: bytes
    job_error: str | None = None  # expected job-level error code, or None
    rejects: list[tuple[int, str]] | None = None  # expected (line, code) of rejected rows
    imported: int | None = None
    message_contains: str | None = None  # in the job error's message, or in a reject's reason
    layout: dict[str, Any] | None = None  # expected entries of the job's source.input (what the file was)


def _nd(*rows: Any) -> bytes:
    return b"\n".join(r if isinstance(r, bytes) else json.dumps(r).encode() for r in rows) + b"\n"


def _xlsx() -> bytes:
    """A workbook laid out as Excel writes one (the entries a reader looks for; contents do not matter)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as book:
        for name in ("[Content_Types].xml", "_rels/.rels", "xl/workbook.xml", "xl/worksheets/sheet1.xml"):
            book.writestr(name, "<x/>")
    return out.getvalue()


def _zip(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return out.getvalue()


def _utf16(text: str) -> bytes:
    """Excel "Unicode Text": UTF-16LE with a byte-order mark, CRLF line ends."""
    return codecs.BOM_UTF16_LE + text.replace("\n", "\r\n").encode("utf-16-le")


OK = {"uid": "ok", "email": "ok@example.com"}
TWO_USERS = "uid{d}email{d}display_name\nu1{d}u1@example.com{d}Ann\nu2{d}u2@example.com{d}Bob\n"
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
    Case(
        "unsupported extension",
        "inbox/users/people.xml",
        b"<people><user uid='u1'/></people>",
        job_error="unsupported_format",
        message_contains="the name must end in .csv",
    ),
    Case(
        "Excel workbook (.xlsx)",
        "inbox/users/people.xlsx",
        _xlsx(),
        job_error="unsupported_format",
        message_contains='an Excel workbook (.xlsx): save it as "CSV UTF-8',
    ),
    Case(
        "Excel workbook renamed .csv",
        "inbox/users/people-workbook.csv",
        _xlsx(),
        job_error="unsupported_format",
        message_contains="The file is an Excel workbook (.xlsx), not CSV text",
    ),
    Case(
        "zip archive holding a CSV",
        "inbox/users/users.csv.zip",
        _zip("users.csv", b"uid\nu1\n"),
        job_error="unsupported_format",
        message_contains="is a ZIP archive: unpack it",
    ),
    Case(
        "Parquet file named .csv",
        "inbox/users/users-parquet.csv",
        b"PAR1\x15\x04\x15\x10" + bytes(64) + b"PAR1",
        job_error="unsupported_format",
        message_contains="a Parquet file",
    ),
    Case(
        "PDF named .ndjson",
        "inbox/events/report.ndjson",
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n",
        job_error="unsupported_format",
        message_contains="a PDF document",
    ),
    Case(
        "users CSV separated by semicolons (Excel in a European locale)",
        "inbox/users/semicolons.csv",
        TWO_USERS.format(d=";").encode(),
        rejects=[],
        imported=2,
        layout={"delimiter": ";", "encoding": "utf-8"},
    ),
    Case(
        'Excel "CSV UTF-8": BOM, semicolons, CRLF',
        "inbox/users/excel-csv-utf8.csv",
        b"\xef\xbb\xbf" + TWO_USERS.format(d=";").replace("\n", "\r\n").encode(),
        rejects=[],
        imported=2,
        layout={"delimiter": ";", "encoding": "utf-8", "bom": True},
    ),
    Case(
        'Excel "Unicode Text": UTF-16LE with BOM, tab-separated (.txt)',
        "inbox/users/Unicode Text.txt",
        _utf16(TWO_USERS.format(d="\t").replace("Ann", "Zoë")),
        rejects=[],
        imported=2,
        layout={"delimiter": "\t", "encoding": "utf-16-le", "bom": True},
    ),
    Case(
        "UTF-16 text, gzip-compressed",
        "inbox/users/unicode.csv.gz",
        gzip.compress(_utf16(TWO_USERS.format(d="\t"))),
        rejects=[],
        imported=2,
        layout={"gzip": True, "encoding": "utf-16-le"},
    ),
    Case(
        "UTF-16 text cut in the middle of a character",
        "inbox/users/unicode-cut.txt",
        _utf16(TWO_USERS.format(d="\t")) + b"u",
        job_error="invalid_utf16",
        message_contains="not valid UTF-16",
    ),
    Case(
        "UTF-16 row with an unpaired surrogate",
        "inbox/users/unicode-surrogate.txt",
        codecs.BOM_UTF16_LE + "uid\r\nu1\r\n\ud800x\r\nu3\r\n".encode("utf-16-le", "surrogatepass"),
        rejects=[(3, "invalid_utf16")],
        imported=2,
    ),
    Case(
        "users CSV separated by pipes",
        "inbox/users/pipes.csv",
        TWO_USERS.format(d="|").encode(),
        rejects=[],
        imported=2,
        layout={"delimiter": "|"},
    ),
    Case(
        'classic Mac line ends (CR only, Excel "CSV (Macintosh)")',
        "inbox/users/mac.csv",
        TWO_USERS.format(d=",").replace("\n", "\r").encode(),
        rejects=[],
        imported=2,
        layout={"newlines": "CR"},
    ),
    Case(
        "gzip content under a plain .ndjson name",
        "inbox/users/really-gzip.ndjson",
        gzip.compress(_nd(OK, {"uid": "ok2"})),
        rejects=[],
        imported=2,
        layout={"gzip": True},
    ),
    Case(
        "users CSV without a uid column",
        "inbox/users/no-uid.csv",
        b"user_id,email\nu1,u1@example.com\n",
        job_error="missing_column",
        message_contains="needs a 'uid' column",
    ),
    Case(
        "users CSV whose uid column is spelled UID",
        "inbox/users/upper-uid.csv",
        b"UID;email\nu1;u1@example.com\n",
        job_error="missing_column",
        message_contains="differs only in case",
    ),
    Case(
        "Windows-1252 header",
        "inbox/users/ansi-header.csv",
        "uid,prénom\nu1,José\n".encode("cp1252"),
        job_error="invalid_utf8",
        message_contains="Windows-1252",
    ),
    Case(
        "Windows-1252 row under an ASCII header",
        "inbox/users/ansi-row.csv",
        "uid,name\nu1,Ann\nu2,José\n".encode("cp1252"),
        rejects=[(3, "invalid_utf8")],
        imported=1,
        message_contains="byte 0xE9",
    ),
    Case(
        "carriage return inside an unquoted CSV cell",
        "inbox/users/stray-cr.csv",
        b"uid,email\nu1,u1@exam\rple.com\nu2,u2@example.com\n",
        rejects=[(2, "csv_malformed")],
        imported=1,
        message_contains="a carriage return (CR) inside a cell that is not quoted",
    ),
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
    if case.layout is not None:
        layout = job["source"]["input"]
        assert {name: layout[name] for name in case.layout} == case.layout
        manifest = read_json(session, job["resultKeys"]["manifest"])
        assert manifest["job"]["source"]["input"] == layout  # recorded where people look for it too
    rejected: list[dict[str, Any]] = []
    if case.job_error:
        assert job["state"] == "FAILED"
        assert job["error"]["code"] == case.job_error
        assert job["error"]["message"]
        assert int(job.get("batchCount", 0)) == 0  # no part of an unreadable file is sent
        if case.message_contains:
            assert case.message_contains in job["error"]["message"]
    else:
        assert job["state"] == "COMPLETED", job.get("error")
        assert job["accounting"]["balanced"], job["accounting"]["check"]
        rejected = read_ndjson(session, job["resultKeys"]["rejected"])
        if case.rejects is not None:
            assert [(r["line"], r["code"]) for r in rejected] == case.rejects
        assert all(r["reason"] and "line" in r for r in rejected)
        if case.imported is not None:
            assert job["imported"] == case.imported
        if case.message_contains:
            assert any(case.message_contains in r["reason"] for r in rejected), rejected
    row = readme_row(case, job, rejected)
    assert row in readme_rows(), f"README.md's bad-input catalogue lacks (or has another version of) this row:\n{row}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def readme_row(case: Case, job: dict[str, Any], rejected: list[dict[str, Any]]) -> str:
    """The README table row for a case, from what the pipeline answered."""
    if job["state"] == "FAILED":
        outcome, code, message = "FAILED", f"`{job['error']['code']}`", job["error"]["message"]
    else:
        outcome = f"COMPLETED: {job['imported']} imported, {len(rejected)} rejected"
        code = "; ".join(f"line {r['line']} `{r['code']}`" for r in rejected) or "—"
        message = rejected[0]["reason"] if rejected else "—"
    return f"| {_cell(case.name)} | {outcome} | {code} | {_cell(message)} |"


def readme_rows() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    table = text[text.index(README_TABLE) :].split("\n\n")[2]  # heading, sentence, table
    return [line for line in table.splitlines() if line.startswith("| ")][1:]  # past the column names


def test_the_readme_catalogue_has_a_row_per_case_and_no_other() -> None:
    names = [row.split(" | ")[0][2:] for row in readme_rows()]
    assert names == [_cell(case.name) for case in CASES]


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
