"""Behaviour of the FullStory batch-import simulator, exercised over real HTTP.

Jobs advance by status-poll count (``polls_to_complete``), never by sleeping, so every test is
deterministic and fast.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import urllib3

from jobtracker.simulators.fullstory import FullStorySimulator, SimulatorConfig

ISO_MILLIS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
AUTH = {"Authorization": "Basic test-key"}


class Client:
    """Tiny FullStory client for the tests: JSON in, (status, parsed JSON, response) out."""

    def __init__(self, base_url: str, http: urllib3.PoolManager):
        self.base_url = base_url
        self.http = http

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any, urllib3.BaseHTTPResponse]:
        hdrs = dict(AUTH if headers is None else headers)
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            hdrs.setdefault("Content-Type", "application/json")
        resp = self.http.request(method, self.base_url + path, body=data, headers=hdrs)
        parsed = json.loads(resp.data) if resp.data else None
        return resp.status, parsed, resp

    def submit(self, kind: str, requests: list[Any], **extra: Any) -> dict[str, Any]:
        status, body, _ = self.request("POST", f"/v2/{kind}/batch", {"requests": requests, **extra})
        assert status == 200, body
        return body["job"]

    def status(self, kind: str, job_id: str) -> dict[str, Any]:
        status, body, _ = self.request("GET", f"/v2/{kind}/batch/{job_id}")
        assert status == 200, body
        return body

    def poll_until_done(self, kind: str, job_id: str, limit: int = 20) -> dict[str, Any]:
        for _ in range(limit):
            body = self.status(kind, job_id)
            if body["job"]["status"] != "PROCESSING":
                return body
        raise AssertionError(f"job {job_id} still PROCESSING after {limit} polls")

    def all_pages(self, kind: str, job_id: str, listing: str) -> list[dict[str, Any]]:
        """Follow next_page_token to the end, checking each page's invariants on the way."""
        pages: list[dict[str, Any]] = []
        token = None
        while True:
            query = f"?page_token={token}" if token else ""
            status, body, _ = self.request("GET", f"/v2/{kind}/batch/{job_id}/{listing}{query}")
            assert status == 200, body
            pages.append(body)
            token = body.get("next_page_token")
            if not token:
                return pages


@pytest.fixture
def http() -> Iterator[urllib3.PoolManager]:
    pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=30))
    yield pool
    pool.clear()


@pytest.fixture
def make_sim(http: urllib3.PoolManager) -> Iterator[Callable[..., tuple[FullStorySimulator, Client]]]:
    started: list[FullStorySimulator] = []

    def factory(**config: Any) -> tuple[FullStorySimulator, Client]:
        sim = FullStorySimulator(SimulatorConfig(**config)).start()
        started.append(sim)
        return sim, Client(sim.base_url, http)

    yield factory
    for sim in started:
        sim.stop()


@pytest.fixture
def sim_client(
    make_sim: Callable[..., tuple[FullStorySimulator, Client]],
) -> tuple[FullStorySimulator, Client]:
    return make_sim()


# --------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": ""}, {"Authorization": "Basic "}, {"Authorization": "Bearer abc"}],
    ids=["missing", "empty", "empty-key", "wrong-scheme"],
)
def test_missing_or_malformed_auth_is_401(sim_client: tuple[FullStorySimulator, Client], headers: dict) -> None:
    sim, client = sim_client
    status, body, _ = client.request("POST", "/v2/users/batch", {"requests": []}, headers=headers)
    assert status == 401
    assert body["code"] == "unauthorized"
    assert body["message"]
    assert sim.stats["batch_posts"] == 0


def test_any_non_empty_key_is_accepted_when_not_pinned(sim_client: tuple[FullStorySimulator, Client]) -> None:
    _, client = sim_client
    for key in ("a", "na1.whatever/key=="):
        status, _, _ = client.request(
            "POST", "/v2/users/batch", {"requests": []}, headers={"Authorization": f"Basic {key}"}
        )
        assert status == 200


def test_pinned_key_accepts_only_that_key_as_is(make_sim: Callable) -> None:
    _, client = make_sim(api_key="secret-key")
    ok = {"Authorization": "Basic secret-key"}
    wrong = {"Authorization": "Basic other-key"}
    # The key is sent as-is, not base64-encoded like HTTP basic auth.
    b64 = {"Authorization": "Basic c2VjcmV0LWtleQ=="}
    assert client.request("POST", "/v2/users/batch", {"requests": []}, headers=ok)[0] == 200
    for headers in (wrong, b64):
        status, body, _ = client.request("POST", "/v2/users/batch", {"requests": []}, headers=headers)
        assert (status, body["code"]) == (401, "unauthorized")
    job_id = client.request("POST", "/v2/users/batch", {"requests": []}, headers=ok)[1]["job"]["id"]
    # GETs are authenticated too.
    assert client.request("GET", f"/v2/users/batch/{job_id}", headers=wrong)[0] == 401
    assert client.request("GET", f"/v2/users/batch/{job_id}", headers=ok)[0] == 200


# --------------------------------------------------------------------------- submit


@pytest.mark.parametrize("kind", ["users", "events"])
def test_submit_answers_processing_job(sim_client: tuple[FullStorySimulator, Client], kind: str) -> None:
    sim, client = sim_client
    row = {"uid": "u1"} if kind == "users" else {"name": "Signed Up"}
    status, body, resp = client.request("POST", f"/v2/{kind}/batch", {"requests": [row]})
    assert status == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert set(body) == {"job"}
    job = body["job"]
    assert set(job) == {"id", "status", "created"}
    assert isinstance(job["id"], str) and job["id"]
    assert job["status"] == "PROCESSING"
    assert ISO_MILLIS_Z.match(job["created"])
    assert [j["id"] for j in sim.jobs()] == [job["id"]]
    assert sim.jobs()[0]["kind"] == kind


