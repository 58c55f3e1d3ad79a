"""The fault matrix: for every injected fault the job ends terminal, with exact accounting when it
COMPLETED (rows in = imported + provider errors + rejected + unlisted), no batch submitted twice as a new
provider job, never a key FullStory stored a failure under sent again, and exactly one notification.

Every cell of the table comes from what its case measured. It is printed at the end of the run (see
conftest.pytest_terminal_summary)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from jobtracker.local.session import OfflineSession
from jobtracker.simulators.fullstory import SimulatorConfig, parse_fault
from tests.integration.helpers import ndjson, read_json, read_ndjson, upload_and_wait, users

MATRIX_RESULTS: list[dict[str, Any]] = []

ROWS = 12
BATCH_ROWS = 4  # 12 valid rows (one of them refused by the provider): three batches per job
INVALID_EMAIL_ROW = {"uid": "bad-email", "email": "no-at-sign"}
STANDARD_ROWS = [*users(ROWS - 1), INVALID_EMAIL_ROW, {"uid": "x" * 300}]  # 11 imported, 1 provider error, 1 rejected


@dataclass
class Case:
    name: str
    faults: tuple[str, ...] = ()
    expect_state: str = "COMPLETED"
    expect_code: str | None = None
    expect_unlisted: int = 0
    expect_warnings: tuple[str, ...] = ()
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
    # One record a page; paging sticks on page two: each listing keeps its first two pages, the rest is named.
    Case(
        "paging token repeats: paging stops, rows never listed are named",
        ("repeat-token",),
        expect_unlisted=5,
        expect_warnings=("count_mismatch", "listing_ended_early", "unlisted_rows"),
        sim={"page_size": 1},
    ),
    Case("500 on every call", ("500:1.0",), expect_state="FAILED", expect_code="provider_unavailable"),
    Case("stored 500 on the first submit, then a retry", ("500@submit:1x",)),
    Case("stored 500 on the first 3 submits, then retries", ("500@submit:3x",)),
    Case("connection reset after the first submit was accepted", ("reset@submit:1x",)),
    Case(
        "read timeout on the first submit (1.5 s, timeout 1 s)",
        ("slow@submit:1.5s:1x",),
        params={"ProviderTimeoutSeconds": 1},
    ),
    Case(
        "overlapping same-key requests: a submit still executing when its retry arrives",
        params={"ProviderTimeoutSeconds": 1},
        # 4 s: the retry (the ASL's first retry waits at most 2 s, full jitter) always comes while the first
        # request still executes; at 1.5 s a late retry sometimes found it finished and got a replay instead.
        sim={"submit_execution_seconds": 4.0},
    ),
    Case("malformed answer to the first submit", ("malformed@submit:1x",)),
    Case("500 on the first 4 status polls", ("500@status:4x",)),
    Case("429 without Retry-After on every paging call, 3 times", ("429-bare@pages:3x",)),
]
LOST_ANSWER = {
    "connection reset after the first submit was accepted",
    "read timeout on the first submit (1.5 s, timeout 1 s)",
    "malformed answer to the first submit",
    "overlapping same-key requests: a submit still executing when its retry arrives",
}
STORED_500 = {
    "stored 500 on the first submit, then a retry": 1,
    "stored 500 on the first 3 submits, then retries": 3,
}


def _key(name: str, suffix: str = ".ndjson") -> str:
    return "inbox/users/" + "".join(c if c.isalnum() else "-" for c in name)[:80] + suffix  # a job id per case


def _measure(case: str, session: OfflineSession, job: dict[str, Any], faults: Any) -> dict[str, Any]:
    """One row of the table, every cell read from the stack, the simulator and the job as they are now."""
    stats = session.simulator.stats
    batches = session.stack.list_batches(job["id"])
    notifications = [n for n in session.stack.notifications() if n["message"]["jobId"] == job["id"]]
    row = {
        "case": case,
        "state": job["state"],
        "error": (job.get("error") or {}).get("code", ""),
        "accounting": job["accounting"]["check"],
        "provider jobs / batches": f"{len(session.simulator.jobs())} / {len(batches)}",
        "replays": stats["replayed_posts"],
        "keys moved": sum(len(b.get("burntKeys") or []) for b in batches),
        "stored 500s resent": stats["replayed_failures"],
        "key conflicts": stats["key_conflicts"],
        "faults": faults,
        "warnings": ", ".join(sorted(w["code"] for w in job.get("warnings") or [])) or "-",
        "notifications": len(notifications),
    }
    MATRIX_RESULTS.append(row)
    return row


def _check_common(
    session: OfflineSession, job: dict[str, Any], row: dict[str, Any], *, one_per_uid: bool = True
) -> None:
    """What holds for every case: one notification, one provider job per batch at most, no stored failure
    ever sent again, and a COMPLETED job's rows all accounted for, each imported record written once (one per
    uid, unless the file repeats a uid in two batches: then each batch lists its own record)."""
    stats = session.simulator.stats
    provider_jobs, batches = (int(n) for n in row["provider jobs / batches"].split(" / "))
    assert row["notifications"] == 1
    assert provider_jobs <= batches and stats["batch_posts"] == provider_jobs
    assert row["stored 500s resent"] == 0  # a key FullStory stored a 500 under is never sent again
    if job["state"] == "COMPLETED":
        assert provider_jobs == batches
        assert job["accounting"]["balanced"], job["accounting"]["check"]
        imported = read_ndjson(session, job["resultKeys"]["imports"])
        uids = [record["uid"] for record in imported]
        assert not one_per_uid or len(uids) == len(set(uids))  # no record twice in the output
    assert session.stack.wait_for_execution(job["id"])["status"] in ("SUCCEEDED", "FAILED")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault(offline, case: Case) -> None:
    config = SimulatorConfig(
        polls_to_complete=2, faults=tuple(parse_fault(f) for f in case.faults), fault_seed=1234, **case.sim
    )
    with offline(sim=config, MaxBatchRequests=BATCH_ROWS, **case.params) as session:
        job = upload_and_wait(session, _key(case.name), ndjson(STANDARD_ROWS), timeout=120)
        row = _measure(case.name, session, job, session.simulator.stats["faults"])

        assert job["state"] == case.expect_state, job.get("error")
        notifications = [n for n in session.stack.notifications() if n["message"]["jobId"] == job["id"]]
        assert notifications[0]["attributes"]["state"] == case.expect_state
        _check_common(session, job, row)
        if case.expect_state == "COMPLETED":
            unlisted = job["accounting"]["unlisted"]
            assert unlisted == case.expect_unlisted
            assert (job["imported"] + unlisted, job["providerErrors"], job["rejected"]) == (11, 1, 1)
            assert {w["code"] for w in job.get("warnings") or []} == set(case.expect_warnings)
            if unlisted:
                named = read_ndjson(session, job["resultKeys"]["unlisted"])
                listed = {r["uid"] for r in read_ndjson(session, job["resultKeys"]["imports"])}
                assert len(named) == unlisted and all(isinstance(n["line"], int) for n in named)
                assert {n["uid"] for n in named} | listed == {f"user-{i}" for i in range(1, 12)}
                assert json.loads(notifications[0]["attributes"]["warnings"]) == sorted(case.expect_warnings)
        else:
            assert job["error"]["code"] == case.expect_code
        if case.name in LOST_ANSWER:
            assert row["replays"] >= 1  # the retry carried the same Idempotency-Key
        if case.name in STORED_500:
            assert row["keys moved"] == STORED_500[case.name]  # one new key per stored 500, none else
        if case.name.startswith("overlapping"):
            assert row["key conflicts"] >= 1


def _run_with_hooks(
    offline,
    name: str,
    install: Callable[[OfflineSession], None],
    *,
    rows: list[Any] = STANDARD_ROWS,
    sim: SimulatorConfig | None = None,
    expect_state: str = "COMPLETED",
    expect_code: str | None = None,
    then: Callable[[OfflineSession, dict[str, Any], dict[str, Any]], None] | None = None,
) -> None:
    """Run a job with runtime faults installed by `install(session)`; `then(session, job, row)` checks what
    is special about the case while the offline world still runs."""
    with offline(sim=sim or SimulatorConfig(polls_to_complete=2), MaxBatchRequests=BATCH_ROWS) as session:
        install(session)
        job = upload_and_wait(session, _key(name), ndjson(rows), timeout=120)
        row = _measure(name, session, job, "runtime")
        assert job["state"] == expect_state, job.get("error")
        _check_common(session, job, row, one_per_uid=rows is STANDARD_ROWS)
        if expect_state == "FAILED":
            assert job["error"]["code"] == expect_code
        if then is not None:
            then(session, job, row)


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

    def then(session, job, row):
        assert row["replays"] >= 1  # the re-submit was recognised by its key

    _run_with_hooks(offline, "crash after submit, before the DynamoDB record", install, then=then)
    assert state["failed"]


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


def _answer_pages(session: OfflineSession, change: Callable[[str, tuple[int, bytes, dict]], Any]) -> None:
    """Let `change(raw_path, answer)` replace the simulator's answers to /imports and /errors page requests."""
    simulator = session.simulator
    respond = simulator.respond

    def respond_changed(method, raw_path, headers, body, fault=None):
        answer = respond(method, raw_path, headers, body, fault)
        path = raw_path.split("?", 1)[0]
        if method == "GET" and path.endswith(("/imports", "/errors")):
            return change(raw_path, answer) or answer
        return answer

    simulator.respond = respond_changed  # type: ignore[method-assign]


