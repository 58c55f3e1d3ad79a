"""The FullStory provider module against canned HTTP answers: every failure becomes one named error."""

from __future__ import annotations

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from tracker.errors import ProviderAuthError, ProviderRejectedError, ProviderThrottledError, ProviderTransientError
from tracker.providers.base import JobStatus, ResultsNotReady, Submitted, Throttled
from tracker.providers.fullstory.batch import EVENTS_PATH, USERS_PATH, FullStoryBatchProvider


class Canned:
    """Serves queued (status, body, headers) answers in order and records the requests."""

    def __init__(self) -> None:
        self.answers: deque = deque()
        self.requests: list[dict] = []
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                canned.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": self.rfile.read(length) if length else b"",
                    }
                )
                status, body, headers = canned.answers.popleft()
                if status == "reset":
                    self.connection.close()
                    return
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def then(self, status, body=b"", **headers):
        self.answers.append((status, body, headers))
        return self


@pytest.fixture
def canned():
    server = Canned()
    yield server
    server.server.shutdown()


def provider(canned, path=USERS_PATH):
    return FullStoryBatchProvider(path=path, api_key="k3y", base_url=canned.url)


def test_submit_sends_key_as_is_and_idempotency_key(canned):
    canned.then(200, {"job": {"id": "j1", "status": "PROCESSING", "created": "2026-01-01T00:00:00Z"}})
    assert provider(canned).submit(b'{"requests":[]}', "job-1-b00001") == Submitted("j1", "PROCESSING")
    request = canned.requests[0]
    assert (request["method"], request["path"]) == ("POST", "/v2/users/batch")
    assert request["headers"]["Authorization"] == "Basic k3y"
    assert request["headers"]["Idempotency-Key"] == "job-1-b00001"


@pytest.mark.parametrize(
    ("stored", "sent"),
    [("k3y", "Basic k3y"), ("Basic k3y", "Basic k3y"), ("  k3y\n", "Basic k3y"), ("Bearer t0k", "Bearer t0k")],
)
def test_basic_is_added_only_when_the_key_has_no_space_as_the_sdk_does(canned, stored, sent):
    canned.then(200, {"job": {"id": "j1", "status": "PROCESSING"}})
    FullStoryBatchProvider(path=USERS_PATH, api_key=stored, base_url=canned.url).submit(b"{}", "k")
    assert canned.requests[0]["headers"]["Authorization"] == sent


@pytest.mark.parametrize(
    ("status", "body", "burns"),
    [
        (500, {"code": "server_error", "message": "Server error was encountered"}, True),  # stored under the key
        (500, b"<html>proxy error</html>", False),  # not FullStory's answer: nothing stored
        (502, {"code": "bad_gateway", "message": "m"}, False),  # "server errors above 500 ... can be retried"
        (503, {"code": "unavailable", "message": "m"}, False),
        (504, b"", False),
    ],
)
def test_only_fullstorys_own_500_burns_the_idempotency_key(canned, status, body, burns):
    canned.then(status, body)
    with pytest.raises(ProviderTransientError) as raised:
        provider(canned).submit(b"{}", "k")
    assert raised.value.burns_key is burns and raised.value.code == "provider_unavailable"


def test_a_lost_connection_keeps_the_key(canned):
    canned.then("reset")
    with pytest.raises(ProviderTransientError) as raised:
        provider(canned).submit(b"{}", "k")
    assert raised.value.burns_key is False


def test_a_request_overlapping_one_still_executing_under_its_key_is_tried_later_with_the_same_key(canned):
    canned.then(409, {"code": "conflict", "message": "still executing"})
    assert provider(canned).submit(b"{}", "k") == Throttled(None)


def test_events_use_the_events_endpoint(canned):
    canned.then(200, {"job": {"id": "e1", "status": "PROCESSING"}})
    provider(canned, EVENTS_PATH).submit(b"{}", "k")
    assert canned.requests[0]["path"] == "/v2/events/batch"


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (401, ProviderAuthError, "unauthorized"),
        (403, ProviderAuthError, "forbidden"),
        (500, ProviderTransientError, "provider_unavailable"),
        (503, ProviderTransientError, "provider_unavailable"),
        (400, ProviderRejectedError, "invalid_argument"),
    ],
)
def test_http_failures_map_to_named_errors(canned, status, error, code):
    canned.then(status, {"code": "invalid_argument" if status == 400 else "x", "message": "m"})
    with pytest.raises(error) as raised:
        provider(canned).submit(b"{}", "k")
    assert raised.value.code == code


