"""Cancel and retry a job (POST /jobs/{id}/cancel, POST /jobs/{id}/retry), and close a job whose execution
ended without reaching Finalize (the EventBridge backstop).

Cancel answers in constant work whatever the job's size: it marks the job FAILED `cancelled` (by whom)
and stops its execution; the execution's end (EventBridge ABORTED -> close_ended_execution, in the
finalize function) releases the batches' budget slots and finalizes: result files, manifest, the one
notification. A job cancelled before it had an execution is closed by intake instead."""

from __future__ import annotations

import json
import time
from typing import Any

from tracker import layout
from tracker.batch_tasks import idempotency_key
from tracker.budget import Budgets
from tracker.config import Settings
from tracker.executions import (
    NAME_TAKEN,
    ExecutionNameTaken,
    execution_arn,
    job_id_of_execution,
    new_execution_name,
    start_execution,
    stop_execution,
)
from tracker.finalize import Finalizer
from tracker.model import BatchState, JobState, closed, now_iso
from tracker.store import JobStore

# How an execution that ended abnormally (EventBridge status) closes its job.
ENDED_EXECUTION_CODES = {"TIMED_OUT": "execution_timed_out", "ABORTED": "cancelled"}


class ControlError(Exception):
    """The request is understood but the job's state does not allow it (HTTP 409)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class JobControl:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        sfn: Any,
        s3: Any,
        finalizer: Finalizer,
        budgets: Budgets | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._sfn = sfn
        self._s3 = s3
        self._finalizer = finalizer
        self._budgets = budgets

    def release_leases(self, job_id: str) -> None:
        """Give back every budget slot the job's batches may still hold (its execution is gone)."""
        if self._budgets is None:
            return
        for batch in self._store.list_batches(job_id):
            self._budgets.release_everywhere(idempotency_key(job_id, int(batch["index"])))

    def cancel(self, job: dict[str, Any], by: str) -> dict[str, Any]:
        """Mark the job FAILED with code `cancelled` and stop its execution; answers the marked job. Partial
        results are kept: the execution's end closes the job (see the module docstring)."""
        if JobState(job["state"]).terminal:
            raise ControlError("already_finished", f"job {job['id']} already ended {job['state']}")
        marked = self._store.mark_cancelled(job["id"], by, now_iso())
        if marked is None:
            raise ControlError("already_finished", f"job {job['id']} ended meanwhile")
        if marked.get("runId"):
            self._stop(marked["runId"], by)
        return marked

    def _stop(self, run_id: str, by: str, attempts: int = 4) -> None:
        """StopExecution, retried briefly: an execution that is just starting (or a throttled call) may
        refuse the first try. No such execution means intake had not started it yet: intake stops or
        closes the job itself when it gets there."""
        for attempt in range(attempts):
            try:
                stop_execution(self._sfn, run_id, cause=f"cancelled by {by}")
                return
            except Exception:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.2 * 2**attempt)

    def retry(self, job: dict[str, Any]) -> dict[str, Any]:
        """Run again only the batches that did not finish. A batch the provider accepted keeps its provider
        job id and is polled, never sent again; a batch never accepted is submitted with its original
        Idempotency-Key."""
        job_id = job["id"]
        if job["state"] != JobState.FAILED.value:
            raise ControlError("not_failed", f"only a FAILED job can be retried; job {job_id} is {job['state']}")
        if not closed(job):
            raise ControlError("still_closing", f"job {job_id} is being cancelled; retry it once it has finished")
        if not job.get("intakeDone") or int(job.get("batchCount", 0)) == 0:
            raise ControlError(
                "nothing_to_retry", f"job {job_id} failed before its batches were written; submit the file again"
            )
        batches = sorted(self._store.list_batches(job_id), key=lambda b: int(b["index"]))
        pending = [b for b in batches if not BatchState(b["batchState"]).accounted]
        if not pending:
            raise ControlError("nothing_to_retry", f"every batch of job {job_id} finished; nothing to run again")
        attempt = int(job.get("retries", 0)) + 1
        name = new_execution_name(job_id, attempt)
        manifest_key = layout.retry_manifest_key(job_id, attempt)
        manifest = [{k: b.get(k, "" if k == "key" else 0) for k in ("index", "key", "rows", "bytes")} for b in pending]
        self._s3.put_object(
            Bucket=self._settings.results_bucket,
            Key=manifest_key,
            Body=json.dumps(manifest).encode(),
            ContentType="application/json",
        )
        for batch in batches:
            if BatchState(batch["batchState"]).accounted:
                self._store.keep_batch(job_id, int(batch["index"]))  # no expiry while the job runs again
            else:
                state = BatchState.RUNNING if batch.get("providerJobId") else BatchState.PENDING
                self._store.reset_batch(job_id, int(batch["index"]), state.value)
        deadline = int(time.time()) + self._settings.max_job_seconds
        run_id = execution_arn(self._settings, name)
        if not self._store.reopen_job(job_id, run_id, attempt, deadline, now_iso()):
            raise ControlError("not_failed", f"job {job_id} changed state meanwhile; try again")
        try:
            start_execution(self._settings, self._sfn, job, name=name, manifest_key=manifest_key, deadline=deadline)
        except ExecutionNameTaken as exc:
            self._finalizer.fail_job(job_id, NAME_TAKEN, str(exc))
        except Exception as exc:
            # Never RUNNING without an execution: the job ends FAILED again, and the caller may retry.
            self._finalizer.fail_job(job_id, "execution_not_started", f"the retry's execution did not start: {exc}")
            raise
        return {"jobId": job_id, "retry": attempt, "batches": [int(b["index"]) for b in pending], "runId": run_id}

    def close_ended_execution(self, name: str, arn: str, status: str, error: str | None) -> dict[str, Any]:
        """The execution ended without reaching Finalize (timed out, stopped, failed unexpectedly): its
        tasks hold no provider slot anymore, and the job ends FAILED with its one notification."""
        job_id = job_id_of_execution(name)
        job = self._store.get_job(job_id)
        if job is None or job.get("runId") != arn:
            # A late event about an execution the job has moved past (e.g. before a retry): nothing to close.
            return {"jobId": job_id, "state": job["state"] if job else None, "ignored": True}
        self.release_leases(job_id)
        if closed(job):  # its own Finalize closed it (e.g. a job that ended FAILED): only the leases were left
            return {"jobId": job_id, "state": job["state"]}
        return self._finalizer.fail_job(
            job_id,
            ENDED_EXECUTION_CODES.get(status, "execution_failed"),
            f"execution {status.lower()}" + (f": {error}" if error else ""),
            run_id=arn,
        )
