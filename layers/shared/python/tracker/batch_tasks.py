"""What happens to one batch inside the state machine: submit -> check (repeat) -> collect results.

Each step takes the task state the Map child carries (a validated `BatchTask`) and answers the next one;
its `phase` tells the ASL's Choice states where to go and `nextPollSeconds` what its Wait states wait.
Every step first reads the batch record, so a retried or restarted step never sends a batch twice.

The steps depend on small interfaces, not on AWS: `BatchRecords` (JobStore in AWS), an S3-like object
store, the provider factory and the in-flight budgets, so a batch's state changes are unit-tested with
in-memory stand-ins (tests/unit/test_batch_tasks.py).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from tracker import layout
from tracker.batching import expand_runs, iter_requests
from tracker.catalogue import is_operation
from tracker.config import Settings
from tracker.errors import ProviderAuthError, ProviderRejectedError, ProviderThrottledError, ProviderTransientError
from tracker.messages import BatchError, BatchTask, Phase, PollClock, StepFailure
from tracker.model import BatchState, now_iso
from tracker.polling import PollFacts, next_wait_seconds, observed_duration, progress_rate, size_class
from tracker.providers.base import BatchProvider, OperationProvider, ResultsNotReady, Submitted, Throttled
from tracker.s3io import ObjectStore, S3StreamWriter, iter_object_lines
from tracker.scheduling import SlotRequest

log = logging.getLogger(__name__)

ProviderFactory = Callable[..., BatchProvider | OperationProvider]


class BatchRecords(Protocol):
    """The job and batch records a step reads and writes (tracker.store.JobStore in AWS)."""

    def get_job(self, job_id: str) -> dict[str, Any] | None: ...

    def get_batch(self, job_id: str, index: int) -> dict[str, Any] | None: ...

    def update_batch(
        self, job_id: str, index: int, fields: dict[str, Any], *, append: dict[str, list[Any]] | None = None
    ) -> bool: ...

    def advance_key(self, job_id: str, index: int, generation: int, burnt: str, key: str) -> bool: ...

    def claim_operation(self, operation_id: str, job_id: str) -> bool: ...

    def duration_history(self, job_type: str, size_class: str) -> tuple[float, ...]: ...

    def record_duration(self, job_type: str, size_class: str, seconds: float, *, sample_id: str) -> None: ...


class Slots(Protocol):
    """One provider's in-flight budget (tracker.scheduling.SlotScheduler; its records in DynamoDB in AWS,
    in memory in the bench's simulation)."""

    def request(self, lease_id: str, job: str, rows: int = 0) -> SlotRequest: ...

    def acquire(self, request: SlotRequest) -> bool: ...

    def wait(self, request: SlotRequest, token: str) -> None: ...

    def renew(self, request: SlotRequest) -> bool: ...

    def release(self, lease_id: str) -> None: ...


class SlotBudgets(Protocol):
    """Every provider's in-flight budget by task type (tracker.budget.Budgets in AWS)."""

    def for_type(self, task_type: str) -> Slots | None: ...


def idempotency_key(job_id: str, index: int, generation: int = 0) -> str:
    """Deterministic per batch and key generation: a resend after a lost answer is replayed by FullStory, not
    imported twice. Generation n > 0 is the batch's key after n failures FullStory stored under the earlier
    keys (tracker.providers.fullstory.batch); generation 0 is also the batch's lease in the in-flight budget."""
    key = f"{job_id}-b{index:05d}"
    return key if generation == 0 else f"{key}-k{generation}"


# FullStory has finished a batch in these states: a batch that repeats one of its uids may go.
PROVIDER_FINISHED = frozenset({BatchState.COLLECTING, BatchState.COMPLETED, BatchState.PARTIAL, BatchState.FAILED})
RESULT_KINDS = ("imports", "errors")


