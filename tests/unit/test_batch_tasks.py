"""A batch's state changes (tracker.batch_tasks) against scripted providers and in-memory records, objects,
budget and clock: no moto, no network, no waiting."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import ValidationError
from tracker import layout
from tracker.batch_tasks import STEP_PHASES, BatchTasks, UndeclaredPhaseError, idempotency_key
from tracker.config import Settings
from tracker.errors import ProviderThrottledError, ProviderTransientError
from tracker.messages import BatchTask, Phase
from tracker.providers.base import (
    JobStatus,
    OperationStatus,
    ResultFile,
    ResultPage,
    ResultsNotReady,
    Submitted,
    Throttled,
)
from tracker.providers.fullstory.reconcile import reconcile

from jobtracker.local.settings import template_settings
from tests.unit.fakes import Clock, CountingSlots, InMemoryObjects, InMemoryRecords, OneBudget

DAY = 86_400
JOB = "job-1"
RESULTS = "results-bucket"
BODY = b'{"requests":[{"uid":"a"},{"uid":"b"},{"uid":"c"},{"uid":"d"}]}'
PAGE = 2  # records per page of ScriptedImport
SETTINGS = template_settings(
    {"PollMinSeconds": 5, "PollMaxSeconds": 600}, jobs_table="jobs", inbox_bucket="inbox-bucket", results_bucket=RESULTS
)


# -- scripted providers: each answers what the test scripts, and keeps the calls it got ----------------
@dataclass
class ScriptedImport:
    """A batch import provider (tracker.providers.base.BatchProvider) of users: pages of two records whose
    page token is the offset of the page, and FullStory's reconciliation of users."""

    submits: list[Submitted | Throttled | Exception] = field(default_factory=lambda: [Submitted("p-1", "PROCESSING")])
    statuses: list[JobStatus | Throttled] = field(default_factory=list)
    results: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"imports": [], "errors": []})
    not_ready: int = 0  # how many result listings answer 202 (not ready) first
    throttled: list[tuple[str, int]] = field(default_factory=list)  # (kind, offset) whose page answers 429 once
    repeat_from: int | None = None  # a page at this offset or later answers the token of this offset again
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def submit(self, body: bytes, idempotency_key: str) -> Submitted | Throttled:
        self.calls.append(("submit", idempotency_key, body))
        answer = self.submits.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def status(self, provider_job_id: str) -> JobStatus | Throttled:
        self.calls.append(("status", provider_job_id))
        return self.statuses.pop(0)

    def pages(
        self, provider_job_id: str, kind: str, *, after: str | None = None, seen: Collection[str] = ()
    ) -> Iterator[ResultPage]:
        self.calls.append(("pages", provider_job_id, kind, after))
        if self.not_ready:
            self.not_ready -= 1
            raise ResultsNotReady()
        records, asked, offset = self.results[kind], {*seen, after}, int(after or 0)
        while True:
            if (kind, offset) in self.throttled:
                self.throttled.remove((kind, offset))
                raise ProviderThrottledError(f"429 paging {kind}", retry_after=30.0)
            following = offset + PAGE
            if self.repeat_from is not None and offset >= self.repeat_from:
                following = self.repeat_from
            token = str(following) if following < len(records) else None
            ended = None
            if token in asked:
                token, ended = None, "repeated"
            asked.add(token)
            yield ResultPage.of(records[offset : offset + PAGE], token, ended_early=ended, total=len(records))
            if token is None:
                return
            offset = following

    def reconcile(self, sent: Any, imports: Any, errors: Any) -> Any:
        return reconcile("users", sent, imports, errors)


