"""The REST API served offline over real HTTP, with the same routes and payloads as API Gateway."""

from __future__ import annotations

import json
import re

import pytest
import urllib3

from tests.integration.helpers import ndjson, users

HTTP = urllib3.PoolManager(retries=False, timeout=10)


def call(session, method, path, body=None, headers=None):
    raw = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    response = HTTP.request(
        method, session.api.base_url + path, body=raw, headers={"Content-Type": "application/json", **(headers or {})}
    )
    return response.status, (json.loads(response.data) if response.data else None)


@pytest.fixture
def api_session(offline):
    with offline(api=True, MaxBatchRequests=3) as session:
        yield session


def test_inline_requests_become_a_job_that_completes_and_serves_its_results(api_session):
    session = api_session
    status, created = call(
        session, "POST", "/jobs", {"type": "fullstory.users", "requests": [*users(7), {"uid": "x" * 300}]}
    )
    assert status == 202
    assert created["state"] == "PENDING"
    assert created["url"] == f"{session.api.base_url}/jobs/{created['id']}"
    assert created["creatorToken"]["id"].endswith("user/local-developer")

    session.stack.wait_for_job(created["id"])
    status, job = call(session, "GET", f"/jobs/{created['id']}")
    assert status == 200
    assert job["state"] == "COMPLETED"
    assert job["estimatePctComplete"] == 100
    assert job["metrics"] | {"inBytes": 0, "outBytes": 0} == {
        "rowsIn": 8,
        "imported": 7,
        "providerErrors": 0,
        "rejected": 1,
        "inBytes": 0,
        "outBytes": 0,
        "batches": 3,
    }
    assert [(b["index"], b["rows"], b["state"]) for b in job["batches"]] == [
        (1, 3, "COMPLETED"),
        (2, 3, "COMPLETED"),
        (3, 1, "COMPLETED"),
    ]
    assert all(b["providerJobId"] for b in job["batches"])
    assert re.fullmatch(rf".*:execution:jobtracker-local-jobs:{created['id']}-r0-[0-9a-f]{{8}}", job["runId"])
    assert job["finishedAt"] and job["createdAt"] and job["startTime"]
    assert "X-Amz-Signature" in job["results"]["downloadUrl"]

    status, results = call(session, "GET", f"/jobs/{created['id']}/results")
    assert status == 200
    assert set(results["files"]) == {"imports", "errors", "rejected", "manifest", "report"}
    assert all("X-Amz-Expires=900" in url for url in results["files"].values())


def test_source_in_the_inbox_bucket_is_taken_in_like_an_upload(api_session):
    session = api_session
    stack = session.stack
    stack.client("s3").put_object(Bucket=stack.inbox_bucket, Key="staged/people.ndjson", Body=ndjson(users(4)))
    status, created = call(
        session,
        "POST",
        "/jobs",
        {"type": "fullstory.users", "source": f"s3://{stack.inbox_bucket}/staged/people.ndjson"},
    )
    assert status == 202
    job = stack.wait_for_job(created["id"])
    assert (job["state"], job["imported"]) == ("COMPLETED", 4)


def test_idempotency_key_answers_the_first_job_again(api_session):
    session = api_session
    body = {"type": "fullstory.users", "requests": users(2)}
    first_status, first = call(session, "POST", "/jobs", body, {"Idempotency-Key": "abc-123"})
    again_status, again = call(session, "POST", "/jobs", body, {"Idempotency-Key": "abc-123"})
    assert (first_status, again_status) == (202, 200)
    assert again["id"] == first["id"]
    session.stack.wait_for_job(first["id"])
    assert len(session.stack.jobs()) == 1


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        ({"type": "fullstory.nope", "requests": [{"uid": "a"}]}, "invalid_request", "type"),
        ({"type": "fullstory.users"}, "invalid_request", "exactly one"),
        (
            {"type": "fullstory.users", "requests": [{"uid": "a"}], "source": "s3://b/k"},
            "invalid_request",
            "exactly one",
        ),
        ({"type": "fullstory.users", "requests": []}, "invalid_request", "requests"),
        ({"type": "fullstory.users", "requests": "nope"}, "invalid_request", "requests"),
        ({"type": "fullstory.users", "source": "https://example.com/x"}, "invalid_request", "source"),
        ({"type": "fullstory.users", "requests": [{"uid": "a"}], "extra": 1}, "invalid_request", "extra"),
    ],
)
def test_bad_create_bodies_get_a_json_400(api_session, body, code, fragment):
    status, answer = call(api_session, "POST", "/jobs", body)
    assert status == 400
    assert answer["code"] == code
    assert fragment in answer["message"]
    assert api_session.stack.jobs() == []


