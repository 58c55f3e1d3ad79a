"""Jobs of spec types (http:<name>, specs/*.yaml) through the offline stack: the real ASL in moto, the real
handlers, the Databricks and dbt Cloud simulators. They run the same state machine, budgets, polling,
results, notification and views as every other type; every bad answer ends in a clear error or a
terminal job, never a stuck one."""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from typing import Any

import pytest
import urllib3
from tracker.providers.spec import shipped

from jobtracker.local.session import OfflineSession
from jobtracker.simulators.databricks import DatabricksConfig
from jobtracker.simulators.dbt_cloud import DbtCloudConfig
from jobtracker.simulators.faults import parse_fault
from jobtracker.simulators.fullstory import SimulatorConfig
from tests.integration.test_job_types import check_views

HTTP = urllib3.PoolManager(retries=False, timeout=10)
ACCOUNT = DbtCloudConfig().account_id


@contextmanager
def stack(
    databricks: DatabricksConfig | None = None,
    dbt_cloud: DbtCloudConfig | None = None,
    parameters: dict[str, Any] | None = None,
    **session: Any,
):
    with OfflineSession(
        parameters={"PollMinSeconds": 0, "PollMaxSeconds": 0, **(parameters or {})},
        simulator_config=SimulatorConfig(polls_to_complete=1, operation_polls_to_complete=3),
        databricks_config=databricks,
        dbt_cloud_config=dbt_cloud,
        api_port=0,
        allow_unsigned=True,
        retry_time_scale=0.0,
        **session,
    ) as running:
        yield running


