"""Big inputs without S3 rights, callers kept apart, and the size limits of API Gateway and Lambda.

* POST /uploads hands out presigned URLs into the caller's own prefix of the inbox bucket (one PUT, or
  parts + complete/abort for a big file); POST /jobs {"source"} then takes only a file under the caller's
  own prefix (AdminPrincipals: any object of the inbox bucket); anything else is 403 and no job.
* Inline `requests` are capped (tracker.limits.MAX_INLINE_BODY_BYTES) below Lambda's 6 MB invoke limit,
  which the offline API enforces as AWS does, next to API Gateway's 10 MB.
* Offline, presigned URLs (uploads and results) point at the emulated AWS endpoint and work there.
"""

from __future__ import annotations

import json
import urllib.request
import xml.etree.ElementTree as ElementTree

import pytest
import urllib3
from tracker.limits import MAX_INLINE_BODY_BYTES, MAX_INTAKE_OBJECT_BYTES

from tests.integration.helpers import ndjson, read_ndjson, sigv4_headers, users

HTTP = urllib3.PoolManager(retries=False, timeout=30)
ADMIN = "AKIDADMIN"
OCTETS = {"Content-Type": "application/octet-stream"}


def call(session, method, path, body=None, key="AKIDALICE", headers=None):
    url = session.api.base_url + path
    data = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    response = HTTP.request(method, url, body=data, headers=sigv4_headers(method, url, data, key, headers))
    return response.status, json.loads(response.data) if response.data else None


@pytest.fixture(scope="module")
def session():
    """One stack with its AWS endpoint; AKIDADMIN is the only admin."""
    from jobtracker.local.session import OfflineSession
    from jobtracker.simulators.fullstory import SimulatorConfig
    from tests.integration.conftest import FAST, _free_port

    with OfflineSession(
        parameters={**FAST, "AdminPrincipals": f"arn:aws:iam::123456789012:user/{ADMIN}"},
        simulator_config=SimulatorConfig(polls_to_complete=1),
        api_port=0,
        aws_port=_free_port(),
        retry_time_scale=0.0,
    ) as offline:
        yield offline


def upload(session, body: bytes, filename: str = "people.ndjson", key: str = "AKIDALICE") -> dict:
    status, answer = call(
        session, "POST", "/uploads", {"type": "fullstory.users", "filename": filename, "size": len(body)}, key
    )
    assert status == 201, answer
    put = HTTP.request("PUT", answer["url"], body=body, headers=OCTETS)
    assert put.status == 200, put.data
    return answer


def test_an_upload_url_puts_the_file_into_the_callers_own_prefix_and_post_jobs_takes_it_in(session):
    stack = session.stack
    before = {j["id"] for j in stack.jobs()}
    answer = upload(session, ndjson(users(5)))
    assert answer["url"].startswith(session.aws_endpoint + "/")  # the offline endpoint, not s3.amazonaws.com
    assert answer["source"].startswith(f"s3://{stack.inbox_bucket}/uploads/AKIDALICE/")
    assert answer["createJob"] == {"type": "fullstory.users", "source": answer["source"]}
    assert {j["id"] for j in stack.jobs()} == before  # an upload alone starts nothing

    status, job = call(session, "POST", "/jobs", answer["createJob"])
    assert status == 202, job
    done = stack.wait_for_job(job["id"])
    assert (done["state"], done["imported"], done["ownerId"]) == ("COMPLETED", 5, "AKIDALICE")