def test_a_429_with_retry_after_mid_paging_waits_in_the_state_machine_and_resumes_from_the_stored_page(offline):
    """Two records a page; the first two requests for a page after the first get 429 + Retry-After: 1. The
    collect step answers `results_throttled` with a wait of at least 1 s, the Wait state waits it, and the
    next call pages on from the stored token: no record twice, no page fetched twice after its 429."""
    throttled: list[str] = []
    resumed_waits: list[int] = []

    def install(session):
        def throttle_second_pages(raw_path, answer):
            if "page_token=" in raw_path and len(throttled) < 2:
                throttled.append(raw_path)
                return 429, b'{"code":"too_many_requests","message":"slow down"}', {"Retry-After": "1"}
            return None

        def record_resumes(function, event):
            task = event.get("task") or {}
            if function == "CollectFunction" and task.get("phase") == "results_throttled":
                resumed_waits.append(int(task["nextPollSeconds"]))

        _answer_pages(session, throttle_second_pages)
        session.stack.lambdas.before_invoke = record_resumes

    def then(session, job, row):
        assert len(throttled) == 2 and len(resumed_waits) == 2
        assert all(wait >= 1 for wait in resumed_waits)  # each collect after a 429 came from a Wait of Retry-After
        batches = session.stack.list_batches(job["id"])
        assert sum(len(b["listings"]["imports"]["parts"]) for b in batches) >= 4  # a resumed listing has two parts
        assert (job["imported"], job["providerErrors"], job["rejected"], job["accounting"]["unlisted"]) == (11, 1, 1, 0)
        assert len(read_ndjson(session, job["resultKeys"]["imports"])) == 11

    _run_with_hooks(
        offline,
        "429 with Retry-After mid-paging",
        install,
        sim=SimulatorConfig(polls_to_complete=2, page_size=2),
        then=then,
    )


