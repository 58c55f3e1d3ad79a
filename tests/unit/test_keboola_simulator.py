"""Behaviour of the Keboola Storage API simulator, exercised over real HTTP.

Jobs advance by poll count (``polls_to_start``/``polls_to_complete``) or by a clock the test
controls, never by sleeping, so every test is deterministic and fast.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import urllib3

from jobtracker.simulators.keboola import (
    BROKEN_TABLE,
    DEMO_TABLE,
    KeboolaSimulator,
    KeboolaSimulatorConfig,
    parse_fault,
    parse_keboola_fault,
)

TOKEN = {"X-StorageApi-Token": "sim-token"}
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00$")
EXCEPTION_ID = re.compile(r"^exception-[0-9a-f]{32}$")


class Clock:
    """A clock the test moves by hand (seconds since the epoch)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Client:
    """Tiny Storage API client for the tests: (status, parsed body, response)."""

    def __init__(self, base_url: str, http: urllib3.PoolManager):
        self.base_url = base_url
        self.http = http

    def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, body: bytes | None = None
    ) -> tuple[int, Any, urllib3.BaseHTTPResponse]:
        url = path if path.startswith("http") else self.base_url + path
        resp = self.http.request(method, url, body=body, headers=TOKEN if headers is None else headers)
        try:
            parsed = json.loads(resp.data) if resp.data else None
        except ValueError:
            parsed = resp.data
        return resp.status, parsed, resp

    def export(self, table: str = DEMO_TABLE, form: str = "", **headers: str) -> dict[str, Any]:
        hdrs = {**TOKEN, "Content-Type": "application/x-www-form-urlencoded", **headers}
        status, body, _ = self.request(
            "POST", f"/v2/storage/tables/{table}/export-async", headers=hdrs, body=form.encode()
        )
        assert status == 202, body
        return body

    def job(self, job_id: int) -> dict[str, Any]:
        status, body, _ = self.request("GET", f"/v2/storage/jobs/{job_id}")
        assert status == 200, body
        return body

    def poll_until_done(self, job_id: int, limit: int = 20) -> dict[str, Any]:
        for _ in range(limit):
            job = self.job(job_id)
            if job["status"] in ("success", "error"):
                return job
        raise AssertionError(f"job {job_id} not done after {limit} polls")

    def file(self, file_id: int) -> dict[str, Any]:
        status, body, _ = self.request("GET", f"/v2/storage/files/{file_id}")
        assert status == 200, body
        return body


@pytest.fixture
def http() -> Iterator[urllib3.PoolManager]:
    pool = urllib3.PoolManager(retries=False, timeout=10)
    yield pool
    pool.clear()


@pytest.fixture
def make_sim(http: urllib3.PoolManager) -> Iterator[Callable[..., tuple[KeboolaSimulator, Client]]]:
    sims: list[KeboolaSimulator] = []

    def make(**config: Any) -> tuple[KeboolaSimulator, Client]:
        sim = KeboolaSimulator(KeboolaSimulatorConfig(**config)).start()
        sims.append(sim)
        return sim, Client(sim.base_url, http)

    yield make
    for sim in sims:
        sim.stop()


def _csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(gzip.decompress(data).decode("utf-8"))))


# --------------------------------------------------------------------------- the job lifecycle


def test_export_answers_202_with_a_waiting_storage_job(make_sim: Callable) -> None:
    sim, client = make_sim()
    job = client.export()
    assert isinstance(job["id"], int) and not isinstance(job["id"], bool)
    assert job["status"] == "waiting"
    assert job["url"] == f"{sim.base_url}/v2/storage/jobs/{job['id']}"
    assert (job["tableId"], job["operationName"]) == (DEMO_TABLE, "tableExport")
    assert job["operationParams"] == {
        "queue": "main",
        "export": {"columns": [], "limit": None, "format": "rfc", "gzip": True},
    }
    assert RFC3339_UTC.match(job["createdTime"])
    assert (job["startTime"], job["endTime"], job["results"], job["error"]) == (None, None, None, None)
    assert isinstance(job["runId"], str) and job["runId"]
    assert isinstance(job["creatorToken"]["id"], str) and job["creatorToken"]["description"]
    assert job["metrics"] == {
        "inCompressed": False,
        "inBytes": 0,
        "inBytesUncompressed": 0,
        "outCompressed": True,
        "outBytes": 0,
        "outBytesUncompressed": 0,
    }


