"""One batch's unrecoverable failure does not abort its siblings: the distributed Map tolerates a child that
fails outright (the offline stack fails a Map Run past its threshold as AWS does,
jobtracker.local.map_failures), the job still ends with every other batch's results and its accounting,
and the Map collects nothing of its children."""

from __future__ import annotations

from typing import Any

from tracker.executions import ExecutionInput

from tests.integration.helpers import fullstory_batch_budget, ndjson, read_ndjson, users

BROKEN = 7  # the batch whose child execution fails outright


def test_a_child_that_fails_outright_leaves_its_eleven_siblings_finished(offline):
    with offline(MaxBatchRequests=1, InFlightBudget=4) as session:
        stack = session.stack
        lambdas = stack.lambdas
        real_invoke = lambdas.invoke
        finalize_inputs: list[dict[str, Any]] = []

        def invoke(name: str, event: dict[str, Any]) -> Any:
            answer = real_invoke(name, event)
            spec = lambdas.by_name_or_arn(name).logical_id
            if spec == "StatusFunction" and event["batch"]["index"] == BROKEN:
                # An answer without `phase`: the BatchState Choice cannot read it, a States.Runtime error
                # that no Catch takes (not even States.ALL), so RecordBatchFailure never runs: the child fails.
                return {}
            if spec == "FinalizeFunction" and event.get("action") == "finalize":
                finalize_inputs.append(event["input"])
            return answer

        lambdas.invoke = invoke  # type: ignore[method-assign]
        stack.upload("inbox/users/twelve.ndjson", ndjson(users(12)))
        job_id = stack.wait_until(lambda: next((j["id"] for j in stack.jobs()), None), what="the job")
        job = stack.wait_for_job(job_id, timeout=180)

        batches = {b["index"]: b for b in stack.list_batches(job_id)}
        assert len(batches) == 12
        assert {i for i, b in batches.items() if b["batchState"] == "COMPLETED"} == set(range(1, 13)) - {BROKEN}
        assert batches[BROKEN]["batchState"] == "RUNNING"  # its child died after the provider accepted it
        # The job ends FAILED for the one batch, not for the Map: the others' rows are delivered and counted.
        assert (job["state"], job["error"]["code"]) == ("FAILED", "batches_unfinished")
        assert f"batch {BROKEN}" in job["error"]["message"]
        imported = read_ndjson(session, job["resultKeys"]["imports"])
        assert sorted(row["uid"] for row in imported) == sorted(f"user-{i}" for i in range(1, 13) if i != BROKEN)
        assert job["accounting"] == {
            "rowsIn": 12,
            "imported": 11,
            "providerErrors": 0,
            "rejected": 0,
            "unlisted": 0,
            "balanced": False,
            "check": "rows in 12 != imported 11 + provider errors 0 + rejected 0",
        }
        assert len(stack.notifications()) == 1

        # The Map's result is discarded: Finalize gets the execution's input and nothing the children returned.
        (finalize_input,) = finalize_inputs
        assert set(finalize_input) == set(ExecutionInput.model_fields)
        # The failed child's budget slot comes back when the execution's end is seen (EventBridge backstop).
        stack.wait_until(lambda: fullstory_batch_budget().holders() == {}, what="every lease released")


def test_the_offline_map_fails_past_its_threshold_as_aws_does():
    """The emulation itself: no threshold means the first failed child fails the Map Run."""
    from jobtracker.local.map_failures import exceeds

    assert exceeds(failed=1, total=12, count=0, percentage=0)  # AWS's defaults: no failure tolerated
    assert not exceeds(failed=12, total=12, count=0, percentage=100)
    assert not exceeds(failed=3, total=12, count=3, percentage=0)
    assert exceeds(failed=4, total=12, count=3, percentage=0)
    assert not exceeds(failed=3, total=12, count=0, percentage=25)
    assert exceeds(failed=4, total=12, count=0, percentage=25)
    assert exceeds(failed=4, total=12, count=10, percentage=25)  # either threshold passed fails it