def test_job_ids_are_unique(sim_client: tuple[FullStorySimulator, Client]) -> None:
    _, client = sim_client
    ids = {client.submit("users", [{"uid": str(i)}])["id"] for i in range(30)}
    assert len(ids) == 30


def test_events_batch_accepts_shared(sim_client: tuple[FullStorySimulator, Client]) -> None:
    _, client = sim_client
    shared = {"context": {"browser": {"url": "https://app.example.com"}}}
    job = client.submit("events", [{"name": "A"}], shared=shared)
    assert client.poll_until_done("events", job["id"])["job"]["status"] == "COMPLETED"
    (page,) = client.all_pages("events", job["id"], "imports")
    assert page["results"][0]["context"] == shared["context"]


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "JSON object"),
        (b"{}", "requests is required"),
        (b'{"requests": {"uid": "x"}}', "must be an array"),
        (b'{"requests": ["x"]}', "requests[0]"),
        (b'{"requests": [], "shared": 3}', "shared"),
    ],
)
def test_malformed_batch_is_400_and_creates_no_job(
    sim_client: tuple[FullStorySimulator, Client], raw: bytes, fragment: str
) -> None:
    sim, client = sim_client
    kind = "events" if b"shared" in raw else "users"
    status, body, _ = client.request("POST", f"/v2/{kind}/batch", raw=raw)
    assert status == 400
    assert body["code"] == "invalid_argument"
    assert fragment in body["message"]
    assert sim.jobs() == []
    assert sim.stats["batch_posts"] == 0


def test_more_than_50000_requests_is_400(sim_client: tuple[FullStorySimulator, Client]) -> None:
    sim, client = sim_client
    rows = [{"uid": str(i)} for i in range(50_001)]
    status, body, _ = client.request("POST", "/v2/users/batch", {"requests": rows})
    assert (status, body["code"]) == (400, "invalid_argument")
    assert "50000" in body["message"]
    assert client.request("POST", "/v2/users/batch", {"requests": rows[:50_000]})[0] == 200
    assert len(sim.jobs()) == 1


# --------------------------------------------------------------------------- status progression


def test_status_moves_to_terminal_on_the_nth_poll(make_sim: Callable) -> None:
    sim, client = make_sim(polls_to_complete=3)
    job = client.submit("users", [{"uid": "a"}, {"uid": "b"}])
    for _ in range(2):
        body = client.status("users", job["id"])
        assert body == {"imports": 0, "errors": 0, "job": job}  # no "finished" while processing
    done = client.status("users", job["id"])
    assert done["job"]["status"] == "COMPLETED"
    assert (done["imports"], done["errors"]) == (2, 0)
    assert ISO_MILLIS_Z.match(done["job"]["finished"])
    assert done["job"]["finished"] >= done["job"]["created"]
    assert client.status("users", job["id"]) == done  # terminal is sticky
    assert sim.stats["status_gets"] == 4


def test_polls_to_complete_zero_is_terminal_without_polling(make_sim: Callable) -> None:
    _, client = make_sim(polls_to_complete=0)
    job = client.submit("users", [{"uid": "a"}])
    assert job["status"] == "PROCESSING"  # the create answer is always PROCESSING
    status, body, _ = client.request("GET", f"/v2/users/batch/{job['id']}/imports")
    assert status == 200 and body["total_records"] == "1"


def test_wall_clock_mode(make_sim: Callable) -> None:
    _, instant = make_sim(polls_to_complete=None, processing_seconds=0.0)
    job = instant.submit("events", [{"name": "x"}])
    body = instant.status("events", job["id"])
    assert body["job"]["status"] == "COMPLETED"
    assert body["job"]["finished"] == job["created"]  # finished = created + processing_seconds

    _, slow = make_sim(polls_to_complete=None, processing_seconds=3600)
    job = slow.submit("events", [{"name": "x"}])
    for _ in range(5):
        assert slow.status("events", job["id"])["job"]["status"] == "PROCESSING"


def test_completed_vs_failed_with_partial_success(sim_client: tuple[FullStorySimulator, Client]) -> None:
    sim, client = sim_client
    good = client.submit("users", [{"uid": "a", "email": "a@example.com"}])
    partial = client.submit("users", [{"uid": "b"}, {"uid": "c", "email": "nope"}, {"uid": "d"}])
    all_bad = client.submit("events", [{"name": ""}])
    g = client.poll_until_done("users", good["id"])
    p = client.poll_until_done("users", partial["id"])
    b = client.poll_until_done("events", all_bad["id"])
    assert (g["job"]["status"], g["imports"], g["errors"]) == ("COMPLETED", 1, 0)
    assert (p["job"]["status"], p["imports"], p["errors"]) == ("FAILED", 2, 1)
    assert (b["job"]["status"], b["imports"], b["errors"]) == ("FAILED", 0, 1)
    # A partial failure still has its imported rows available.
    (imports,) = client.all_pages("users", partial["id"], "imports")
    assert [r["uid"] for r in imports["results"]] == ["b", "d"]
    snapshot = {j["id"]: j for j in sim.jobs()}
    assert snapshot[partial["id"]]["status"] == "FAILED"
    assert (snapshot[partial["id"]]["imports"], snapshot[partial["id"]]["errors"]) == (2, 1)
    assert snapshot[partial["id"]]["finished"] == p["job"]["finished"]


# --------------------------------------------------------------------------- per-row outcomes


def errors_of(client: Client, kind: str, job_id: str) -> list[dict[str, Any]]:
    client.poll_until_done(kind, job_id)
    return [item for page in client.all_pages(kind, job_id, "errors") for item in page["results"]]


def imports_of(client: Client, kind: str, job_id: str) -> list[dict[str, Any]]:
    client.poll_until_done(kind, job_id)
    return [item for page in client.all_pages(kind, job_id, "imports") for item in page["results"]]