def test_job_moves_waiting_processing_success_by_poll_count(make_sim: Callable) -> None:
    _, client = make_sim(polls_to_start=2, polls_to_complete=4)
    job_id = client.export()["id"]
    seen = [client.job(job_id) for _ in range(5)]
    assert [j["status"] for j in seen] == ["waiting", "processing", "processing", "success", "success"]
    assert seen[0]["startTime"] is None and seen[0]["results"] is None
    assert seen[1]["startTime"] and seen[1]["endTime"] is None and seen[1]["results"] is None
    done = seen[3]
    assert RFC3339_UTC.match(done["endTime"]) and done["endTime"] >= done["startTime"] >= done["createdTime"]
    assert set(done["results"]) == {"file"} and set(done["results"]["file"]) == {"id"}
    assert isinstance(done["results"]["file"]["id"], int)
    assert done["error"] is None
    assert done["metrics"]["outBytes"] > 0 and done["metrics"]["outBytesUncompressed"] > done["metrics"]["outBytes"]
    assert seen[4] == done  # terminal jobs do not change any more


def test_unsliced_export_file_detail_and_download(make_sim: Callable) -> None:
    sim, client = make_sim(sliced=False)
    job = client.poll_until_done(client.export()["id"])
    detail = client.file(job["results"]["file"]["id"])
    assert detail["id"] == job["results"]["file"]["id"]
    assert (detail["isSliced"], detail["name"]) == (False, f"{DEMO_TABLE}.csv.gz")
    assert detail["url"].startswith(f"{sim.base_url}/download/{detail['id']}?expires=")
    assert "signature=" in detail["url"]
    status, _, resp = client.request("GET", detail["url"], headers={})  # the signed URL needs no token
    assert status == 200 and resp.headers["Content-Type"] == "application/gzip"
    assert len(resp.data) == detail["sizeBytes"] == job["metrics"]["outBytes"]
    rows = _csv_rows(resp.data)  # headerless, as Keboola's exports are (kbcstorage export_to_file)
    assert len(rows) == 50 and [r[0] for r in rows] == [str(i) for i in range(1, 51)]
    assert any("," in r[1] and '"' in r[1] for r in rows)  # quoting survives the round trip
    assert gzip.decompress(resp.data).startswith(b'"1","Ada Dijkstra",')


def test_columns_limit_format_from_form_or_json(make_sim: Callable) -> None:
    _, client = make_sim(polls_to_complete=1, sliced=False)
    form = client.export(form="columns%5B%5D=id&columns%5B%5D=email&limit=3&format=raw")
    hdrs = {**TOKEN, "Content-Type": "application/json"}
    status, as_json, _ = client.request(
        "POST",
        f"/v2/storage/tables/{DEMO_TABLE}/export-async",
        headers=hdrs,
        body=json.dumps({"columns": "id,email", "limit": 3, "format": "raw"}).encode(),
    )
    assert status == 202
    for job in (form, as_json):
        assert job["operationParams"]["export"] == {
            "columns": ["id", "email"],
            "limit": 3,
            "format": "raw",
            "gzip": True,
        }
        done = client.poll_until_done(job["id"])
        url = client.file(done["results"]["file"]["id"])["url"]
        data = gzip.decompress(client.request("GET", url, headers={})[2].data)
        assert data.decode().splitlines() == [
            "1,ada.dijkstra1@example.com",
            "2,grace.allen2@example.com",
            "3,alan.ritchie3@example.com",
        ]