def test_429_on_submit_and_status_is_a_throttle_with_retry_after(canned):
    canned.then(429, {"code": "too_many_requests"}, **{"Retry-After": "17"}).then(429, b"")
    assert provider(canned).submit(b"{}", "k") == Throttled(17.0)
    assert provider(canned).status("j1") == Throttled(None)


def test_connection_reset_and_malformed_json_are_transient(canned):
    canned.then("reset").then(200, b"<html>oops")
    with pytest.raises(ProviderTransientError):
        provider(canned).submit(b"{}", "k")
    with pytest.raises(ProviderTransientError, match="malformed JSON"):
        provider(canned).status("j1")


def test_status_reads_counts_and_finished_states(canned):
    canned.then(200, {"job": {"id": "j", "status": "PROCESSING"}})
    canned.then(200, {"imports": 9, "errors": "1", "job": {"id": "j", "status": "FAILED"}})
    assert provider(canned).status("j") == JobStatus("PROCESSING", False, 0, 0)
    assert provider(canned).status("j") == JobStatus("FAILED", True, 9, 1)


def test_pages_follow_next_page_token_and_a_repeated_one_ends_the_listing(canned):
    canned.then(200, {"results": [{"id": 1}], "total_records": "3", "next_page_token": "a"})
    canned.then(200, {"results": [{"id": 2}], "total_records": "3", "next_page_token": "b"})
    canned.then(200, {"results": [{"id": 3}], "total_records": "3"})
    pages = list(provider(canned).pages("j", "imports"))
    assert pages == [[{"id": 1}], [{"id": 2}], [{"id": 3}]]
    assert [(p.resume_token, p.ended_early, p.total) for p in pages] == [
        ("a", None, 3),
        ("b", None, 3),
        (None, None, 3),
    ]
    assert canned.requests[1]["path"].endswith("/imports?page_token=a")

    # As FullStory's Node SDK does, a token that comes back ends paging (instead of paging forever).
    canned.then(200, {"results": [{"id": 1}], "next_page_token": "same"})
    canned.then(200, {"results": [{"id": 2}], "next_page_token": "same"})
    pages = list(provider(canned).pages("j", "errors"))
    assert pages == [[{"id": 1}], [{"id": 2}]]
    assert pages[-1].resume_token is None and "repeated a next_page_token" in pages[-1].ended_early
    assert len(canned.requests) == 5


def test_pages_resume_from_a_stored_token_and_know_the_tokens_asked_before(canned):
    canned.then(200, {"results": [{"id": 3}], "next_page_token": "c"})
    canned.then(200, {"results": [{"id": 4}], "next_page_token": "a"})  # a token of the earlier call
    pages = list(provider(canned).pages("j", "imports", after="b", seen=["a", "b"]))
    assert pages == [[{"id": 3}], [{"id": 4}]] and pages[-1].ended_early
    assert canned.requests[0]["path"].endswith("/imports?page_token=b")


def test_pages_202_means_not_ready_and_a_429_is_raised_at_once_with_its_retry_after(canned):
    canned.then(202, b"{}").then(200, {"results": [{"id": 1}], "next_page_token": "a"})
    canned.then(429, b"", **{"Retry-After": "60"})
    with pytest.raises(ResultsNotReady):
        list(provider(canned).pages("j", "imports"))
    seen = []
    with pytest.raises(ProviderThrottledError) as raised:
        for page in provider(canned).pages("j", "imports"):
            seen.append((list(page), page.resume_token))
    assert raised.value.retry_after == 60.0
    assert seen == [([{"id": 1}], "a")]  # the caller resumes from "a": nothing slept, nothing paged twice
    assert len(canned.requests) == 3


def test_a_flaky_page_is_retried_in_place_not_from_page_one(canned):
    canned.then(200, {"results": [{"id": 1}], "next_page_token": "a"})
    canned.then(500, {"code": "server_error"}).then(503, b"")
    canned.then(200, {"results": [{"id": 2}]})
    assert list(provider(canned).pages("j", "imports")) == [[{"id": 1}], [{"id": 2}]]
    assert [r["path"].rsplit("/", 1)[1] for r in canned.requests] == [
        "imports",
        "imports?page_token=a",
        "imports?page_token=a",
        "imports?page_token=a",
    ]


def test_a_page_that_keeps_failing_raises_for_the_state_machine_to_retry(canned):
    for _ in range(4):
        canned.then(503, {"code": "server_error"})
    with pytest.raises(ProviderTransientError):
        list(provider(canned).pages("j", "errors"))


def test_named_errors_carry_their_code_in_the_message():
    assert str(ProviderAuthError("nope")) == "[unauthorized] nope"