def test_a_record_missing_from_fullstorys_listing_is_named_not_a_failure(offline):
    """FullStory's status and listing can disagree; a row listed neither as imported nor as an error is
    accounted for as unlisted (its line, uid and request in unlisted.ndjson), and the job COMPLETED, flagged."""
    dropped: list[str] = []

    def install(session):
        def drop_user_5(raw_path, answer):
            status, body, headers = answer
            if status != 200 or "/imports" not in raw_path:
                return None
            page = json.loads(body)
            kept = [r for r in page["results"] if r.get("uid") != "user-5"]
            if len(kept) == len(page["results"]):
                return None
            dropped.append(raw_path)
            return status, json.dumps({**page, "results": kept}).encode(), headers

        _answer_pages(session, drop_user_5)

    def then(session, job, row):
        assert dropped
        (named,) = read_ndjson(session, job["resultKeys"]["unlisted"])
        assert (named["line"], named["uid"], named["row"]["email"]) == (5, "user-5", "user5@example.com")
        assert (job["imported"], job["accounting"]["unlisted"]) == (10, 1)
        manifest = read_json(session, job["resultKeys"]["manifest"])
        assert {w["code"] for w in manifest["warnings"]} == {"unlisted_rows", "count_mismatch"}
        (mismatch,) = manifest["crossCheck"]  # the status said 4 imports, the listing held 3 records
        assert mismatch["imports"] == {"status": 4, "totalRecords": 4, "listed": 3}
        note = next(n for n in session.stack.notifications() if n["message"]["jobId"] == job["id"])
        assert json.loads(note["attributes"]["warnings"]) == ["count_mismatch", "unlisted_rows"]

    _run_with_hooks(offline, "a record missing from the imports listing", install, then=then)