def test_gzip_0_gives_a_plain_csv_and_where_filters(make_sim: Callable) -> None:
    _, client = make_sim(polls_to_complete=1, sliced=False)
    job = client.export(form="gzip=0&whereColumn=id&whereValues%5B%5D=2&whereValues%5B%5D=5&columns=id")
    assert job["metrics"]["outCompressed"] is False
    done = client.poll_until_done(job["id"])
    detail = client.file(done["results"]["file"]["id"])
    assert detail["name"] == f"{DEMO_TABLE}.csv"
    _, _, resp = client.request("GET", detail["url"], headers={})
    assert resp.headers["Content-Type"] == "text/csv"
    assert resp.data == b'"2"\n"5"\n'


def test_wall_clock_mode_follows_the_clock(make_sim: Callable) -> None:
    clock = Clock()
    _, client = make_sim(polls_to_complete=None, waiting_seconds=5, processing_seconds=10, clock=clock)
    job = client.export()
    assert client.job(job["id"])["status"] == "waiting"
    clock.now += 5
    assert client.job(job["id"])["status"] == "processing"
    clock.now += 9.5
    assert client.job(job["id"])["status"] == "processing"
    clock.now += 3600  # nobody polled for an hour: the times still say when the job really ran
    done = client.job(job["id"])
    assert done["status"] == "success"
    assert done["createdTime"] == "2027-01-15T08:00:00+00:00"
    assert done["startTime"] == "2027-01-15T08:00:05+00:00"
    assert done["endTime"] == "2027-01-15T08:00:15+00:00"


# --------------------------------------------------------------------------- failures of the job itself


@pytest.mark.parametrize("how", ["broken table", "fail_exports"])
def test_failed_export_ends_error_with_keboola_error(make_sim: Callable, how: str) -> None:
    _, client = make_sim(fail_exports=how == "fail_exports")
    job = client.export(BROKEN_TABLE if how == "broken table" else DEMO_TABLE)
    done = client.poll_until_done(job["id"])
    assert done["status"] == "error"
    assert set(done["error"]) == {"code", "message", "exceptionId"}
    assert done["error"]["code"] == "storage.tables.exportFailed"
    assert job["tableId"] in done["error"]["message"]
    assert EXCEPTION_ID.match(done["error"]["exceptionId"])
    assert done["results"] is None and done["endTime"] and done["metrics"]["outBytes"] == 0


# --------------------------------------------------------------------------- the signed download URL


def test_download_url_expires(make_sim: Callable) -> None:
    clock = Clock()
    sim, client = make_sim(download_ttl_seconds=60, clock=clock)
    done = client.poll_until_done(client.export()["id"])
    url = client.file(done["results"]["file"]["id"])["url"]
    assert client.request("GET", url, headers={})[0] == 200
    clock.now += 61
    status, body, resp = client.request("GET", url, headers={})
    assert status == 403 and resp.headers["Content-Type"] == "application/xml"
    assert b"<Code>AccessDenied</Code>" in body and b"Request has expired" in body
    fresh = client.file(done["results"]["file"]["id"])["url"]  # the file detail signs a new URL
    assert fresh != url and client.request("GET", fresh, headers={})[0] == 200
    assert sim.stats["expired_downloads"] == 1 and sim.stats["downloads"] == 3


def test_ttl_zero_hands_out_expired_urls(make_sim: Callable) -> None:
    _, client = make_sim(download_ttl_seconds=0)
    done = client.poll_until_done(client.export()["id"])
    for _ in range(2):
        assert client.request("GET", client.file(done["results"]["file"]["id"])["url"], headers={})[0] == 403


def test_expire_first_urls_hook_expires_only_the_first_urls(make_sim: Callable) -> None:
    _, client = make_sim(expire_first_urls=2)
    file_id = client.poll_until_done(client.export()["id"])["results"]["file"]["id"]
    assert [client.request("GET", client.file(file_id)["url"], headers={})[0] for _ in range(3)] == [403, 403, 200]