def test_a_big_file_goes_up_in_parts(session, monkeypatch):
    import tracker.jobs_api

    monkeypatch.setattr(tracker.jobs_api, "SINGLE_PUT_MAX_BYTES", 1024)  # stands for 64 MiB
    monkeypatch.setattr(tracker.jobs_api, "PART_BYTES", 5 * 1024 * 1024)  # S3's smallest part
    body = ndjson(users(12_000, note="x" * 400))
    assert len(body) > 5 * 1024 * 1024
    status, answer = call(
        session, "POST", "/uploads", {"type": "fullstory.users", "filename": "big.ndjson", "size": len(body)}
    )
    assert status == 201, answer
    assert "url" not in answer and len(answer["parts"]) == 2 and answer["partSize"] == 5 * 1024 * 1024
    parts = []
    for part in answer["parts"]:
        start = (part["partNumber"] - 1) * answer["partSize"]
        put = HTTP.request("PUT", part["url"], body=body[start : start + answer["partSize"]], headers=OCTETS)
        assert put.status == 200, put.data
        parts.append((part["partNumber"], put.headers["ETag"]))
    complete = (
        "<CompleteMultipartUpload>"
        + "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>" for n, etag in parts)
        + "</CompleteMultipartUpload>"
    )
    done = HTTP.request(
        "POST", answer["completeUrl"], body=complete.encode(), headers={"Content-Type": "application/xml"}
    )
    assert done.status == 200 and ElementTree.fromstring(done.data).tag.endswith("CompleteMultipartUploadResult")
    bucket, _, key = answer["source"].removeprefix("s3://").partition("/")
    assert session.stack.client("s3").head_object(Bucket=bucket, Key=key)["ContentLength"] == len(body)

    status, again = call(
        session, "POST", "/uploads", {"type": "fullstory.users", "filename": "gone.ndjson", "size": len(body)}
    )
    assert HTTP.request("DELETE", again["abortUrl"]).status == 204
    open_uploads = session.stack.client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert not [u for u in open_uploads if u["Key"].endswith("/gone.ndjson")]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"type": "fullstory.users", "filename": "x.xlsx", "size": 10}, 400, "unsupported_format"),
        ({"type": "fullstory.users", "filename": "../../x.csv", "size": 10}, 400, "invalid_request"),
        ({"type": "fullstory.segment_export", "filename": "x.csv", "size": 10}, 400, "invalid_request"),
        ({"type": "fullstory.users", "filename": "x.csv", "size": 0}, 400, "invalid_request"),
        ({"type": "fullstory.users", "filename": "x.csv", "size": MAX_INTAKE_OBJECT_BYTES + 1}, 413, "file_too_large"),
    ],
)
def test_uploads_refuse_what_intake_would_refuse(session, body, status, code):
    got, answer = call(session, "POST", "/uploads", body)
    assert (got, answer["code"]) == (status, code)


def test_post_jobs_takes_only_the_callers_own_files(session):
    stack = session.stack
    alices = upload(session, ndjson(users(2)), key="AKIDALICE")
    stack.client("s3").put_object(Bucket=stack.inbox_bucket, Key="staged/ops.ndjson", Body=ndjson(users(2)))
    before = len(stack.jobs())
    refused = {
        "another caller's upload": alices["source"],
        "an object outside uploads/": f"s3://{stack.inbox_bucket}/staged/ops.ndjson",
        "an inbox/ object": f"s3://{stack.inbox_bucket}/inbox/users/someone.ndjson",
        "a prefix that only starts like one's own": f"s3://{stack.inbox_bucket}/uploads/AKIDBOBBY/x.ndjson",
        "another bucket": "s3://someone-elses-bucket/x.csv",
    }
    for what, source in refused.items():
        status, answer = call(session, "POST", "/jobs", {"type": "fullstory.users", "source": source}, "AKIDBOB")
        assert (status, answer["code"]) == (403, "source_not_allowed"), what
        assert "uploads/AKIDBOB/" in answer["message"]
    assert len(stack.jobs()) == before  # no job for any of them

    # AdminPrincipals may name any object of the inbox bucket (never another bucket).
    status, job = call(session, "POST", "/jobs", {"type": "fullstory.users", "source": alices["source"]}, ADMIN)
    assert status == 202
    status, job = call(
        session,
        "POST",
        "/jobs",
        {"type": "fullstory.users", "source": f"s3://{stack.inbox_bucket}/staged/ops.ndjson"},
        ADMIN,
    )
    assert status == 202
    assert stack.wait_for_job(job["id"])["imported"] == 2
    status, answer = call(
        session, "POST", "/jobs", {"type": "fullstory.users", "source": refused["another bucket"]}, ADMIN
    )
    assert (status, answer["code"]) == (403, "source_not_allowed")


