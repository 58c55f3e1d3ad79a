"""The FullStory simulator's segment-export workflow, exercised over real HTTP.

POST /segments/v1/exports -> GET /operations/v1/{id} (advanced by poll count, never by sleeping) ->
GET /search/v1/exports/{id}/results -> GET /download/{token} (a short-lived gzip URL).
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import urllib3

from jobtracker.simulators.fullstory import FullStorySimulator, SimulatorConfig, parse_fault

AUTH = {"Authorization": "Basic test-key"}
EXPORT = {
    "segmentId": "everyone",
    "type": "TYPE_EVENT",
    "format": "FORMAT_CSV",
    "timeRange": {"start": "2024-05-01T00:00:00Z", "end": "2024-05-02T00:00:00Z"},
}


class Client:
    """JSON in, (status, parsed JSON or raw bytes, response) out."""

    def __init__(self, base_url: str, http: urllib3.PoolManager):
        self.base_url = base_url
        self.http = http

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, urllib3.BaseHTTPResponse]:
        hdrs = dict(AUTH if headers is None else headers)
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        url = path if path.startswith("http") else self.base_url + path
        resp = self.http.request(method, url, body=data, headers=hdrs)
        parsed: Any = resp.data
        if resp.headers.get("Content-Type") == "application/json" and resp.data:
            try:
                parsed = json.loads(resp.data)
            except ValueError:  # the injected "malformed" fault
                parsed = resp.data
        return resp.status, parsed, resp

    def export(self, **overrides: Any) -> str:
        status, body, _ = self.request("POST", "/segments/v1/exports", {**EXPORT, **overrides})
        assert status == 200, body
        assert set(body) == {"operationId"}
        return body["operationId"]

    def operation(self, op_id: str) -> dict[str, Any]:
        status, body, _ = self.request("GET", f"/operations/v1/{op_id}")
        assert status == 200, body
        return body

    def poll_until_done(self, op_id: str, limit: int = 20) -> list[dict[str, Any]]:
        seen = []
        for _ in range(limit):
            seen.append(self.operation(op_id))
            if seen[-1]["state"] in ("COMPLETED", "FAILED"):
                return seen
        raise AssertionError(f"operation {op_id} not finished after {limit} polls")

    def location(self, search_export_id: str) -> dict[str, Any]:
        status, body, _ = self.request("GET", f"/search/v1/exports/{search_export_id}/results")
        assert status == 200, body
        return body


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


def _download(client: Client, url: str) -> tuple[int, bytes, urllib3.BaseHTTPResponse]:
    resp = client.http.request("GET", url)  # no Authorization: a signed URL
    return resp.status, resp.data, resp


# --------------------------------------------------------------------------- lifecycle


def test_official_lifecycle_pending_with_rising_progress_then_completed(make_sim) -> None:
    sim, client = make_sim(operation_polls_to_complete=4)
    op_id = client.export()
    seen = client.poll_until_done(op_id)
    assert [o["state"] for o in seen] == ["PENDING", "PENDING", "PENDING", "COMPLETED"]
    pcts = [o["estimatePctComplete"] for o in seen]
    assert pcts[0] == 0 and 0 < pcts[1] < pcts[2] < 100 and pcts[3] == 100
    for running in seen[:3]:
        assert running["id"] == op_id and running["type"] == "SEARCH_EXPORT"
        assert "finishedAt" not in running and "results" not in running  # omitted rather than null
        assert running["errorDetails"] == ""
    done = seen[-1]
    assert set(done) == {
        "id",
        "type",
        "state",
        "errorDetails",
        "createdAt",
        "finishedAt",
        "estimatePctComplete",
        "results",
    }
    assert set(done["results"]) == {"searchExportId", "expires"}
    assert done["finishedAt"] >= done["createdAt"]
    assert done["results"]["expires"] > done["finishedAt"]
    # Terminal is terminal: more polls change nothing.
    again = client.operation(op_id)
    assert again["state"] == "COMPLETED" and again["results"] == done["results"]
    assert sim.operation_stats["operation_gets"] == 5


def test_seed_states_report_running_once_there_is_progress(make_sim) -> None:
    _, client = make_sim(operation_polls_to_complete=4, seed_states=True)
    seen = client.poll_until_done(client.export())
    assert [o["state"] for o in seen] == ["PENDING", "RUNNING", "RUNNING", "COMPLETED"]


def test_progress_is_noisy_but_never_falls_and_stays_under_100(make_sim) -> None:
    _, client = make_sim(operation_polls_to_complete=40)
    seen = client.poll_until_done(client.export(), limit=40)
    pcts = [o["estimatePctComplete"] for o in seen]
    assert len(pcts) == 40 and pcts[-1] == 100
    assert pcts == sorted(pcts)
    assert all(0 <= p < 100 for p in pcts[:-1])
    steps = {round(b - a, 1) for a, b in itertools.pairwise(pcts[1:-1])}
    assert len(steps) > 3  # not a plain linear ramp


def test_wall_clock_mode_and_immediate_completion(make_sim) -> None:
    _, client = make_sim(operation_polls_to_complete=None, operation_seconds=0.0)
    assert client.operation(client.export())["state"] == "COMPLETED"
    _, client = make_sim(operation_polls_to_complete=None, operation_seconds=3600.0)
    first = client.operation(client.export())
    assert first["state"] == "PENDING" and first["estimatePctComplete"] == 0
    _, client = make_sim(operation_polls_to_complete=0)
    assert client.operation(client.export())["state"] == "COMPLETED"


def test_search_export_results_give_a_fresh_short_lived_location_serving_gzip_csv(make_sim) -> None:
    sim, client = make_sim(operation_polls_to_complete=1, download_ttl_seconds=300)
    done = client.poll_until_done(client.export(fields=None))[-1]
    first = client.location(done["results"]["searchExportId"])
    second = client.location(done["results"]["searchExportId"])
    assert set(first) == {"location", "expires"} and first["location"] != second["location"]
    assert urlsplit(first["location"]).netloc == urlsplit(sim.base_url).netloc
    assert first["expires"] > done["finishedAt"]
    status, data, resp = _download(client, first["location"])
    assert status == 200
    assert resp.headers["Content-Type"] == "application/gzip"
    assert resp.headers["Content-Disposition"].endswith('.csv.gz"')
    rows = list(csv.DictReader(io.StringIO(gzip.decompress(data).decode())))
    assert len(rows) == 36
    assert {"IndvId", "UserAppKey", "EventStart", "EventType", "PageUrl"} <= set(rows[0])
    # The same URL works again while it lives; the file is the same each time.
    assert _download(client, second["location"])[1] == data
    assert sim.operation_stats == {
        "operations_created": 1,
        "replayed_exports": 0,
        "operation_lists": 0,
        "operation_gets": 1,
        "result_location_gets": 2,
        "downloads": 2,
        "expired_downloads": 0,
    }


@pytest.mark.parametrize(("fmt", "ext"), [("FORMAT_NDJSON", "ndjson"), ("FORMAT_JSON", "json"), ("FORMAT_CSV", "csv")])
def test_formats_fields_and_individuals(make_sim, fmt: str, ext: str) -> None:
    _, client = make_sim(operation_polls_to_complete=1, export_rows=5)
    fields = ["UserAppKey", "UserEmail", "user_plan_str"]
    done = client.operation(client.export(type="TYPE_INDIVIDUAL", format=fmt, fields=fields))
    status, data, resp = _download(client, client.location(done["results"]["searchExportId"])["location"])
    assert status == 200 and resp.headers["Content-Disposition"].endswith(f'.{ext}.gz"')
    text = gzip.decompress(data).decode()
    if fmt == "FORMAT_NDJSON":
        rows = [json.loads(line) for line in text.splitlines()]
    elif fmt == "FORMAT_JSON":
        rows = json.loads(text)
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
        assert text.splitlines()[0] == "UserAppKey,UserEmail,user_plan_str"
    assert len(rows) == 5
    assert [list(r) for r in rows] == [fields] * 5  # restricted and ordered; unknown fields empty
    assert rows[0]["UserEmail"].endswith("@example.com")


def test_download_url_shape_links_the_file_from_the_operation(make_sim) -> None:
    sim, client = make_sim(operation_polls_to_complete=2, results_shape="downloadUrl")
    op_id = client.export(format="FORMAT_NDJSON")
    running = client.operation(op_id)
    assert "results" not in running
    done = client.operation(op_id)
    assert done["state"] == "COMPLETED" and set(done["results"]) == {"downloadUrl"}
    status, data, _ = _download(client, done["results"]["downloadUrl"])
    assert status == 200 and len(gzip.decompress(data).splitlines()) == 36
    # Every GET of the completed operation hands out a fresh URL (the way to re-fetch an expired one).
    assert client.operation(op_id)["results"]["downloadUrl"] != done["results"]["downloadUrl"]
    assert sim.operation_stats["result_location_gets"] == 0


def test_expired_urls_answer_403_and_a_fresh_one_works(make_sim) -> None:
    sim, client = make_sim(operation_polls_to_complete=1, download_ttl_seconds=0)
    export_id = client.operation(client.export())["results"]["searchExportId"]
    location = client.location(export_id)
    assert location["expires"] <= client.location(export_id)["expires"]
    status, body, resp = _download(client, location["location"])
    assert status == 403 and resp.headers["Content-Type"] == "application/xml"
    assert b"<Code>AccessDenied</Code>" in body and b"expired" in body

    sim, client = make_sim(operation_polls_to_complete=1, expire_first_locations=1)
    export_id = client.operation(client.export())["results"]["searchExportId"]
    dead, fresh = client.location(export_id), client.location(export_id)
    assert _download(client, dead["location"])[0] == 403
    assert _download(client, fresh["location"])[0] == 200
    stats = sim.operation_stats
    assert (stats["downloads"], stats["expired_downloads"]) == (1, 1)


def test_download_refuses_an_api_key_and_unknown_tokens(make_sim) -> None:
    _, client = make_sim(operation_polls_to_complete=1)
    export_id = client.operation(client.export())["results"]["searchExportId"]
    url = client.location(export_id)["location"]
    status, body, _ = client.request("GET", url)  # with the Authorization header
    assert status == 400 and b"InvalidArgument" in body
    assert _download(client, client.base_url + "/download/nosuchtoken")[0] == 404
    head = client.http.request("HEAD", url)
    assert head.status == 200 and int(head.headers["Content-Length"]) > 0 and head.data == b""


def test_location_uses_the_host_the_client_called(make_sim) -> None:
    sim, client = make_sim(operation_polls_to_complete=1)
    export_id = client.operation(client.export())["results"]["searchExportId"]
    port = urlsplit(sim.base_url).port
    status, body, _ = client.request(
        "GET", f"/search/v1/exports/{export_id}/results", headers={**AUTH, "Host": f"localhost:{port}"}
    )
    assert status == 200 and body["location"].startswith(f"http://localhost:{port}/download/")


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("config", "segment"), [({}, "broken"), ({"fail_exports": True}, "everyone")], ids=["broken-segment", "flag"]
)
def test_failed_export_ends_failed_with_error_details(make_sim, config: dict, segment: str) -> None:
    sim, client = make_sim(operation_polls_to_complete=3, **config)
    seen = client.poll_until_done(client.export(segmentId=segment))
    failed = seen[-1]
    assert failed["state"] == "FAILED"
    assert segment in failed["errorDetails"] and failed["errorDetails"]
    assert "results" not in failed and "finishedAt" in failed
    assert 0 < failed["estimatePctComplete"] < 100
    assert sim.operations()[0]["searchExportId"] is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"segmentId": ""}, "segmentId"),
        ({"segmentId": None}, "segmentId"),
        ({"type": "INDIVIDUALS"}, "type"),
        ({"type": None}, "type"),
        ({"format": "csv"}, "format"),
        ({"scope": "SCOPE_WORLD"}, "scope"),
        ({"timeRange": None}, "timeRange"),
        ({"timeRange": {"start": "yesterday", "end": ""}}, "timeRange.start"),
        ({"timeRange": {"start": "2024-05-01T00:00:00", "end": ""}}, "offset"),
        ({"timeRange": {"start": "2024-05-02T00:00:00Z", "end": "2024-05-01T00:00:00Z"}}, "after"),
        ({"segmentTimeRange": "last week"}, "segmentTimeRange"),
        ({"fields": "UserEmail"}, "fields"),
        ({"timezone": 5}, "timezone"),
    ],
)
def test_bad_export_requests_are_400(make_sim, change: dict, message: str) -> None:
    sim, client = make_sim()
    body = {k: v for k, v in {**EXPORT, **change}.items() if v is not None}
    status, answer, _ = client.request("POST", "/segments/v1/exports", body)
    assert status == 400, answer
    assert answer["code"] == "invalid_argument" and message in answer["message"]
    assert sim.operation_stats["operations_created"] == 0


def test_valid_optional_fields_are_accepted(make_sim) -> None:
    _, client = make_sim()
    client.export(
        scope="SCOPE_SESSIONS",
        timeRange={"start": "", "end": ""},
        segmentTimeRange={"start": "2024-04-01T00:00:00+02:00", "end": "2024-05-01T00:00:00Z"},
        timezone="Europe/Prague",
        fields=["EventStart"],
    )


def test_not_json_and_unknown_ids(make_sim) -> None:
    _, client = make_sim()
    status, answer, _ = client.request("POST", "/segments/v1/exports", b"{nope")
    assert (status, answer["code"]) == (400, "invalid_argument")
    status, answer, _ = client.request("POST", "/segments/v1/exports", {**EXPORT, "segmentId": "no-such-segment"})
    assert status == 404 and set(answer) == {"code", "message"} and "no-such-segment" in answer["message"]
    for path in ("/operations/v1/nope", "/search/v1/exports/nope/results", "/search/v1/exports"):
        status, answer, _ = client.request("GET", path)
        assert (status, answer["code"]) == (404, "resource_not_found"), path


def test_any_segment_when_segments_is_none(make_sim) -> None:
    _, client = make_sim(segments=None)
    assert client.export(segmentId="user@example.com:4241245858598272")


def test_auth_and_methods(make_sim) -> None:
    _, client = make_sim(api_key="right")
    status, answer, _ = client.request("POST", "/segments/v1/exports", EXPORT, headers={"Authorization": "Basic wrong"})
    assert (status, answer["code"]) == (401, "unauthorized")
    status, _, _ = client.request("GET", "/operations/v1/x", headers={})
    assert status == 401
    for method, path, allow in (
        ("GET", "/segments/v1/exports", "POST"),
        ("DELETE", "/operations/v1/x", "GET"),
        ("POST", "/search/v1/exports/x/results", "GET"),
        ("POST", "/download/x", "GET, HEAD"),
    ):
        status, answer, resp = client.request(method, path, b"{}", headers={"Authorization": "Basic right"})
        assert (status, answer["code"], resp.headers["Allow"]) == (405, "method_not_allowed", allow), path


def test_create_export_documents_no_idempotency_key_so_by_default_a_keyed_repeat_starts_another(make_sim) -> None:
    sim, client = make_sim()
    headers = {**AUTH, "Idempotency-Key": "export-1"}
    first = client.request("POST", "/segments/v1/exports", EXPORT, headers=headers)[1]
    again = client.request("POST", "/segments/v1/exports", EXPORT, headers=headers)[1]
    assert first != again
    assert (sim.operation_stats["operations_created"], sim.operation_stats["replayed_exports"]) == (2, 0)


def test_list_operations_finds_exports_newest_first_filtered_and_paged(make_sim) -> None:
    sim, client = make_sim(operation_polls_to_complete=2)
    ids = [client.export() for _ in range(3)]
    client.operation(ids[0])
    client.operation(ids[0])  # COMPLETED
    status, page, _ = client.request("GET", "/operations/v1?type=SEARCH_EXPORT&limit=2")
    assert status == 200 and [o["id"] for o in page["operations"]] == [ids[2], ids[1]]
    token = page["nextPaginationToken"]
    status, rest, _ = client.request("GET", f"/operations/v1?type=SEARCH_EXPORT&limit=2&paginationToken={token}")
    assert [o["id"] for o in rest["operations"]] == [ids[0]] and "nextPaginationToken" not in rest
    assert {o["type"] for o in page["operations"] + rest["operations"]} == {"SEARCH_EXPORT"}
    pending = client.request("GET", "/operations/v1?state=PENDING")[1]["operations"]
    assert [o["id"] for o in pending] == [ids[2], ids[1]]
    assert client.request("GET", "/operations/v1?type=DELETE_USER")[1] == {"operations": []}
    assert client.request("GET", "/operations/v1?state=DONE")[0] == 400
    assert sim.operation_stats["operation_lists"] == 4


def test_idempotency_key_replays_the_operation_and_refuses_a_different_body(make_sim) -> None:
    sim, client = make_sim(export_idempotency=True)
    headers = {**AUTH, "Idempotency-Key": "export-1"}
    first = client.request("POST", "/segments/v1/exports", EXPORT, headers=headers)[1]
    again = client.request("POST", "/segments/v1/exports", EXPORT, headers=headers)[1]
    assert first == again
    status, answer, _ = client.request(
        "POST", "/segments/v1/exports", {**EXPORT, "format": "FORMAT_JSON"}, headers=headers
    )
    assert (status, answer["code"]) == (400, "invalid_argument")
    # Keys of batch imports and of exports do not collide.
    status, _, _ = client.request("POST", "/v2/users/batch", {"requests": []}, headers=headers)
    assert status == 200
    stats = sim.operation_stats
    assert (stats["operations_created"], stats["replayed_exports"]) == (1, 1)
    assert sim.stats["batch_posts"] == 1


# --------------------------------------------------------------------------- faults


def test_new_fault_targets_parse_and_old_ones_still_do() -> None:
    assert parse_fault("429@export:1x").target == "export"
    assert parse_fault("500@operation:0.5").rate == 0.5
    assert parse_fault("reset@download:2x").times == 2
    assert parse_fault("slow@results:1s").seconds == 1.0
    assert parse_fault("reset@submit:1x").target == "submit"
    with pytest.raises(ValueError):
        parse_fault("500@segments")


def test_targeted_faults_hit_only_their_endpoint(make_sim) -> None:
    faults = tuple(parse_fault(s) for s in ("429@export:1x", "500@operation:1x", "malformed@results:1x"))
    sim, client = make_sim(operation_polls_to_complete=1, faults=faults, retry_after_seconds=7)
    status, _, resp = client.request("POST", "/segments/v1/exports", EXPORT)
    assert status == 429 and resp.headers["Retry-After"] == "7"
    op_id = client.export()
    assert client.request("GET", f"/operations/v1/{op_id}")[0] == 500
    export_id = client.operation(op_id)["results"]["searchExportId"]
    status, body, _ = client.request("GET", f"/search/v1/exports/{export_id}/results")
    assert status == 200 and isinstance(body, bytes)  # not JSON
    assert client.location(export_id)["location"]
    assert sim.stats["faults"] == 3 and sim.stats["throttled"] == 1
    assert client.request("POST", "/v2/users/batch", {"requests": []})[0] == 200  # batch routes untouched


def test_reset_on_download_and_untargeted_faults_apply_to_operations(make_sim) -> None:
    sim, client = make_sim(operation_polls_to_complete=1, faults=(parse_fault("reset@download:1x"),))
    export_id = client.operation(client.export())["results"]["searchExportId"]
    url = client.location(export_id)["location"]
    with pytest.raises(urllib3.exceptions.ProtocolError):
        _download(client, url)
    assert _download(client, url)[0] == 200
    assert sim.stats["faults"] == 1 and sim.operation_stats["downloads"] == 2  # the reset one was served, then lost

    _, client = make_sim(faults=(parse_fault("500:1x"),))
    assert client.request("POST", "/segments/v1/exports", EXPORT)[0] == 500
    assert client.export()


def test_stuck_operations_never_finish(make_sim) -> None:
    _, client = make_sim(operation_polls_to_complete=2, faults=(parse_fault("stuck"),))
    op_id = client.export()
    states = [client.operation(op_id) for _ in range(6)]
    assert {o["state"] for o in states} == {"PENDING"}
    assert states[-1]["estimatePctComplete"] <= 99


def test_batch_stats_keep_their_keys_and_snapshots(make_sim) -> None:
    sim, client = make_sim(operation_polls_to_complete=1)
    client.operation(client.export())
    assert set(sim.stats) == {
        "batch_posts",
        "replayed_posts",
        "replayed_failures",
        "key_conflicts",
        "throttled",
        "status_gets",
        "page_gets",
        "max_in_progress",
        "max_running",
        "max_queued",
        "max_operations_in_progress",
        "faults",
    }
    (snap,) = sim.operations()
    assert snap["state"] == "COMPLETED" and snap["rows"] == 36 and snap["polls"] == 1
    assert sim.jobs() == []
