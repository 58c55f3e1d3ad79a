"""The real ASL in moto with the real handlers against the FullStory simulator: outcomes are asserted
on S3 contents, DynamoDB items and the SNS message, not on the absence of exceptions."""

from __future__ import annotations

import json

from jobtracker.simulators.fullstory import SimulatorConfig
from tests.integration.helpers import ndjson, read_json, read_ndjson, upload_and_wait, users


def _results(session, job):
    keys = job["resultKeys"]
    return {
        name: (read_json(session, key) if name == "manifest" else read_ndjson(session, key))
        for name, key in keys.items()
    }


def test_csv_upload_completes_with_every_row_accounted_for(offline):
    lines = ["uid,display_name,email,plan,properties"]
    for i in range(1, 251):
        lines.append(f'user-{i},User {i},user{i}@example.com,pro,"{{""score"": {i}}}"')
    lines.append("u" * 300 + ",Too Long,long@example.com,free,")  # line 252: uid over 256 characters
    lines.append('user-x,Bad Props,x@example.com,free,"{""1bad"": 1}"')  # line 253: invalid property name
    with offline(MaxBatchRequests=100) as session:
        job = upload_and_wait(session, "inbox/users/people.csv", ("\n".join(lines) + "\n").encode())
        stack = session.stack

        assert job["state"] == "COMPLETED"
        assert job["accounting"] == {
            "rowsIn": 252,
            "imported": 250,
            "providerErrors": 0,
            "rejected": 2,
            "unlisted": 0,
            "balanced": True,
            "check": "rows in 252 = imported 250 + provider errors 0 + rejected 2",
        }
        results = _results(session, job)
        assert sorted(r["uid"] for r in results["imports"]) == sorted(f"user-{i}" for i in range(1, 251))
        assert all(r["properties"]["plan"] == "pro" for r in results["imports"])  # extra CSV columns -> properties
        assert results["errors"] == []
        assert [(r["line"], r["code"]) for r in results["rejected"]] == [
            (252, "value_too_long"),
            (253, "invalid_property_name"),
        ]
        manifest = results["manifest"]
        assert manifest["job"]["state"] == "COMPLETED"
        assert manifest["accounting"]["balanced"] is True
        assert [b["rows"] for b in manifest["batches"]] == [100, 100, 50]
        assert set(manifest["results"]) == {"imports", "errors", "rejected", "manifest"}

        batches = stack.list_batches(job["id"])
        assert [b["batchState"] for b in batches] == ["COMPLETED"] * 3
        assert all(b["providerJobId"] for b in batches)
        assert session.simulator.stats["batch_posts"] == 3  # one provider job per batch, no more

        notifications = [n for n in stack.notifications() if n["message"]["jobId"] == job["id"]]
        assert len(notifications) == 1
        assert notifications[0]["attributes"] == {"state": "COMPLETED", "type": "fullstory.users"}
        assert notifications[0]["message"]["accounting"]["balanced"] is True
        assert notifications[0]["message"]["results"]["imports"].startswith("s3://")
        assert stack.wait_for_execution(job["id"])["status"] == "SUCCEEDED"


def test_provider_failed_batch_with_partial_success_keeps_imports_and_errors(offline):
    rows = [*users(5), {"uid": "bad-mail", "email": "no-at-sign.example.com"}, *users(2, start=6)]
    with offline() as session:
        job = upload_and_wait(session, "inbox/users/partial.ndjson", ndjson(rows))
        assert job["state"] == "COMPLETED"  # the tracker finished; the counts carry the failure
        assert (job["imported"], job["providerErrors"], job["rejected"]) == (7, 1, 0)
        results = _results(session, job)
        assert len(results["imports"]) == 7
        assert [(e["code"], e["user"]["uid"]) for e in results["errors"]] == [("invalid_email", "bad-mail")]
        (batch,) = session.stack.list_batches(job["id"])
        assert (batch["batchState"], batch["providerStatus"]) == ("PARTIAL", "FAILED")
        assert results["manifest"]["accounting"]["check"] == "rows in 8 = imported 7 + provider errors 1 + rejected 0"


def test_throttled_submits_wait_for_retry_after_then_succeed(offline):
    sim = SimulatorConfig(polls_to_complete=1, throttle_first_submits=3, retry_after_seconds=0)
    with offline(sim=sim, MaxBatchRequests=2) as session:
        job = upload_and_wait(session, "inbox/users/throttled.ndjson", ndjson(users(4)))
        assert job["state"] == "COMPLETED"
        assert job["imported"] == 4
        stats = session.simulator.stats
        assert stats["throttled"] == 3
        assert stats["batch_posts"] == 2  # two batches, each accepted exactly once
        assert sum(int(b.get("throttled", 0)) for b in session.stack.list_batches(job["id"])) == 3