def test_tampered_or_unknown_download_is_refused(make_sim: Callable) -> None:
    _, client = make_sim()
    file_id = client.poll_until_done(client.export()["id"])["results"]["file"]["id"]
    url = client.file(file_id)["url"]
    later = re.sub(r"expires=(\d+)", lambda m: f"expires={int(m[1]) + 3600}", url)
    status, body, _ = client.request("GET", later, headers={})
    assert status == 403 and b"SignatureDoesNotMatch" in body
    assert client.request("GET", url.split("?")[0], headers={})[0] == 403
    assert client.request("GET", url.replace(f"/download/{file_id}", "/download/1"), headers={})[0] == 404


# --------------------------------------------------------------------------- errors, auth, maintenance


def _assert_keboola_error(body: Any, code: str) -> None:
    assert set(body) == {"error", "code", "status", "exceptionId"}, body
    assert (body["code"], body["status"]) == (code, "error")
    assert body["error"] and EXCEPTION_ID.match(body["exceptionId"])


def test_unknown_table_job_file_and_route_are_404(make_sim: Callable) -> None:
    _, client = make_sim()
    status, body, _ = client.request("POST", "/v2/storage/tables/in.c-main.nope/export-async")
    assert status == 404
    _assert_keboola_error(body, "storage.tables.notFound")
    assert '"nope"' in body["error"] and '"in.c-main"' in body["error"]
    for path, code in (
        ("/v2/storage/jobs/123", "storage.jobs.notFound"),
        ("/v2/storage/jobs/abc", "storage.jobs.notFound"),
        ("/v2/storage/files/123", "storage.files.notFound"),
        ("/v2/storage/tables/in.c-main.nope", "storage.tables.notFound"),
        ("/v2/storage/buckets", "storage.routeNotFound"),
        ("/", "storage.routeNotFound"),
    ):
        status, body, _ = client.request("GET", path)
        assert status == 404, path
        _assert_keboola_error(body, code)


def test_bad_export_parameters_are_400(make_sim: Callable) -> None:
    sim, client = make_sim()
    form_headers = {**TOKEN, "Content-Type": "application/x-www-form-urlencoded"}
    for form in ("columns=id,nope", "limit=-1", "limit=many", "format=xml", "whereColumn=nope&whereValues=1"):
        status, body, _ = client.request(
            "POST", f"/v2/storage/tables/{DEMO_TABLE}/export-async", headers=form_headers, body=form.encode()
        )
        assert status == 400, form
        _assert_keboola_error(body, "storage.tables.validation")
    status, body, _ = client.request(
        "POST",
        f"/v2/storage/tables/{DEMO_TABLE}/export-async",
        headers={**TOKEN, "Content-Type": "application/json"},
        body=b"{not json",
    )
    assert status == 400
    assert sim.stats["export_posts"] == 0


def test_wrong_method_is_405(make_sim: Callable) -> None:
    _, client = make_sim()
    status, body, resp = client.request("GET", f"/v2/storage/tables/{DEMO_TABLE}/export-async")
    assert status == 405 and resp.headers["Allow"] == "POST"
    _assert_keboola_error(body, "storage.methodNotAllowed")
    assert client.request("DELETE", "/v2/storage/jobs/1")[0] == 405


def test_any_non_empty_token_unless_one_is_configured(make_sim: Callable) -> None:
    sim, client = make_sim()
    for headers in ({}, {"X-StorageApi-Token": ""}, {"X-StorageApi-Token": "   "}):
        status, body, _ = client.request("POST", f"/v2/storage/tables/{DEMO_TABLE}/export-async", headers=headers)
        assert status == 401
        _assert_keboola_error(body, "storage.tokenInvalid")
    assert client.request("GET", "/v2/storage/tokens/verify", headers={"X-StorageApi-Token": "x"})[0] == 200
    sim2, client2 = make_sim(token="right")
    status, body, _ = client2.request("GET", "/v2/storage/jobs/1", headers={"X-StorageApi-Token": "wrong"})
    assert status == 401 and body["error"] == "Invalid access token"
    status, body, _ = client2.request("GET", "/v2/storage/tokens/verify", headers={"X-StorageApi-Token": "right"})
    assert status == 200 and isinstance(body["id"], str) and body["owner"]["id"] == 4242
    assert sim.stats["unauthorized"] == 3 and sim2.stats["unauthorized"] == 1


