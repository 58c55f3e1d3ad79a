"""Intake that cannot finish: a message intake failed on until SQS moved it to the dead-letter queue closes
its job FAILED `intake_failed` with one notification (the finalize function takes the DLQ's messages), and
a file bigger than intake reads within its timeout is refused before it is read."""

from __future__ import annotations

import json

import pytest
import urllib3

from jobtracker.simulators.fullstory import SimulatorConfig
from tests.integration.helpers import ndjson, users

HTTP = urllib3.PoolManager(retries=False, timeout=10)


class IntakeDown(Exception):
    """Stands for whatever keeps intake from finishing (a crash, a timeout) on every delivery."""


def fail_intake_when(stack, predicate):
    def hook(function: str, event: dict) -> None:
        if function == "IntakeFunction" and predicate(event["Records"][0]["body"]):
            raise IntakeDown("intake cannot take this in")

    stack.lambdas.before_invoke = hook


def test_an_api_job_whose_intake_keeps_failing_ends_failed_with_one_notification(offline):
    with offline(api=True) as session:
        stack = session.stack
        fail_intake_when(stack, lambda body: "jobId" in body)
        created = json.loads(
            HTTP.request(
                "POST",
                session.api.base_url + "/jobs",
                body=json.dumps({"type": "fullstory.users", "requests": users(2)}).encode(),
            ).data
        )
        job = stack.wait_for_job(created["id"], timeout=60)
        assert (job["state"], job["error"]["code"]) == ("FAILED", "intake_failed")
        assert len([e for e in stack.function_errors if e.startswith("IntakeFunction")]) == 3  # maxReceiveCount
        (notification,) = stack.notifications()
        assert notification["attributes"]["state"] == "FAILED"
        assert notification["message"]["error"]["code"] == "intake_failed"
        assert session.simulator.stats["batch_posts"] == 0


def test_an_upload_intake_never_recorded_still_becomes_a_failed_job(offline):
    """Intake failed before it wrote anything: the dead letter's upload is recorded as its job and closed."""
    with offline() as session:
        stack = session.stack
        fail_intake_when(stack, lambda body: "never-taken.ndjson" in body)
        stack.upload("inbox/users/never-taken.ndjson", ndjson(users(3)))
        job_id = stack.wait_until(lambda: next((j["id"] for j in stack.jobs()), None), timeout=60, what="the job")
        job = stack.wait_for_job(job_id)
        assert (job["type"], job["state"], job["error"]["code"]) == ("fullstory.users", "FAILED", "intake_failed")
        assert job["source"]["key"] == "inbox/users/never-taken.ndjson"
        assert len(stack.notifications()) == 1


def test_a_running_job_is_left_to_its_execution_and_closed_when_it_has_none(offline):
    """A dead letter about a RUNNING job changes nothing while an execution runs it (the execution ends it);
    a job RUNNING under an execution that never started (intake marked it and stopped) is closed."""
    from tracker import wiring
    from tracker.model import now_iso

    with offline(sim=SimulatorConfig(polls_to_complete=None, processing_seconds=3600)) as session:
        stack = session.stack
        stack.upload("inbox/users/slow.ndjson", ndjson(users(2)))
        job_id = stack.wait_until(
            lambda: next((j["id"] for j in stack.jobs() if j["state"] == "RUNNING"), None), what="a running job"
        )
        assert wiring.intake().abandon(job_id) is None
        assert stack.get_job(job_id)["state"] == "RUNNING"

        orphan = {**stack.get_job(job_id), "id": "job-0000000000000000000000aa", "createdAt": now_iso()}
        orphan["runId"] = orphan["runId"].rsplit(":", 1)[0] + ":job-0000000000000000000000aa-r0-00000000"
        wiring.store().create_job(orphan)
        assert wiring.intake().abandon(orphan["id"]) == {"jobId": orphan["id"], "state": "FAILED"}
        assert stack.get_job(orphan["id"])["error"]["code"] == "intake_failed"


def test_a_file_bigger_than_intake_reads_in_time_is_refused_before_it_is_read(offline, monkeypatch):
    import tracker.intake

    monkeypatch.setattr(tracker.intake, "MAX_INTAKE_OBJECT_BYTES", 1000)  # stands for the 2 GiB of tracker.limits
    with offline() as session:
        stack = session.stack
        body = ndjson(users(20))
        assert len(body) > 1000
        stack.upload("inbox/users/too-big.ndjson", body)
        job_id = stack.wait_until(lambda: next((j["id"] for j in stack.jobs()), None), what="the job")
        job = stack.wait_for_job(job_id)
        assert (job["state"], job["error"]["code"]) == ("FAILED", "file_too_large")
        assert str(len(body)) in job["error"]["message"]
        assert job["rowsIn"] == 0 and int(job.get("batchCount", 0)) == 0  # not a row was read
        assert len(stack.notifications()) == 1


@pytest.mark.parametrize("boundary", ["at", "over"])
def test_the_batch_count_limit(offline, monkeypatch, boundary):
    import tracker.intake

    monkeypatch.setattr(tracker.intake, "MAX_BATCHES_PER_JOB", 3)  # stands for 50,000 (tracker.limits)
    rows = 3 if boundary == "at" else 4
    with offline(MaxBatchRequests=1) as session:
        stack = session.stack
        stack.upload("inbox/users/many.ndjson", ndjson(users(rows)))
        job_id = stack.wait_until(lambda: next((j["id"] for j in stack.jobs()), None), what="the job")
        job = stack.wait_for_job(job_id)
        if boundary == "at":
            assert (job["state"], job["imported"]) == ("COMPLETED", 3)
        else:
            assert (job["state"], job["error"]["code"]) == ("FAILED", "too_many_batches")
            assert session.simulator.stats["batch_posts"] == 0