def test_property_type_is_fixed_by_first_use_across_jobs(
    sim_client: tuple[FullStorySimulator, Client],
) -> None:
    _, client = sim_client
    first = client.submit(
        "users",
        [
            {"uid": "a", "properties": {"plan": "gold", "spent": 1, "vip": True, "prefs": {"lang": "en"}}},
            {"uid": "b", "properties": {"spent": 2.5, "note": None}},  # int and float are both numbers
        ],
    )
    assert errors_of(client, "users", first["id"]) == []
    rows = [
        {"uid": "c", "properties": {"plan": 3}},
        {"uid": "d", "properties": {"vip": 1}},  # bool is not a number
        {"uid": "e", "properties": {"prefs": {"lang": ["en"]}}},  # nested names are typed too
        {"uid": "f", "properties": {"plan": "silver", "note": "x"}},  # null left "note" untyped
        {"uid": "g", "properties": {"note": 5}},  # ...and "f" registered it as a string
    ]
    second = client.submit("users", rows)
    errors = errors_of(client, "users", second["id"])
    assert [(e["code"], e["user"]["uid"]) for e in errors] == [
        ("invalid_property_type", "c"),
        ("invalid_property_type", "d"),
        ("invalid_property_type", "e"),
        ("invalid_property_type", "g"),
    ]
    assert errors[0]["user"] == rows[0]  # the error carries the submitted request
    assert "'plan'" in errors[0]["message"] and "string" in errors[0]["message"]
    assert "'prefs.lang'" in errors[2]["message"]


def test_rejected_row_does_not_register_property_types(sim_client: tuple[FullStorySimulator, Client]) -> None:
    _, client = sim_client
    job = client.submit(
        "users",
        [
            {"uid": "a", "email": "bad", "properties": {"score": "high"}},  # rejected for its email
            {"uid": "b", "properties": {"score": 10}},  # so "score" is first typed here
            {"uid": "c", "properties": {"score": "low"}},
        ],
    )
    errors = errors_of(client, "users", job["id"])
    assert [(e["code"], e["user"]["uid"]) for e in errors] == [
        ("invalid_email", "a"),
        ("invalid_property_type", "c"),
    ]


@pytest.mark.parametrize(
    ("email", "ok"),
    [
        ("a@example.com", True),
        ("a@b", True),
        ("no-at-sign", False),
        ("two@@example.com", False),
        ("a@b@c", False),
        ("@example.com", False),
        ("a@", False),
        ("", False),
        (42, False),
    ],
)
def test_email_must_have_exactly_one_at_with_both_parts(
    sim_client: tuple[FullStorySimulator, Client], email: Any, ok: bool
) -> None:
    _, client = sim_client
    job = client.submit("users", [{"uid": "a", "email": email}])
    errors = errors_of(client, "users", job["id"])
    assert [e["code"] for e in errors] == ([] if ok else ["invalid_email"])


def test_user_import_items_follow_the_docs(sim_client: tuple[FullStorySimulator, Client]) -> None:
    _, client = sim_client
    rows = [
        {"uid": "xyz123", "display_name": "Daniel", "email": "d@example.com", "properties": {"tier": "p"}},
        {"display_name": "Anonymous"},
    ]
    first = imports_of(client, "users", client.submit("users", rows)["id"])
    assert first[0] == {"id": first[0]["id"], **rows[0]}
    assert first[1] == {"id": first[1]["id"], **rows[1]}
    assert all(isinstance(item["id"], str) and item["id"] for item in first)
    again = imports_of(client, "users", client.submit("users", [{"uid": "xyz123"}])["id"])
    assert again[0]["id"] == first[0]["id"]  # users are upserted by uid


def test_empty_uid_is_rejected_like_the_docs_example(sim_client: tuple[FullStorySimulator, Client]) -> None:
    _, client = sim_client
    job = client.submit("users", [{"uid": "", "properties": {"rewards_status": "silver"}}])
    (error,) = errors_of(client, "users", job["id"])
    assert error["code"] == "invalid_parameter"
    assert error["message"] == "The provided uid parameter can not be empty"


@pytest.mark.parametrize(
    ("row", "code"),
    [
        ({"uid": "u" * 257}, "invalid_parameter"),
        ({"display_name": 5}, "invalid_parameter"),
        ({"email": "a" * 120 + "@example.com"}, "invalid_parameter"),
        ({"properties": ["not", "an", "object"]}, "invalid_parameter"),
        ({"properties": {"1bad": 1}}, "invalid_parameter"),
        ({"properties": {"nested": {"bad-name": 1}}}, "invalid_parameter"),
        ({"properties": {f"p{i}": i for i in range(501)}}, "invalid_parameter"),
        ({"properties": {"big": "x" * 9000}}, "invalid_parameter"),
        ({"uid": "u" * 256, "properties": {f"p{i}": i for i in range(500)}}, None),
    ],
)
def test_documented_user_limits_are_enforced_per_row(
    sim_client: tuple[FullStorySimulator, Client], row: dict, code: str | None
) -> None:
    _, client = sim_client
    job = client.submit("users", [row])
    assert [e["code"] for e in errors_of(client, "users", job["id"])] == ([code] if code else [])


@pytest.mark.parametrize(
    ("row", "code"),
    [
        ({"name": "Signed Up"}, None),
        ({"name": "A", "timestamp": "2022-03-15T14:23:23Z"}, None),
        ({"name": "A", "timestamp": "2022-03-15T14:23:23.123+02:00"}, None),
        ({"name": "A", "timestamp": "2022-03-15"}, None),
        ({}, "required_field"),
        ({"name": ""}, "required_field"),
        ({"name": "   "}, "required_field"),
        ({"name": 7}, "required_field"),
        ({"name": "A", "timestamp": "yesterday"}, "invalid_timestamp"),
        ({"name": "A", "timestamp": "2022-13-45T00:00:00Z"}, "invalid_timestamp"),
        ({"name": "A", "timestamp": 1647354203}, "invalid_timestamp"),
        ({"name": "A", "user": {"uid": "u" * 257}}, "invalid_parameter"),
        ({"name": "A", "properties": {"bad name": 1}}, "invalid_parameter"),
    ],
)
def test_event_rows(sim_client: tuple[FullStorySimulator, Client], row: dict, code: str | None) -> None:
    _, client = sim_client
    job = client.submit("events", [row])
    errors = errors_of(client, "events", job["id"])
    if code is None:
        assert errors == []
        (item,) = imports_of(client, "events", job["id"])
        assert item == {"id": item["id"], **row}
    else:
        assert [e["code"] for e in errors] == [code]
        assert errors[0]["event"] == row
        assert errors[0]["message"]