@dataclass
class ScriptedExport:
    """An operation provider (tracker.providers.base.OperationProvider) whose job produces one file."""

    statuses: list[OperationStatus | Throttled] = field(default_factory=list)
    file: bytes = b"id,name\n1,a\n"
    not_ready: int = 0
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def start(self, params: dict[str, Any], idempotency_key: str) -> Submitted | Throttled:
        self.calls.append(("start", params, idempotency_key))
        return Submitted("op-1", "PENDING")

    def status(self, provider_job_id: str) -> OperationStatus | Throttled:
        self.calls.append(("status", provider_job_id))
        return self.statuses.pop(0)

    def result(self, provider_job_id: str) -> ResultFile:
        self.calls.append(("result", provider_job_id))
        if self.not_ready:
            self.not_ready -= 1
            raise ResultsNotReady()
        return ResultFile("export.csv", "text/csv", lambda: iter([self.file[:5], self.file[5:]]))


@dataclass
class Harness:
    steps: BatchTasks
    provider: Any
    records: InMemoryRecords
    objects: InMemoryObjects
    slots: CountingSlots
    clock: Clock
    built: list[tuple[Any, ...]]  # the provider factory's calls

    def task(self, job_type: str = "fullstory.users", *, deadline_in: float = DAY, **fields: Any) -> BatchTask:
        return BatchTask(
            jobId=JOB,
            type=job_type,
            deadline=int(self.clock() + deadline_in),
            batch={"index": 1, "key": layout.batch_key(JOB, 1), "rows": 4, "bytes": len(BODY)},
            **fields,
        )

    def record(self) -> dict[str, Any]:
        return self.records.get_batch(JOB, 1) or {}


def harness(provider: Any = None, *, slots: int = 5, steps: type[BatchTasks] = BatchTasks) -> Harness:
    provider = provider if provider is not None else ScriptedImport()
    records, objects, clock = InMemoryRecords(), InMemoryObjects(), Clock()
    records.jobs[JOB] = {"id": JOB, "operationParams": {"segment": "everyone"}}
    objects.put_object(Bucket=RESULTS, Key=layout.batch_key(JOB, 1), Body=BODY, ContentType="application/json")
    budget = CountingSlots(slots)
    built: list[tuple[Any, ...]] = []

    def factory(task_type: str, settings: Settings, *params: Any) -> Any:
        built.append((task_type, *params))
        return provider

    tasks = steps(SETTINGS, records, objects, factory, OneBudget(budget), clock=clock)
    return Harness(tasks, provider, records, objects, budget, clock, built)


LEASE = idempotency_key(JOB, 1)


# -- every declared phase is produced by its step ------------------------------------------------------
def _submit_accepted() -> tuple[Harness, BatchTask]:
    h = harness()
    return h, h.task()


def _submit_throttled() -> tuple[Harness, BatchTask]:
    h = harness(ScriptedImport(submits=[Throttled(17.0)]))
    return h, h.task()


def _past_deadline() -> tuple[Harness, BatchTask]:
    h = harness()
    return h, h.task(deadline_in=-1, providerJobId="p-1", providerStatus="PROCESSING")


def _check_running() -> tuple[Harness, BatchTask]:
    h = harness(ScriptedImport(statuses=[JobStatus("PROCESSING", False)]))
    return h, h.task(providerJobId="p-1", nextPollSeconds=5)


def _check_finished() -> tuple[Harness, BatchTask]:
    h = harness(ScriptedImport(statuses=[JobStatus("COMPLETED", True, imports=4)]))
    return h, h.task(providerJobId="p-1", nextPollSeconds=5)


def _export_failed() -> tuple[Harness, BatchTask]:
    failed = OperationStatus("FAILED", "FAILED", error={"code": "segment_not_found", "message": "no such segment"})
    h = harness(ScriptedExport(statuses=[failed]))
    return h, h.task("fullstory.segment_export", providerJobId="op-1")


def _results_not_ready() -> tuple[Harness, BatchTask]:
    h = harness(ScriptedImport(not_ready=1))
    return h, h.task(providerJobId="p-1", providerStatus="COMPLETED", phase=Phase.DONE)


def _results_ready() -> tuple[Harness, BatchTask]:
    h = harness(ScriptedImport(results={"imports": [{"uid": "a"}], "errors": []}))
    return h, h.task(providerJobId="p-1", providerStatus="COMPLETED", phase=Phase.DONE)


