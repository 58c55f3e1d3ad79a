"""Each handler with the sample events in events/ (the ones `sam local invoke -e` takes), in moto."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from pydantic import TypeAdapter
from tracker.intake import Upload, job_id_for_upload
from tracker.messages import BatchTask, CollectRequest, FinalizeEvent
from tracker.model import now_iso

from jobtracker.local.stack import REPO_ROOT
from jobtracker.local.template import load_template
from tests.integration.helpers import ndjson, upload_and_wait, users

EVENTS = REPO_ROOT / "events"


def event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def test_every_sample_event_is_valid_json_for_a_template_function():
    names = sorted(p.name for p in EVENTS.glob("*.json"))
    assert names, "events/ is empty"
    for name in names:
        assert isinstance(event(name), dict), name


def _template_functions() -> dict[str, dict]:
    resources = load_template(REPO_ROOT / "template.yaml")["Resources"]
    return {name: res for name, res in resources.items() if res["Type"] == "AWS::Serverless::Function"}


def test_every_sample_event_is_named_after_its_function_and_accepted_by_its_input_model():
    """events/<function>-*.json: `sam local invoke <Function> -e events/<file>` takes it as its input."""
    code_dirs = {Path(res["Properties"]["CodeUri"]).name for res in _template_functions().values()}
    inputs = {
        "submit": BatchTask,
        "status": BatchTask,
        "collect": CollectRequest,
        "finalize": TypeAdapter(FinalizeEvent),
    }
    for path in sorted(EVENTS.glob("*.json")):
        function = path.name.split("-", 1)[0]
        assert function in code_dirs, f"{path.name} names no function directory of template.yaml ({code_dirs})"
        if function in inputs:
            model = inputs[function]
            (model.validate_python if isinstance(model, TypeAdapter) else model.model_validate)(event(path.name))
    assert {p.name.split("-", 1)[0] for p in EVENTS.glob("*.json")} == code_dirs  # a sample for every function


def test_the_offline_stack_runs_every_function_of_the_template_and_the_backstop_rule_targets_finalize(offline):
    with offline() as session:
        assert set(session.stack.functions) == set(_template_functions())
        events = session.stack.functions["FinalizeFunction"].events.values()
        (rule,) = [e for e in events if e["Type"] == "EventBridgeRule"]
        assert rule["Properties"]["Pattern"]["detail-type"] == ["Step Functions Execution Status Change"]
        assert set(rule["Properties"]["Pattern"]["detail"]["status"]) == {"TIMED_OUT", "ABORTED", "FAILED"}


def test_intake_sample_upload_event_creates_the_job_with_a_url_decoded_key(offline):
    with offline() as session:
        stack = session.stack
        stack.client("s3").put_object(
            Bucket=stack.inbox_bucket, Key="inbox/users/sample users.csv", Body=b"uid,email\nu1,u1@example.com\n"
        )
        answer = stack.invoke("IntakeFunction", event("intake-s3-upload.json"))
        assert answer == {"batchItemFailures": []}
        body = json.loads(event("intake-s3-upload.json")["Records"][0]["body"])["Records"][0]["s3"]["object"]
        job_id = job_id_for_upload(
            Upload(
                stack.inbox_bucket,
                "inbox/users/sample users.csv",
                None,
                body["sequencer"],
                body["eTag"],
                body["size"],
                "AWS:AIDAEXAMPLE",
            )
        )
        job = stack.wait_for_job(job_id)
        assert job["source"]["key"] == "inbox/users/sample users.csv"
        assert job["creatorToken"]["id"] == "AWS:AIDAEXAMPLE"
        assert (job["state"], job["imported"]) == ("COMPLETED", 1)


def test_intake_ignores_the_s3_test_event(offline):
    with offline() as session:
        assert session.stack.invoke("IntakeFunction", event("intake-s3-test-event.json")) == {"batchItemFailures": []}
        assert session.stack.jobs() == []


def test_intake_fails_an_unknown_message_so_lambda_retries_it(offline):
    sqs_event = event("intake-s3-test-event.json")
    sqs_event["Records"][0]["body"] = '{"hello": "world"}'
    with offline() as session, pytest.raises(BatchProcessingError, match="All records failed"):
        session.stack.invoke("IntakeFunction", sqs_event)


def test_an_unreadable_intake_message_ends_in_the_dead_letter_queue_not_lost(offline):
    """Intake fails it maxReceiveCount times (template.yaml); the dead-letter queue's function (finalize) finds
    no job in it either, fails it too, and it stays in the queue for an operator (invisible for the queue's
    visibility timeout, then back)."""
    with offline() as session:
        stack = session.stack
        stack.client("sqs").send_message(QueueUrl=stack.output("IntakeQueue"), MessageBody="not json at all")

        def errors(function):
            return [e for e in stack.function_errors if e.startswith(function)]

        stack.wait_until(lambda: errors("FinalizeFunction"), timeout=30, what="the dead letter to reach finalize")
        assert len(errors("IntakeFunction")) == 3  # maxReceiveCount in template.yaml
        attributes = stack.client("sqs").get_queue_attributes(
            QueueUrl=stack.output("IntakeDeadLetterQueue"),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        assert sum(int(count) for count in attributes.values()) == 1
        assert stack.jobs() == []


def test_execution_that_timed_out_closes_its_job_failed_with_one_notification(offline):
    timed_out = event("finalize-execution-timed-out.json")
    job_id = timed_out["detail"]["name"]
    with offline() as session:
        from tracker import wiring

        wiring.store().create_job(
            {
                "id": job_id,
                "type": "fullstory.users",
                "state": "RUNNING",
                "createdAt": now_iso(),
                "source": {},
                "rowsIn": 0,
                "rejected": 0,
                "batchCount": 0,
                "runId": timed_out["detail"]["executionArn"],
            }
        )
        for _ in range(2):  # EventBridge delivers at least once
            result = session.stack.invoke("FinalizeFunction", timed_out)
        assert result == {"jobId": job_id, "state": "FAILED"}
        job = session.stack.get_job(job_id)
        assert job["error"] == {"code": "execution_timed_out", "message": "execution timed_out: States.Timeout"}
        assert len(session.stack.notifications()) == 1


def test_status_change_for_a_job_that_already_finished_changes_nothing(offline):
    with offline() as session:
        job = upload_and_wait(session, "inbox/users/done.ndjson", ndjson(users(2)))
        failed = event("finalize-execution-timed-out.json")
        failed["detail"].update(name=job["id"], executionArn=job["runId"], status="FAILED", error="JobFailed")
        assert session.stack.invoke("FinalizeFunction", failed) == {"jobId": job["id"], "state": "COMPLETED"}
        assert session.stack.get_job(job["id"])["state"] == "COMPLETED"
        assert len(session.stack.notifications()) == 1


def test_a_late_event_about_an_earlier_execution_of_the_job_is_ignored(offline):
    with offline() as session:
        job = upload_and_wait(session, "inbox/users/late.ndjson", ndjson(users(1)))
        late = event("finalize-execution-timed-out.json")
        late["detail"].update(name=f"{job['id']}-retry-7", executionArn=job["runId"] + "-retry-7")
        answer = session.stack.invoke("FinalizeFunction", late)
        assert answer["ignored"] is True
        assert session.stack.get_job(job["id"])["state"] == "COMPLETED"


def test_closing_an_ended_execution_never_closes_the_run_that_replaced_it(offline):
    """The backstop read the job while the ended execution still ran it, then a retry started another run:
    its finalize must leave the new run alone (the final writes are conditional on the job's runId)."""
    from tracker import wiring

    with offline() as session:
        job = upload_and_wait(session, "inbox/users/replaced.ndjson", ndjson(users(1)))
        store = wiring.store()
        store.update_job(job["id"], {"state": "RUNNING", "runId": job["runId"] + "-next", "finishedAt": None})
        answer = wiring.finalizer().fail_job(job["id"], "execution_failed", "late", run_id=job["runId"])
        assert answer["ignored"] is True
        still = session.stack.get_job(job["id"])
        assert (still["state"], still["runId"]) == ("RUNNING", job["runId"] + "-next")
        assert "error" not in still
        assert len(session.stack.notifications()) == 1


def test_submit_after_a_lost_answer_does_not_send_the_batch_again(offline):
    with offline() as session:
        job = upload_and_wait(session, "inbox/users/once.ndjson", ndjson(users(2)))
        posts = session.simulator.stats["batch_posts"]
        (batch,) = session.stack.list_batches(job["id"])
        task = {
            "jobId": job["id"],
            "type": "fullstory.users",
            "deadline": 1900000000,
            "batch": {k: batch[k] for k in ("index", "key", "rows", "bytes")},
            "attempt": 0,
            "nextPollSeconds": 0,
        }
        again = session.stack.invoke("SubmitFunction", task)
        assert again["providerJobId"] == batch["providerJobId"]
        assert again["phase"] == "polling"
        assert session.simulator.stats["batch_posts"] == posts


def test_api_sample_get_event_answers_a_json_404_for_an_unknown_job(offline):
    with offline() as session:
        answer = session.stack.invoke("ApiFunction", event("api-get-job.json"))
        assert answer["statusCode"] == 404
        assert json.loads(answer["body"]) == {"code": "not_found", "message": "no job job-0123456789abcdef01234567"}


def test_api_sample_create_event_records_the_caller_and_the_api_url(offline):
    with offline() as session:
        answer = session.stack.invoke("ApiFunction", event("api-create-job.json"))
        assert answer["statusCode"] == 202
        job = json.loads(answer["body"])
        assert job["creatorToken"]["id"] == "arn:aws:iam::123456789012:user/data-engineer"
        assert job["url"] == f"https://abc123.execute-api.us-east-1.amazonaws.com/v1/jobs/{job['id']}"
        assert session.stack.wait_for_job(job["id"])["imported"] == 2


def test_an_event_for_an_overwritten_object_fails_clearly_instead_of_importing_the_newer_content(offline):
    with offline() as session:
        stack = session.stack
        key = "inbox/users/overwritten.ndjson"
        first = upload_and_wait(session, key, ndjson(users(1)))
        stack.upload(key, ndjson(users(2, start=50)))
        second_id = stack.wait_until(
            lambda: next((j["id"] for j in stack.jobs() if j["id"] != first["id"]), None), what="the second job"
        )
        second = stack.wait_for_job(second_id)
        assert second["imported"] == 2
        # An event for an earlier upload of the key arrives late (out of order), after the newer one.
        late = {
            "eventSource": "aws:s3",
            "s3": {
                "bucket": {"name": stack.inbox_bucket},
                "object": {"key": key, "size": 99, "eTag": "0ld0ld0ld", "sequencer": "00A"},
            },
        }
        sqs_event = event("intake-s3-test-event.json")
        sqs_event["Records"][0]["body"] = json.dumps({"Records": [late]})
        assert stack.invoke("IntakeFunction", sqs_event) == {"batchItemFailures": []}
        stale = next(j for j in stack.jobs() if j["id"] not in (first["id"], second["id"]))
        assert (stale["state"], stale["error"]["code"]) == ("FAILED", "source_changed")
        assert session.simulator.stats["batch_posts"] == 2  # the newer content was not imported twice


def test_an_execution_requested_twice_runs_once(offline):
    with offline() as session:
        stack = session.stack
        job = upload_and_wait(session, "inbox/users/twice.ndjson", ndjson(users(2)))
        for _ in range(2):  # e.g. a redelivered API job message, or an operator re-driving intake
            stack.client("sqs").send_message(
                QueueUrl=stack.output("IntakeQueue"), MessageBody=json.dumps({"jobId": job["id"]})
            )
        stack.wait_until(lambda: _drained(stack), what="intake queue drained")
        executions = stack.client("stepfunctions").list_executions(stateMachineArn=stack.output("JobStateMachine"))
        assert len(executions["executions"]) == 1
        assert session.simulator.stats["batch_posts"] == 1
        assert len(stack.notifications()) == 1


def _drained(stack):
    attrs = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.output("IntakeQueue"),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