def test_event_with_own_context_conflicts_with_shared_context(
    sim_client: tuple[FullStorySimulator, Client],
) -> None:
    _, client = sim_client
    shared = {"context": {"browser": {"url": "https://a"}}}
    rows = [{"name": "A"}, {"name": "B", "context": {"browser": {"url": "https://b"}}}]
    job = client.submit("events", rows, shared=shared)
    (error,) = errors_of(client, "events", job["id"])
    assert error["event"] == rows[1]
    assert error["shared"] == shared


# --------------------------------------------------------------------------- paging


def test_imports_and_errors_page_with_chained_tokens(make_sim: Callable) -> None:
    sim, client = make_sim(page_size=3)
    rows = [{"uid": f"ok{i}"} for i in range(10)] + [{"uid": f"bad{i}", "email": "x"} for i in range(7)]
    job = client.submit("users", rows)
    assert client.poll_until_done("users", job["id"])["job"]["status"] == "FAILED"

    pages = client.all_pages("users", job["id"], "imports")
    assert [len(p["results"]) for p in pages] == [3, 3, 3, 1]
    assert {p["total_records"] for p in pages} == {"10"}  # a string, as FullStory sends it
    assert all(isinstance(p["next_page_token"], str) for p in pages[:-1])
    assert "next_page_token" not in pages[-1]
    assert [r["uid"] for p in pages for r in p["results"]] == [f"ok{i}" for i in range(10)]

    pages = client.all_pages("users", job["id"], "errors")
    assert [len(p["results"]) for p in pages] == [3, 3, 1]
    assert {p["total_records"] for p in pages} == {"7"}
    assert [r["user"]["uid"] for p in pages for r in p["results"]] == [f"bad{i}" for i in range(7)]
    assert sim.stats["page_gets"] == 7


def test_empty_listing_is_one_page_with_zero_records(sim_client: tuple[FullStorySimulator, Client]) -> None:
    _, client = sim_client
    job = client.submit("users", [{"uid": "a"}])
    client.poll_until_done("users", job["id"])
    status, body, _ = client.request("GET", f"/v2/users/batch/{job['id']}/errors")
    assert (status, body) == (200, {"results": [], "total_records": "0"})


def test_bad_page_tokens_are_400(make_sim: Callable) -> None:
    _, client = make_sim(page_size=1)
    job = client.submit("users", [{"uid": "a"}, {"uid": "b"}, {"uid": "c", "email": "x"}, {"uid": "d", "email": "y"}])
    other = client.submit("users", [{"uid": "e"}, {"uid": "f"}])
    client.poll_until_done("users", job["id"])
    client.poll_until_done("users", other["id"])
    imports_token = client.all_pages("users", job["id"], "imports")[0]["next_page_token"]
    other_token = client.all_pages("users", other["id"], "imports")[0]["next_page_token"]
    for path in (
        f"/v2/users/batch/{job['id']}/imports?page_token=garbage!!",
        f"/v2/users/batch/{job['id']}/imports?page_token=Zm9v",  # valid base64, wrong content
        f"/v2/users/batch/{job['id']}/errors?page_token={imports_token}",  # other listing
        f"/v2/users/batch/{job['id']}/imports?page_token={other_token}",  # other job
    ):
        status, body, _ = client.request("GET", path)
        assert (status, body["code"]) == (400, "invalid_argument"), path
    # an empty page_token means the first page
    status, body, _ = client.request("GET", f"/v2/users/batch/{job['id']}/imports?page_token=")
    assert status == 200 and body["results"][0]["uid"] == "a"


@pytest.mark.parametrize("listing", ["imports", "errors"])
def test_listings_answer_202_while_processing(make_sim: Callable, listing: str) -> None:
    sim, client = make_sim(polls_to_complete=2)
    job = client.submit("events", [{"name": "A"}, {"name": ""}])
    status, body, _ = client.request("GET", f"/v2/events/batch/{job['id']}/{listing}")
    assert (status, body) == (202, {})
    client.status("events", job["id"])  # first poll: still processing
    assert client.request("GET", f"/v2/events/batch/{job['id']}/{listing}")[0] == 202
    client.status("events", job["id"])  # second poll: terminal
    status, body, _ = client.request("GET", f"/v2/events/batch/{job['id']}/{listing}")
    assert (status, body["total_records"]) == (200, "1")
    assert sim.stats["page_gets"] == 3


# --------------------------------------------------------------------------- idempotency


def test_idempotency_key_replays_first_response(sim_client: tuple[FullStorySimulator, Client]) -> None:
    sim, client = sim_client
    headers = {**AUTH, "Idempotency-Key": "batch-0001"}
    body = {"requests": [{"uid": "a"}]}
    s1, b1, r1 = client.request("POST", "/v2/users/batch", body, headers=headers)
    # Same JSON, different whitespace and key order: still the same request.
    raw = b'{ "requests" : [ {"uid":"a"} ] }'
    s2, _, r2 = client.request("POST", "/v2/users/batch", raw=raw, headers=headers)
    assert (s1, s2) == (200, 200)
    assert r2.data == r1.data
    assert len(sim.jobs()) == 1
    assert sim.stats["batch_posts"] == 1
    assert sim.stats["replayed_posts"] == 1
    # Keys are per endpoint kind: the same key on events is a different request.
    s3, b3, _ = client.request("POST", "/v2/events/batch", {"requests": [{"name": "x"}]}, headers=headers)
    assert s3 == 200 and b3["job"]["id"] != b1["job"]["id"]
    # Replays work after the job has finished too, and still answer the original PROCESSING job.
    client.poll_until_done("users", b1["job"]["id"])
    assert client.request("POST", "/v2/users/batch", body, headers=headers)[2].data == r1.data