def test_duplicate_s3_events_start_no_second_job(offline):
    with offline() as session:
        stack = session.stack
        key = "inbox/users/dup.ndjson"
        job = upload_and_wait(session, key, ndjson(users(3)))
        head = stack.client("s3").head_object(Bucket=stack.inbox_bucket, Key=key)
        record = {
            "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "s3": {
                "bucket": {"name": stack.inbox_bucket},
                "object": {"key": key, "size": head["ContentLength"], "eTag": head["ETag"].strip('"')},
            },
        }
        queue_url = stack.output("IntakeQueue")
        for _ in range(2):  # S3 delivers at least once: the same event twice more
            stack.client("sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps({"Records": [record]}))
        stack.wait_until(lambda: _queue_empty(stack, queue_url), what="intake queue drained")

        assert [j["id"] for j in stack.jobs()] == [job["id"]]
        assert session.simulator.stats["batch_posts"] == 1
        assert len(stack.notifications()) == 1
        executions = stack.client("stepfunctions").list_executions(stateMachineArn=stack.output("JobStateMachine"))
        assert len(executions["executions"]) == 1


def _queue_empty(stack, url):
    attrs = stack.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_invalid_rows_are_rejected_with_line_and_reason_and_valid_rows_imported(offline):
    rows = [
        {"uid": "ok-1", "properties": {"tier": "a"}},
        "{not json",
        {"uid": "x" * 257},
        {"uid": "ok-2", "email": "e" * 129},
        {"uid": "ok-3", "properties": {"bad-name": 1}},
        {"uid": "ok-4", "unexpected": True},
        {"uid": "ok-5", "properties": {"tier": "b"}},
    ]
    with offline() as session:
        job = upload_and_wait(session, "inbox/users/mixed.ndjson", ndjson(rows))
        assert job["state"] == "COMPLETED"
        assert (job["rowsIn"], job["imported"], job["rejected"]) == (7, 2, 5)
        rejected = read_ndjson(session, job["resultKeys"]["rejected"])
        assert [r["line"] for r in rejected] == [2, 3, 4, 5, 6]
        assert [r["code"] for r in rejected] == [
            "invalid_json",
            "value_too_long",
            "value_too_long",
            "invalid_property_name",
            "unknown_field",
        ]
        assert all(r["reason"] for r in rejected)
        assert rejected[0]["row"] == "{not json"


def test_revoked_api_key_ends_the_job_failed_and_still_notifies(offline):
    sim = SimulatorConfig(api_key="the-real-key", polls_to_complete=1)
    with offline(sim=sim, stack_api_key="a-revoked-key") as session:
        job = upload_and_wait(session, "inbox/users/unauthorized.ndjson", ndjson(users(3)))
        assert job["state"] == "FAILED"
        assert job["error"]["code"] == "unauthorized"
        assert "batch 1" in job["error"]["message"]
        (note,) = session.stack.notifications()
        assert note["attributes"]["state"] == "FAILED"
        assert note["message"]["error"]["code"] == "unauthorized"
        manifest = read_json(session, job["resultKeys"]["manifest"])
        assert manifest["batches"][0]["state"] == "FAILED"
        assert session.stack.wait_for_execution(job["id"])["status"] == "FAILED"


def test_job_past_its_deadline_ends_failed_and_polling_stops(offline):
    sim = SimulatorConfig(polls_to_complete=None, processing_seconds=3600)
    with offline(sim=sim, MaxJobHours="0.0003") as session:  # about one second
        job = upload_and_wait(session, "inbox/users/slow.ndjson", ndjson(users(2)))
        assert job["state"] == "FAILED"
        assert job["error"]["code"] == "deadline_exceeded"
        polls_at_end = session.simulator.stats["status_gets"]
        session.stack.wait_for_execution(job["id"])
        assert session.simulator.stats["status_gets"] == polls_at_end
        assert len(session.stack.notifications()) == 1


def test_upload_outside_known_prefixes_fails_with_a_clear_error(offline):
    with offline() as session:
        job = upload_and_wait(session, "inbox/orders/orders.csv", b"id\n1\n")
        assert job["state"] == "FAILED"
        assert job["error"]["code"] == "unknown_prefix"
        assert "inbox/users/" in job["error"]["message"]
        (note,) = session.stack.notifications()
        assert note["attributes"] == {"state": "FAILED", "type": "unknown"}


def test_unsupported_extension_fails_with_a_clear_error(offline):
    with offline() as session:
        job = upload_and_wait(session, "inbox/users/people.xlsx", b"PK\x03\x04")
        assert job["state"] == "FAILED"
        assert job["error"]["code"] == "unsupported_format"


def test_file_whose_rows_are_all_rejected_completes_without_provider_calls(offline):
    with offline() as session:
        job = upload_and_wait(session, "inbox/users/all-bad.ndjson", ndjson([{"uid": "x" * 300}, "[1]"]))
        assert job["state"] == "COMPLETED"
        assert job["accounting"]["check"] == "rows in 2 = imported 0 + provider errors 0 + rejected 2"
        assert session.simulator.stats["batch_posts"] == 0
        assert len(read_ndjson(session, job["resultKeys"]["rejected"])) == 2


def test_gzipped_events_json_document_is_imported(offline):
    import gzip

    events = {"requests": [{"name": "Signed Up", "user": {"uid": f"u{i}"}, "properties": {"n": i}} for i in range(5)]}
    with offline() as session:
        job = upload_and_wait(session, "inbox/events/signups.json.gz", gzip.compress(json.dumps(events).encode()))
        assert job["type"] == "fullstory.events"
        assert job["state"] == "COMPLETED"
        assert job["imported"] == 5


def test_manifest_keeps_every_poll_of_every_batch(offline):
    with offline(sim=SimulatorConfig(polls_to_complete=3), MaxBatchRequests=2) as session:
        job = upload_and_wait(session, "inbox/users/timeline.ndjson", ndjson(users(4)))
        manifest = read_json(session, job["resultKeys"]["manifest"])
        for batch in manifest["batches"]:
            assert len(batch["pollTimes"]) == batch["polls"] == 3
            assert batch["submittedAt"] <= batch["pollTimes"][0] <= batch["pollTimes"][-1] == batch["finishedAt"]
            assert batch["collectedAt"] >= batch["finishedAt"]
