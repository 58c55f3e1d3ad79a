"""What happens to one batch inside the state machine: submit -> check (repeat) -> collect results.

Each function takes the task state the Map child carries and returns the next one; `phase` tells
the ASL's Choice states where to go and `nextPollSeconds` what its Wait states wait. Every step first
reads the batch record, so a retried or restarted step never sends a batch twice.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from tracker import layout
from tracker.budget import Budgets, InFlightBudget
from tracker.catalogue import is_operation
from tracker.config import Settings
from tracker.model import BatchState, now_iso
from tracker.polling import PollFacts, next_wait_seconds, observed_duration, progress_rate, size_class
from tracker.providers.base import ResultsNotReady, Throttled
from tracker.s3io import S3StreamWriter
from tracker.store import JobStore

Task = dict[str, Any]
log = logging.getLogger(__name__)


def idempotency_key(job_id: str, index: int) -> str:
    """Deterministic per batch: a resend after a lost answer is replayed by FullStory, not imported twice."""
    return f"{job_id}-b{index:05d}"


class BatchTasks:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        s3: Any,
        provider_factory: Any,
        budgets: Budgets | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._s3 = s3
        self._provider_factory = provider_factory
        self._budgets = budgets

    def _budget(self, task: Task) -> InFlightBudget | None:
        """The in-flight budget of the task's provider (FullStory batches, FullStory exports, Keboola)."""
        return self._budgets.for_type(task["type"]) if self._budgets is not None else None

    def _release(self, task: Task) -> None:
        """Give the task's slot of its provider's in-flight budget back (the provider is done with it)."""
        if (budget := self._budget(task)) is not None:
            budget.release(idempotency_key(task["jobId"], int(task["batch"]["index"])))

    def _provider(self, task: Task) -> Any:
        """The task type's provider; an operation's provider may depend on the job's params (a Keboola
        stack), so it is built from them."""
        if is_operation(task["type"]):
            params = (self._store.get_job(task["jobId"]) or {}).get("operationParams") or {}
            return self._provider_factory(task["type"], self._settings, params)
        return self._provider_factory(task["type"], self._settings)

    def _wait(
        self, task: Task, attempt: int, retry_after: float | None = None, *, clock: dict[str, Any] | None = None
    ) -> int:
        """The next wait (tracker.polling). `clock` is the running provider job's polling state (check);
        attempt 0 without Retry-After is the wait right after a submit, when the job's clock starts.
        Other waits (throttled submit, results not ready) back off exponentially."""
        now = time.time()
        elapsed = None
        if clock is not None:
            elapsed = max(0.0, now - clock["since"])
        elif attempt == 0 and retry_after is None:
            elapsed = 0.0
        return next_wait_seconds(
            PollFacts(
                attempt=attempt,
                seconds_to_deadline=task["deadline"] - now,
                retry_after=retry_after,
                elapsed_seconds=elapsed,
                progress_pct=(clock or {}).get("pct"),
                progress_rate=(clock or {}).get("rate"),
                history=self._durations(task) if elapsed is not None else (),
            ),
            min_seconds=self._settings.poll_min_seconds,
            max_seconds=self._settings.poll_max_seconds,
        )

    def _durations(self, task: Task) -> tuple[float, ...]:
        """Durations of earlier provider jobs of this type and size class; none when they cannot be read
        (polling then simply does without the prediction)."""
        try:
            return self._store.duration_history(task["type"], size_class(int(task["batch"]["rows"])))
        except Exception:
            log.warning("could not read provider job durations", exc_info=True)
            return ()

    def _record_duration(self, task: Task, clock: dict[str, Any], now: float) -> None:
        since = clock["since"]
        seconds = observed_duration(clock.get("last", since) - since, now - since)
        try:
            self._store.record_duration(
                task["type"],
                size_class(int(task["batch"]["rows"])),
                seconds,
                sample_id=idempotency_key(task["jobId"], int(task["batch"]["index"])),
            )
        except Exception:  # an input of the polling policy, never a reason to fail the batch
            log.warning("could not record the provider job duration", exc_info=True)

    def _past_deadline(self, task: Task) -> Task | None:
        if time.time() < task["deadline"]:
            return None
        return self.fail(
            task, "deadline_exceeded", "the provider job did not finish before the job's deadline (MaxJobHours)"
        )

    # -- steps -------------------------------------------------------------------------------
    def submit(self, task: Task) -> Task:
        job_id, index = task["jobId"], int(task["batch"]["index"])
        record = self._store.get_batch(job_id, index) or {}
        if record.get("providerJobId"):
            # Accepted on an earlier attempt whose answer was lost: go straight to polling.
            return {
                **task,
                "providerJobId": record["providerJobId"],
                "phase": "polling",
                "attempt": 0,
                "nextPollSeconds": self._wait(task, 0),
            }
        if (failed := self._past_deadline(task)) is not None:
            return failed
        budget = self._budget(task)
        if budget is not None and not budget.acquire(idempotency_key(job_id, index)):
            # The org already has as many batches in flight as the budget allows: wait like a 429.
            attempt = int(task.get("attempt", 0)) + 1
            self._store.update_batch(job_id, index, {"budgetWaits": attempt})
            return {**task, "phase": "throttled", "attempt": attempt, "nextPollSeconds": self._wait(task, attempt)}
        if is_operation(task["type"]):
            job = self._store.get_job(job_id) or {}
            outcome = self._provider(task).start(job.get("operationParams") or {}, idempotency_key(job_id, index))
        else:
            body = self._s3.get_object(Bucket=self._settings.results_bucket, Key=task["batch"]["key"])["Body"].read()
            outcome = self._provider(task).submit(body, idempotency_key(job_id, index))
        if isinstance(outcome, Throttled):
            self._release(task)
            attempt = int(task.get("attempt", 0)) + 1
            self._store.update_batch(job_id, index, {"throttled": attempt})
            return {
                **task,
                "phase": "throttled",
                "attempt": attempt,
                "nextPollSeconds": self._wait(task, attempt, outcome.retry_after),
            }
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
        return {
            **task,
            "providerJobId": outcome.provider_job_id,
            "phase": "polling",
            "attempt": 0,
            "nextPollSeconds": self._wait(task, 0),
        }

    def check(self, task: Task) -> Task:
        job_id, index = task["jobId"], int(task["batch"]["index"])
        if (failed := self._past_deadline(task)) is not None:
            return failed
        outcome = self._provider(task).status(task["providerJobId"])
        attempt = int(task.get("attempt", 0)) + 1
        now = time.time()
        # The polling state the task carries: when the provider accepted the job (on the first check,
        # when the wait before it began), when it was last seen running, its progress if reported.
        clock = dict(task.get("poll") or {})
        clock.setdefault("since", round(now - float(task.get("nextPollSeconds") or 0), 3))
        if isinstance(outcome, Throttled):
            return {
                **task,
                "phase": "polling",
                "attempt": attempt,
                "poll": clock,
                "nextPollSeconds": self._wait(task, attempt, outcome.retry_after, clock=clock),
            }
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
                budget.renew(idempotency_key(job_id, index))
            clock["last"] = round(now, 3)
            if pct is not None:
                elapsed = now - clock["since"]
                previous = (clock["pctAt"], clock["pct"]) if "pct" in clock else None
                clock.update(rate=progress_rate(previous, (elapsed, pct)), pct=pct, pctAt=round(elapsed, 3))
            return {
                **task,
                "phase": "polling",
                "attempt": attempt,
                "poll": clock,
                "nextPollSeconds": self._wait(task, attempt, clock=clock),
            }
        if getattr(outcome, "state", None) == "FAILED":
            # An operation that failed at the provider has no results to collect: its error is the job's.
            self._store.update_batch(job_id, index, fields, append=timeline)
            self._record_duration(task, clock, now)
            error = outcome.error or {"code": "provider_failed", "message": f"{task['type']} ended FAILED"}
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
        return {**task, "phase": "done", "providerStatus": outcome.provider_status, "attempt": 0, "nextPollSeconds": 0}

    def collect(self, task: Task) -> Task:
        """Page /imports and /errors into per-batch NDJSON parts; finalize stitches them per job.
        An operation's result is its file, streamed into the job's results prefix."""
        job_id, index = task["jobId"], int(task["batch"]["index"])
        provider = self._provider(task)
        if is_operation(task["type"]):
            return self._collect_file(task, provider)
        counts: dict[str, int] = {}
        keys: dict[str, str] = {}
        for kind in ("imports", "errors"):
            key = layout.batch_result_key(job_id, kind, index)
            writer = S3StreamWriter(self._settings.results_bucket, key, s3=self._s3)
            try:
                for page in provider.pages(task["providerJobId"], kind):
                    writer.write_records(page)
            except ResultsNotReady:
                writer.abort()
                attempt = int(task.get("attempt", 0)) + 1
                if (failed := self._past_deadline(task)) is not None:
                    return failed
                return {
                    **task,
                    "phase": "results_pending",
                    "attempt": attempt,
                    "nextPollSeconds": self._wait(task, attempt),
                }
            except BaseException:
                writer.abort()
                raise
            writer.close()
            counts[kind], keys[kind] = writer.lines, key
        state = BatchState.COMPLETED if task.get("providerStatus") == "COMPLETED" else BatchState.PARTIAL
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
        return {"jobId": job_id, "batch": task["batch"], "phase": "collected", "state": state.value}

    def _collect_file(self, task: Task, provider: Any) -> Task:
        job_id, index = task["jobId"], int(task["batch"]["index"])
        try:
            result = provider.result(task["providerJobId"])
        except ResultsNotReady:
            if (failed := self._past_deadline(task)) is not None:
                return failed
            attempt = int(task.get("attempt", 0)) + 1
            return {
                **task,
                "phase": "results_pending",
                "attempt": attempt,
                "nextPollSeconds": self._wait(task, attempt),
            }
        key = layout.result_key(job_id, result.name)
        with S3StreamWriter(
            self._settings.results_bucket, key, content_type=result.content_type, s3=self._s3
        ) as writer:
            for chunk in result.chunks():
                writer.write(chunk)
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
        return {"jobId": job_id, "batch": task["batch"], "phase": "collected", "state": BatchState.COMPLETED.value}

    def record_failure(self, task: Task) -> Task:
        """The ASL caught an error for this batch; keep it as the batch's error{code,message}."""
        code, message = error_from_failure(task.get("failure") or {})
        return self.fail(task, code, message)

    def fail(self, task: Task, code: str, message: str, *, exception_id: str | None = None) -> Task:
        error = {"code": code, "message": message}
        if exception_id:
            error["exceptionId"] = exception_id
        self._store.update_batch(
            task["jobId"],
            int(task["batch"]["index"]),
            {"batchState": BatchState.FAILED.value, "error": error, "finishedAt": now_iso()},
        )
        self._release(task)
        return {"jobId": task["jobId"], "batch": task["batch"], "phase": "failed", "error": error}


_CODED = re.compile(r"^\[(?P<code>[a-z0-9_]+)\] (?P<message>.*)$", re.DOTALL)
_ERROR_CODES = {
    "States.Timeout": "task_timeout",
    "States.TaskFailed": "task_failed",
    "Lambda.Unknown": "task_crashed",
}


def error_from_failure(failure: dict[str, Any]) -> tuple[str, str]:
    """Turn the ASL's {Error, Cause} into (code, message); handler errors carry "[code] message"."""
    name = str(failure.get("Error", "States.TaskFailed"))
    cause = failure.get("Cause") or ""
    message = cause
    try:
        parsed = json.loads(cause)
        if isinstance(parsed, dict):
            message = str(parsed.get("errorMessage", cause))
    except (TypeError, ValueError):
        pass
    if match := _CODED.match(message):
        return match["code"], match["message"]
    return _ERROR_CODES.get(name, re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "task_failed"), (
        message[:500] or name
    )
