"""GET /jobs/{id} read as a FullStory Operation, and ?view=storage-job read as a Keboola Storage
JobResponse, validate against the seed schemas (vendored in tests/contract/fixtures/seeds) — for a job that
completed, one that failed, and one still running, answered by the offline stack."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import urllib3

from jobtracker.local.session import OfflineSession
from jobtracker.simulators.fullstory import SimulatorConfig, parse_fault
from tests.contract.schemas import JOB_RESPONSE_SCHEMA, OPERATION_SCHEMA, load
from tests.integration.helpers import ndjson, upload_and_wait, users

HTTP = urllib3.PoolManager(retries=False, timeout=10)
OPERATION = OPERATION_SCHEMA
JOB_RESPONSE = JOB_RESPONSE_SCHEMA


def _validator(path: Path) -> jsonschema.protocols.Validator:
    schema = load(path)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@pytest.fixture(scope="module")
def jobs():
    """Three jobs in three states, read through the offline REST API."""
    sim = SimulatorConfig(api_key="key", polls_to_complete=1)
    params = {"PollMinSeconds": 0, "PollMaxSeconds": 0, "MaxBatchRequests": 2}
    with OfflineSession(
        parameters=params, simulator_config=sim, api_port=0, allow_unsigned=True, retry_time_scale=0.0
    ) as session:
        done = upload_and_wait(session, "inbox/users/done.ndjson", ndjson([*users(3), {"uid": "x" * 300}]))
        session.simulator.config.api_key = "rotated"
        failed = upload_and_wait(session, "inbox/users/failed.ndjson.gz", __import__("gzip").compress(ndjson(users(2))))
        session.simulator.config.api_key = "key"
        session.simulator.config.faults = (parse_fault("stuck"),)
        session.stack.upload("inbox/users/running.ndjson", ndjson(users(2)))
        running = session.stack.wait_until(
            lambda: next(
                (
                    j
                    for j in session.stack.jobs()
                    if j["source"]["key"].endswith("running.ndjson") and j["state"] == "RUNNING"
                ),
                None,
            ),
            what="a running job",
        )
        answers = {}
        for name, job in (("completed", done), ("failed", failed), ("running", running)):
            for view in ("", "?view=storage-job"):
                response = HTTP.request("GET", f"{session.api.base_url}/jobs/{job['id']}{view}")
                assert response.status == 200
                answers[(name, view or "operation")] = json.loads(response.data)
        yield answers


@pytest.mark.parametrize("state", ["completed", "failed", "running"])
def test_job_validates_as_a_fullstory_operation(jobs, state):
    answer = jobs[(state, "operation")]
    errors = sorted(_validator(OPERATION).iter_errors(answer), key=lambda e: e.path)
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    assert answer["state"] in {"completed": ["COMPLETED"], "failed": ["FAILED"], "running": ["RUNNING"]}[state]


@pytest.mark.parametrize("state", ["completed", "failed", "running"])
def test_storage_job_view_validates_as_a_keboola_job_response(jobs, state):
    answer = jobs[(state, "?view=storage-job")]
    errors = sorted(_validator(JOB_RESPONSE).iter_errors(answer), key=lambda e: e.path)
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    assert answer["status"] == {"completed": "success", "failed": "error", "running": "processing"}[state]


def test_views_carry_what_each_client_looks_for(jobs):
    completed = jobs[("completed", "operation")]
    assert completed["estimatePctComplete"] == 100 and completed["results"]["downloadUrl"].startswith("https://")
    assert "finishedAt" in completed and "finishedAt" not in jobs[("running", "operation")]
    failed = jobs[("failed", "?view=storage-job")]
    assert failed["error"]["code"] == "unauthorized" and failed["error"]["exceptionId"]
    assert failed["metrics"]["inCompressed"] is True
    assert "endTime" not in jobs[("running", "?view=storage-job")]
    assert jobs[("failed", "operation")]["errorDetails"].startswith("batch 1")


def test_the_seed_schemas_are_really_checked():
    """A broken answer must fail, or the tests above prove nothing."""
    assert list(_validator(OPERATION).iter_errors({"id": "x", "state": "DONE", "estimatePctComplete": 120}))
    assert list(_validator(JOB_RESPONSE).iter_errors({"id": "x"}))