def test_malformed_json_body_gets_a_json_400(api_session):
    status, answer = call(api_session, "POST", "/jobs", b"{not json")
    assert status == 400
    assert answer["code"] == "invalid_request"


def test_unknown_job_route_and_method_answer_json_errors(api_session):
    assert call(api_session, "GET", "/jobs/job-doesnotexist") == (
        404,
        {"code": "not_found", "message": "no job job-doesnotexist"},
    )
    assert call(api_session, "GET", "/nothing-here")[0] == 404
    assert call(api_session, "DELETE", "/jobs")[0] == 405


def test_list_jobs_filters_by_state_and_pages(api_session):
    session = api_session
    ids = [call(session, "POST", "/jobs", {"type": "fullstory.users", "requests": users(1)})[1]["id"] for _ in range(3)]
    for job_id in ids:
        session.stack.wait_for_job(job_id)
    status, page = call(session, "GET", "/jobs?state=COMPLETED&limit=2")
    assert status == 200
    assert len(page["jobs"]) == 2 and page["nextToken"]
    status, rest = call(session, "GET", f"/jobs?state=COMPLETED&limit=2&nextToken={page['nextToken']}")
    assert {j["id"] for j in page["jobs"] + rest["jobs"]} == set(ids)
    assert call(session, "GET", "/jobs?state=RUNNING")[1]["jobs"] == []
    assert call(session, "GET", "/jobs?limit=0")[0] == 400
    assert call(session, "GET", "/jobs?state=SLEEPING")[0] == 400
    assert call(session, "GET", "/jobs?nextToken=garbage")[1]["code"] == "invalid_next_token"


def test_openapi_document_describes_the_routes(api_session):
    response = HTTP.request("GET", api_session.api.base_url + "/openapi?format=json")
    assert response.status == 200
    document = json.loads(response.data)
    assert {"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/results"} <= set(document["paths"])
    assert "CreateJobBody" in json.dumps(document["components"])


def test_json_body_sent_with_a_form_content_type_is_still_read_as_json(api_session):
    body = json.dumps({"type": "fullstory.users", "requests": users(1)}).encode()
    response = HTTP.request(
        "POST",
        api_session.api.base_url + "/jobs",
        body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )  # what `curl -d` sends
    assert response.status == 202
    assert json.loads(response.data)["state"] == "PENDING"


def test_oversized_body_is_refused_with_a_json_413(api_session):
    status, answer = call(api_session, "POST", "/jobs", b"{" + b" " * (10 * 1024 * 1024 + 1) + b"}")
    assert status == 413
    assert answer["code"] == "payload_too_large"
    assert api_session.stack.jobs() == []


def test_the_same_idempotency_key_with_a_different_body_is_refused(api_session):
    headers = {"Idempotency-Key": "once-only"}
    first_status, first = call(api_session, "POST", "/jobs", {"type": "fullstory.users", "requests": users(1)}, headers)
    assert first_status == 202
    status, answer = call(api_session, "POST", "/jobs", {"type": "fullstory.users", "requests": users(2)}, headers)
    assert status == 422
    assert answer["code"] == "idempotency_key_reused"
    api_session.stack.wait_for_job(first["id"])
    assert len(api_session.stack.jobs()) == 1