def test_creator_token_is_the_callers_identity_not_the_token(make_sim: Callable) -> None:
    _, client = make_sim()
    a = client.export(**{"X-StorageApi-Token": "token-a"})["creatorToken"]
    a_again = client.export(**{"X-StorageApi-Token": "token-a"})["creatorToken"]
    b = client.export(**{"X-StorageApi-Token": "token-b"})["creatorToken"]
    assert a == a_again and a["id"] != b["id"]
    assert "token-a" not in json.dumps(a)


def test_run_id_header_is_kept(make_sim: Callable) -> None:
    _, client = make_sim(polls_to_complete=1)
    job = client.export(**{"X-KBC-RunId": "123456.789"})
    assert job["runId"] == "123456.789"
    done = client.poll_until_done(job["id"])
    detail = client.file(done["results"]["file"]["id"])
    assert detail["runId"] is None and detail["runIds"] == [123456, 789]


def test_maintenance_mode_answers_503_with_retry_after(make_sim: Callable) -> None:
    sim, client = make_sim(maintenance_retry_after_seconds=45)
    file_id = client.poll_until_done(client.export()["id"])["results"]["file"]["id"]
    url = client.file(file_id)["url"]
    sim.config.maintenance = True
    for method, path in (("POST", f"/v2/storage/tables/{DEMO_TABLE}/export-async"), ("GET", "/v2/storage/jobs/1")):
        status, body, resp = client.request(method, path)
        assert status == 503 and resp.headers["Retry-After"] == "45"
        assert body["status"] == "maintenance" and body["reason"] and RFC3339_UTC.match(body["estimatedEndTime"])
    assert client.request("GET", url, headers={})[0] == 200  # the file storage is not in maintenance
    sim.config.maintenance = False
    assert client.request("GET", f"/v2/storage/files/{file_id}")[0] == 200
    assert sim.stats["maintenance"] == 2


def test_maintenance_as_a_fault(make_sim: Callable) -> None:
    sim, client = make_sim(faults=(parse_keboola_fault("maintenance@status:2x"),), maintenance_retry_after_seconds=7)
    job_id = client.export()["id"]  # submit is not targeted
    answers = [client.request("GET", f"/v2/storage/jobs/{job_id}") for _ in range(3)]
    assert [a[0] for a in answers] == [503, 503, 200]
    assert answers[0][2].headers["Retry-After"] == "7"
    assert answers[2][1]["status"] == "processing"  # the refused polls did not count
    assert sim.stats["faults"] == 2


# --------------------------------------------------------------------------- injected faults


def test_fault_specs() -> None:
    assert parse_keboola_fault("maintenance").kind == "maintenance"
    fault = parse_keboola_fault("maintenance@submit:0.5")
    assert (fault.kind, fault.target, fault.rate, fault.times) == ("maintenance", "submit", 0.5, None)
    assert parse_keboola_fault("500@status:1x") == parse_fault("500@status:1x")
    with pytest.raises(ValueError, match="repeat-token"):
        parse_keboola_fault("repeat-token")
    with pytest.raises(ValueError):
        parse_keboola_fault("maintenance@nowhere")
    with pytest.raises(ValueError):
        parse_keboola_fault("explode")


def test_injected_429_and_500(make_sim: Callable) -> None:
    sim, client = make_sim(faults=(parse_fault("429@submit:1x"), parse_fault("500@status:1x")), retry_after_seconds=3)
    path = f"/v2/storage/tables/{DEMO_TABLE}/export-async"
    status, body, resp = client.request("POST", path)
    assert status == 429 and resp.headers["Retry-After"] == "3"
    _assert_keboola_error(body, "storage.tooManyRequests")
    job_id = client.request("POST", path)[1]["id"]
    status, body, _ = client.request("GET", f"/v2/storage/jobs/{job_id}")
    assert status == 500
    _assert_keboola_error(body, "APPLICATION_ERROR")
    assert client.job(job_id)["status"] == "processing"
    assert sim.stats["throttled"] == 1 and sim.stats["faults"] == 2 and sim.stats["export_posts"] == 1


