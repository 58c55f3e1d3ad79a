"""POST /jobs/{id}/cancel and /retry through the offline API."""

from __future__ import annotations

import json

import urllib3

from jobtracker.simulators.fullstory import SimulatorConfig, parse_fault
from tests.integration.helpers import ApiCalls, fullstory_batch_budget, ndjson, read_json, upload_and_wait, users

HTTP = urllib3.PoolManager(retries=False, timeout=10)


def post(session, path):
    response = HTTP.request("POST", session.api.base_url + path)
    return response.status, json.loads(response.data)


def test_cancel_stops_the_execution_and_ends_the_job_failed_with_one_notification(offline):
    sim = SimulatorConfig(polls_to_complete=None, processing_seconds=3600)  # never finishes by itself
    with offline(sim=sim, api=True, MaxBatchRequests=2) as session:
        stack = session.stack
        stack.upload("inbox/users/long.ndjson", ndjson(users(4)))
        job_id = stack.wait_until(lambda: next((j["id"] for j in stack.jobs()), None), what="the job")
        stack.wait_until(
            lambda: (
                all(b.get("providerJobId") for b in stack.list_batches(job_id)) and len(stack.list_batches(job_id)) == 2
            ),
            what="both batches submitted",
        )
        status, job = post(session, f"/jobs/{job_id}/cancel")
        assert status == 200
        assert job["state"] == "FAILED"
        assert job["error"]["code"] == "cancelled"
        assert "finishedAt" not in job  # closed off the request path, once the execution has stopped
        assert stack.wait_for_execution(job_id)["status"] == "ABORTED"
        closed = stack.wait_for_job(job_id)  # the ABORTED event -> finalize: manifest, notification
        assert closed["error"]["code"] == "cancelled" and closed["resultKeys"]["manifest"]
        assert len(stack.notifications()) == 1
        assert post(session, f"/jobs/{job_id}/cancel")[0] == 409
        assert post(session, "/jobs/job-nope/cancel")[0] == 404


def test_retry_runs_only_unfinished_batches_and_never_resends_an_accepted_one(offline):
    # The first job's submits all fail with 401 (revoked key); fix the key, then retry.
    sim = SimulatorConfig(api_key="rotated", polls_to_complete=1)
    with offline(sim=sim, api=True, stack_api_key="old-key", MaxBatchRequests=2) as session:
        stack = session.stack
        job = upload_and_wait(session, "inbox/users/retry.ndjson", ndjson(users(4)))
        assert (job["state"], job["error"]["code"]) == ("FAILED", "unauthorized")
        assert session.simulator.stats["batch_posts"] == 0

        session.simulator.config.api_key = "old-key"  # the admin put the right key back
        status, reopened = post(session, f"/jobs/{job['id']}/retry")
        assert status == 202
        assert reopened["state"] == "RUNNING"
        done = stack.wait_for_job(job["id"])
        assert done["state"] == "COMPLETED", done.get("error")
        assert done["accounting"]["balanced"] and done["imported"] == 4
        assert session.simulator.stats["batch_posts"] == 2
        assert len(stack.notifications()) == 2  # one per outcome: the failure, then the completion
        assert post(session, f"/jobs/{job['id']}/retry")[1]["code"] == "not_failed"


def test_retry_after_cancel_polls_accepted_batches_instead_of_resending(offline):
    sim = SimulatorConfig(polls_to_complete=1, faults=(parse_fault("stuck"),))  # accepted, never finishing
    with offline(sim=sim, api=True, MaxBatchRequests=2) as session:
        stack = session.stack
        stack.upload("inbox/users/stuck.ndjson", ndjson(users(4)))
        job_id = stack.wait_until(lambda: next((j["id"] for j in stack.jobs()), None), what="the job")
        stack.wait_until(
            lambda: len(stack.list_batches(job_id)) == 2 and all(b.get("polls") for b in stack.list_batches(job_id)),
            what="both batches accepted and polled",
        )
        assert post(session, f"/jobs/{job_id}/cancel")[1]["error"]["code"] == "cancelled"
        stack.wait_for_job(job_id)
        posts = session.simulator.stats["batch_posts"]
        assert posts == 2

        session.simulator.config.faults = ()  # FullStory recovered
        status, reopened = post(session, f"/jobs/{job_id}/retry")
        assert (status, reopened["state"]) == (202, "RUNNING")
        done = stack.wait_for_job(job_id)
        assert done["state"] == "COMPLETED" and done["imported"] == 4 and done["accounting"]["balanced"]
        assert session.simulator.stats["batch_posts"] == posts  # polled again, never re-sent
        assert fullstory_batch_budget().holders() == {}  # cancel and completion gave every slot back


