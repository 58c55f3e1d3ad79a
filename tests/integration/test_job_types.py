"""Every job type through the real ASL in moto, the real handlers and the simulators: FullStory segment
exports (both result shapes), Keboola table exports, and `track` of a provider job someone else started.
Each job's API views validate against the seed Operation and JobResponse schemas."""

from __future__ import annotations

import gzip
import json
from contextlib import contextmanager

import jsonschema
import pytest
import urllib3

from jobtracker.local.session import OfflineSession
from jobtracker.simulators.fullstory import SimulatorConfig
from jobtracker.simulators.keboola import KeboolaSimulatorConfig
from tests.contract.schemas import JOB_RESPONSE_SCHEMA, OPERATION_SCHEMA, load
from tests.integration.helpers import fullstory_batch_budget, users

HTTP = urllib3.PoolManager(retries=False, timeout=10)
EXPORT = {
    "segmentId": "everyone",
    "type": "TYPE_INDIVIDUAL",
    "format": "FORMAT_CSV",
    "timeRange": {"start": "", "end": ""},
}


@contextmanager
def stack(sim: SimulatorConfig | None = None, keboola: KeboolaSimulatorConfig | None = None):
    with OfflineSession(
        parameters={"PollMinSeconds": 0, "PollMaxSeconds": 0},
        simulator_config=sim or SimulatorConfig(polls_to_complete=1, operation_polls_to_complete=3),
        keboola_config=keboola,
        api_port=0,
        allow_unsigned=True,
        retry_time_scale=0.0,
    ) as session:
        yield session


def post(session, body):
    response = HTTP.request("POST", session.api.base_url + "/jobs", body=json.dumps(body).encode())
    return response.status, json.loads(response.data)


def get(session, path):
    response = HTTP.request("GET", session.api.base_url + path)
    assert response.status == 200, response.data
    return json.loads(response.data)


def run(session, body):
    status, created = post(session, body)
    assert status == 202, created
    return session.stack.wait_for_job(created["id"], timeout=60)


def stored(session, key: str) -> bytes:
    return session.stack.client("s3").get_object(Bucket=session.stack.results_bucket, Key=key)["Body"].read()


def check_views(session, job_id: str) -> dict:
    """Both views of the job validate against the seed schemas (tests/contract/fixtures/seeds)."""
    operation = get(session, f"/jobs/{job_id}")
    storage = get(session, f"/jobs/{job_id}?view=storage-job")
    for path, answer in ((OPERATION_SCHEMA, operation), (JOB_RESPONSE_SCHEMA, storage)):
        schema = load(path)
        validator_cls = jsonschema.validators.validator_for(schema)
        errors = list(validator_cls(schema, format_checker=validator_cls.FORMAT_CHECKER).iter_errors(answer))
        assert not errors, [f"{path.name} {list(e.path)}: {e.message}" for e in errors]
    return operation


@pytest.mark.parametrize("shape", ["searchExportId", "downloadUrl"])
def test_segment_export_completes_with_its_file_and_progress(shape):
    sim = SimulatorConfig(polls_to_complete=1, operation_polls_to_complete=4, results_shape=shape, seed_states=True)
    with stack(sim) as session:
        job = run(session, {"type": "fullstory.segment_export", "params": EXPORT})
        assert job["state"] == "COMPLETED", job.get("error")
        content = gzip.decompress(stored(session, job["resultKeys"]["download"])).decode()
        assert content.splitlines()[0] and len(content.splitlines()) > 10  # header + rows of the export
        (batch,) = session.stack.list_batches(job["id"])
        # estimatePctComplete flowed in while running. The simulator finishes on its 4th status GET; a GET whose
        # answer the tracker lost (a timed-out call on a loaded machine, retried by the state machine) is
        # not a poll it counted, so the count is at most 4.
        assert batch["progressPct"] > 0 and 2 <= batch["polls"] <= 4
        view = check_views(session, job["id"])
        assert view["estimatePctComplete"] == 100 and view["results"]["downloadUrl"].startswith("https://")
        (note,) = session.stack.notifications()
        assert note["message"]["results"]["download"].endswith(".csv.gz")


def test_expired_export_download_url_is_fetched_again():
    sim = SimulatorConfig(polls_to_complete=1, operation_polls_to_complete=1, expire_first_locations=1)
    with stack(sim) as session:
        job = run(session, {"type": "fullstory.segment_export", "params": EXPORT})
        assert job["state"] == "COMPLETED"
        assert session.simulator.operation_stats["expired_downloads"] >= 1
        assert gzip.decompress(stored(session, job["resultKeys"]["download"]))


def test_failed_segment_export_ends_the_job_failed_with_the_provider_error():
    with stack() as session:
        job = run(session, {"type": "fullstory.segment_export", "params": {**EXPORT, "segmentId": "broken"}})
        assert job["state"] == "FAILED"
        assert job["error"]["code"] == "export_failed" and job["error"]["message"]
        check_views(session, job["id"])
        assert len(session.stack.notifications()) == 1