def test_duplicate_uids_the_last_row_wins_within_a_batch_and_across_batches(offline):
    """users is an upsert: a uid sent twice in one batch is one listed record (seed 002: 104 imports, 103
    records) and both rows count as imported; a batch repeating an earlier batch's uid is held until FullStory
    has finished the earlier batch, so the later row is applied last."""
    rows = [
        {"uid": "user-1", "properties": {"plan": "free"}},  # batch 1
        {"uid": "user-2", "properties": {"plan": "free"}},
        {"uid": "user-1", "properties": {"plan": "pro"}},  # batch 1 again: upserted in the same batch
        {"uid": "user-3"},
        {"uid": "user-4"},  # batch 2
        {"uid": "user-5"},
        {"uid": "user-6"},
        {"uid": "user-7"},
        {"uid": "user-2", "properties": {"plan": "team"}},  # batch 3 repeats batch 1's user-2
        {"uid": "user-8"},
    ]
    def then(session, job, row):
        assert (job["imported"], job["providerErrors"], job["accounting"]["unlisted"], job["rowsIn"]) == (10, 0, 0, 10)
        one, _, three = session.stack.list_batches(job["id"])
        assert (one["listedImports"], one["reportedImports"]) == (3, 4)
        assert three["after"] == 1 and three["submittedAt"] >= one["finishedAt"]
        imports = read_ndjson(session, job["resultKeys"]["imports"])
        assert [r["properties"] for r in imports if r["uid"] == "user-1"] == [{"plan": "pro"}]
        assert [r["properties"]["plan"] for r in imports if r["uid"] == "user-2"] == ["free", "team"]
        assert {w["code"] for w in job["warnings"]} == {"count_mismatch"}

    _run_with_hooks(offline, "duplicate uids in one file", lambda session: None, rows=rows, then=then)


