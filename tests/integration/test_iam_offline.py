"""The offline IAM check sees every caller: each function under its own role (in its own threads too),
the state machine's own integrations under the state machine's role; and a refused S3 abort no longer
hides the provider error the state machine retries and catches by name.

The session-wide check itself lives in tests/conftest.py; these tests use a recorder of their own so
they can look at what it saw.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from jobtracker.local.callers import Caller, acting_as
from jobtracker.local.iam import CallRecorder, StackView
from jobtracker.simulators.fullstory import SimulatorConfig
from tests.integration.helpers import ndjson, upload_and_wait, users


@pytest.fixture
def recorder() -> Iterator[CallRecorder]:
    own = CallRecorder()
    own.install()
    try:
        yield own
    finally:
        own.uninstall()


def _checked(recorder: CallRecorder) -> dict[str, set[tuple[str, str]]]:
    recorder.check()
    seen: dict[str, set[tuple[str, str]]] = {}
    for verdict in recorder.verdicts.values():
        seen.setdefault(verdict.role, set()).add((verdict.action, verdict.resource))
    return seen


def _invoked_function_arns(stack: Any, machine: str) -> set[str]:
    """The functions the state machine's definition invokes (DefinitionSubstitutions naming a function)."""
    resources = stack.template["Resources"]
    arns = set()
    for value in resources[machine]["Properties"].get("DefinitionSubstitutions", {}).values():
        logical = value.get("Fn::GetAtt", [None])[0] if isinstance(value, dict) else None
        if logical and resources[logical]["Type"] == "AWS::Serverless::Function":
            arns.add(stack.output(logical, "Arn"))
    return arns


def test_every_function_that_ran_and_the_state_machine_are_checked_under_their_own_roles(offline, recorder) -> None:
    with offline(MaxBatchRequests=2) as session:
        job = upload_and_wait(session, "inbox/users/iam-callers.ndjson", ndjson(users(5)))
        assert job["state"] == "COMPLETED"
        stack = session.stack
        ran = {record.function for record in stack.lambdas.invocations}
        machines = [
            name for name, res in stack.template["Resources"].items() if res["Type"] == "AWS::Serverless::StateMachine"
        ]
        seen = _checked(recorder)

        assert ran <= set(seen), f"functions that ran but made no call checked under their name: {ran - set(seen)}"
        for machine in machines:
            actions = seen[machine]
            invoked = {resource for action, resource in actions if action == "lambda:InvokeFunction"}
            assert invoked == _invoked_function_arns(stack, machine)
            manifest = f"arn:aws:s3:::{stack.results_bucket}/work/*"
            assert ("s3:GetObject", manifest) in actions, "the Distributed Map's ItemReader read is not checked"
            assert ("states:StartExecution", stack.output(machine)) in actions, "the map run's child executions"
        # Lambda's SQS event source polls with the intake function's own role.
        queue = stack.output("IntakeQueue", "Arn")
        pollers = [name for name in ran if ("sqs:ReceiveMessage", queue) in seen.get(name, set())]
        assert pollers, "nobody was checked polling the intake queue"
        assert all(("sqs:DeleteMessage", queue) in seen[name] for name in pollers)


def _known_only_to(recorder: CallRecorder, stack: Any, name: str) -> Caller:
    """A caller in a scope only this test's recorder watches: what the test itself calls under a
    function's name is none of the session-wide check's business."""
    view = StackView.of(stack)
    view.scope = name
    recorder._views[name] = view
    return Caller(name, next(iter(stack.functions)))


def test_threads_and_pools_a_function_starts_act_as_that_function(offline, recorder) -> None:
    with offline() as session:
        stack = session.stack
        caller = _known_only_to(recorder, stack, "threads")
        s3 = stack.client("s3")

        def list_inbox() -> None:
            s3.list_objects_v2(Bucket=stack.inbox_bucket, MaxKeys=1)

        with acting_as(caller):
            thread = threading.Thread(target=list_inbox)
            thread.start()
            thread.join()
            with ThreadPoolExecutor(max_workers=1) as pool:
                pool.submit(list_inbox).result()
        list_inbox()  # the test itself: nobody's role

        bucket = f"arn:aws:s3:::{stack.inbox_bucket}"
        recorder.check()
        listed = [v for v in recorder.verdicts.values() if v.action == "s3:ListBucket" and v.resource == bucket]
        assert [(v.role, v.calls) for v in listed] == [(caller.logical_id, 2)]


def _refuse(operation_calls: list[str]) -> Any:
    def answer(model: Any, **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        operation_calls.append(model.name)
        error = {"Code": "AccessDenied", "Message": f"not authorized to perform s3:{model.name}"}
        return AWSResponse("", 403, {}, None), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 403}}

    return answer


def test_a_refused_abort_leaves_the_provider_error_to_the_state_machine(offline, monkeypatch) -> None:
    """FullStory refusing a listing's second page (400) makes collect stop with ProviderRejectedError while its
    imports upload is open (parts of 1 byte here); the abort of that upload is refused, as on AWS for a role
    without s3:AbortMultipartUpload. The state machine must still see ProviderRejectedError: not retried (it
    is final), caught, and kept as the batch's error code."""
    monkeypatch.setattr("tracker.s3io.PART_BYTES", 1)
    with offline(sim=SimulatorConfig(polls_to_complete=2, page_size=2)) as session:
        respond = session.simulator.respond

        def refuse_second_pages(method, raw_path, headers, body, fault=None):
            if method == "GET" and "page_token=" in raw_path:
                return 400, b'{"code":"invalid_argument","message":"page_token refused"}', {}
            return respond(method, raw_path, headers, body, fault)

        session.simulator.respond = refuse_second_pages  # type: ignore[method-assign]
        aborts: list[str] = []
        refuse = _refuse(aborts)
        boto3.DEFAULT_SESSION.events.register("before-call.s3.AbortMultipartUpload", refuse)
        try:
            job = upload_and_wait(session, "inbox/users/refused-abort.ndjson", ndjson(users(5)))
        finally:
            boto3.DEFAULT_SESSION.events.unregister("before-call.s3.AbortMultipartUpload", refuse)
        stack = session.stack

        assert aborts, "the collect never had an upload to abort"
        failed = [r for r in stack.lambdas.invocations if r.error_type]
        assert [r.error_type for r in failed] == ["ProviderRejectedError"]  # once: final errors are not retried
        (batch,) = stack.list_batches(job["id"])
        assert batch["error"]["code"] == "invalid_argument"
        assert job["state"] == "FAILED"
        assert len([n for n in stack.notifications() if n["message"]["jobId"] == job["id"]]) == 1


def test_a_missing_key_needs_list_bucket_to_answer_404_and_a_missing_bucket_does_not(offline, recorder) -> None:
    with offline() as session:
        stack = session.stack
        s3 = stack.client("s3")
        with acting_as(_known_only_to(recorder, stack, "missing-objects")):
            with pytest.raises(s3.exceptions.NoSuchKey):
                s3.get_object(Bucket=stack.inbox_bucket, Key="inbox/users/deleted-meanwhile.csv")
            with pytest.raises(s3.exceptions.NoSuchBucket):
                s3.get_object(Bucket="no-such-bucket-offline", Key="x")
        recorder.check()
        modelled = {(v.action, v.resource) for v in recorder.verdicts.values() if v.why}
        assert modelled == {("s3:ListBucket", f"arn:aws:s3:::{stack.inbox_bucket}")}