def test_idempotency_key_with_different_body_is_400(sim_client: tuple[FullStorySimulator, Client]) -> None:
    sim, client = sim_client
    headers = {**AUTH, "Idempotency-Key": "k1"}
    assert client.request("POST", "/v2/users/batch", {"requests": [{"uid": "a"}]}, headers=headers)[0] == 200
    status, body, _ = client.request("POST", "/v2/users/batch", {"requests": [{"uid": "b"}]}, headers=headers)
    assert (status, body["code"]) == (400, "invalid_argument")
    assert "Idempotency-Key" in body["message"] and "different" in body["message"]
    assert len(sim.jobs()) == 1


def test_throttled_post_is_not_remembered_for_its_idempotency_key(make_sim: Callable) -> None:
    sim, client = make_sim(throttle_first_submits=1)
    headers = {**AUTH, "Idempotency-Key": "retry-me"}
    body = {"requests": [{"uid": "a"}]}
    assert client.request("POST", "/v2/users/batch", body, headers=headers)[0] == 429
    s2, _, r2 = client.request("POST", "/v2/users/batch", body, headers=headers)
    s3, _, r3 = client.request("POST", "/v2/users/batch", body, headers=headers)
    assert (s2, s3) == (200, 200) and r2.data == r3.data
    stats = sim.stats
    assert (stats["batch_posts"], stats["replayed_posts"], stats["throttled"]) == (1, 1, 1)


def test_a_500_is_saved_under_its_key_and_replayed_until_the_key_expires_24_hours_later(
    http: urllib3.PoolManager,
) -> None:
    """developer.fullstory.com "Idempotent Requests": the first response is saved "regardless of whether it
    succeeded or failed", and repeats "return the same result, including 500 errors"; keys are reusable after
    24 hours. The injected 500 is the endpoint failing while it executed."""
    from jobtracker.simulators.fullstory import parse_fault

    now = [1000.0]
    config = SimulatorConfig(faults=(parse_fault("500@submit:1x"),))
    with FullStorySimulator(config, clock=lambda: now[0]).start() as sim:
        client = Client(sim.base_url, http)
        headers = {**AUTH, "Idempotency-Key": "batch-1"}
        body = {"requests": [{"uid": "a"}]}
        first = client.request("POST", "/v2/users/batch", body, headers=headers)
        assert (first[0], first[1]["code"]) == (500, "server_error")
        again = client.request("POST", "/v2/users/batch", body, headers=headers)
        assert (again[0], again[2].data) == (500, first[2].data)  # the fault is spent: this is the saved 500
        assert client.request("POST", "/v2/users/batch", {"requests": [{"uid": "b"}]}, headers=headers)[0] == 400
        other = client.request("POST", "/v2/users/batch", body, headers={**AUTH, "Idempotency-Key": "batch-1-k1"})
        assert other[0] == 200  # a new key is a new request
        now[0] += 24 * 3600 - 1
        assert client.request("POST", "/v2/users/batch", body, headers=headers)[0] == 500
        now[0] += 1
        assert client.request("POST", "/v2/users/batch", body, headers=headers)[0] == 200  # the key expired
        stats = sim.stats
        assert (stats["faults"], stats["replayed_failures"], stats["batch_posts"]) == (1, 2, 2)


def test_a_request_overlapping_one_still_executing_under_its_key_errors_and_saves_nothing(
    make_sim: Callable,
) -> None:
    sim, client = make_sim(submit_execution_seconds=0.5)
    headers = {**AUTH, "Idempotency-Key": "slow"}
    body = {"requests": [{"uid": "a"}]}
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(client.request, "POST", "/v2/users/batch", body, headers=headers)
        for _ in range(200):  # until the first request is inside the endpoint (state, not a clock)
            if sim._executing:
                break
            threading.Event().wait(0.01)
        status, answer, _ = client.request("POST", "/v2/users/batch", body, headers=headers)
        assert (status, answer["code"]) == (409, "conflict")
        assert first.result()[0] == 200
    replay = client.request("POST", "/v2/users/batch", body, headers=headers)
    assert replay[0] == 200 and replay[1] == first.result()[1]  # the overlap saved nothing: the first answer stands
    assert (sim.stats["key_conflicts"], sim.stats["batch_posts"], sim.stats["replayed_posts"]) == (1, 1, 1)


def test_a_users_import_is_an_upsert_the_status_counts_requests_the_listing_holds_users(
    sim_client: tuple[FullStorySimulator, Client],
) -> None:
    """Seed 002 "Asynchronous Workflows": a status of 104 imports and an imports listing of 103 records."""
    sim, client = sim_client
    requests = [{"uid": f"u{i}", "properties": {"n": i}} for i in range(103)]
    requests.append({"uid": "u7", "display_name": "Seven", "properties": {"tier": "gold"}})
    requests.append({"uid": "", "properties": {"rewards_status": "silver"}})  # the seed's one error
    job = client.submit("users", requests)
    status = client.poll_until_done("users", job["id"])
    assert (status["imports"], status["errors"]) == (104, 1)
    records = client.all_pages("users", job["id"], "imports")
    listed = [r for page in records for r in page["results"]]
    assert len(listed) == 103 and records[0]["total_records"] == "103"
    seven = next(r for r in listed if r["uid"] == "u7")
    assert (seven["display_name"], seven["properties"]) == ("Seven", {"n": 7, "tier": "gold"})  # later values win
    assert sim.jobs()[0]["imports"] == 104