def test_injected_reset_after_processing_and_malformed(make_sim: Callable, http: urllib3.PoolManager) -> None:
    sim, client = make_sim(faults=(parse_fault("reset@submit:1x"), parse_fault("malformed@status:1x")))
    with pytest.raises(urllib3.exceptions.ProtocolError):
        http.request("POST", f"{sim.base_url}/v2/storage/tables/{DEMO_TABLE}/export-async", headers=TOKEN)
    assert sim.stats["export_posts"] == 1  # the export was started; only the answer was lost
    (job,) = sim.jobs()
    status, body, resp = client.request("GET", f"/v2/storage/jobs/{job['id']}")
    assert status == 200 and isinstance(body, bytes)
    with pytest.raises(ValueError):
        json.loads(resp.data)


def test_injected_fault_on_downloads(make_sim: Callable) -> None:
    _, client = make_sim(faults=(parse_fault("500@pages:1x"),))
    file_id = client.poll_until_done(client.export()["id"])["results"]["file"]["id"]
    assert client.request("GET", f"/v2/storage/files/{file_id}")[0] == 500
    assert client.request("GET", client.file(file_id)["url"], headers={})[0] == 200


def test_stuck_jobs_stay_processing(make_sim: Callable) -> None:
    _, client = make_sim(faults=(parse_fault("stuck"),))
    job_id = client.export()["id"]
    assert {client.job(job_id)["status"] for _ in range(10)} == {"processing"}


# --------------------------------------------------------------------------- the rest of the surface


def test_table_detail_and_add_table(make_sim: Callable) -> None:
    sim, client = make_sim(polls_to_complete=1)
    status, table, _ = client.request("GET", f"/v2/storage/tables/{DEMO_TABLE}")
    assert status == 200
    assert (table["id"], table["name"], table["columns"], table["rowsCount"]) == (
        DEMO_TABLE,
        "users",
        ["id", "name", "email"],
        50,
    )
    assert table["bucket"] == {"id": "in.c-main", "name": "c-main", "stage": "in"}
    sim.add_table("out.c-report.big", ["n"], [[i] for i in range(1000)])
    done = client.poll_until_done(client.export("out.c-report.big")["id"])
    status, table, _ = client.request("GET", "/v2/storage/tables/out.c-report.big")
    assert (table["name"], table["columns"], table["rowsCount"]) == ("big", ["n"], 1000)
    file_id = done["results"]["file"]["id"]
    rows = [row for bucket, key in sim.file_objects(file_id) for row in _csv_rows(sim.storage.get("aws", bucket, key))]
    assert [int(row[0]) for row in rows] == list(range(1000))
    with pytest.raises(ValueError):
        sim.add_table("no-dots", ["a"], [])


def test_ids_are_unique_integers_and_jobs_snapshot(make_sim: Callable) -> None:
    sim, client = make_sim(polls_to_complete=1)
    ids = [client.export()["id"] for _ in range(3)]
    assert len(set(ids)) == 3 and all(isinstance(i, int) for i in ids)
    client.poll_until_done(ids[0])
    assert [(j["id"], j["status"], j["polls"]) for j in sim.jobs()] == [
        (ids[0], "success", 1),
        (ids[1], "waiting", 0),
        (ids[2], "waiting", 0),
    ]


def test_stats_snapshot_and_stop(make_sim: Callable) -> None:
    sim, client = make_sim()
    done = client.poll_until_done(client.export()["id"])
    client.request("GET", client.file(done["results"]["file"]["id"])["url"], headers={})
    stats = sim.stats
    assert stats == {
        "export_posts": 1,
        "status_gets": 2,
        "file_gets": 1,
        "downloads": 1,
        "expired_downloads": 0,
        "unauthorized": 0,
        "throttled": 0,
        "maintenance": 0,
        "faults": 0,
        "object_gets": 0,
        "refused": 0,
        "missing": 0,
    }
    stats["export_posts"] = 99
    assert sim.stats["export_posts"] == 1
    sim.stop()
    sim.stop()
    with pytest.raises(RuntimeError):
        _ = sim.base_url