def _results_throttled() -> tuple[Harness, BatchTask]:
    h = harness(ScriptedImport(results={"imports": [{"uid": "a"}], "errors": []}, throttled=[("imports", 0)]))
    return h, h.task(providerJobId="p-1", providerStatus="COMPLETED", phase=Phase.DONE)


def _results_not_ready_past_deadline() -> tuple[Harness, BatchTask]:
    h = harness(ScriptedImport(not_ready=1))
    return h, h.task(deadline_in=-1, providerJobId="p-1", providerStatus="COMPLETED", phase=Phase.DONE)


def _caught_failure() -> tuple[Harness, BatchTask]:
    h = harness()
    return h, h.task(providerJobId="p-1", failure={"Error": "States.Timeout", "Cause": ""})


PHASE_CASES: list[tuple[str, Phase, Callable[[], tuple[Harness, BatchTask]]]] = [
    ("submit", Phase.POLLING, _submit_accepted),
    ("submit", Phase.THROTTLED, _submit_throttled),
    ("submit", Phase.FAILED, _past_deadline),
    ("check", Phase.POLLING, _check_running),
    ("check", Phase.DONE, _check_finished),
    ("check", Phase.FAILED, _export_failed),
    ("collect", Phase.RESULTS_PENDING, _results_not_ready),
    ("collect", Phase.RESULTS_THROTTLED, _results_throttled),
    ("collect", Phase.COLLECTED, _results_ready),
    ("collect", Phase.FAILED, _results_not_ready_past_deadline),
    ("record_failure", Phase.FAILED, _caught_failure),
]


@pytest.mark.parametrize(
    ("step", "phase", "setup"), PHASE_CASES, ids=[f"{s}-{p}-{f.__name__[1:]}" for s, p, f in PHASE_CASES]
)
def test_each_step_answers_each_phase_it_declares(step, phase, setup):
    h, task = setup()
    answer = getattr(h.steps, step)(task)
    assert answer.phase == phase
    # What the state machine carries to the next step is accepted by it unchanged.
    assert BatchTask.model_validate(json.loads(json.dumps(answer.for_state_machine()))) == answer


def test_the_phase_cases_cover_every_phase_every_step_declares():
    """The ASL contract test trusts STEP_PHASES; these cases show each declared phase really is produced."""
    declared = {(step, phase) for step, phases in STEP_PHASES.items() for phase in phases}
    assert {(step, phase) for step, phase, _ in PHASE_CASES} == declared
    assert set(STEP_PHASES) == {"submit", "check", "collect", "record_failure"}


# -- a batch from submit to collected -------------------------------------------------------------------
def test_a_batch_goes_from_submit_through_checks_to_collected():
    provider = ScriptedImport(
        statuses=[JobStatus("PROCESSING", False), JobStatus("COMPLETED", True, imports=3, errors=1)],
        results={
            "imports": [{"uid": "a"}, {"uid": "b"}, {"uid": "c"}],
            "errors": [{"code": "bad", "user": {"uid": "d"}}],
        },
    )
    h = harness(provider)
    submitted_at = h.clock()

    task = h.steps.submit(h.task())
    assert (task.phase, task.providerJobId, task.attempt) == (Phase.POLLING, "p-1", 0)
    assert provider.calls == [("submit", LEASE, BODY)]  # the batch body, under its deterministic key
    assert h.record()["batchState"] == "RUNNING" and h.record()["providerJobId"] == "p-1"
    assert h.slots.holders == {LEASE}

    h.clock.advance(task.nextPollSeconds)
    task = h.steps.check(task)
    assert (task.phase, task.attempt) == (Phase.POLLING, 1)
    assert task.poll.since == submitted_at and task.poll.last == h.clock()
    assert h.record()["polls"] == 1 and len(h.record()["pollTimes"]) == 1
    assert h.slots.renewals == [LEASE]

    h.clock.advance(task.nextPollSeconds)
    task = h.steps.check(task)
    assert (task.phase, task.providerStatus, task.nextPollSeconds) == (Phase.DONE, "COMPLETED", 0)
    assert h.record()["batchState"] == "COLLECTING" and h.record()["reportedImports"] == 3
    assert h.slots.holders == set()  # the provider is done with the batch: its slot is free
    (duration,) = h.records.duration_history("fullstory.users", "r1000")
    assert 0 < duration <= h.clock() - submitted_at

    task = h.steps.collect(task)
    assert (task.phase, task.state) == (Phase.COLLECTED, "COMPLETED")
    record = h.record()
    assert (record["batchState"], record["imported"], record["providerErrors"]) == ("COMPLETED", 3, 1)
    assert [line for key in record["importsKeys"] for line in h.objects.lines(RESULTS, key)] == [
        b'{"uid":"a"}',
        b'{"uid":"b"}',
        b'{"uid":"c"}',
    ]
    assert h.objects.lines(RESULTS, record["errorsKeys"][0]) == [b'{"code":"bad","user":{"uid":"d"}}']
    assert record["unlisted"] == 0 and "countMismatch" not in record


