"""The fault matrix: for every injected fault the job ends terminal, with exact accounting when it
COMPLETED, no batch submitted twice as a new provider job, and exactly one notification.

A summary table is printed at the end of the run (see conftest.pytest_terminal_summary)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from jobtracker.simulators.fullstory import SimulatorConfig, parse_fault
from tests.integration.helpers import ndjson, read_ndjson, upload_and_wait, users

MATRIX_RESULTS: list[dict[str, Any]] = []

ROWS = 12
BATCH_ROWS = 4  # 12 valid rows (one of them refused by the provider): three batches per job
INVALID_EMAIL_ROW = {"uid": "bad-email", "email": "no-at-sign"}


@dataclass
class Case:
    name: str
    faults: tuple[str, ...] = ()
    expect_state: str = "COMPLETED"
    expect_code: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    sim: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case("no fault"),
    Case("429 with Retry-After on 40% of calls", ("429:0.4",), sim={"retry_after_seconds": 0}),
    Case("429 without Retry-After on 40% of calls", ("429-bare:0.4",)),
    Case("5xx burst: 500 on 30% of calls", ("500:0.3",)),
    Case("connection reset after the provider acted (30%)", ("reset:0.3",)),
    Case(
        "read timeout: answer 1.5 s late, timeout 1 s (30%)", ("slow:1.5s:0.3",), params={"ProviderTimeoutSeconds": 1}
    ),
    Case("malformed JSON answers (30%)", ("malformed:0.3",)),
    Case("everything at once", ("429:0.1", "500:0.1", "reset:0.05", "malformed:0.05"), sim={"retry_after_seconds": 0}),
    Case(
        "job never finishes",
        ("stuck",),
        expect_state="FAILED",
        expect_code="deadline_exceeded",
        params={"MaxJobHours": "0.0003"},
    ),
    Case("paging token repeats", ("repeat-token",), expect_state="FAILED", expect_code="paging_loop"),
    Case("500 on every call", ("500:1.0",), expect_state="FAILED", expect_code="provider_unavailable"),
    Case("connection reset after the first submit was accepted", ("reset@submit:1x",)),
    Case(
        "read timeout on the first submit (1.5 s, timeout 1 s)",
        ("slow@submit:1.5s:1x",),
        params={"ProviderTimeoutSeconds": 1},
    ),
    Case("malformed answer to the first submit", ("malformed@submit:1x",)),
    Case("500 on the first 4 status polls", ("500@status:4x",)),
    Case("429 without Retry-After on every paging call, 3 times", ("429-bare@pages:3x",)),
]
LOST_ANSWER = {
    "connection reset after the first submit was accepted",
    "read timeout on the first submit (1.5 s, timeout 1 s)",
    "malformed answer to the first submit",
}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault(offline, case: Case) -> None:
    config = SimulatorConfig(
        polls_to_complete=2, faults=tuple(parse_fault(f) for f in case.faults), fault_seed=1234, **case.sim
    )
    rows = [*users(ROWS - 1), INVALID_EMAIL_ROW, {"uid": "x" * 300}]  # 11 imported, 1 provider error, 1 rejected
    with offline(sim=config, MaxBatchRequests=BATCH_ROWS, **case.params) as session:
        key = "inbox/users/" + "".join(c if c.isalnum() else "-" for c in case.name) + ".ndjson"  # a job id per case
        job = upload_and_wait(session, key, ndjson(rows), timeout=120)
        stack, stats = session.stack, session.simulator.stats
        batches = stack.list_batches(job["id"])
        notifications = [n for n in stack.notifications() if n["message"]["jobId"] == job["id"]]
        provider_jobs = len(session.simulator.jobs())
        MATRIX_RESULTS.append(
            {
                "case": case.name,
                "state": job["state"],
                "error": (job.get("error") or {}).get("code", ""),
                "accounting": job["accounting"]["check"],
                "provider jobs / batches": f"{provider_jobs} / {len(batches)}",
                "replays": stats["replayed_posts"],
                "faults": stats["faults"],
                "notifications": len(notifications),
            }
        )

        assert job["state"] == case.expect_state, job.get("error")
        assert len(notifications) == 1
        assert notifications[0]["attributes"]["state"] == case.expect_state
        # One provider job per batch at most: a retried submit is replayed, never imported twice.
        assert provider_jobs <= len(batches)
        assert stats["batch_posts"] == provider_jobs
        if case.expect_state == "COMPLETED":
            assert provider_jobs == len(batches) == 3
            assert job["accounting"]["balanced"], job["accounting"]["check"]
            assert (job["imported"], job["providerErrors"], job["rejected"]) == (11, 1, 1)
            imported = read_ndjson(session, job["resultKeys"]["imports"])
            assert len({row["uid"] for row in imported}) == 11  # no row twice in the output either
        else:
            assert job["error"]["code"] == case.expect_code
        if case.name in LOST_ANSWER:
            assert stats["replayed_posts"] >= 1  # the retry carried the same Idempotency-Key
        assert stack.wait_for_execution(job["id"])["status"] in ("SUCCEEDED", "FAILED")


def _run_with_hooks(offline, name, install, *, expect_state="COMPLETED", expect_code=None):
    """Run the standard job with runtime faults installed by `install(session)`."""
    key = "inbox/users/" + "".join(c if c.isalnum() else "-" for c in name) + ".ndjson"
    rows = [*users(ROWS - 1), INVALID_EMAIL_ROW, {"uid": "x" * 300}]
    with offline(sim=SimulatorConfig(polls_to_complete=2), MaxBatchRequests=BATCH_ROWS) as session:
        install(session)
        job = upload_and_wait(session, key, ndjson(rows), timeout=120)
        stats = session.simulator.stats
        provider_jobs = len(session.simulator.jobs())
        notifications = [n for n in session.stack.notifications() if n["message"]["jobId"] == job["id"]]
        MATRIX_RESULTS.append(
            {
                "case": name,
                "state": job["state"],
                "error": (job.get("error") or {}).get("code", ""),
                "accounting": job["accounting"]["check"],
                "provider jobs / batches": f"{provider_jobs} / {len(session.stack.list_batches(job['id']))}",
                "replays": stats["replayed_posts"],
                "faults": "runtime",
                "notifications": len(notifications),
            }
        )
        assert job["state"] == expect_state, job.get("error")
        assert len(notifications) == 1
        assert provider_jobs <= 3 and stats["batch_posts"] == provider_jobs
        if expect_state == "COMPLETED":
            assert provider_jobs == 3
            assert job["accounting"]["balanced"]
        else:
            assert job["error"]["code"] == expect_code
        return session, job


def test_submit_lambda_crashing_after_two_batches_resumes_without_resending(offline):
    calls = {"submit": 0, "crashed": False}

    def install(session):
        def crash_third_submit(function, event):
            if function == "SubmitFunction":
                calls["submit"] += 1
                if calls["submit"] == 3 and not calls["crashed"]:
                    calls["crashed"] = True
                    raise RuntimeError("injected crash: the Lambda died before doing anything")

        session.stack.lambdas.before_invoke = crash_third_submit

    _run_with_hooks(offline, "submit Lambda crashes on its 3rd call", install)
    assert calls["crashed"]


def test_crash_between_the_provider_accepting_and_the_record_being_written(offline):
    import boto3

    state = {"failed": False}

    def install(session):
        def lose_the_record(params, **_):
            if not state["failed"] and b"providerJobId" in (params.get("body") or b""):
                state["failed"] = True
                raise RuntimeError("injected crash: the provider accepted the batch, DynamoDB never heard of it")

        boto3.DEFAULT_SESSION.events.register("before-call.dynamodb.UpdateItem", lose_the_record)

    session, _ = _run_with_hooks(offline, "crash after submit, before the DynamoDB record", install)
    assert state["failed"]
    assert session.simulator.stats["replayed_posts"] >= 1  # the re-submit was recognised by its key


def test_api_key_revoked_mid_job_ends_failed_with_one_notification(offline):
    def install(session):
        def revoke_after_first_poll(function, event):
            if function == "StatusFunction":
                session.simulator.config.api_key = "rotated-by-an-admin"

        session.stack.lambdas.before_invoke = revoke_after_first_poll

    _run_with_hooks(offline, "API key revoked mid-job", install, expect_state="FAILED", expect_code="unauthorized")


def test_dynamodb_throttling_two_batch_record_writes_is_retried(offline):
    import boto3
    from botocore.exceptions import ClientError

    state = {"throttled": 0}

    def install(session):
        def throttle(params, **_):
            if state["throttled"] < 2 and b"providerJobId" in (params.get("body") or b""):
                state["throttled"] += 1
                raise ClientError(
                    {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "injected"}}, "UpdateItem"
                )

        boto3.DEFAULT_SESSION.events.register("before-call.dynamodb.UpdateItem", throttle)

    _run_with_hooks(offline, "DynamoDB throttles two batch-record writes", install)
    assert state["throttled"] == 2


def test_concurrent_finalizers_conflict_on_dynamodb_and_notify_once(offline):
    """The state machine's Finalize and the EventBridge backstop racing for the same job."""
    import threading

    with offline() as session:
        from tracker import wiring
        from tracker.model import now_iso

        job_id = "job-racing0000000000000000"
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
            }
        )
        results: list[dict] = []
        threads = [
            threading.Thread(target=lambda: results.append(wiring.finalizer().finalize(job_id))) for _ in range(6)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert {r["state"] for r in results} == {"COMPLETED"}
        assert len([n for n in session.stack.notifications() if n["message"]["jobId"] == job_id]) == 1
        MATRIX_RESULTS.append(
            {
                "case": "six finalizers racing (conditional-write conflicts)",
                "state": "COMPLETED",
                "error": "",
                "accounting": "rows in 0 = imported 0 + provider errors 0 + rejected 0",
                "provider jobs / batches": "0 / 0",
                "replays": 0,
                "faults": "runtime",
                "notifications": 1,
            }
        )
