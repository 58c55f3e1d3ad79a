import pytest
from tracker.batch_tasks import idempotency_key
from tracker.errors import ProviderAuthError, ProviderRejectedError
from tracker.messages import error_from_failure
from tracker.model import Accounting, estimate_pct_complete, job_view


def test_accounting_balances_only_when_every_row_is_somewhere():
    assert Accounting(10, 6, 3, 1).balanced
    assert Accounting(10, 6, 3, 1).line == "rows in 10 = imported 6 + provider errors 3 + rejected 1"
    short = Accounting(10, 6, 2, 1)
    assert not short.balanced
    assert short.line == "rows in 10 != imported 6 + provider errors 2 + rejected 1"
    assert short.as_dict()["balanced"] is False


def _job(state="RUNNING", **extra):
    return {"id": "job-1", "type": "fullstory.users", "state": state, "createdAt": "2026-01-01T00:00:00.000Z", **extra}


def test_progress_weights_batches_by_rows_and_is_100_when_terminal():
    batches = [{"index": 1, "rows": 300, "batchState": "COMPLETED"}, {"index": 2, "rows": 100, "batchState": "PENDING"}]
    assert estimate_pct_complete(_job(), batches) == pytest.approx(5 + 90 * 0.75)
    assert estimate_pct_complete(_job(), []) == 0
    assert estimate_pct_complete(_job("FAILED"), batches) == 100


def test_job_view_has_the_api_contract_fields():
    view = job_view(
        _job("FAILED", error={"code": "unauthorized", "message": "key refused"}, rowsIn=5, rejected=1),
        [{"index": 1, "rows": 4, "batchState": "FAILED", "providerJobId": "p1"}],
        url="https://api/jobs/job-1",
        result_urls={"imports": "https://x/imports"},
    )
    assert set(view) >= {
        "id",
        "type",
        "state",
        "createdAt",
        "estimatePctComplete",
        "errorDetails",
        "error",
        "results",
        "metrics",
        "runId",
        "url",
        "operationParams",
        "creatorToken",
        "batches",
    }
    assert "finishedAt" not in view and "startTime" not in view  # no value yet: left out, not null
    assert view["errorDetails"] == "key refused"
    assert view["results"] == {"downloadUrl": "https://x/imports"}  # URLs that do not exist yet are left out
    assert view["metrics"]["rowsIn"] == 5 and view["metrics"]["rejected"] == 1
    assert view["batches"][0]["providerJobId"] == "p1"


def test_failure_from_a_handler_error_keeps_its_code():
    cause = '{{"errorType": "ProviderAuthError", "errorMessage": "{}"}}'.format(str(ProviderAuthError("key refused")))
    assert error_from_failure({"Error": "ProviderAuthError", "Cause": cause}) == ("unauthorized", "key refused")
    rejected = ProviderRejectedError("token repeated", code="paging_loop")
    assert error_from_failure({"Error": "ProviderRejectedError", "Cause": f'{{"errorMessage": "{rejected}"}}'}) == (
        "paging_loop",
        "token repeated",
    )


def test_failure_from_the_service_gets_a_readable_code():
    assert error_from_failure({"Error": "States.Timeout", "Cause": ""}) == ("task_timeout", "States.Timeout")
    assert error_from_failure({"Error": "Lambda.Unknown", "Cause": "boom"}) == ("task_crashed", "boom")
    assert error_from_failure({"Error": "SomeNew.Error", "Cause": "x"}) == ("somenew_error", "x")
    assert error_from_failure({}) == ("task_failed", "States.TaskFailed")


def test_idempotency_key_is_stable_per_batch_and_distinct_across_batches():
    assert idempotency_key("job-a", 1) == idempotency_key("job-a", 1)
    assert len({idempotency_key("job-a", 1), idempotency_key("job-a", 2), idempotency_key("job-b", 1)}) == 3