def test_a_provider_job_that_ended_failed_is_collected_as_partial():
    h = harness(ScriptedImport(results={"imports": [{"uid": "a"}], "errors": [{"user": {"uid": "b"}}]}))
    task = h.steps.collect(h.task(providerJobId="p-1", providerStatus="FAILED", phase=Phase.DONE))
    assert (task.phase, task.state) == (Phase.COLLECTED, "PARTIAL")
    assert (h.record()["imported"], h.record()["providerErrors"]) == (1, 1)


# -- submit ---------------------------------------------------------------------------------------------
def test_a_submit_whose_answer_was_lost_polls_the_accepted_job_instead_of_sending_it_again():
    h = harness()
    h.records.update_batch(JOB, 1, {"providerJobId": "p-earlier", "batchState": "RUNNING"})
    task = h.steps.submit(h.task())
    assert (task.phase, task.providerJobId) == (Phase.POLLING, "p-earlier")
    assert h.provider.calls == []


def test_a_full_budget_waits_like_a_429_without_calling_the_provider():
    h = harness(slots=1)
    h.slots.acquire("job-other-b00001")
    task = h.steps.submit(h.task())
    assert (task.phase, task.attempt) == (Phase.THROTTLED, 1)
    assert 5 <= task.nextPollSeconds <= 10  # the first backoff step: PollMinSeconds doubled, with jitter
    assert h.record()["budgetWaits"] == 1
    assert h.provider.calls == [] and h.slots.holders == {"job-other-b00001"}


def test_a_429_on_submit_gives_the_slot_back_and_waits_at_least_retry_after():
    h = harness(ScriptedImport(submits=[Throttled(17.0), Submitted("p-2", "PROCESSING")]))
    task = h.steps.submit(h.task())
    assert (task.phase, task.attempt) == (Phase.THROTTLED, 1)
    assert task.nextPollSeconds >= 17
    assert h.record()["throttled"] == 1 and h.slots.holders == set()
    h.clock.advance(task.nextPollSeconds)
    task = h.steps.submit(task)
    assert (task.phase, task.providerJobId, task.attempt) == (Phase.POLLING, "p-2", 0)
    assert [call[1] for call in h.provider.calls] == [LEASE, LEASE]  # the same Idempotency-Key both times


def test_a_batch_past_its_deadline_fails_with_deadline_exceeded_and_frees_its_slot():
    h, task = _past_deadline()
    h.slots.acquire(LEASE)
    answer = h.steps.check(task)
    assert answer.phase == Phase.FAILED and answer.error.code == "deadline_exceeded"
    assert h.record()["batchState"] == "FAILED" and h.record()["error"]["code"] == "deadline_exceeded"
    assert h.slots.holders == set() and h.provider.calls == []