def test_an_export_whose_create_answer_was_lost_is_found_not_started_twice(offline):
    """Create Export documents no Idempotency-Key (the simulator ignores it): the answer to the first create
    is lost after the export started; the retry finds that export through List Operation and follows it."""
    import urllib3

    config = SimulatorConfig(
        polls_to_complete=2, operation_polls_to_complete=2, faults=(parse_fault("reset@export:1x"),)
    )
    with offline(sim=config, api=True) as session:
        answer = urllib3.PoolManager(retries=False).request(
            "POST",
            session.api.base_url + "/jobs",
            body=json.dumps(
                {
                    "type": "fullstory.segment_export",
                    "params": {"segmentId": "everyone", "type": "TYPE_INDIVIDUAL", "format": "FORMAT_CSV"},
                }
            ).encode(),
        )
        assert answer.status == 202, answer.data
        job = session.stack.wait_for_job(json.loads(answer.data)["id"], timeout=60)
        ops = session.simulator.operation_stats
        (batch,) = session.stack.list_batches(job["id"])
        notifications = [n for n in session.stack.notifications() if n["message"]["jobId"] == job["id"]]
        MATRIX_RESULTS.append(
            {
                "case": "export create answer lost (no Idempotency-Key documented)",
                "state": job["state"],
                "error": (job.get("error") or {}).get("code", ""),
                "accounting": f"exports started {ops['operations_created']}, found {len(batch['operationCandidates'])}",
                "provider jobs / batches": f"{ops['operations_created']} / 1",
                "replays": ops["replayed_exports"],
                "keys moved": 0,
                "stored 500s resent": session.simulator.stats["replayed_failures"],
                "key conflicts": 0,
                "faults": session.simulator.stats["faults"],
                "warnings": ", ".join(sorted(w["code"] for w in job.get("warnings") or [])) or "-",
                "notifications": len(notifications),
            }
        )
        assert job["state"] == "COMPLETED", job.get("error")
        assert ops["operations_created"] == 1 and ops["operation_lists"] >= 1
        assert batch["operationCandidates"] == [batch["providerJobId"]] and len(notifications) == 1


def test_racing_finalizers_over_collected_batches_write_every_row_once_and_notify_once(offline):
    """The state machine's Finalize never runs here (it crashes every time), so the job stays RUNNING with its
    three batches collected; then six real finalizers race over it, as Finalize and the EventBridge backstop
    would. Every result file holds every row exactly once, and one notification goes out."""
    from tracker import wiring

    with offline(MaxBatchRequests=BATCH_ROWS) as session:
        blocked = {"finalize": True}

        def crash_finalize(function, event):
            if function == "FinalizeFunction" and blocked["finalize"]:
                raise RuntimeError("injected crash: Finalize never runs")

        session.stack.lambdas.before_invoke = crash_finalize
        key = _key("six finalizers racing over a collected job")
        session.stack.upload(key, ndjson(STANDARD_ROWS))
        job_id = session.stack.wait_until(
            lambda: next((j["id"] for j in session.stack.jobs() if j["source"]["key"] == key), None), what="the job"
        )
        assert session.stack.wait_for_execution(job_id, timeout=120)["status"] == "FAILED"  # Finalize crashed
        batches = session.stack.list_batches(job_id)
        assert session.stack.get_job(job_id)["state"] == "RUNNING"
        assert [b["batchState"] for b in batches] == ["COMPLETED", "COMPLETED", "PARTIAL"]  # by index
        blocked["finalize"] = False

        results: list[dict[str, Any]] = []
        errors: list[BaseException] = []

        def finalize() -> None:
            try:
                results.append(wiring.finalizer().finalize(job_id))
            except BaseException as exc:  # collected, so a failing racer fails the test instead of vanishing
                errors.append(exc)

        racers = [threading.Thread(target=finalize) for _ in range(6)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join()
        assert errors == []
        job = session.stack.get_job(job_id)
        imports = read_ndjson(session, job["resultKeys"]["imports"])
        provider_errors = read_ndjson(session, job["resultKeys"]["errors"])
        rejected = read_ndjson(session, job["resultKeys"]["rejected"])
        manifest = read_json(session, job["resultKeys"]["manifest"])
        row = _measure("six finalizers racing over a job of 3 collected batches", session, job, "runtime")
        assert {r["state"] for r in results} == {"COMPLETED"} and row["notifications"] == 1
        assert sorted(r["uid"] for r in imports) == sorted(f"user-{i}" for i in range(1, 12))  # each exactly once
        assert [e["user"]["uid"] for e in provider_errors] == ["bad-email"]
        assert [r["line"] for r in rejected] == [13]
        assert manifest["accounting"]["balanced"] and manifest["job"]["state"] == "COMPLETED"
        assert (job["imported"], job["providerErrors"], job["rejected"]) == (11, 1, 1)