def post(session: OfflineSession, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    assert session.api is not None
    response = HTTP.request("POST", session.api.base_url + "/jobs", body=json.dumps(body).encode())
    return response.status, json.loads(response.data)


def run(session: OfflineSession, body: dict[str, Any]) -> dict[str, Any]:
    status, created = post(session, body)
    assert status == 202, created
    return session.stack.wait_for_job(created["id"], timeout=90)


def stored(session: OfflineSession, key: str) -> bytes:
    return session.stack.client("s3").get_object(Bucket=session.stack.results_bucket, Key=key)["Body"].read()


def budget_leases(spec_type: str) -> dict[str, Any]:
    from tracker import wiring

    budget = wiring.budgets().for_type(spec_type)
    assert budget is not None
    return budget.holders()


# -- what works ---------------------------------------------------------------------------------------


def test_a_databricks_run_completes_with_its_run_record_view_and_one_notification() -> None:
    with stack(DatabricksConfig(terminating_polls=1)) as session:
        job = run(session, {"type": "http:databricks", "params": {"job_id": 101, "job_parameters": {"d": "1"}}})
        assert job["state"] == "COMPLETED", job.get("error")
        (batch,) = session.stack.list_batches(job["id"])
        run_id = batch["providerJobId"]
        assert batch["providerStatus"] == "TERMINATED/SUCCESS" and batch["polls"] == 4  # PENDING, RUNNING x2, end
        record = json.loads(stored(session, job["resultKeys"]["download"]))
        assert job["resultKeys"]["download"].endswith(f"/run-{run_id}.json")
        assert record["run_id"] == int(run_id) and record["job_parameters"] == [{"name": "d", "value": "1"}]
        view = check_views(session, job["id"])
        assert view["type"] == "http:databricks" and view["state"] == "COMPLETED"
        assert view["operationParams"] == {"job_id": 101, "job_parameters": {"d": "1"}}
        (note,) = session.stack.notifications()
        assert note["attributes"]["type"] == "http:databricks" and note["attributes"]["state"] == "COMPLETED"
        assert budget_leases("http:databricks") == {}  # the slot went back
        # The start carried the tracker's key as Databricks' idempotency token (one run per job).
        assert session.databricks.stats["run_now"] == 1


@pytest.mark.parametrize(
    ("job_id", "code", "message"),
    [
        (102, "FAILED", "ZeroDivisionError"),
        (103, "SKIPPED", "a previous run of this job is still active"),
        (105, "INTERNAL_ERROR", "the Jobs service lost the run"),
    ],
)
def test_a_failed_databricks_run_ends_the_job_failed_with_its_state(job_id: int, code: str, message: str) -> None:
    with stack() as session:
        job = run(session, {"type": "http:databricks", "params": {"job_id": job_id}})
        assert job["state"] == "FAILED" and job["error"]["code"] == code and message in job["error"]["message"]
        check_views(session, job["id"])
        assert len(session.stack.notifications()) == 1 and budget_leases("http:databricks") == {}


def test_dbt_cloud_runs_end_with_their_artifact_or_their_error() -> None:
    with stack() as session:
        done = run(session, {"type": "http:dbt_cloud", "params": {"account_id": ACCOUNT, "job_id": 201}})
        assert done["state"] == "COMPLETED", done.get("error")
        assert done["resultKeys"]["download"].endswith("/run_results.json")
        assert json.loads(stored(session, done["resultKeys"]["download"]))["results"][0]["status"] == "success"
        (batch,) = session.stack.list_batches(done["id"])
        assert batch["providerStatus"] == "Success"  # the provider's own word (status_humanized)
        failed = run(session, {"type": "http:dbt_cloud", "params": {"account_id": ACCOUNT, "job_id": 202}})
        assert failed["error"] == {
            "code": "ERROR",
            "message": "Database Error in model orders: relation does not exist",
        }
        cancelled = run(session, {"type": "http:dbt_cloud", "params": {"account_id": ACCOUNT, "job_id": 203}})
        assert cancelled["error"]["code"] == "CANCELLED"
        assert len(session.stack.notifications()) == 3


def test_track_follows_runs_started_elsewhere() -> None:
    with stack() as session:
        started = session.databricks.respond(
            "POST", "/api/2.1/jobs/run-now", {"Authorization": "Bearer someone-else"}, b'{"job_id": 101}'
        )
        run_id = str(json.loads(started[1])["run_id"])
        job = run(session, {"type": "track", "provider": "http:databricks", "providerJobId": run_id})
        assert job["state"] == "COMPLETED" and job["taskType"] == "http:databricks"
        assert json.loads(stored(session, job["resultKeys"]["download"]))["run_id"] == int(run_id)
        assert session.databricks.stats["run_now"] == 1  # tracking never starts a run
        base = f"/api/v2/accounts/{ACCOUNT}"
        trigger = session.dbt_cloud.respond(
            "POST", f"{base}/jobs/201/run/", {"Authorization": "Token t"}, b'{"cause": "x"}'
        )
        dbt_run = str(json.loads(trigger[1])["data"]["id"])
        body = {"type": "track", "provider": "http:dbt_cloud", "providerJobId": dbt_run}
        tracked = run(session, {**body, "params": {"account_id": ACCOUNT}})
        assert tracked["state"] == "COMPLETED", tracked.get("error")
        # The params the status request needs are kept with the job (never a credential).
        assert tracked["operationParams"] == {
            "provider": "http:dbt_cloud",
            "providerJobId": dbt_run,
            "params": {"account_id": ACCOUNT},
        }


# -- bad requests are refused at POST time --------------------------------------------------------------


def test_params_that_do_not_fit_the_spec_are_a_400_naming_each() -> None:
    with stack() as session:
        status, answer = post(session, {"type": "http:dbt_cloud", "params": {"job_id": "201", "acount_id": 1}})
        assert status == 400 and answer["code"] == "invalid_request"
        assert "params.account_id is required" in answer["message"]
        assert "params.job_id: Input should be a valid integer" in answer["message"]
        assert "params.acount_id is not a param of http:dbt_cloud" in answer["message"]
        status, answer = post(session, {"type": "track", "provider": "http:dbt_cloud", "providerJobId": "1"})
        assert status == 400 and "params.account_id is required" in answer["message"]
        status, answer = post(session, {"type": "http:nope", "params": {}})
        assert status == 400 and answer["code"] == "invalid_request"
        assert session.stack.jobs() == []


# -- bad answers: a clear error or a terminal job, never a stuck one ---------------------------------------


def test_an_endless_unknown_state_ends_the_job_at_the_specs_limit() -> None:
    with stack(DatabricksConfig(future_lifecycle_state="SUSPENDED_FOR_UPGRADE")) as session:
        job = run(session, {"type": "http:databricks", "params": {"job_id": 101}})
        assert job["state"] == "FAILED" and job["error"]["code"] == "unknown_provider_state"
        assert "lifecycle=SUSPENDED_FOR_UPGRADE" in job["error"]["message"]
        (batch,) = session.stack.list_batches(job["id"])
        # One PENDING answer, then the spec's unknown.limit: 20 answers in a row in the unknown state.
        assert batch["polls"] == 1 + 20
        assert budget_leases("http:databricks") == {}


@pytest.mark.parametrize(("provider", "job_id"), [("http:databricks", "4242"), ("http:dbt_cloud", "999")])
def test_a_job_the_provider_does_not_know_is_failed_not_followed(provider: str, job_id: str) -> None:
    with stack() as session:
        params = {"account_id": ACCOUNT} if provider == "http:dbt_cloud" else None
        body = {"type": "track", "provider": provider, "providerJobId": job_id}
        job = run(session, {**body, "params": params} if params else body)
        assert job["state"] == "FAILED" and job["error"]["code"] == "provider_job_not_found"
        assert f"job {job_id} no longer exists" in job["error"]["message"]


def test_a_run_that_vanishes_mid_way_ends_the_job() -> None:
    with stack(DatabricksConfig(pending_polls=3)) as session:
        status, created = post(session, {"type": "http:databricks", "params": {"job_id": 101}})
        assert status == 202

        def run_id() -> str | None:
            batches = session.stack.list_batches(created["id"])
            return batches[0].get("providerJobId") if batches and batches[0].get("polls") else None

        session.databricks.forget_run(int(session.stack.wait_until(run_id, what="the first poll")))
        job = session.stack.wait_for_job(created["id"])
        assert job["error"]["code"] == "provider_job_not_found"


def test_429_with_retry_after_and_a_garbled_answer_are_waited_out() -> None:
    faults = (parse_fault("429@status:2x"), parse_fault("malformed@status:1x"), parse_fault("429@submit:1x"))
    with stack(DatabricksConfig(faults=faults)) as session:
        job = run(session, {"type": "http:databricks", "params": {"job_id": 101}})
        assert job["state"] == "COMPLETED", job.get("error")
        assert session.databricks.stats["throttled"] == 3 and session.databricks.stats["faults"] == 4
        (batch,) = session.stack.list_batches(job["id"])
        assert batch["throttled"] == 1  # the throttled start waited in the state machine, then started once
        assert session.databricks.stats["run_now"] == 1


def test_an_answer_that_is_never_json_ends_the_job_with_its_code() -> None:
    with stack(DatabricksConfig(faults=(parse_fault("malformed@status"),))) as session:
        job = run(session, {"type": "http:databricks", "params": {"job_id": 101}})
        assert job["state"] == "FAILED" and job["error"]["code"] == "answer_not_json"
        assert "http:databricks status: the answer is not JSON" in job["error"]["message"]


def test_a_selector_that_matches_nothing_ends_the_job_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = shipped.spec("databricks")
    state = real.status.state
    wrong = state.model_copy(update={"fields": {**state.fields, "lifecycle": "state.lifecycle"}})
    broken = real.model_copy(update={"status": real.status.model_copy(update={"state": wrong})})
    monkeypatch.setattr(shipped, "spec", lambda name: broken if name == "databricks" else real)
    with stack() as session:
        job = run(session, {"type": "http:databricks", "params": {"job_id": 101}})
        assert job["state"] == "FAILED" and job["error"]["code"] == "answer_field_missing"
        message = job["error"]["message"]
        assert "selector 'state.lifecycle' matched nothing: $.state has no field 'lifecycle'" in message


def test_a_host_outside_the_allowlist_gets_no_request() -> None:
    with stack(parameters={"HttpJobHosts": "cloud.getdbt.com"}) as session:
        job = run(session, {"type": "http:databricks", "params": {"job_id": 101}})
        assert job["state"] == "FAILED" and job["error"]["code"] == "host_not_allowed"
        assert "is not in the tracker's HttpJobHosts (cloud.getdbt.com)" in job["error"]["message"]
        assert session.databricks.requests == []


def test_the_secret_is_never_logged_nor_stored(caplog: pytest.LogCaptureFixture) -> None:
    secret = "dapi-never-0f-this-anywhere"
    # Everything the tracker's own code logs, at every level (botocore's DEBUG wire logs are off in Lambda).
    caplog.set_level(logging.INFO)
    for name in ("tracker", "jobtracker", "offline"):
        caplog.set_level(logging.DEBUG, logger=name)
    with stack(DatabricksConfig(token=secret), stack_api_key=secret) as session:
        done = run(session, {"type": "http:databricks", "params": {"job_id": 101}})
        assert done["state"] == "COMPLETED", done.get("error")
        session.databricks.config.token = "rotated"  # the stored secret is now refused: 403
        refused = run(session, {"type": "http:databricks", "params": {"job_id": 101}})
        assert refused["state"] == "FAILED" and refused["error"]["code"] == "forbidden"
        items = session.stack.client("dynamodb").scan(TableName=session.stack.output("JobsTable"))["Items"]
        s3 = session.stack.client("s3")
        objects = s3.list_objects_v2(Bucket=session.stack.results_bucket).get("Contents", [])
        bodies = [s3.get_object(Bucket=session.stack.results_bucket, Key=o["Key"])["Body"].read() for o in objects]
        notes = session.stack.notifications()
    everything = [json.dumps(items), *(b.decode("utf-8", "replace") for b in bodies), json.dumps(notes), caplog.text]
    assert len(items) > 2 and len(bodies) > 2 and not [text for text in everything if secret in text]