def test_keboola_table_export_lands_its_file_and_a_failed_one_keeps_keboolas_error():
    with stack(keboola=KeboolaSimulatorConfig(expire_first_urls=1)) as session:
        job = run(session, {"type": "keboola.table_export", "params": {"tableId": "in.c-main.users"}})
        assert job["state"] == "COMPLETED", job.get("error")
        rows = gzip.decompress(stored(session, job["resultKeys"]["download"])).decode().splitlines()
        assert len(rows) == 51  # header + the demo table's 50 rows, after one expired URL was replaced
        assert session.keboola.stats["expired_downloads"] == 1
        assert check_views(session, job["id"])["state"] == "COMPLETED"
        assert get(session, f"/jobs/{job['id']}?view=storage-job")["status"] == "success"

        failed = run(session, {"type": "keboola.table_export", "params": {"tableId": "in.c-main.broken"}})
        assert failed["state"] == "FAILED"
        assert failed["error"]["code"] == "storage.tables.exportFailed" and failed["error"]["exceptionId"]
        storage_view = get(session, f"/jobs/{failed['id']}?view=storage-job")
        assert storage_view["status"] == "error" and storage_view["error"] == failed["error"]


def test_track_follows_jobs_someone_else_started():
    with stack() as session:
        # A FullStory batch import started by another tool, straight at the provider.
        body = json.dumps({"requests": [*users(3), {"uid": "bad", "email": "no-at"}]}).encode()
        auth = {"Authorization": f"Basic {session.stack.api_key}"}
        started = json.loads(
            HTTP.request("POST", session.simulator.base_url + "/v2/users/batch", body=body, headers=auth).data
        )
        job = run(session, {"type": "track", "provider": "fullstory.users", "providerJobId": started["job"]["id"]})
        assert job["state"] == "COMPLETED"
        assert job["accounting"]["check"] == "rows in 4 = imported 3 + provider errors 1 + rejected 0"
        assert session.simulator.stats["batch_posts"] == 1  # followed, never re-sent
        check_views(session, job["id"])

        # A Keboola storage job started elsewhere.
        kbc = json.loads(
            HTTP.request(
                "POST",
                session.keboola.base_url + "/v2/storage/tables/in.c-main.users/export-async",
                headers={"X-StorageApi-Token": "t"},
            ).data
        )
        tracked = run(session, {"type": "track", "provider": "keboola.storage", "providerJobId": str(kbc["id"])})
        assert tracked["state"] == "COMPLETED" and tracked["resultKeys"]["download"].endswith(".csv.gz")
        check_views(session, tracked["id"])


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"type": "fullstory.segment_export", "params": {}}, "invalid_request"),
        ({"type": "fullstory.segment_export", "requests": [{"uid": "a"}]}, "invalid_request"),
        (
            {"type": "keboola.table_export", "params": {"tableId": "x", "stack": "https://evil.example.com"}},
            "stack_not_allowed",
        ),
        ({"type": "track", "provider": "fullstory.users"}, "invalid_request"),
        ({"type": "track", "provider": "nobody", "providerJobId": "1"}, "invalid_request"),
        ({"type": "fullstory.users", "requests": [{"uid": "a"}], "params": {"x": 1}}, "invalid_request"),
    ],
)
def test_bad_job_type_requests_get_a_json_400(body, code):
    with stack() as session:
        status, answer = post(session, body)
        assert (status, answer["code"]) == (400, code)
        assert session.stack.jobs() == []


def test_track_follows_a_fullstory_operation_started_elsewhere():
    with stack() as session:
        auth = {"Authorization": f"Basic {session.stack.api_key}", "Content-Type": "application/json"}
        body = json.dumps({**EXPORT, "format": "FORMAT_NDJSON"}).encode()
        started = json.loads(
            HTTP.request("POST", session.simulator.base_url + "/segments/v1/exports", body=body, headers=auth).data
        )
        job = run(
            session, {"type": "track", "provider": "fullstory.operation", "providerJobId": started["operationId"]}
        )
        assert job["state"] == "COMPLETED", job.get("error")
        assert job["resultKeys"]["download"].endswith(".ndjson.gz")
        assert session.simulator.operation_stats["operations_created"] == 1  # followed, not started again
        check_views(session, job["id"])


def test_each_provider_has_its_own_in_flight_budget():
    """Keboola exports wait for the Keboola budget, not FullStory's, and give their slots back."""
    with OfflineSession(
        parameters={"PollMinSeconds": 0, "PollMaxSeconds": 0, "KeboolaInFlightBudget": 1, "OrgInFlightBudget": 50},
        simulator_config=SimulatorConfig(polls_to_complete=1),
        keboola_config=KeboolaSimulatorConfig(polls_to_complete=3),
        api_port=0,
        allow_unsigned=True,
        retry_time_scale=0.0,
    ) as session:
        ids = [
            post(session, {"type": "keboola.table_export", "params": {"tableId": "in.c-main.users"}})[1]["id"]
            for _ in range(3)
        ]
        jobs = [session.stack.wait_for_job(job_id, timeout=60) for job_id in ids]
        assert {j["state"] for j in jobs} == {"COMPLETED"}
        waits = sum(int(b.get("budgetWaits", 0)) for j in jobs for b in session.stack.list_batches(j["id"]))
        assert waits > 0  # three exports, one slot: the others waited their turn
        from tracker import wiring

        assert wiring.budgets().for_type("keboola.table_export").holders() == {}
        assert fullstory_batch_budget().holders() == {}  # FullStory's budget was never touched