# -- check ----------------------------------------------------------------------------------------------
def test_a_throttled_status_call_keeps_polling_and_writes_nothing():
    h = harness(ScriptedImport(statuses=[Throttled(30.0)]))
    task = h.steps.check(h.task(providerJobId="p-1", nextPollSeconds=5))
    assert (task.phase, task.attempt) == (Phase.POLLING, 1) and task.nextPollSeconds >= 30
    assert task.poll.since == h.clock() - 5
    assert h.record() == {}


def test_progress_reports_give_the_poll_clock_a_rate():
    running = [OperationStatus("RUNNING", "RUNNING", progress_pct=pct) for pct in (10.0, 30.0)]
    h = harness(ScriptedExport(statuses=running))
    task = h.steps.check(h.task("fullstory.segment_export", providerJobId="op-1", nextPollSeconds=10))
    assert (task.poll.pct, task.poll.pctAt, task.poll.rate) == (10.0, 10.0, None)
    h.clock.advance(20)
    task = h.steps.check(task)
    assert (task.poll.pct, task.poll.pctAt, task.poll.rate) == (30.0, 30.0, 1.0)  # 20 points in 20 s
    assert h.record()["progressPct"] == 30.0


def test_an_export_that_failed_at_the_provider_fails_the_batch_with_the_providers_error():
    failed = OperationStatus(
        "FAILED", "FAILED", error={"code": "segment_not_found", "message": "no such segment", "exceptionId": "e-9"}
    )
    h = harness(ScriptedExport(statuses=[failed]))
    task = h.steps.check(h.task("fullstory.segment_export", providerJobId="op-1"))
    assert task.phase == Phase.FAILED
    assert h.record()["error"] == {"code": "segment_not_found", "message": "no such segment", "exceptionId": "e-9"}
    assert h.record()["batchState"] == "FAILED"


# -- collect --------------------------------------------------------------------------------------------
def test_results_not_ready_leave_no_object_behind_and_back_off():
    h, task = _results_not_ready()
    answer = h.steps.collect(task)
    assert (answer.phase, answer.attempt) == (Phase.RESULTS_PENDING, 1)
    assert 5 <= answer.nextPollSeconds <= 10
    assert set(h.objects.objects) == {(RESULTS, layout.batch_key(JOB, 1))} and h.objects.uploads == {}
    assert h.record() == {}


def test_an_export_is_started_from_the_jobs_params_and_its_file_streamed_into_the_results_prefix():
    h = harness(ScriptedExport(not_ready=1))
    task = h.steps.submit(h.task("fullstory.segment_export"))
    assert (task.phase, task.providerJobId) == (Phase.POLLING, "op-1")
    assert h.provider.calls == [("start", {"segment": "everyone"}, LEASE)]
    assert h.built[0] == ("fullstory.segment_export", {"segment": "everyone"})  # built from the job's params
    task = h.steps.collect(task.answer(Phase.DONE, providerStatus="COMPLETED"))
    assert task.phase == Phase.RESULTS_PENDING
    task = h.steps.collect(task)
    key = layout.result_key(JOB, "export.csv")
    assert (task.phase, h.record()["resultKey"], h.record()["outBytes"]) == (Phase.COLLECTED, key, 12)
    assert h.objects.objects[(RESULTS, key)] == b"id,name\n1,a\n"
    assert h.objects.content_types[(RESULTS, key)] == "text/csv"


# -- a caught error -------------------------------------------------------------------------------------
def test_a_caught_handler_error_becomes_the_batchs_error_and_frees_its_slot():
    h = harness()
    h.slots.acquire(LEASE)
    cause = json.dumps({"errorMessage": "[unauthorized] key refused", "errorType": "ProviderAuthError"})
    task = h.steps.record_failure(h.task(failure={"Error": "ProviderAuthError", "Cause": cause}))
    assert task.phase == Phase.FAILED and task.error.model_dump(exclude_none=True) == {
        "code": "unauthorized",
        "message": "key refused",
    }
    assert h.record()["error"] == {"code": "unauthorized", "message": "key refused"}
    assert h.slots.holders == set()


