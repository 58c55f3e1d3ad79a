"""The end of every job, whichever way it ends: one manifest, one final state, one notification.

Safe to run more than once (retries, the EventBridge backstop): files are rewritten identically and
the notification is sent only by the caller that wins the conditional `notifiedAt` write.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from tracker import layout
from tracker.catalogue import is_operation, is_track
from tracker.config import Settings
from tracker.model import Accounting, BatchState, JobState, closed, now_iso
from tracker.notify import publish_job_notification
from tracker.report import CodeCounter, render_report
from tracker.s3io import S3StreamWriter, iter_object_chunks, s3_uri
from tracker.store import JobStore

log = logging.getLogger(__name__)
ACCOUNTING_RULE = "rows in = imported + provider errors + rejected + unlisted"


class Finalizer:
    def __init__(self, settings: Settings, store: JobStore, s3: Any, sns: Any) -> None:
        self._settings = settings
        self._store = store
        self._s3 = s3
        self._sns = sns

    def finalize(
        self, job_id: str, *, execution_error: dict[str, str] | None = None, run_id: str | None = None
    ) -> dict[str, Any]:
        """`run_id`: finalize only while that execution still runs the job (the EventBridge backstop for an
        ended execution must never close a retry that started meanwhile)."""
        job = self._store.get_job(job_id)
        if job is None:
            raise ValueError(f"job {job_id} does not exist")
        if run_id is not None and job.get("runId") != run_id:
            return {"jobId": job_id, "state": job["state"], "ignored": True}
        if closed(job):
            self._notify_once(job)
            return {"jobId": job_id, "state": job["state"]}

        batches = sorted(self._store.list_batches(job_id), key=lambda b: int(b["index"]))
        bucket = self._settings.results_bucket
        out_bytes = 0
        keys: dict[str, str] = {}
        provider_codes = CodeCounter()  # for report.html, counted as the error parts stream through
        # An operation (export) delivers one file; row-based jobs stitch their imports and errors.
        operation = is_operation(job.get("taskType") or job["type"])
        if operation:
            files = [b["resultKey"] for b in batches if b.get("resultKey")]
            if files:
                keys["download"] = files[0]
            out_bytes = sum(int(b.get("outBytes", 0)) for b in batches)
        accounted = [b for b in batches if BatchState(b["batchState"]).accounted]
        for kind in () if operation else ("imports", "errors", "unlisted"):
            parts = [part for batch in accounted for part in _result_parts(batch, kind)]
            if kind == "unlisted" and not parts:
                continue  # unlisted.ndjson exists only when some row was not listed
            key = layout.result_key(job_id, layout.RESULT_FILES[kind])
            with S3StreamWriter(bucket, key, s3=self._s3) as writer:
                for part in parts:
                    for chunk in iter_object_chunks(bucket, part, s3=self._s3):
                        writer.write(chunk)
                        if kind == "errors":
                            provider_codes.feed(chunk)
                    provider_codes.close()
            out_bytes += writer.bytes_written
            keys[kind] = key
        if job.get("rejectedKey"):  # jobs read from a file (not exports, not tracked jobs)
            keys["rejected"] = job["rejectedKey"]
        keys["manifest"] = layout.result_key(job_id, layout.RESULT_FILES["manifest"])

        imported = sum(int(b.get("imported", 0)) for b in accounted)
        provider_errors = sum(int(b.get("providerErrors", 0)) for b in accounted)
        unlisted = sum(int(b.get("unlisted", 0)) for b in accounted)
        accounting = Accounting(
            # A tracked job's rows were sent by someone else: what FullStory reports is all there is to count.
            rows_in=imported + provider_errors if is_track(job["type"]) else int(job.get("rowsIn", 0)),
            imported=imported,
            provider_errors=provider_errors,
            rejected=int(job.get("rejected", 0)),
            unlisted=unlisted,
        )
        error = self._job_error(job, batches, accounting, execution_error)
        warnings = _warnings(accounted, accounting)
        state = JobState.FAILED if error else JobState.COMPLETED
        finished_at = now_iso()
        result_uris = {name: s3_uri(bucket, key) for name, key in keys.items()}
        manifest = {
            "job": {
                "id": job_id,
                "type": job["type"],
                "state": state.value,
                "createdAt": job["createdAt"],
                "startTime": job.get("startTime"),
                "finishedAt": finished_at,
                "source": job.get("source"),
                "runId": job.get("runId"),
                "error": error,
            },
            "counts": accounting.as_dict(),
            "accounting": {"rule": ACCOUNTING_RULE, **accounting.as_dict()},
            "warnings": warnings,
            "crossCheck": [
                {"batch": int(b["index"]), **b["countMismatch"]} for b in accounted if b.get("countMismatch")
            ],
            "batches": [_manifest_batch(b) for b in batches],
            "results": result_uris,
        }
        report_key = self._write_report(job_id, job, manifest, provider_codes)
        if report_key:
            manifest["report"] = s3_uri(bucket, report_key)
        self._s3.put_object(
            Bucket=bucket,
            Key=keys["manifest"],
            Body=json.dumps(manifest, indent=2).encode(),
            ContentType="application/json",
        )
        fields: dict[str, Any] = {
            "state": state.value,
            "finishedAt": finished_at,
            "imported": accounting.imported,
            "providerErrors": accounting.provider_errors,
            "outBytes": out_bytes,
            "resultKeys": keys,
            "accounting": accounting.as_dict(),
            "polls": sum(int(b.get("polls", 0)) for b in batches),
            "expiresAt": int(time.time()) + self._settings.retention_days * 86400,
        }
        # Before the job's own final write: a finalize that stops in between runs again (the job is not
        # closed yet) instead of leaving batch items that never expire.
        self._store.expire_batches(job_id, [int(b["index"]) for b in batches], fields["expiresAt"])
        if report_key:
            fields["reportKey"] = report_key
        if error:
            fields["error"] = error
        if warnings:
            fields["warnings"] = warnings
        if run_id is None:
            self._store.update_job(job_id, fields)
        elif not self._store.update_job_of_run(job_id, run_id, fields):
            return {"jobId": job_id, "state": JobState.RUNNING.value, "ignored": True}
        if self._notify_once({**job, **fields}):
            _record_outcome(state, accounting, fields["polls"])
        return {"jobId": job_id, "state": state.value}

    def fail_job(self, job_id: str, code: str, message: str, *, run_id: str | None = None) -> dict[str, Any]:
        """A job-level error before or outside the batches (bad file, unknown prefix, finalize crash, an
        execution that ended abnormally: `run_id`, see finalize)."""
        job = self._store.get_job(job_id)
        error = {"error": {"code": code, "message": message}}
        if job is not None and not closed(job) and not job.get("error"):
            if run_id is None:
                self._store.update_job(job_id, error)
            elif not self._store.update_job_of_run(job_id, run_id, error):
                return {"jobId": job_id, "state": job["state"], "ignored": True}
        return self.finalize(job_id, run_id=run_id)

    def _write_report(
        self, job_id: str, job: dict[str, Any], manifest: dict[str, Any], provider_codes: CodeCounter
    ) -> str | None:
        """report.html beside manifest.json. Best effort: a report that cannot be written never fails the job."""
        bucket = self._settings.results_bucket
        key = layout.result_key(job_id, layout.RESULT_FILES["report"])
        try:
            rejected_codes = CodeCounter()
            if int(job.get("rejected", 0)) and job.get("rejectedKey"):
                for chunk in iter_object_chunks(bucket, job["rejectedKey"], s3=self._s3):
                    rejected_codes.feed(chunk)
                    if rejected_codes.truncated:
                        break
                rejected_codes.close()
            page = render_report(manifest, provider_codes=provider_codes, rejected_codes=rejected_codes)
            self._s3.put_object(Bucket=bucket, Key=key, Body=page.encode(), ContentType="text/html; charset=utf-8")
        except Exception:
            log.exception("report.html for %s not written", job_id)
            return None
        return key

    @staticmethod
    def _job_error(
        job: dict[str, Any],
        batches: list[dict[str, Any]],
        accounting: Accounting,
        execution_error: dict[str, str] | None,
    ) -> dict[str, str] | None:
        if job.get("error"):
            return dict(job["error"])
        if execution_error:
            return execution_error
        failed = [b for b in batches if b["batchState"] == BatchState.FAILED.value]
        if failed and job.get("taskType") and failed[0].get("error"):
            return dict(failed[0]["error"])  # one task (an export, a tracked job): its error as the provider gave it
        if failed:
            first = failed[0].get("error") or {"code": "batch_failed", "message": "a batch failed"}
            more = f" ({len(failed)} of {len(batches)} batches failed)" if len(failed) > 1 else ""
            return {"code": first["code"], "message": f"batch {failed[0]['index']}: {first['message']}{more}"}
        unfinished = [b for b in batches if not BatchState(b["batchState"]).finished]
        if unfinished:
            return {
                "code": "batches_unfinished",
                "message": f"{len(unfinished)} batch(es) never finished, first: batch {unfinished[0]['index']}",
            }
        if not accounting.balanced:
            return {"code": "accounting_mismatch", "message": accounting.line}
        return None

    def _notify_once(self, job: dict[str, Any]) -> bool:
        """True when this call sent the job's notification (so it alone records the outcome's metrics)."""
        if job.get("notifiedAt") or not self._store.claim_notification(job["id"]):
            return False
        bucket = self._settings.results_bucket
        keys = dict(job.get("resultKeys") or {})
        if job.get("reportKey"):
            keys["report"] = job["reportKey"]
        try:
            message_id = publish_job_notification(
                self._settings.topic_arn,
                {
                    "jobId": job["id"],
                    "type": job["type"],
                    "state": job["state"],
                    "createdAt": job["createdAt"],
                    "finishedAt": job.get("finishedAt"),
                    "error": job.get("error"),
                    "accounting": job.get("accounting"),
                    "warnings": job.get("warnings") or [],
                    "source": job.get("source"),
                    "results": {name: s3_uri(bucket, key) for name, key in keys.items()},
                },
                sns=self._sns,
            )
        except BaseException:
            self._store.release_notification(job["id"])
            raise
        self._store.update_job(job["id"], {"notifiedAt": int(time.time()), "notificationId": message_id})
        return True


def _record_outcome(state: JobState, accounting: Accounting, polls: int) -> None:
    """EMF metrics of a finished job, once per outcome: jobs by state, rows by fate, polls per job."""
    from aws_lambda_powertools.metrics import MetricUnit

    from tracker.observability import metrics

    metrics.add_metric(name=f"Jobs{state.value.title()}", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="RowsImported", unit=MetricUnit.Count, value=accounting.imported)
    metrics.add_metric(name="RowsProviderErrors", unit=MetricUnit.Count, value=accounting.provider_errors)
    metrics.add_metric(name="RowsRejected", unit=MetricUnit.Count, value=accounting.rejected)
    metrics.add_metric(name="PollsPerJob", unit=MetricUnit.Count, value=polls)


def _result_parts(batch: dict[str, Any], kind: str) -> list[str]:
    """The part objects of one of a batch's result files (imports, errors, unlisted), in order."""
    parts = batch.get(f"{kind}Keys")
    if parts is None:
        single = batch.get(f"{kind}Key")
        parts = [single] if single else []
    return list(parts)