# --------------------------------------------------------------------------- throttling


def test_throttle_first_submits(make_sim: Callable) -> None:
    sim, client = make_sim(throttle_first_submits=2, retry_after_seconds=7)
    for _ in range(2):
        status, body, resp = client.request("POST", "/v2/users/batch", {"requests": []})
        assert (status, body["code"]) == (429, "too_many_requests")
        assert resp.headers["Retry-After"] == "7"
    assert client.request("POST", "/v2/users/batch", {"requests": []})[0] == 200
    assert sim.stats["throttled"] == 2
    assert sim.stats["batch_posts"] == 1


def test_in_progress_limit_answers_429_until_a_job_finishes(make_sim: Callable) -> None:
    sim, client = make_sim(in_progress_limit=2, polls_to_complete=1, retry_after_seconds=3)
    a = client.submit("users", [{"uid": "a"}])
    client.submit("events", [{"name": "b"}])  # the limit is per org, across kinds
    status, body, resp = client.request("POST", "/v2/users/batch", {"requests": [{"uid": "c"}]})
    assert (status, body["code"], resp.headers["Retry-After"]) == (429, "too_many_requests", "3")
    assert client.status("users", a["id"])["job"]["status"] == "COMPLETED"
    client.submit("users", [{"uid": "c"}])
    assert sim.stats["throttled"] == 1
    assert sim.stats["batch_posts"] == 3
    assert sim.stats["max_in_progress"] == 2
    assert [j["status"] for j in sim.jobs()] == ["COMPLETED", "PROCESSING", "PROCESSING"]


# Org caps: developer.fullstory.com/server/v2/users/create-batch-user-import-job, "Special Batch Rate Limits":
# 100 batches run per org, more are accepted but do not start until some complete; 429 from 200 batches or
# 500,000 operations in progress. Small caps here, the same rules.


def test_batches_beyond_the_running_limit_are_accepted_and_queued_until_a_slot_frees(make_sim: Callable) -> None:
    sim, client = make_sim(running_limit=2, in_progress_limit=10, polls_to_complete=2)
    a, b, c, d = (client.submit("users", [{"uid": uid}]) for uid in "abcd")
    assert [j["queued"] for j in sim.jobs()] == [False, False, True, True]
    for _ in range(5):  # a queued batch is PROCESSING, and polling it does not move it on
        assert client.status("users", c["id"])["job"]["status"] == "PROCESSING"
    assert client.poll_until_done("users", a["id"])["job"]["status"] == "COMPLETED"
    assert [j["queued"] for j in sim.jobs()] == [False, False, False, True]  # c took a's slot, d still waits
    assert client.poll_until_done("users", c["id"])["imports"] == 1  # two polls once it runs
    assert not sim.jobs()[3]["queued"]  # c's slot went to d
    for job in (b, d):
        assert client.poll_until_done("users", job["id"])["job"]["status"] == "COMPLETED"
    assert (sim.stats["max_running"], sim.stats["max_queued"], sim.stats["max_in_progress"]) == (2, 2, 4)


def test_queued_batches_start_in_the_order_they_were_accepted_across_kinds(make_sim: Callable) -> None:
    sim, client = make_sim(running_limit=1, polls_to_complete=1)
    first = client.submit("users", [{"uid": "a"}])
    queued = [client.submit("events", [{"name": "e"}]), client.submit("users", [{"uid": "b"}])]
    client.status("users", first["id"])  # done: the oldest queued batch starts, the other still waits
    assert [j["queued"] for j in sim.jobs()] == [False, False, True]
    assert client.status("events", queued[0]["id"])["job"]["status"] == "COMPLETED"
    assert client.status("users", queued[1]["id"])["job"]["status"] == "COMPLETED"


def test_wall_clock_queue_starts_a_batch_when_the_one_before_it_finished(make_sim: Callable) -> None:
    """By wall clock, a queued batch starts at the moment the batch before it finished (not when someone
    next asks), so its own processing time runs from there."""
    sim, client = make_sim(running_limit=1, polls_to_complete=None, processing_seconds=3600)
    first = client.submit("users", [{"uid": "a"}])
    client.submit("users", [{"uid": "b"}])
    with sim._lock:  # an hour and a half later
        for job in sim._jobs.values():
            job.created_mono -= 5400
            if job.started is not None:
                job.started_mono -= 5400
    assert client.status("users", first["id"])["job"]["status"] == "COMPLETED"
    second_now = sim.jobs()[1]
    assert (second_now["queued"], second_now["status"]) == (False, "PROCESSING")  # runs since the hour mark
    assert second_now["started"] == sim.jobs()[0]["finished"]


def test_in_progress_limit_counts_queued_and_running_batches(make_sim: Callable) -> None:
    sim, client = make_sim(running_limit=1, in_progress_limit=3, polls_to_complete=1)
    jobs = [client.submit("users", [{"uid": uid}]) for uid in "abc"]  # one running, two queued
    status, body, resp = client.request("POST", "/v2/users/batch", {"requests": [{"uid": "d"}]})
    assert (status, body["code"]) == (429, "too_many_requests") and resp.headers["Retry-After"].isdigit()
    client.status("users", jobs[0]["id"])  # one finishes: room for one more
    client.submit("users", [{"uid": "d"}])
    assert sim.stats["throttled"] == 1


def test_operations_limit_counts_the_rows_in_progress(make_sim: Callable) -> None:
    sim, client = make_sim(operations_limit=5, polls_to_complete=1, retry_after_seconds=4)
    big = client.submit("users", [{"uid": f"u{i}"} for i in range(3)])
    client.submit("events", [{"name": "e"}, {"name": "f"}])  # 5 in progress: the cap is reached
    status, body, resp = client.request("POST", "/v2/users/batch", {"requests": [{"uid": "x"}]})
    assert (status, body["code"], resp.headers["Retry-After"]) == (429, "too_many_requests", "4")
    assert "operations in progress (5)" in body["message"]
    client.status("users", big["id"])  # 3 rows done: 2 in progress
    client.submit("users", [{"uid": f"v{i}"} for i in range(4)])  # accepted though it takes them to 6
    assert sim.stats["max_operations_in_progress"] == 6
    assert client.request("POST", "/v2/users/batch", {"requests": []})[0] == 429