def test_a_failure_without_details_is_recorded_as_task_failed():
    h = harness()
    task = h.steps.record_failure(h.task())
    assert (task.error.code, task.error.message) == ("task_failed", "States.TaskFailed")


# -- the task model -------------------------------------------------------------------------------------
def test_a_step_that_answers_a_phase_it_does_not_declare_fails_loudly():
    class Misrouting(BatchTasks):
        def fail(self, task, code, message, *, exception_id=None):
            return task.answer(Phase.COLLECTED)

    h = harness(steps=Misrouting)
    with pytest.raises(UndeclaredPhaseError, match=r"\[undeclared_phase\] submit answered phase 'collected'"):
        h.steps.submit(h.task(deadline_in=-1))


def test_the_task_refuses_fields_it_does_not_know_instead_of_dropping_them():
    task = harness().task()
    with pytest.raises(ValidationError, match="phse"):
        BatchTask.model_validate({**task.for_state_machine(), "phse": "polling"})
    with pytest.raises(ValidationError, match="atempt"):
        task.answer(Phase.POLLING, atempt=1)
    with pytest.raises(ValidationError, match="phase"):
        BatchTask.model_validate({**task.for_state_machine(), "phase": "finished"})


# -- Idempotency-Key generations (FullStory stores a 500 under its key) ---------------------------------
def _stored_500() -> ProviderTransientError:
    return ProviderTransientError("FullStory answered 500 server_error").answered(500, "server_error")


def test_a_stored_500_moves_the_batch_to_a_new_key_recorded_before_the_retry_sends_it():
    error = _stored_500()
    error.burns_key = True  # as FullStoryBatchProvider marks FullStory's own 500
    h = harness(ScriptedImport(submits=[error, Submitted("p-2", "PROCESSING")]))
    with pytest.raises(ProviderTransientError):  # the state machine retries the step
        h.steps.submit(h.task())
    assert (h.record()["keyGeneration"], h.record()["idempotencyKey"]) == (1, f"{LEASE}-k1")
    assert h.record()["burntKeys"] == [LEASE]
    task = h.steps.submit(h.task())  # the retry, as the ASL runs it: the same task again
    assert task.phase == Phase.POLLING and task.providerJobId == "p-2"
    assert [call[1] for call in h.provider.calls] == [LEASE, f"{LEASE}-k1"]
    assert h.record()["idempotencyKey"] == f"{LEASE}-k1"
    assert h.slots.holders == {LEASE}  # the lease stays the batch's, whatever its key


@pytest.mark.parametrize(
    "error",
    [
        ProviderTransientError("FullStory answered 502").answered(502, "bad_gateway"),
        ProviderTransientError("FullStory answered 500").answered(500, ""),  # a proxy's page, not FullStory's
        ProviderTransientError("FullStory unreachable: ReadTimeoutError"),  # the first answer may be a success
    ],
    ids=["502", "500-without-fullstory-body", "timeout"],
)
def test_other_failures_keep_the_key(error):
    h = harness(ScriptedImport(submits=[error, Submitted("p-2", "PROCESSING")]))
    with pytest.raises(ProviderTransientError):
        h.steps.submit(h.task())
    assert "keyGeneration" not in h.record()
    h.steps.submit(h.task())
    assert [call[1] for call in h.provider.calls] == [LEASE, LEASE]


def test_a_key_moved_by_an_earlier_attempt_is_not_moved_twice():
    h = harness()
    assert h.records.advance_key(JOB, 1, 0, LEASE, f"{LEASE}-k1")
    assert not h.records.advance_key(JOB, 1, 0, LEASE, f"{LEASE}-k1")  # a retried write of the same move
    h.steps.submit(h.task())
    assert h.provider.calls[0][1] == f"{LEASE}-k1" and h.record()["burntKeys"] == [LEASE]


