"""Records that last as long as their job, and execution names that outlast records.

* Batch items (with their poll timelines) expire with their job: the same DynamoDB TTL `expiresAt`, set
  when the job finishes, removed while a retry runs it again. The duration history and the budget leases
  never expire (tracker.store says why).
* Step Functions keeps an execution's name 90 days, a job record lives RetentionDays: an Idempotency-Key
  used again after the record expired makes the job anew, and its execution is never refused; a name that
  is somebody else's fails the job at once with a clear code instead of leaving it RUNNING.
"""

from __future__ import annotations

import json

import urllib3
from tracker.access import Caller
from tracker.jobs_api import keyed_job_id

from jobtracker.simulators.fullstory import SimulatorConfig, parse_fault
from tests.integration.helpers import users

HTTP = urllib3.PoolManager(retries=False, timeout=10)
LOCAL_DEVELOPER = Caller(arn="arn:aws:iam::123456789012:user/local-developer", owner="local-developer", admin=True)


def post(session, path, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    response = HTTP.request("POST", session.api.base_url + path, body=data, headers=headers or {})
    return response.status, json.loads(response.data)


def items(stack):
    table = stack.client("dynamodb")
    from boto3.dynamodb.types import TypeDeserializer

    plain = TypeDeserializer()
    pages = table.get_paginator("scan").paginate(TableName=stack.output("JobsTable"))
    return [{k: plain.deserialize(v) for k, v in item.items()} for page in pages for item in page["Items"]]


def test_batch_items_expire_with_their_job_and_shared_records_never(offline):
    sim = SimulatorConfig(polls_to_complete=1, faults=(parse_fault("stuck"),))
    with offline(sim=sim, api=True, MaxBatchRequests=2) as session:
        stack = session.stack
        _, created = post(session, "/jobs", {"type": "fullstory.users", "requests": users(6)})
        job_id = created["id"]
        stack.wait_until(
            lambda: len(stack.list_batches(job_id)) == 3 and all(b.get("polls") for b in stack.list_batches(job_id)),
            what="three batches accepted and polled",
        )
        assert post(session, f"/jobs/{job_id}/cancel")[0] == 200
        job = stack.wait_for_job(job_id)
        batches = stack.list_batches(job_id)
        assert job["expiresAt"] and {b["expiresAt"] for b in batches} == {job["expiresAt"]}

        # A retry runs the job again: nothing of it may expire meanwhile.
        session.simulator.config.faults = ()
        assert post(session, f"/jobs/{job_id}/retry")[0] == 202
        assert "expiresAt" not in stack.get_job(job_id)
        assert all("expiresAt" not in b for b in stack.list_batches(job_id))
        done = stack.wait_for_job(job_id)
        assert done["state"] == "COMPLETED" and done["expiresAt"] >= job["expiresAt"]
        assert {b["expiresAt"] for b in stack.list_batches(job_id)} == {done["expiresAt"]}

        everything = items(stack)
        shared = [i for i in everything if i["pk"].startswith(("STATS#", "BUDGET#"))]
        assert {i["pk"].split("#")[0] for i in shared} == {"STATS", "BUDGET"}
        assert all("expiresAt" not in i for i in shared)  # shared by every job: they must outlive any one
        assert all("expiresAt" in i for i in everything if i["pk"].startswith("JOB#"))


def expire(stack, job_id):
    """What DynamoDB's TTL does RetentionDays after the job finished (and Powertools' own TTL after 24 h):
    the job's items and the Idempotency-Key's record are gone; the execution stays in Step Functions."""
    table = stack.client("dynamodb")
    for item in items(stack):
        if item["pk"] == f"JOB#{job_id}" or "create_once#" in item["sk"]:
            table.delete_item(
                TableName=stack.output("JobsTable"), Key={"pk": {"S": item["pk"]}, "sk": {"S": item["sk"]}}
            )


def test_an_idempotency_key_used_again_after_its_job_expired_runs_the_job_again(offline):
    with offline(api=True) as session:
        stack = session.stack
        body = {"type": "fullstory.users", "requests": users(2)}
        key = {"Idempotency-Key": "nightly-2026-11-23"}
        status, first = post(session, "/jobs", body, key)
        assert status == 202
        earlier = stack.wait_for_job(first["id"])
        assert earlier["state"] == "COMPLETED"

        expire(stack, first["id"])
        assert stack.get_job(first["id"]) is None
        status, again = post(session, "/jobs", body, key)
        assert (status, again["id"]) == (202, first["id"])  # the same job id, believed new
        later = stack.wait_for_job(again["id"])
        assert later["state"] == "COMPLETED" and later["imported"] == 2
        assert later["runId"] != earlier["runId"]
        executions = stack.client("stepfunctions").list_executions(stateMachineArn=stack.output("JobStateMachine"))
        assert {e["executionArn"]: e["status"] for e in executions["executions"]} == {
            earlier["runId"]: "SUCCEEDED",  # Step Functions still has it (and would refuse its name)
            later["runId"]: "SUCCEEDED",
        }


def test_an_execution_name_that_is_taken_fails_the_job_at_once(offline, monkeypatch):
    import tracker.executions

    monkeypatch.setattr(tracker.executions, "_nonce", lambda: "deadbeef")  # every run gets the same name
    with offline(api=True) as session:
        stack = session.stack
        key = "taken"
        job_id = keyed_job_id(LOCAL_DEVELOPER, key)
        sfn = stack.client("stepfunctions")
        machine = stack.output("JobStateMachine")
        foreign = sfn.start_execution(
            stateMachineArn=machine, name=f"{job_id}-r0-deadbeef", input=json.dumps({"jobId": "someone-else"})
        )["executionArn"]
        stack.wait_until(
            lambda: any(
                e["detail"]["executionArn"] == foreign and e["detail"]["status"] != "RUNNING"
                for e in stack.execution_events.delivered
            ),
            what="the foreign execution to end and its event to be handled",
        )
        body = {"type": "fullstory.users", "requests": users(1)}
        status, created = post(session, "/jobs", body, {"Idempotency-Key": key})
        assert (status, created["id"]) == (202, job_id)
        job = stack.wait_for_job(job_id)
        assert (job["state"], job["error"]["code"]) == ("FAILED", "execution_name_taken")
        assert "90 days" in job["error"]["message"]
        assert session.simulator.stats["batch_posts"] == 0
        assert len(stack.notifications()) == 1