def test_org_caps_count_every_key_of_the_org(make_sim: Callable) -> None:
    _, client = make_sim(in_progress_limit=2)  # any key is accepted: several keys of one org
    for key in ("key-of-tool-a", "key-of-tool-b"):
        status, _, _ = client.request(
            "POST", "/v2/users/batch", {"requests": []}, headers={"Authorization": f"Basic {key}"}
        )
        assert status == 200
    status, body, _ = client.request(
        "POST", "/v2/users/batch", {"requests": []}, headers={"Authorization": "Basic key-of-tool-c"}
    )
    assert (status, body["code"]) == (429, "too_many_requests")


def test_idempotent_replay_is_not_blocked_by_in_progress_limit(make_sim: Callable) -> None:
    sim, client = make_sim(in_progress_limit=1)
    headers = {**AUTH, "Idempotency-Key": "k"}
    body = {"requests": [{"uid": "a"}]}
    _, _, first = client.request("POST", "/v2/users/batch", body, headers=headers)
    status, _, again = client.request("POST", "/v2/users/batch", body, headers=headers)
    assert status == 200 and again.data == first.data
    assert sim.stats["throttled"] == 0


# --------------------------------------------------------------------------- routing & robustness


def test_unknown_job_and_paths_are_404(sim_client: tuple[FullStorySimulator, Client]) -> None:
    _, client = sim_client
    users_job = client.submit("users", [])["id"]
    for path in (
        "/v2/users/batch/doesnotexist",
        "/v2/users/batch/doesnotexist/imports",
        f"/v2/events/batch/{users_job}",  # a users job is not an events job
        "/v2/users/batch/x/other",
        "/v1/users",
        "/",
    ):
        status, body, _ = client.request("GET", path)
        assert (status, body["code"]) == (404, "resource_not_found"), path
        assert body["message"]


def test_wrong_method_is_405(sim_client: tuple[FullStorySimulator, Client]) -> None:
    _, client = sim_client
    job_id = client.submit("users", [])["id"]
    for method, path, allow in (
        ("GET", "/v2/users/batch", "POST"),
        ("DELETE", f"/v2/users/batch/{job_id}", "GET"),
        ("POST", f"/v2/users/batch/{job_id}/imports", "GET"),
        ("PUT", "/v2/events/batch", "POST"),
    ):
        status, body, resp = client.request(method, path, raw=b"{}")
        assert (status, body["code"]) == (405, "method_not_allowed")
        assert resp.headers["Allow"] == allow


def test_server_survives_bad_input_and_keeps_connections_usable(
    sim_client: tuple[FullStorySimulator, Client],
) -> None:
    sim, client = sim_client
    # An unauthenticated POST with a body must not poison the kept-alive connection.
    client.request("POST", "/v2/users/batch", raw=b'{"requests": []}', headers={})
    client.request("POST", "/v2/users/batch", raw=b"\x00" * 10_000)
    assert client.submit("users", [{"uid": "ok"}])["status"] == "PROCESSING"
    assert sim.stats["batch_posts"] == 1


@pytest.mark.parametrize(("kind", "row"), [("events", {"name": "A"}), ("users", {"uid": "a"})])
def test_v2beta_alias(sim_client: tuple[FullStorySimulator, Client], kind: str, row: dict[str, Any]) -> None:
    """Both Swagger specs list the batch routes under /v2beta as well as /v2."""
    _, client = sim_client
    status, body, _ = client.request("POST", f"/v2beta/{kind}/batch", {"requests": [row]})
    assert status == 200
    assert client.status(kind, body["job"]["id"])["job"]["id"] == body["job"]["id"]


def test_a_key_without_the_permission_gets_403(make_sim: Callable) -> None:
    _, client = make_sim(forbidden_keys=("read-only",))
    status, body, _ = client.request(
        "POST", "/v2/users/batch", {"requests": []}, headers={"Authorization": "Basic read-only"}
    )
    assert (status, body) == (403, {"code": "forbidden", "message": "insufficient permissions"})


def test_include_schema_is_a_bool(sim_client: tuple[FullStorySimulator, Client]) -> None:
    _, client = sim_client
    job = client.submit("users", [{"uid": "a"}])
    client.poll_until_done("users", job["id"])
    for value in ("true", "false", "1", "F"):
        assert client.request("GET", f"/v2/users/batch/{job['id']}/imports?include_schema={value}")[0] == 200
    status, body, _ = client.request("GET", f"/v2/users/batch/{job['id']}/imports?include_schema=maybe")
    assert (status, body["code"]) == (400, "invalid_argument")


@pytest.mark.parametrize(
    ("row", "outcome"),
    [
        ({"name": "A", "session": {"id": "1:2"}}, None),
        ({"name": "A", "session": {"id": "1:2"}, "user": {"uid": "u"}}, "user is not accepted with session.id"),
        ({"name": "A", "session": {"use_most_recent": True}, "user": {"uid": "u"}}, None),
        ({"name": "A", "session": {"use_most_recent": True}}, "session.use_most_recent needs a user"),
        ({"name": "A", "session": {"use_most_recent": False}}, None),
    ],
)
def test_documented_session_and_user_rules(
    sim_client: tuple[FullStorySimulator, Client], row: dict[str, Any], outcome: str | None
) -> None:
    _, client = sim_client
    job = client.submit("events", [row])
    done = client.poll_until_done("events", job["id"])
    if outcome is None:
        assert (done["imports"], done["errors"]) == (1, 0)
    else:
        (page,) = client.all_pages("events", job["id"], "errors")
        assert page["results"][0]["code"] == "invalid_parameter"
        assert outcome in page["results"][0]["message"]