def escaping_heavy_body(size: int) -> bytes:
    """A valid POST /jobs body of exactly `size` bytes that doubles when the event carries it as a JSON
    string: every row's property is 4,000 double quotes (each `\\"` in the body, `\\\\\\"` in the event)."""
    row = {"uid": "u-0", "properties": {"q": '"' * 4000}}
    one = len(json.dumps(row, separators=(",", ":")).encode())
    rows = [{**row, "uid": f"u-{i}"} for i in range(size // (one + 1) - 1)]
    body = json.dumps({"type": "fullstory.users", "requests": rows}, separators=(",", ":")).encode()
    assert len(body) <= size
    return body[:-1] + b" " * (size - len(body)) + b"}"  # JSON may end with blanks before its last brace


def test_inline_requests_are_capped_below_the_invoke_limit_with_a_413_that_says_to_upload(session):
    stack = session.stack
    at_cap = escaping_heavy_body(MAX_INLINE_BODY_BYTES)
    assert len(at_cap) == MAX_INLINE_BODY_BYTES
    status, job = call(session, "POST", "/jobs", at_cap)
    assert status == 202, job  # the worst-escaping body at the cap still fits Lambda's 6 MB event
    assert job["operationParams"]["requests"] > 300

    before = len(stack.jobs())
    status, answer = call(session, "POST", "/jobs", escaping_heavy_body(MAX_INLINE_BODY_BYTES + 1))
    assert (status, answer["code"]) == (413, "inline_too_large")
    assert "POST /uploads" in answer["message"]
    assert len(stack.jobs()) == before


def test_the_offline_api_keeps_api_gateways_and_lambdas_limits(session):
    """Over the 6 MB an invoke takes (here a 7 MB body, under API Gateway's 10 MB): the function never runs
    and API Gateway answers 500; over 10 MB: 413 before anything else."""

    def api_invocations() -> int:
        return len([i for i in session.stack.lambdas.invocations if i.function == "ApiFunction"])

    invocations = api_invocations()
    status, answer = call(session, "POST", "/jobs", b'{"type":"fullstory.users"' + b" " * 7_000_000 + b"}")
    assert (status, answer["code"]) == (500, "invoke_payload_too_large")
    status, answer = call(
        session, "POST", "/jobs", b"{" + b" " * (10 * 1024 * 1024) + b"}", headers={"Connection": "close"}
    )
    assert (status, answer["code"]) == (413, "payload_too_large")
    assert api_invocations() == invocations  # neither reached the function


def test_result_urls_point_at_the_offline_endpoint_and_download(session):
    stack = session.stack
    status, created = call(
        session, "POST", "/jobs", {"type": "fullstory.users", "requests": [*users(3), {"uid": "x" * 300}]}
    )
    assert status == 202
    job = stack.wait_for_job(created["id"])
    status, links = call(session, "GET", f"/jobs/{created['id']}/results")
    assert status == 200 and set(links["files"]) == {"imports", "errors", "rejected", "manifest", "report"}
    for name, url in links["files"].items():
        assert url.startswith(session.aws_endpoint + "/"), (name, url)
        with urllib.request.urlopen(url) as response:
            got = response.read()
        key = {**job["resultKeys"], "report": job["reportKey"]}[name]
        assert got == stack.client("s3").get_object(Bucket=stack.results_bucket, Key=key)["Body"].read(), name
    downloaded = [json.loads(line) for line in urllib.request.urlopen(links["files"]["imports"]).read().splitlines()]
    assert sorted(row["uid"] for row in downloaded) == ["user-1", "user-2", "user-3"]
    assert downloaded == read_ndjson(session, job["resultKeys"]["imports"])