# The step each Task state of statemachine/job.asl.json runs: (its function's placeholder, its Payload's
# `action`) -> the BatchTasks method (tests/contract/test_asl_phases.py; the bench's simulation runs them).
TASK_STEPS: dict[tuple[str, str | None], str] = {
    ("SubmitFunctionArn", None): "submit",
    ("SubmitFunctionArn", "wait_for_slot"): "wait_for_slot",
    ("StatusFunctionArn", None): "check",
    ("CollectFunctionArn", "collect"): "collect",
    ("CollectFunctionArn", "batch_failed"): "record_failure",
}

Step = Callable[["BatchTasks", BatchTask], BatchTask]
# The phases each step may answer, declared beside the step (@_answers); the Choice state after the step's
# Task in statemachine/job.asl.json must route every one of them (tests/contract/test_asl_phases.py).
STEP_PHASES: dict[str, frozenset[Phase]] = {}


class UndeclaredPhaseError(RuntimeError):
    """A step answered a phase it does not declare: the ASL may not route it, so the batch fails loudly."""


def _answers(*phases: Phase) -> Callable[[Step], Step]:
    def declare(step: Step) -> Step:
        allowed = STEP_PHASES[step.__name__] = frozenset(phases)

        @functools.wraps(step)
        def checked(self: BatchTasks, task: BatchTask) -> BatchTask:
            answer = step(self, task)
            if answer.phase not in allowed:
                phase = answer.phase.value if answer.phase else None
                raise UndeclaredPhaseError(
                    f"[undeclared_phase] {step.__name__} answered phase {phase!r}, not one of "
                    + ", ".join(sorted(allowed))
                )
            return answer

        return checked

    return declare