def test_stats_snapshot_and_stop(sim_client: tuple[FullStorySimulator, Client]) -> None:
    sim, client = sim_client
    job = client.submit("users", [{"uid": "a"}])
    client.request("GET", f"/v2/users/batch/{job['id']}/imports")
    client.poll_until_done("users", job["id"])
    stats = sim.stats
    assert stats == {
        "batch_posts": 1,
        "replayed_posts": 0,
        "replayed_failures": 0,
        "key_conflicts": 0,
        "throttled": 0,
        "status_gets": 2,
        "page_gets": 1,
        "faults": 0,
        "max_in_progress": 1,
        "max_running": 1,
        "max_queued": 0,
        "max_operations_in_progress": 1,
    }
    stats["batch_posts"] = 99  # a snapshot: mutating it does not touch the simulator
    assert sim.stats["batch_posts"] == 1
    (snap,) = sim.jobs()
    assert set(snap) == {
        "id",
        "kind",
        "status",
        "queued",
        "rows",
        "imports",
        "errors",
        "created",
        "started",
        "finished",
    }
    sim.stop()
    sim.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = sim.base_url


def test_serve_prints_url_and_stops_on_ctrl_c() -> None:
    """The blocking entry point behind ``jobtracker simulate fullstory --port N``."""
    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    code = (
        "from jobtracker.simulators.fullstory import SimulatorConfig, serve\n"
        "serve(SimulatorConfig(polls_to_complete=1), port=0)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        match = re.fullmatch(r"FullStory simulator on (http://127\.0\.0\.1:(\d+))", line)
        assert match, line
        assert int(match[2]) > 0
        http = urllib3.PoolManager(retries=False)
        resp = http.request("POST", match[1] + "/v2/users/batch", body=b'{"requests": []}', headers=AUTH)
        assert resp.status == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_concurrent_clients_get_consistent_state(make_sim: Callable) -> None:
    sim, client = make_sim(polls_to_complete=1)

    def worker(n: int) -> str:
        job = client.submit("users", [{"uid": f"w{n}", "properties": {"n": n}}])
        assert client.poll_until_done("users", job["id"])["job"]["status"] == "COMPLETED"
        return job["id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(worker, range(40)))
    assert len(set(ids)) == 40
    stats = sim.stats
    assert (stats["batch_posts"], stats["status_gets"]) == (40, 40)
    assert 1 <= stats["max_in_progress"] <= 8
    assert {j["status"] for j in sim.jobs()} == {"COMPLETED"}


# -- injected faults ------------------------------------------------------------------------------
def test_fault_specs_parse_and_bad_ones_are_refused() -> None:
    from jobtracker.simulators.fullstory import Fault, parse_fault

    assert parse_fault("429:0.3") == Fault("429", 0.3)
    assert parse_fault("reset@submit:2x") == Fault("reset", 1.0, 0.0, "submit", 2)
    assert parse_fault("slow:2s") == Fault("slow", 1.0, 2.0)
    assert parse_fault("stuck") == Fault("stuck")
    for bad in ("boom:0.1", "429:1.5", "slow:fast", "500@nowhere:0.1", "429:x"):
        with pytest.raises(ValueError):
            parse_fault(bad)


def test_reset_on_submit_loses_the_answer_but_the_job_exists_and_replays() -> None:
    import urllib3

    from jobtracker.simulators.fullstory import SimulatorConfig, parse_fault

    config = SimulatorConfig(faults=(parse_fault("reset@submit:1x"),))
    with FullStorySimulator(config).start() as sim:
        http = urllib3.PoolManager(retries=False)
        headers = {"Authorization": "Basic k", "Idempotency-Key": "key-1"}
        url = sim.base_url + "/v2/users/batch"
        with pytest.raises(urllib3.exceptions.ProtocolError):
            http.request("POST", url, body=b'{"requests": [{"uid": "a"}]}', headers=headers)
        again = http.request("POST", url, body=b'{"requests": [{"uid": "a"}]}', headers=headers)
        assert again.status == 200
        assert sim.stats["batch_posts"] == 1 and sim.stats["replayed_posts"] == 1 and sim.stats["faults"] == 1


def test_stuck_jobs_never_finish_and_repeat_token_repeats() -> None:
    import json as _json

    import urllib3

    from jobtracker.simulators.fullstory import SimulatorConfig, parse_fault

    config = SimulatorConfig(polls_to_complete=1, page_size=1, faults=(parse_fault("stuck"),))
    with FullStorySimulator(config).start() as sim:
        http = urllib3.PoolManager(retries=False)
        auth = {"Authorization": "Basic k"}
        job = _json.loads(
            http.request(
                "POST", sim.base_url + "/v2/users/batch", body=b'{"requests":[{"uid":"a"}]}', headers=auth
            ).data
        )["job"]
        for _ in range(3):
            status = _json.loads(http.request("GET", f"{sim.base_url}/v2/users/batch/{job['id']}", headers=auth).data)
            assert status["job"]["status"] == "PROCESSING"

    config = SimulatorConfig(polls_to_complete=0, page_size=1, faults=(parse_fault("repeat-token"),))
    with FullStorySimulator(config).start() as sim:
        http = urllib3.PoolManager(retries=False)
        body = b'{"requests":[{"uid":"a"},{"uid":"b"},{"uid":"c"}]}'
        job = _json.loads(http.request("POST", sim.base_url + "/v2/users/batch", body=body, headers=auth).data)["job"]
        first = _json.loads(
            http.request("GET", f"{sim.base_url}/v2/users/batch/{job['id']}/imports", headers=auth).data
        )
        token = first["next_page_token"]
        second = _json.loads(
            http.request(
                "GET", f"{sim.base_url}/v2/users/batch/{job['id']}/imports?page_token={token}", headers=auth
            ).data
        )
        assert second["next_page_token"] == token