# -- duplicate uids: a batch repeating an earlier batch's uid follows it ---------------------------------
def test_a_batch_repeating_an_earlier_batchs_uid_waits_until_fullstory_finished_that_batch():
    h = harness()
    h.records.update_batch(JOB, 1, {"after": 7})
    h.records.update_batch(JOB, 7, {"batchState": "RUNNING"})
    task = h.steps.submit(h.task())
    assert task.phase == Phase.THROTTLED and h.record()["orderWaits"] == 1
    assert h.provider.calls == [] and h.slots.holders == set()  # no slot held while waiting
    h.records.update_batch(JOB, 7, {"batchState": "COLLECTING"})
    assert h.steps.submit(task).phase == Phase.POLLING


# -- paging: 429 through the state machine, resumed from the stored token -------------------------------
def _collected_lines(h: Harness, kind: str) -> list[bytes]:
    return [line for key in h.record()[f"{kind}Keys"] for line in h.objects.lines(RESULTS, key)]


def test_a_429_mid_paging_waits_retry_after_and_resumes_from_the_stored_token_without_duplicates():
    imports = [{"uid": uid} for uid in "abcd"]
    h = harness(ScriptedImport(results={"imports": imports, "errors": []}, throttled=[("imports", 2)]))
    task = h.steps.collect(h.task(providerJobId="p-1", providerStatus="COMPLETED", phase=Phase.DONE))
    assert task.phase == Phase.RESULTS_THROTTLED and task.nextPollSeconds >= 30  # the Retry-After
    listing = h.record()["listings"]["imports"]
    assert (listing["token"], listing["records"], listing["done"]) == ("2", 2, False)
    assert len(listing["parts"]) == 1 and h.objects.uploads == {}

    task = h.steps.collect(task)
    assert (task.phase, task.state) == (Phase.COLLECTED, "COMPLETED")
    assert [call[3] for call in h.provider.calls if call[:3] == ("pages", "p-1", "imports")] == [None, "2"]
    assert _collected_lines(h, "imports") == [b'{"uid":"a"}', b'{"uid":"b"}', b'{"uid":"c"}', b'{"uid":"d"}']
    assert (h.record()["imported"], h.record()["unlisted"]) == (4, 0)


def test_a_429_on_the_first_page_keeps_no_empty_part():
    h = harness(ScriptedImport(results={"imports": [{"uid": "a"}], "errors": []}, throttled=[("imports", 0)]))
    task = h.steps.collect(h.task(providerJobId="p-1", providerStatus="COMPLETED", phase=Phase.DONE))
    assert task.phase == Phase.RESULTS_THROTTLED
    assert "listings" not in h.record() and set(h.objects.objects) == {(RESULTS, layout.batch_key(JOB, 1))}


def test_a_repeated_page_token_ends_the_listing_and_the_rows_never_listed_are_named_with_their_lines():
    imports = [{"uid": uid} for uid in "abcdef"]
    h = harness(ScriptedImport(results={"imports": imports, "errors": []}, repeat_from=2))
    body = json.dumps({"requests": imports}, separators=(",", ":")).encode()
    h.objects.put_object(Bucket=RESULTS, Key=layout.batch_key(JOB, 1), Body=body, ContentType="application/json")
    h.objects.put_object(
        Bucket=RESULTS, Key=layout.batch_lines_key(JOB, 1), Body=b"[[3,2],[9,4]]", ContentType="application/json"
    )
    task = h.steps.collect(h.task(providerJobId="p-1", providerStatus="COMPLETED", phase=Phase.DONE))
    assert (task.phase, task.state) == (Phase.COLLECTED, "COMPLETED")
    record = h.record()
    assert (record["imported"], record["providerErrors"], record["unlisted"]) == (4, 0, 2)
    assert record["listings"]["imports"]["endedEarly"] == "repeated"
    unlisted = [json.loads(line) for line in h.objects.lines(RESULTS, record["unlistedKey"])]
    assert [(u["line"], u["position"], u["uid"], u["row"]) for u in unlisted] == [
        (11, 5, "e", {"uid": "e"}),
        (12, 6, "f", {"uid": "f"}),
    ]
    assert "repeated" in unlisted[0]["reason"]