class BatchTasks:
    def __init__(
        self,
        settings: Settings,
        store: BatchRecords,
        s3: ObjectStore,
        provider_factory: ProviderFactory,
        budgets: SlotBudgets | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._store = store
        self._s3 = s3
        self._provider_factory = provider_factory
        self._budgets = budgets
        self._clock = clock

    def _budget(self, task: BatchTask) -> Slots | None:
        """The in-flight budget of the task's provider (FullStory batches, FullStory exports, Keboola)."""
        return self._budgets.for_type(task.type) if self._budgets is not None else None

    def _release(self, task: BatchTask) -> None:
        """Give the task's slot of its provider's in-flight budget back (the provider is done with it); the
        budget hands it on to the next batch waiting for one and wakes it."""
        if (budget := self._budget(task)) is not None:
            budget.release(_lease_id(task))

    def _slot_request(self, budget: Slots, task: BatchTask) -> SlotRequest:
        """The task's claim on its budget: one slot, weighted by its rows (FullStory counts rows in flight)."""
        return budget.request(_lease_id(task), task.jobId, task.batch.rows)

    def _renew(self, task: BatchTask) -> None:
        """Every poll, answered or throttled, renews the lease: the provider job still runs either way."""
        if (budget := self._budget(task)) is not None and not budget.renew(self._slot_request(budget, task)):
            log.warning("batch %s of job %s runs at the provider without a budget slot", task.batch.index, task.jobId)

    def _is_operation(self, task: BatchTask) -> bool:
        """An operation (export) produces one file; the other types are batch imports paged as rows."""
        return is_operation(task.type)

    def _provider(self, task: BatchTask) -> Any:
        """The task type's provider; an operation's provider may depend on the job's params (a Keboola
        stack), so it is built from them."""
        if self._is_operation(task):
            params = (self._store.get_job(task.jobId) or {}).get("operationParams") or {}
            return self._provider_factory(task.type, self._settings, params)
        return self._provider_factory(task.type, self._settings)

    def _wait(
        self, task: BatchTask, attempt: int, retry_after: float | None = None, *, clock: PollClock | None = None
    ) -> int:
        """The next wait (tracker.polling). `clock` is the running provider job's polling state (check);
        attempt 0 without Retry-After is the wait right after a submit, when the job's clock starts.
        Other waits (throttled submit, results not ready) back off exponentially."""
        now = self._clock()
        elapsed = None
        if clock is not None:
            elapsed = max(0.0, now - clock.since)
        elif attempt == 0 and retry_after is None:
            elapsed = 0.0
        return next_wait_seconds(
            PollFacts(
                attempt=attempt,
                seconds_to_deadline=task.deadline - now,
                retry_after=retry_after,
                elapsed_seconds=elapsed,
                progress_pct=clock.pct if clock else None,
                progress_rate=clock.rate if clock else None,
                history=self._durations(task) if elapsed is not None else (),
            ),
            min_seconds=self._settings.poll_min_seconds,
            max_seconds=self._settings.poll_max_seconds,
            # Only a running provider job holds a budget lease while it waits (a throttled submit gave its
            # slot back; results are paged after the release): elsewhere a Retry-After is waited in full.
            holds_lease=clock is not None,
        )

    def _durations(self, task: BatchTask) -> tuple[float, ...]:
        """Durations of earlier provider jobs of this type and size class; none when they cannot be read
        (polling then simply does without the prediction)."""
        try:
            return self._store.duration_history(task.type, size_class(task.batch.rows))
        except Exception:
            log.warning("could not read provider job durations", exc_info=True)
            return ()

    def _record_duration(self, task: BatchTask, clock: PollClock, now: float) -> None:
        since = clock.since
        last = clock.last if clock.last is not None else since
        seconds = observed_duration(last - since, now - since)
        try:
            self._store.record_duration(
                task.type, size_class(task.batch.rows), seconds, sample_id=_lease_id(task)
            )
        except Exception:  # an input of the polling policy, never a reason to fail the batch
            log.warning("could not record the provider job duration", exc_info=True)

    def _past_deadline(self, task: BatchTask) -> BatchTask | None:
        if self._clock() < task.deadline:
            return None
        return self.fail(
            task, "deadline_exceeded", "the provider job did not finish before the job's deadline (MaxJobHours)"
        )

    def _retry_later(self, task: BatchTask, phase: Phase, retry_after: float | None = None) -> BatchTask:
        """Not now (throttled, results not ready): the same step again after an exponential backoff."""
        attempt = task.attempt + 1
        return task.answer(phase, attempt=attempt, nextPollSeconds=self._wait(task, attempt, retry_after))

    def _polling(self, task: BatchTask, provider_job_id: str) -> BatchTask:
        """The provider accepted the job: first check after the wait that starts its clock."""
        return task.answer(Phase.POLLING, providerJobId=provider_job_id, attempt=0, nextPollSeconds=self._wait(task, 0))

    # -- steps -------------------------------------------------------------------------------
    @_answers(Phase.QUEUED, Phase.THROTTLED, Phase.POLLING, Phase.FAILED)
    def submit(self, task: BatchTask) -> BatchTask:
        job_id, index = task.jobId, task.batch.index
        record = self._store.get_batch(job_id, index) or {}
        if record.get("providerJobId"):
            # Accepted on an earlier attempt whose answer was lost: go straight to polling.
            return self._polling(task, record["providerJobId"])
        if (failed := self._past_deadline(task)) is not None:
            return failed
        if (waiting := self._after_earlier_batch(task, record)) is not None:
            return waiting
        budget = self._budget(task)
        if budget is not None and not budget.acquire(self._slot_request(budget, task)):
            # The org budget is full: the batch is queued in fair order and sleeps until a release wakes it.
            self._store.update_batch(job_id, index, {"budgetWaits": task.attempt + 1})
            return task.answer(Phase.QUEUED, attempt=task.attempt + 1, nextPollSeconds=0)
        if self._is_operation(task):
            key = _lease_id(task)
            outcome = self._start_operation(task, record, key)
        else:
            key = self._batch_key(task, record)
            body = self._s3.get_object(Bucket=self._settings.results_bucket, Key=task.batch.key)["Body"].read()
            outcome = self._send_batch(task, record, body, key)
        if isinstance(outcome, Throttled):
            self._release(task)
            self._store.update_batch(job_id, index, {"throttled": task.attempt + 1})
            return self._retry_later(task, Phase.THROTTLED, outcome.retry_after)
        self._store.update_batch(
            job_id,
            index,
            {
                "providerJobId": outcome.provider_job_id,
                "providerStatus": outcome.provider_status,
                "batchState": BatchState.RUNNING.value,
                "submittedAt": now_iso(),
                "polls": 0,
                "idempotencyKey": key,
            },
        )
        return self._polling(task, outcome.provider_job_id)

    # -- submit: keys, order, operations -----------------------------------------------------------
    @staticmethod
    def _batch_key(task: BatchTask, record: dict[str, Any]) -> str:
        """The Idempotency-Key this attempt sends: the batch's current key generation, as recorded on its item."""
        return idempotency_key(task.jobId, task.batch.index, int(record.get("keyGeneration", 0)))

    def _send_batch(self, task: BatchTask, record: dict[str, Any], body: bytes, key: str) -> Submitted | Throttled:
        """POST the batch under `key`. A failure FullStory stored under the key (its own 500) would be replayed
        to every resend for a day, so the batch moves to the next key generation -- recorded on the batch item
        before anything carries it -- and the error goes on to the state machine, whose retry sends the new
        key. Every other failure keeps the key: the first answer may have been a success only a resend under
        the same key can recover, never a second import (tracker.providers.fullstory.batch)."""
        generation = int(record.get("keyGeneration", 0))
        try:
            return self._provider(task).submit(body, key)
        except ProviderTransientError as exc:
            if exc.burns_key:
                following = idempotency_key(task.jobId, task.batch.index, generation + 1)
                moved = self._store.advance_key(task.jobId, task.batch.index, generation, key, following)
                log.warning(
                    "FullStory stored a failure under Idempotency-Key %s; batch %s moves to %s%s",
                    key,
                    task.batch.index,
                    following,
                    "" if moved else " (already moved by an earlier attempt)",
                )
            raise

    def _after_earlier_batch(self, task: BatchTask, record: dict[str, Any]) -> BatchTask | None:
        """A batch that repeats a uid of an earlier batch of its job (intake records that batch as `after`)
        waits until FullStory has finished the earlier one, so the later row is applied last: duplicate uids
        in one file resolve to the last row, whatever the Map's concurrency (tracker.intake)."""
        after = record.get("after")
        if not after:
            return None
        earlier = self._store.get_batch(task.jobId, int(after))
        if earlier is None or BatchState(earlier["batchState"]) in PROVIDER_FINISHED:
            return None
        self._store.update_batch(task.jobId, task.batch.index, {"orderWaits": task.attempt + 1})
        return self._retry_later(task, Phase.THROTTLED)

    def _start_operation(self, task: BatchTask, record: dict[str, Any], key: str) -> Submitted | Throttled:
        """Start the operation (an export). FullStory's Create Export documents no Idempotency-Key: an attempt
        whose answer was lost (reset, timeout, 5xx, a crash) may have started an export all the same. So the
        time of the attempt is recorded before it is sent, and while it stands (it is cleared once the
        provider clearly started nothing) the next attempt first asks the provider for exports started since
        then and adopts the earliest one no other job has claimed, naming every one it found on the batch
        (`operationCandidates`, in the manifest), instead of starting another."""
        job_id, index = task.jobId, task.batch.index
        params = (self._store.get_job(job_id) or {}).get("operationParams") or {}
        provider = self._provider(task)
        find_started = getattr(provider, "find_started", None)
        if find_started is not None:
            since = record.get("startAttemptAt")
            if since:
                found = list(find_started(params, since))
                if found:
                    self._store.update_batch(job_id, index, {"operationCandidates": found})
                    adopted = next((op for op in found if self._store.claim_operation(op, job_id)), None)
                    if adopted is not None:
                        if len(found) > 1:
                            log.warning("job %s: %d exports started since %s: %s", job_id, len(found), since, found)
                        return Submitted(adopted, "PENDING")
            self._store.update_batch(job_id, index, {"startAttemptAt": now_iso()})
        try:
            outcome = provider.start(params, key)
        except (ProviderAuthError, ProviderRejectedError):
            if find_started is not None:
                self._store.update_batch(job_id, index, {"startAttemptAt": None})  # refused: nothing started
            raise
        if find_started is not None:
            if isinstance(outcome, Throttled):
                self._store.update_batch(job_id, index, {"startAttemptAt": None})  # refused: nothing started
            else:
                self._store.claim_operation(outcome.provider_job_id, job_id)
        return outcome

    def wait_for_slot(self, task: BatchTask, token: str) -> None:
        """The ASL's WaitForSlot task (`.waitForTaskToken`): the batch sleeps until its budget grants it a
        slot and wakes it with `token` (at once when the slot came free meanwhile); then it submits."""
        if (budget := self._budget(task)) is None:
            raise ValueError(f"batch {task.batch.index} of job {task.jobId} waits for a slot of no budget")
        budget.wait(self._slot_request(budget, task), token)

    @_answers(Phase.POLLING, Phase.DONE, Phase.FAILED)
    def check(self, task: BatchTask) -> BatchTask:
        job_id, index = task.jobId, task.batch.index
        if (failed := self._past_deadline(task)) is not None:
            return failed
        if task.providerJobId is None:
            raise ValueError(f"batch {index} of job {job_id} is checked before the provider accepted it")
        provider = self._provider(task)
        # A provider that could not place the last answers' state (a spec's unknown states) counts them.
        streak = task.poll.unknown if task.poll is not None and task.poll.unknown else 0
        if streak:
            outcome = provider.status(task.providerJobId, unknown_streak=streak)
        else:
            outcome = provider.status(task.providerJobId)
        attempt = task.attempt + 1
        now = self._clock()
        # The polling state the task carries: when the provider accepted the job (on the first check,
        # when the wait before it began), when it was last seen running, its progress if reported.
        clock = task.poll or PollClock(since=round(now - task.nextPollSeconds, 3))
        if isinstance(outcome, Throttled):
            self._renew(task)
            return task.answer(
                Phase.POLLING,
                attempt=attempt,
                poll=clock,
                nextPollSeconds=self._wait(task, attempt, outcome.retry_after, clock=clock),
            )
        polled_at = now_iso()
        fields: dict[str, Any] = {
            "polls": attempt,
            "providerStatus": outcome.provider_status,
            "lastPolledAt": polled_at,
        }
        # The poll timeline for the job report: about 25 bytes a poll, far below DynamoDB's item limit
        # even for the most polls a 24-hour job may take.
        timeline = {"pollTimes": [polled_at]}
        pct = getattr(outcome, "progress_pct", None)  # providers that report progress (operations)
        if pct is not None:
            fields["progressPct"] = pct
        if not outcome.finished:
            self._store.update_batch(job_id, index, fields, append=timeline)
            self._renew(task)
            unknown = getattr(outcome, "unknown_streak", 0) or None  # operations only (OperationStatus)
            clock = clock.model_copy(update={"last": round(now, 3), "unknown": unknown})
            if pct is not None:
                elapsed = now - clock.since
                previous = (clock.pctAt, clock.pct) if clock.pct is not None and clock.pctAt is not None else None
                clock = clock.model_copy(
                    update={"rate": progress_rate(previous, (elapsed, pct)), "pct": pct, "pctAt": round(elapsed, 3)}
                )
            return task.answer(
                Phase.POLLING, attempt=attempt, poll=clock, nextPollSeconds=self._wait(task, attempt, clock=clock)
            )
        if getattr(outcome, "state", None) == "FAILED":
            # An operation that failed at the provider has no results to collect: its error is the job's.
            self._store.update_batch(job_id, index, fields, append=timeline)
            self._record_duration(task, clock, now)
            error = outcome.error or {"code": "provider_failed", "message": f"{task.type} ended FAILED"}
            return self.fail(
                task,
                str(error.get("code") or "provider_failed"),
                str(error.get("message") or ""),
                exception_id=error.get("exceptionId"),
            )
        fields.update(
            batchState=BatchState.COLLECTING.value,
            reportedImports=getattr(outcome, "imports", 0),
            reportedErrors=getattr(outcome, "errors", 0),
            finishedAt=polled_at,
        )
        self._store.update_batch(job_id, index, fields, append=timeline)
        self._release(task)
        self._record_duration(task, clock, now)
        return task.answer(Phase.DONE, providerStatus=outcome.provider_status, attempt=0, nextPollSeconds=0)

    @_answers(Phase.RESULTS_PENDING, Phase.RESULTS_THROTTLED, Phase.COLLECTED, Phase.FAILED)
    def collect(self, task: BatchTask) -> BatchTask:
        """Page /imports and /errors into per-batch NDJSON parts, then reconcile them with the rows sent;
        finalize stitches the parts per job. An operation's result is its file, streamed into the job's
        results prefix.

        Paging resumes: the batch item keeps, per listing, the part objects written, the page token to go on
        from and the tokens already asked for (`listings`). A 429 closes the part written so far and answers
        `results_throttled` with a wait of at least its Retry-After; the next call pages on from the stored
        token into a new part, so nothing is listed twice and nothing is paged twice."""
        job_id, index = task.jobId, task.batch.index
        if task.providerJobId is None:
            raise ValueError(f"batch {index} of job {job_id} is collected before the provider accepted it")
        provider = self._provider(task)
        if self._is_operation(task):
            return self._collect_file(task, provider, task.providerJobId)
        record = self._store.get_batch(job_id, index) or {}
        listings = {kind: Listing.of(record, kind) for kind in RESULT_KINDS}
        for kind, listing in listings.items():
            if listing.done:
                continue
            try:
                self._page_into_part(task, provider, kind, listing)
            except ResultsNotReady:
                return self._past_deadline(task) or self._retry_later(task, Phase.RESULTS_PENDING)
            except ProviderThrottledError as exc:
                if listing.moved:
                    self._store.update_batch(job_id, index, {"listings": _listings_record(listings)})
                return self._past_deadline(task) or self._retry_later(task, Phase.RESULTS_THROTTLED, exc.retry_after)
            self._store.update_batch(job_id, index, {"listings": _listings_record(listings)})
        return self._reconcile(task, provider, record, listings)

    def _page_into_part(self, task: BatchTask, provider: Any, kind: str, listing: Listing) -> None:
        """Page one listing on from where it stopped into its next part object. The part is kept (and the
        listing moved on) when the listing ends or is throttled; on any other failure it is dropped and the
        listing stays where it was, so the retry pages that stretch again into the same part."""
        key = layout.batch_result_part_key(task.jobId, kind, task.batch.index, len(listing.parts) + 1)
        writer = S3StreamWriter(self._settings.results_bucket, key, s3=self._s3)
        token, asked, ended_early, total = listing.token, list(listing.tokens), None, listing.total
        try:
            for page in provider.ndjson_pages(task.providerJobId, kind, after=listing.token, seen=listing.tokens):
                writer.write_lines(page.lines, page.count)
                token = page.resume_token
                if token is not None:
                    asked.append(token)
                ended_early = page.ended_early or ended_early
                total = page.total if page.total is not None else total
        except ProviderThrottledError:
            if writer.lines:
                writer.close()
                listing.move_on(key, writer.lines, token, asked, total)
            else:
                writer.abort()
            raise
        except BaseException:
            writer.abort()
            raise
        writer.close()
        listing.move_on(key, writer.lines, None, asked, total, done=True, ended_early=ended_early)

    def _reconcile(
        self, task: BatchTask, provider: Any, record: dict[str, Any], listings: dict[str, Listing]
    ) -> BatchTask:
        """Match the rows sent with what the listings name (the provider's `reconcile`): rows listed neither
        as imported nor as an error are written to the batch's `unlisted` part with their source line, and
        the counts FullStory reported are checked against the records it listed. A batch without a body of
        its own (a job someone else submitted) counts the listings as they are."""
        job_id, index = task.jobId, task.batch.index
        bucket = self._settings.results_bucket
        imports, errors = listings["imports"], listings["errors"]
        fields: dict[str, Any] = {
            "listedImports": imports.records,
            "listedErrors": errors.records,
            "importsKeys": imports.parts,
            "errorsKeys": errors.parts,
            "unlisted": 0,
            "imported": imports.records,
            "providerErrors": errors.records,
        }
        reconcile = getattr(provider, "reconcile", None)
        if reconcile is not None and task.batch.key:
            body = self._s3.get_object(Bucket=bucket, Key=task.batch.key)["Body"].read()
            result = reconcile(iter_requests(body), self._listed(imports.parts), self._listed(errors.parts))
            fields.update(
                imported=result.imported, providerErrors=result.provider_errors, unlisted=len(result.unlisted)
            )
            if result.unmatched_imports or result.unmatched_errors:
                fields["unmatchedRecords"] = {"imports": result.unmatched_imports, "errors": result.unmatched_errors}
            if result.unlisted:
                fields["unlistedKey"] = self._write_unlisted(task, body, result.unlisted, listings)
        mismatch = _count_mismatch(record, imports, errors)
        if mismatch:
            fields["countMismatch"] = mismatch
        state = BatchState.COMPLETED if task.providerStatus == "COMPLETED" else BatchState.PARTIAL
        fields.update(batchState=state.value, collectedAt=now_iso())
        self._store.update_batch(job_id, index, fields)
        return task.answer(Phase.COLLECTED, state=state.value)

    def _listed(self, parts: list[str]) -> Iterator[dict[str, Any]]:
        for part in parts:
            for line in iter_object_lines(self._settings.results_bucket, part, s3=self._s3):
                yield json.loads(line)

    def _write_unlisted(
        self, task: BatchTask, body: bytes, positions: list[int], listings: dict[str, Listing]
    ) -> str:
        """unlisted-<batch>: one line per row FullStory listed neither as imported nor as an error, with its
        source line (intake's line runs), its position in the batch and the request itself."""
        bucket = self._settings.results_bucket
        try:
            runs = json.loads(
                self._s3.get_object(Bucket=bucket, Key=layout.batch_lines_key(task.jobId, task.batch.index))[
                    "Body"
                ].read()
            )
            lines: list[int | None] = list(expand_runs(runs))
        except Exception:  # a batch written before line runs existed: positions still name the rows
            lines = []
        why = "; ".join(
            f"{kind} listing: {listing.ended_early}" for kind, listing in listings.items() if listing.ended_early
        )
        reason = "FullStory listed this row neither as imported nor as an error" + (f" ({why})" if why else "")
        wanted = set(positions)
        key = layout.batch_result_part_key(task.jobId, "unlisted", task.batch.index, 1)
        with S3StreamWriter(bucket, key, s3=self._s3) as writer:
            for position, request in enumerate(iter_requests(body)):
                if position in wanted:
                    entry: dict[str, Any] = {
                        "line": lines[position] if position < len(lines) else None,
                        "batch": task.batch.index,
                        "position": position + 1,
                    }
                    if isinstance(request, dict) and isinstance(request.get("uid"), str):
                        entry["uid"] = request["uid"]
                    entry.update(code="unlisted", reason=reason, row=request)
                    writer.write_record(entry)
        return key

    def _collect_file(self, task: BatchTask, provider: Any, provider_job_id: str) -> BatchTask:
        job_id, index = task.jobId, task.batch.index
        try:
            result = provider.result(provider_job_id)
        except ResultsNotReady:
            return self._past_deadline(task) or self._retry_later(task, Phase.RESULTS_PENDING)
        key = layout.result_key(job_id, result.name)
        # Streamed: parts of 8 MiB go up while the file comes down. The object appears only when the
        # upload completes; a download that fails mid-way aborts it, so nothing half-written is left.
        writer = S3StreamWriter(self._settings.results_bucket, key, content_type=result.content_type, s3=self._s3)
        try:
            for chunk in result.chunks():
                writer.write(chunk)
        except BaseException:
            _abort_quietly(writer)
            raise
        writer.close()
        self._store.update_batch(
            job_id,
            index,
            {
                "batchState": BatchState.COMPLETED.value,
                "resultKey": key,
                "outBytes": writer.bytes_written,
                "collectedAt": now_iso(),
            },
        )
        return task.answer(Phase.COLLECTED, state=BatchState.COMPLETED.value)

    @_answers(Phase.FAILED)
    def record_failure(self, task: BatchTask) -> BatchTask:
        """The ASL caught an error for this batch; keep it as the batch's error{code,message}."""
        failure = task.failure or StepFailure()
        code, message = failure.code_and_message()
        return self.fail(task, code, message)

    def fail(self, task: BatchTask, code: str, message: str, *, exception_id: str | None = None) -> BatchTask:
        error = BatchError(code=code, message=message, exceptionId=exception_id or None)
        self._store.update_batch(
            task.jobId,
            task.batch.index,
            {
                "batchState": BatchState.FAILED.value,
                "error": error.model_dump(exclude_none=True),
                "finishedAt": now_iso(),
            },
        )
        self._release(task)
        return task.answer(Phase.FAILED, error=error)


def _abort_quietly(writer: S3StreamWriter) -> None:
    """Abort a failed upload without hiding why it failed: an abort that fails itself (e.g. refused) is
    logged, and the bucket's lifecycle rule (AbortIncompleteUploads) removes the parts later."""
    try:
        writer.abort()
    except Exception:
        log.warning("could not abort the multipart upload of %s", writer.key, exc_info=True)


def _lease_id(task: BatchTask) -> str:
    """The batch's Idempotency-Key at the provider is also its lease in the in-flight budget."""
    return idempotency_key(task.jobId, task.batch.index)


class Listing:
    """How far one result listing (imports or errors) of a batch has been paged, as kept on the batch item."""

    def __init__(self, stored: dict[str, Any] | None) -> None:
        stored = stored or {}
        self.parts: list[str] = list(stored.get("parts") or [])
        self.records = int(stored.get("records", 0))
        self.token: str | None = stored.get("token")
        self.tokens: list[str] = list(stored.get("tokens") or [])
        self.done = bool(stored.get("done"))
        self.ended_early: str | None = stored.get("endedEarly")
        self.total: int | None = stored.get("total")
        self.moved = False  # paged on in this call (what the batch item holds is behind)

    @classmethod
    def of(cls, record: dict[str, Any], kind: str) -> Listing:
        return cls((record.get("listings") or {}).get(kind))

    def move_on(
        self,
        part: str,
        records: int,
        token: str | None,
        tokens: list[str],
        total: int | None,
        *,
        done: bool = False,
        ended_early: str | None = None,
    ) -> None:
        self.parts.append(part)
        self.records += records
        self.token, self.tokens, self.total, self.done = token, tokens, total, done
        self.ended_early = ended_early
        self.moved = True

    def as_record(self) -> dict[str, Any]:
        return {
            "parts": self.parts,
            "records": self.records,
            "token": self.token,
            "tokens": self.tokens,
            "done": self.done,
            "endedEarly": self.ended_early,
            "total": self.total,
        }


def _listings_record(listings: dict[str, Listing]) -> dict[str, Any]:
    return {kind: listing.as_record() for kind, listing in listings.items()}


def _count_mismatch(record: dict[str, Any], imports: Listing, errors: Listing) -> dict[str, Any] | None:
    """Where FullStory's own counts disagree: the status's imports/errors, the listings' total_records and the
    records listed. An upsert of one uid sent twice is one such case (seed 002: 104 imports, 103 records)."""
    mismatch: dict[str, Any] = {}
    for kind, reported, listing in (
        ("imports", record.get("reportedImports"), imports),
        ("errors", record.get("reportedErrors"), errors),
    ):
        counts = {"status": reported, "totalRecords": listing.total, "listed": listing.records}
        known = {value for value in counts.values() if value is not None}
        if len(known) > 1:
            mismatch[kind] = counts
    return mismatch or None