def test_a_job_cancelled_while_intake_still_runs_never_reaches_the_provider(offline):
    """Cancel lands after intake wrote the batches but before it started the execution."""
    import boto3

    with offline(api=True) as session:
        stack = session.stack
        state: dict[str, object] = {}

        def cancel_when_the_manifest_is_written(params, **_):
            if params.get("url_path", "").endswith("/batches.json") and "job" in state and "done" not in state:
                state["done"] = post(session, f"/jobs/{state['job']}/cancel")[0]

        boto3.DEFAULT_SESSION.events.register("before-call.s3.PutObject", cancel_when_the_manifest_is_written)
        status, created = post_json(session, "/jobs", {"type": "fullstory.users", "requests": users(2)})
        assert status == 202
        state["job"] = created["id"]
        stack.wait_until(lambda: "done" in state and _queue_drained(stack), what="intake to finish")
        assert state["done"] == 200
        job = stack.get_job(created["id"])
        assert (job["state"], job["error"]["code"]) == ("FAILED", "cancelled")
        assert session.simulator.stats["batch_posts"] == 0  # nothing was sent after the cancel
        executions = stack.client("stepfunctions").list_executions(stateMachineArn=stack.output("JobStateMachine"))
        assert executions["executions"] == []


def post_json(session, path, body):
    response = HTTP.request("POST", session.api.base_url + path, body=json.dumps(body).encode())
    return response.status, json.loads(response.data)


def _queue_drained(stack):
    attrs = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.output("IntakeQueue"),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_cancel_does_the_same_small_work_for_a_job_of_50_batches_as_for_one_of_2(offline):
    """The cancel request marks and stops; the rest (leases, result files, manifest, notification) follows
    the execution's ABORTED event through EventBridge to finalize, off the request path."""
    sim = SimulatorConfig(polls_to_complete=1, faults=(parse_fault("stuck"),))  # accepted, never finishing
    # InFlightBudget 10: the job still has 50 batches (the manifest lists them all); only 10 poll at once, so
    # the never-finishing batches do not spin 50 Map children in this process while the test waits.
    with offline(sim=sim, api=True, MaxBatchRequests=1, InFlightBudget=10) as session:
        stack = session.stack
        calls = ApiCalls(stack)
        work: dict[int, list[tuple[str, str]]] = {}
        jobs: dict[int, str] = {}
        for size in (2, 50):
            key = f"inbox/users/cancel-{size}.ndjson"
            stack.upload(key, ndjson(users(size)))
            job_id = stack.wait_until(
                lambda key=key: next((j["id"] for j in stack.jobs() if j["source"]["key"] == key), None),
                what=f"the job of {size} batches",
            )
            stack.wait_until(
                lambda job_id=job_id: (stack.get_job(job_id) or {}).get("state") == "RUNNING"
                and any(b.get("polls") for b in stack.list_batches(job_id)),
                what=f"the job of {size} batches running",
            )
            answers: list[tuple[int, dict]] = []
            work[size] = calls.during(
                lambda job_id=job_id, answers=answers: answers.append(post(session, f"/jobs/{job_id}/cancel"))
            )
            status, job = answers[0]
            assert (status, job["state"], job["error"]["code"]) == (200, "FAILED", "cancelled")
            jobs[size] = job_id
        assert work[2] == work[50] == [("dynamodb", "GetItem"), ("dynamodb", "UpdateItem"), ("states", "StopExecution")]

        for size, job_id in jobs.items():
            closed = stack.wait_for_job(job_id, timeout=120)
            manifest = read_json(session, closed["resultKeys"]["manifest"])
            assert len(manifest["batches"]) == size
            assert closed["error"]["message"] == "cancelled by arn:aws:iam::123456789012:user/local-developer"
        assert len(stack.notifications()) == 2
        stack.wait_until(lambda: fullstory_batch_budget().holders() == {}, what="every lease released")
        assert any(e["detail"]["status"] == "ABORTED" for e in stack.execution_events.delivered)