def test_an_upserted_uid_counts_both_rows_imported_and_records_fullstorys_disagreeing_counts():
    """Seed 002: the status says 104 imports, the listing holds 103 records (one uid sent twice)."""
    body = b'{"requests":[{"uid":"a"},{"uid":"b"},{"uid":"a","email":"a@x.io"},{"uid":"c"}]}'
    h = harness(ScriptedImport(results={"imports": [{"uid": "a"}, {"uid": "b"}, {"uid": "c"}], "errors": []}))
    h.objects.put_object(Bucket=RESULTS, Key=layout.batch_key(JOB, 1), Body=body, ContentType="application/json")
    h.records.update_batch(JOB, 1, {"reportedImports": 4, "reportedErrors": 0})
    h.steps.collect(h.task(providerJobId="p-1", providerStatus="COMPLETED", phase=Phase.DONE))
    record = h.record()
    assert (record["imported"], record["listedImports"], record["unlisted"]) == (4, 3, 0)
    assert record["countMismatch"] == {"imports": {"status": 4, "totalRecords": 3, "listed": 3}}


# -- an export started again after a lost answer is found, not started twice ----------------------------
@dataclass
class LostAnswerExport(ScriptedExport):
    """An export provider whose first start raises after starting the export (the answer was lost)."""

    started: list[tuple[str, str]] = field(default_factory=list)  # (created, id) of every export of the org
    lose_first: bool = True

    def start(self, params: dict[str, Any], idempotency_key: str) -> Submitted | Throttled:
        self.calls.append(("start", params, idempotency_key))
        self.started.append(("t", f"op-{len(self.started) + 1}"))
        if self.lose_first:
            self.lose_first = False
            raise ProviderTransientError("FullStory unreachable: ProtocolError")
        return Submitted(self.started[-1][1], "PENDING")

    def find_started(self, params: dict[str, Any], since: str) -> list[str]:
        self.calls.append(("find_started", since))
        return [op for _, op in self.started]


def test_a_start_whose_answer_was_lost_adopts_the_export_it_started_instead_of_starting_another():
    h = harness(LostAnswerExport())
    with pytest.raises(ProviderTransientError):
        h.steps.submit(h.task("fullstory.segment_export"))
    assert h.record()["startAttemptAt"]  # recorded before the request went out
    task = h.steps.submit(h.task("fullstory.segment_export"))
    assert (task.phase, task.providerJobId) == (Phase.POLLING, "op-1")
    assert [call[0] for call in h.provider.calls] == ["start", "find_started"]  # one export started, not two
    assert h.records.claims == {"op-1": JOB}


def test_exports_found_beyond_the_lost_one_are_named_and_one_claimed_by_another_job_is_not_adopted():
    provider = LostAnswerExport(lose_first=False)
    provider.started = [("t", "op-other-job"), ("t", "op-mine"), ("t", "op-someone-else")]
    h = harness(provider)
    h.records.claims["op-other-job"] = "job-2"
    h.records.update_batch(JOB, 1, {"startAttemptAt": "2026-01-01T00:00:00.000Z"})
    task = h.steps.submit(h.task("fullstory.segment_export"))
    assert task.providerJobId == "op-mine"
    assert h.record()["operationCandidates"] == ["op-other-job", "op-mine", "op-someone-else"]
    assert [call[0] for call in provider.calls] == ["find_started"]


def test_a_start_the_provider_throttled_clears_the_attempt_so_the_next_one_searches_nothing():
    class Throttling(ScriptedExport):
        def start(self, params: dict[str, Any], idempotency_key: str) -> Submitted | Throttled:
            self.calls.append(("start", params, idempotency_key))
            return Throttled(5.0)

        def find_started(self, params: dict[str, Any], since: str) -> list[str]:
            raise AssertionError("nothing was started: nothing to look for")

    h = harness(Throttling())
    assert h.steps.submit(h.task("fullstory.segment_export")).phase == Phase.THROTTLED
    assert h.record()["startAttemptAt"] is None
    assert h.steps.submit(h.task("fullstory.segment_export")).phase == Phase.THROTTLED