def _warnings(batches: list[dict[str, Any]], accounting: Accounting) -> list[dict[str, str]]:
    """What a COMPLETED job still wants a reader to know: rows the provider did not list, counts of its own
    that disagree, a listing that ended early, more than one export found for one start."""
    warnings = []
    if accounting.unlisted:
        warnings.append(
            {
                "code": "unlisted_rows",
                "message": f"{accounting.unlisted} row(s) FullStory listed neither as imported nor as an error; "
                "each is named in unlisted.ndjson",
            }
        )
    mismatched = [str(b["index"]) for b in batches if b.get("countMismatch")]
    if mismatched:
        warnings.append(
            {
                "code": "count_mismatch",
                "message": "FullStory's status counts and listed records disagree in batch(es) "
                + ", ".join(mismatched)
                + " (manifest.json crossCheck; an upserted uid sent twice is listed once)",
            }
        )
    ended = [
        f"batch {b['index']} {kind}"
        for b in batches
        for kind, listing in (b.get("listings") or {}).items()
        if listing.get("endedEarly")
    ]
    if ended:
        warnings.append(
            {"code": "listing_ended_early", "message": "paging stopped at a repeated page token: " + ", ".join(ended)}
        )
    for batch in batches:
        candidates = batch.get("operationCandidates") or []
        if len(candidates) > 1:
            warnings.append(
                {
                    "code": "several_exports",
                    "message": f"{len(candidates)} exports were found started for this job after a lost answer: "
                    + ", ".join(candidates)
                    + f"; this job follows {batch.get('providerJobId')}",
                }
            )
    return warnings


def _manifest_batch(batch: dict[str, Any]) -> dict[str, Any]:
    return {
        "index": int(batch["index"]),
        "state": batch["batchState"],
        "providerJobId": batch.get("providerJobId"),
        "providerStatus": batch.get("providerStatus"),
        "rows": int(batch.get("rows", 0)),
        "imported": int(batch.get("imported", 0)),
        "providerErrors": int(batch.get("providerErrors", 0)),
        "polls": int(batch.get("polls", 0)),
        "submittedAt": batch.get("submittedAt"),
        "pollTimes": batch.get("pollTimes", []),
        "finishedAt": batch.get("finishedAt"),
        "collectedAt": batch.get("collectedAt"),
        "error": batch.get("error"),
        "unlisted": int(batch.get("unlisted", 0)),
        "listedImports": batch.get("listedImports"),
        "listedErrors": batch.get("listedErrors"),
        "reportedImports": batch.get("reportedImports"),
        "reportedErrors": batch.get("reportedErrors"),
        "idempotencyKey": batch.get("idempotencyKey"),
        "burntKeys": batch.get("burntKeys", []),
        "operationCandidates": batch.get("operationCandidates", []),
    }