def test_serve_prints_url_and_stops_on_ctrl_c() -> None:
    """The blocking entry point behind ``jobtracker simulate keboola --port N``."""
    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    code = (
        "from jobtracker.simulators.keboola import KeboolaSimulatorConfig, serve\n"
        "serve(KeboolaSimulatorConfig(token='T'), port=0)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        match = re.fullmatch(r"Keboola simulator on (http://127\.0\.0\.1:(\d+))", line)
        assert match, line
        http = urllib3.PoolManager(retries=False)
        url = f"{match[1]}/v2/storage/tables/{DEMO_TABLE}/export-async"
        assert http.request("POST", url, headers={"X-StorageApi-Token": "T"}).status == 202
        assert http.request("POST", url, headers={"X-StorageApi-Token": "other"}).status == 401
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- files as Keboola stores them


def _detail(sim: KeboolaSimulator, file_id: int, *, federation: bool = True) -> dict[str, Any]:
    query = "?federationToken=1" if federation else ""
    answer = urllib3.PoolManager(retries=False).request(
        "GET", f"{sim.base_url}/v2/storage/files/{file_id}{query}", headers=TOKEN
    )
    assert answer.status == 200
    return answer.json()


@pytest.mark.parametrize(
    ("backend", "path", "credentials", "scheme"),
    [
        ("aws", "s3Path", {"AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}, "s3://kbc-sapi-files/"),
        ("azure", "absPath", {"SASConnectionString", "expiration"}, "azure://kbcsimfiles.blob.core.windows.net/"),
        ("gcp", "gcsPath", {"access_token", "expires_in", "token_type", "projectId"}, "gs://kbc-sapi-files-gcp/"),
    ],
)
def test_exports_are_sliced_and_headerless_with_a_detail_per_backend(
    make_sim: Callable, backend: str, path: str, credentials: set[str], scheme: str
) -> None:
    """kbcstorage ``Files.download`` / DESIGN.md: provider, the path and the credentials of each backend."""
    sim, client = make_sim(polls_to_complete=1, backend=backend)
    file_id = client.poll_until_done(client.export()["id"])["results"]["file"]["id"]
    plain = _detail(sim, file_id, federation=False)
    assert plain["isSliced"] is True and plain["provider"] == backend and path in plain
    assert not {"credentials", "absCredentials", "gcsCredentials"} & set(plain)  # only with federationToken
    detail = _detail(sim, file_id)
    creds_field = {"aws": "credentials", "azure": "absCredentials", "gcp": "gcsCredentials"}[backend]
    assert set(detail[creds_field]) == credentials
    manifest = json.loads(client.request("GET", detail["url"], headers={})[2].data)
    urls = [entry["url"] for entry in manifest["entries"]]
    assert len(urls) == 3 and all(url.startswith(scheme) for url in urls)  # at least two slices for the demo
    rows = [
        row for bucket, key in sim.file_objects(file_id) for row in _csv_rows(sim.storage.get(backend, bucket, key))
    ]
    assert [row[0] for row in rows] == [str(i) for i in range(1, 51)]  # headerless slices, every row once
    if backend == "azure":
        settings = dict(part.split("=", 1) for part in detail["absCredentials"]["SASConnectionString"].split(";"))
        assert settings["BlobEndpoint"] == f"{sim.base_url}/kbcsimfiles"
        assert "sig=" in settings["SharedAccessSignature"] and "se=" in settings["SharedAccessSignature"]


def test_s3_endpoint_checks_the_federation_credentials_as_s3_does() -> None:
    import boto3
    from botocore.exceptions import ClientError

    clock = Clock()
    config = KeboolaSimulatorConfig(polls_to_complete=1, credentials_ttl_seconds=60, clock=clock)
    with KeboolaSimulator(config, s3_port=0) as sim:
        client = Client(sim.base_url, urllib3.PoolManager(retries=False))
        file_id = client.poll_until_done(client.export()["id"])["results"]["file"]["id"]
        detail = _detail(sim, file_id)
        creds = detail["credentials"]
        bucket, key = sim.file_objects(file_id)[0]

        def s3(**overrides: str) -> Any:
            keys = {
                "aws_access_key_id": creds["AccessKeyId"],
                "aws_secret_access_key": creds["SecretAccessKey"],
                "aws_session_token": creds["SessionToken"],
                **overrides,
            }
            return boto3.client("s3", endpoint_url=sim.s3_base_url, region_name="us-east-1", **keys)

        def refused(client: Any, key: str = key) -> tuple[int, str]:
            with pytest.raises(ClientError) as err:
                client.get_object(Bucket=bucket, Key=key)
            return err.value.response["ResponseMetadata"]["HTTPStatusCode"], err.value.response["Error"]["Code"]

        body = s3().get_object(Bucket=bucket, Key=key)["Body"].read()
        assert gzip.decompress(body).startswith(b'"1","Ada Dijkstra"')
        assert s3().get_object(Bucket=bucket, Key=key, Range="bytes=0-1")["Body"].read() == b"\x1f\x8b"
        assert s3().head_object(Bucket=bucket, Key=key)["ContentLength"] == len(body)
        assert refused(s3(), key + "-nope") == (404, "NoSuchKey")
        assert refused(s3(aws_secret_access_key="wrong")) == (403, "SignatureDoesNotMatch")
        assert refused(s3(aws_access_key_id="ASIAUNKNOWN")) == (403, "InvalidAccessKeyId")
        assert refused(s3(aws_session_token="other")) == (403, "InvalidToken")
        clock.now += 61
        assert refused(s3()) == (400, "ExpiredToken")
        fresh = _detail(sim, file_id)["credentials"]
        assert (
            boto3.client(
                "s3",
                endpoint_url=sim.s3_base_url,
                region_name="us-east-1",
                aws_access_key_id=fresh["AccessKeyId"],
                aws_secret_access_key=fresh["SecretAccessKey"],
                aws_session_token=fresh["SessionToken"],
            )
            .get_object(Bucket=bucket, Key=key)["Body"]
            .read()
            == body
        )
        assert sim.stats["refused"] == 4 and sim.stats["missing"] == 1


def test_blob_and_gcs_endpoints_check_sas_and_token(make_sim: Callable) -> None:
    clock = Clock()
    http = urllib3.PoolManager(retries=False)
    for backend in ("azure", "gcp"):
        sim, client = make_sim(polls_to_complete=1, backend=backend, credentials_ttl_seconds=60, clock=clock)
        file_id = client.poll_until_done(client.export()["id"])["results"]["file"]["id"]
        detail = _detail(sim, file_id)
        bucket, key = sim.file_objects(file_id)[0]
        if backend == "azure":
            settings = dict(part.split("=", 1) for part in detail["absCredentials"]["SASConnectionString"].split(";"))
            url = f"{settings['BlobEndpoint']}/{bucket}/{key}?{settings['SharedAccessSignature']}"
            headers: dict[str, str] = {}
            tampered = (url.replace("sp=rl", "sp=rwl"), headers)
            refused_status, missing_code = 403, b"BlobNotFound"
        else:
            url = f"{sim.base_url}/storage/v1/b/{bucket}/o/{quote(key, safe='')}?alt=media"
            headers = {"Authorization": f"Bearer {detail['gcsCredentials']['access_token']}"}
            tampered = (url, {"Authorization": "Bearer ya29.someone-else"})
            refused_status, missing_code = 401, b"No such object"
        ok = http.request("GET", url, headers=headers)
        assert ok.status == 200 and gzip.decompress(ok.data).startswith(b'"1",')
        assert http.request("GET", tampered[0], headers=tampered[1]).status == refused_status
        missing = http.request(
            "GET", url.replace(quote(key, safe="") if backend == "gcp" else key, "nope"), headers=headers
        )
        assert missing.status == 404 and missing_code in missing.data
        clock.now += 61
        assert http.request("GET", url, headers=headers).status == refused_status  # expired
