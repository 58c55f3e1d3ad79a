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
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from tracker import layout
from tracker.catalogue import is_operation
from tracker.config import Settings
from tracker.messages import BatchError, BatchTask, Phase, PollClock, StepFailure
from tracker.model import BatchState, now_iso
from tracker.polling import PollFacts, next_wait_seconds, observed_duration, progress_rate, size_class
from tracker.providers.base import BatchProvider, OperationProvider, ResultsNotReady, Throttled
from tracker.s3io import ObjectStore, S3StreamWriter

log = logging.getLogger(__name__)

ProviderFactory = Callable[..., BatchProvider | OperationProvider]


class BatchRecords(Protocol):
    """The job and batch records a step reads and writes (tracker.store.JobStore in AWS)."""

    def get_job(self, job_id: str) -> dict[str, Any] | None: ...

    def get_batch(self, job_id: str, index: int) -> dict[str, Any] | None: ...

    def update_batch(
        self, job_id: str, index: int, fields: dict[str, Any], *, append: dict[str, list[Any]] | None = None
    ) -> bool: ...

    def duration_history(self, job_type: str, size_class: str) -> tuple[float, ...]: ...

    def record_duration(self, job_type: str, size_class: str, seconds: float, *, sample_id: str) -> None: ...


class Slots(Protocol):
    """One provider's in-flight budget (tracker.budget.InFlightBudget in AWS)."""

    def acquire(self, lease_id: str) -> bool: ...

    def renew(self, lease_id: str) -> None: ...

    def release(self, lease_id: str) -> None: ...


class SlotBudgets(Protocol):
    """Every provider's in-flight budget by task type (tracker.budget.Budgets in AWS)."""

    def for_type(self, task_type: str) -> Slots | None: ...


def idempotency_key(job_id: str, index: int) -> str:
    """Deterministic per batch: a resend after a lost answer is replayed by FullStory, not imported twice."""
    return f"{job_id}-b{index:05d}"


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
        """Give the task's slot of its provider's in-flight budget back (the provider is done with it)."""
        if (budget := self._budget(task)) is not None:
            budget.release(_lease_id(task))

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
    @_answers(Phase.THROTTLED, Phase.POLLING, Phase.FAILED)
    def submit(self, task: BatchTask) -> BatchTask:
        job_id, index = task.jobId, task.batch.index
        record = self._store.get_batch(job_id, index) or {}
        if record.get("providerJobId"):
            # Accepted on an earlier attempt whose answer was lost: go straight to polling.
            return self._polling(task, record["providerJobId"])
        if (failed := self._past_deadline(task)) is not None:
            return failed
        budget = self._budget(task)
        if budget is not None and not budget.acquire(_lease_id(task)):
            # The org already has as many batches in flight as the budget allows: wait like a 429.
            self._store.update_batch(job_id, index, {"budgetWaits": task.attempt + 1})
            return self._retry_later(task, Phase.THROTTLED)
        if self._is_operation(task):
            job = self._store.get_job(job_id) or {}
            outcome = self._provider(task).start(job.get("operationParams") or {}, _lease_id(task))
        else:
            body = self._s3.get_object(Bucket=self._settings.results_bucket, Key=task.batch.key)["Body"].read()
            outcome = self._provider(task).submit(body, _lease_id(task))
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
            },
        )
        return self._polling(task, outcome.provider_job_id)

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
            if (budget := self._budget(task)) is not None:
                budget.renew(_lease_id(task))
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

    @_answers(Phase.RESULTS_PENDING, Phase.COLLECTED, Phase.FAILED)
    def collect(self, task: BatchTask) -> BatchTask:
        """Page /imports and /errors into per-batch NDJSON parts; finalize stitches them per job.
        An operation's result is its file, streamed into the job's results prefix."""
        job_id, index = task.jobId, task.batch.index
        if task.providerJobId is None:
            raise ValueError(f"batch {index} of job {job_id} is collected before the provider accepted it")
        provider = self._provider(task)
        if self._is_operation(task):
            return self._collect_file(task, provider, task.providerJobId)
        counts: dict[str, int] = {}
        keys: dict[str, str] = {}
        for kind in ("imports", "errors"):
            key = layout.batch_result_key(job_id, kind, index)
            writer = S3StreamWriter(self._settings.results_bucket, key, s3=self._s3)
            try:
                for page in provider.pages(task.providerJobId, kind):
                    writer.write_records(page)
            except ResultsNotReady:
                writer.abort()
                return self._past_deadline(task) or self._retry_later(task, Phase.RESULTS_PENDING)
            except BaseException:
                writer.abort()
                raise
            writer.close()
            counts[kind], keys[kind] = writer.lines, key
        state = BatchState.COMPLETED if task.providerStatus == "COMPLETED" else BatchState.PARTIAL
        self._store.update_batch(
            job_id,
            index,
            {
                "batchState": state.value,
                "imported": counts["imports"],
                "providerErrors": counts["errors"],
                "importsKey": keys["imports"],
                "errorsKey": keys["errors"],
                "collectedAt": now_iso(),
            },
        )
        return task.answer(Phase.COLLECTED, state=state.value)

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
