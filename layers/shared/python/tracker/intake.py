"""Intake: one uploaded (or API-submitted) file becomes one job, its batch files and its execution.

Streams the source from S3 through ingest.read_requests (validate) and batching.BatchSplitter (split),
writing batch bodies and rejected rows to S3 as it goes, so memory stays flat whatever the file size.
A job's id is derived from the upload (bucket, key, version or sequencer), so a duplicated S3 event
finds the existing job instead of starting a second one.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from tracker import catalogue, layout
from tracker.access import owner_id
from tracker.batching import BatchBody, BatchSplitter, UpsertOrder, line_runs
from tracker.config import Settings
from tracker.executions import (
    NAME_TAKEN,
    ExecutionNameTaken,
    execution_arn,
    execution_name_of,
    new_execution_name,
    start_execution,
    stop_execution,
)
from tracker.finalize import Finalizer
from tracker.ingest import InputError, Rejected, detect_format, read_requests, unsupported_upload
from tracker.limits import MAX_BATCHES_PER_JOB, MAX_INTAKE_OBJECT_BYTES
from tracker.model import JobState, closed, now_iso
from tracker.s3io import S3StreamWriter, s3_uri
from tracker.store import JobStore

UNKNOWN_TYPE = "unknown"
INTAKE_FAILED = "intake_failed"  # the job's error code when intake gave up on its message (dead letter)


@dataclass(frozen=True, slots=True)
class Upload:
    bucket: str
    key: str
    version: str | None
    sequencer: str | None
    etag: str | None
    size: int
    principal: str


def job_id_for_upload(upload: Upload) -> str:
    """Same upload (even delivered three times) -> same job id -> same execution name."""
    # Real S3 always sends a sequencer (and a versionId in a versioned bucket); emulators may send only the ETag.
    identity = upload.version or upload.sequencer or f"etag={upload.etag}:size={upload.size}"
    digest = hashlib.sha256(f"{upload.bucket}\0{upload.key}\0{identity}".encode()).hexdigest()
    return f"job-{digest[:24]}"


def new_job_id() -> str:
    return f"job-{secrets.token_hex(12)}"


def new_job(
    job_id: str,
    job_type: str,
    source: dict[str, Any],
    creator: dict[str, str],
    params: dict[str, Any],
    owner: str,
) -> dict[str, Any]:
    return {
        "id": job_id,
        "type": job_type,
        "state": JobState.PENDING.value,
        "createdAt": now_iso(),
        "source": source,
        "creatorToken": creator,
        "ownerId": owner,
        "operationParams": params,
        "rowsIn": 0,
        "rejected": 0,
        "batchCount": 0,
    }


class Intake:
    def __init__(self, settings: Settings, store: JobStore, s3: Any, sfn: Any, finalizer: Finalizer) -> None:
        self._settings = settings
        self._store = store
        self._s3 = s3
        self._sfn = sfn
        self._finalizer = finalizer

    def accept_upload(self, upload: Upload) -> tuple[str, bool]:
        """Record the job for an inbox upload and run intake; (job id, False) for a duplicate event."""
        job_id, created = self._record_upload(upload)
        existing = self._store.get_job(job_id)
        if not created and existing and existing["state"] != JobState.PENDING.value and closed(existing):
            return job_id, False
        # New, or PENDING from an intake that crashed part-way: (re)run it; every step is idempotent.
        self.run(job_id)
        return job_id, created

    def _record_upload(self, upload: Upload) -> tuple[str, bool]:
        job_id = job_id_for_upload(upload)
        job_type = catalogue.type_for_key(upload.key) or UNKNOWN_TYPE
        source = {
            "bucket": upload.bucket,
            "key": upload.key,
            "version": upload.version,
            "etag": upload.etag,
            "uri": s3_uri(upload.bucket, upload.key),
        }
        creator = {"id": upload.principal or "unknown", "description": f"S3 upload to {source['uri']}"}
        created = self._store.create_job(
            new_job(job_id, job_type, source, creator, {"source": source["uri"]}, owner_id(upload.principal))
        )
        return job_id, created

    # -- giving up (the intake dead-letter queue) ------------------------------------------------
    def abandon_upload(self, upload: Upload) -> dict[str, Any] | None:
        """Intake gave up on an upload's message: its job (recorded now if intake never got that far) ends
        FAILED `intake_failed`, with its notification, instead of staying PENDING unseen."""
        job_id, _ = self._record_upload(upload)
        return self.abandon(job_id)

    def abandon(self, job_id: str) -> dict[str, Any] | None:
        """Intake gave up on this job's message (it failed until the queue moved it to the dead-letter
        queue): close the job FAILED `intake_failed`, unless it has already ended or an execution runs it
        (that execution closes it)."""
        job = self._store.get_job(job_id)
        if job is None or closed(job):
            return None
        if job["state"] == JobState.RUNNING.value and self._execution_exists(job.get("runId")):
            return None
        return self._finalizer.fail_job(
            job_id,
            INTAKE_FAILED,
            "intake could not take this job in: its message failed every delivery and reached the dead-letter "
            "queue (the intake function's log says why)",
        )

    def _execution_exists(self, run_id: str | None) -> bool:
        if not run_id:
            return False
        try:
            self._sfn.describe_execution(executionArn=run_id)
        except self._sfn.exceptions.ExecutionDoesNotExist:
            return False
        return True

    def run(self, job_id: str) -> None:
        job = self._store.get_job(job_id)
        if job is None:
            raise ValueError(f"intake was asked to run job {job_id}, which does not exist")
        if JobState(job["state"]).terminal:
            if not closed(job):
                # Cancelled before it had an execution, which would have closed it: close it here, off the
                # API's request path.
                self._finalizer.finalize(job_id)
            return
        if job.get("taskType") and not job.get("intakeDone"):
            self._prepare_single_task(job)
            job = self._store.get_job(job_id) or job
        if not job.get("intakeDone"):
            try:
                self._ingest(job)
            except InputError as exc:
                self._finalizer.fail_job(job_id, exc.code, exc.message)
                return
            job = self._store.get_job(job_id) or job
        if int(job.get("batchCount", 0)) == 0:
            self._finalizer.finalize(job_id)
        else:
            self._start_execution(job)

    # -- steps -------------------------------------------------------------------------------
    def _ingest(self, job: dict[str, Any]) -> None:
        job_id, job_type, source = job["id"], job["type"], job["source"]
        if job_type not in catalogue.BATCH_TYPES:
            raise InputError(
                "unknown_prefix",
                f"{source['key']!r} is not under a known prefix; upload to one of "
                + ", ".join(catalogue.INBOX_PREFIXES),
            )
        rules = catalogue.row_rules(job_type)
        try:
            fmt = detect_format(source.get("format_key") or source["key"])
        except InputError as unnamed:
            # The name says no format: when the first bytes say what the file is (an Excel workbook...),
            # the error names it and what to do instead.
            body = self._get_source(source)["Body"]
            try:
                raise unsupported_upload(source["key"], unnamed, body) from None
            finally:
                body.close()
        obj = self._get_source(source)
        size = int(obj.get("ContentLength", 0))
        if size > MAX_INTAKE_OBJECT_BYTES:
            obj["Body"].close()  # refused before a byte is read
            raise InputError(
                "file_too_large",
                f"{source['uri']} has {size} bytes; intake reads at most {MAX_INTAKE_OBJECT_BYTES} bytes within "
                "its time limit: split the file into smaller ones",
            )
        read_etag = str(obj.get("ETag", "")).strip('"')
        if not source.get("version") and source.get("etag") and read_etag and read_etag != source["etag"]:
            # Without a version id the key now holds a newer upload, which is a job of its own; reading
            # it here would import that content twice and this upload's content never.
            obj["Body"].close()
            raise InputError(
                "source_changed",
                f"{source['uri']} was overwritten before intake read it; the newer upload is its own job",
            )

        results = self._settings.results_bucket
        rejected_key = layout.result_key(job_id, layout.RESULT_FILES["rejected"])
        splitter = BatchSplitter(
            max_requests=self._settings.max_batch_requests, max_bytes=self._settings.max_batch_bytes
        )
        manifest: list[dict[str, Any]] = []
        rows_in = 0
        order = UpsertOrder(rules.identity)
        lines: list[int] = []  # the source lines of the batch being filled, for reconciliation
        rejected = S3StreamWriter(results, rejected_key, s3=self._s3)
        input_layout: dict[str, Any] | None = None
        try:
            reading = read_requests(
                obj["Body"], fmt, rules, max_uncompressed_bytes=self._settings.max_uncompressed_bytes
            )
            input_layout = reading.layout.as_dict()  # what the file turned out to be: kept with the job's source
            for item in reading:
                rows_in += 1
                if isinstance(item, Rejected):
                    rejected.write_record(
                        {"line": item.line, "code": item.code, "reason": item.reason, "row": item.source}
                    )
                    continue
                if (batch := splitter.add(item.encoded)) is not None:
                    manifest.append(self._put_batch(job_id, batch, lines, order.close(batch.index)))
                    _check_batch_count(manifest, source)
                    lines = []
                lines.append(item.line)
                order.add(item.request, splitter.batches_emitted + 1)
            if (batch := splitter.finish()) is not None:
                manifest.append(self._put_batch(job_id, batch, lines, order.close(batch.index)))
                _check_batch_count(manifest, source)
        finally:
            # Keep the rejects seen so far even when the file turns out unreadable further down.
            rejected.close()
            progress: dict[str, Any] = {
                "rowsIn": rows_in,
                "rejected": rejected.lines,
                "rejectedKey": rejected_key,
                "inBytes": int(obj.get("ContentLength", 0)),
            }
            if input_layout is not None:  # the manifest carries the job's source, so it shows there too
                progress["source"] = {**source, "input": input_layout}
            self._store.update_job(job_id, progress)
        if rows_in == 0:
            raise InputError("empty_file", f"{source['uri']} holds no rows")

        self._s3.put_object(
            Bucket=results,
            Key=layout.batch_manifest_key(job_id),
            Body=json.dumps(manifest).encode(),
            ContentType="application/json",
        )
        self._store.put_batches(
            job_id,
            [{**item, "batchState": "PENDING", "polls": 0, "imported": 0, "providerErrors": 0} for item in manifest],
        )
        self._store.update_job(
            job_id,
            {
                "batchCount": len(manifest),
                "intakeDone": True,
                "deadline": int(time.time()) + self._settings.max_job_seconds,
            },
        )

    def _get_source(self, source: dict[str, Any]) -> dict[str, Any]:
        """The uploaded object (the version the event named), or the InputError saying why it cannot be read."""
        get_kwargs: dict[str, Any] = {"Bucket": source["bucket"], "Key": source["key"]}
        if source.get("version"):
            get_kwargs["VersionId"] = source["version"]
        try:
            return self._s3.get_object(**get_kwargs)
        except self._s3.exceptions.NoSuchKey as exc:
            raise InputError(
                "source_not_found", f"{source['uri']} no longer exists (deleted before intake read it)"
            ) from exc
        except self._s3.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchVersion", "NoSuchKey", "404"):
                raise InputError("source_not_found", f"{source['uri']} no longer exists") from exc
            if code in ("AccessDenied", "403"):
                raise InputError("source_unreadable", f"the tracker may not read {source['uri']}") from exc
            raise

    def _prepare_single_task(self, job: dict[str, Any]) -> None:
        """An operation (export) or a tracked provider job is one task through the same state machine: one
        manifest item, one batch record (holding the provider job id up front when tracking)."""
        job_id = job["id"]
        item = {"index": 1, "key": "", "rows": 0, "bytes": 0}
        self._s3.put_object(
            Bucket=self._settings.results_bucket,
            Key=layout.batch_manifest_key(job_id),
            Body=json.dumps([item]).encode(),
            ContentType="application/json",
        )
        record: dict[str, Any] = {**item, "batchState": "PENDING", "polls": 0, "imported": 0, "providerErrors": 0}
        if job.get("providerJobId"):
            record.update(providerJobId=job["providerJobId"], batchState="RUNNING", submittedAt=now_iso())
        self._store.put_batches(job_id, [record])
        self._store.update_job(
            job_id,
            {"batchCount": 1, "intakeDone": True, "deadline": int(time.time()) + self._settings.max_job_seconds},
        )

    def _put_batch(self, job_id: str, batch: BatchBody, lines: list[int], after: int) -> dict[str, Any]:
        """The batch body, and beside it the source line of each of its rows (reconciliation names a row the
        provider did not list by its line). `after`: the earlier batch it must follow (UpsertOrder)."""
        key = layout.batch_key(job_id, batch.index)
        results = self._settings.results_bucket
        self._s3.put_object(Bucket=results, Key=key, Body=batch.body, ContentType="application/json")
        self._s3.put_object(
            Bucket=results,
            Key=layout.batch_lines_key(job_id, batch.index),
            Body=json.dumps(line_runs(lines), separators=(",", ":")).encode(),
            ContentType="application/json",
        )
        item = {"index": batch.index, "key": key, "rows": batch.rows, "bytes": len(batch.body)}
        if after:
            item["after"] = after
        return item

    def _start_execution(self, job: dict[str, Any]) -> None:
        """Mark RUNNING with the new run's name first (the execution may finish before StartExecution even
        returns), then start it. A redelivered message finds the job RUNNING under that name and starts the
        same name again, which Step Functions keeps to one execution."""
        job_id = job["id"]
        run_id = execution_arn(self._settings, new_execution_name(job_id, 0))
        if not self._store.mark_running(job_id, run_id, now_iso()):
            current = self._store.get_job(job_id) or {}
            if current.get("state") != JobState.RUNNING.value or not current.get("runId"):
                if JobState(current.get("state", "PENDING")).terminal and not closed(current):
                    self._finalizer.finalize(job_id)  # cancelled while intake ran: closed here, never started
                return
            if self._execution_exists(current["runId"]):
                return  # a redelivered message: the execution runs the job
            run_id = current["runId"]  # an earlier attempt marked it RUNNING and stopped before starting it
        deadline = int(job.get("deadline") or time.time() + self._settings.max_job_seconds)
        try:
            start_execution(
                self._settings,
                self._sfn,
                job,
                name=execution_name_of(run_id),
                manifest_key=layout.batch_manifest_key(job_id),
                deadline=deadline,
            )
        except ExecutionNameTaken as exc:
            self._finalizer.fail_job(job_id, NAME_TAKEN, str(exc))
            return
        now = self._store.get_job(job_id) or {}
        if JobState(now.get("state", "RUNNING")).terminal and not closed(now):
            # A cancel between marking and starting found no execution to stop: stop it now, and the
            # execution's end (EventBridge) closes the job.
            stop_execution(self._sfn, run_id, cause="cancelled before its execution started")


def _check_batch_count(manifest: list[dict[str, Any]], source: dict[str, Any]) -> None:
    if len(manifest) > MAX_BATCHES_PER_JOB:
        raise InputError(
            "too_many_batches",
            f"{source['uri']} makes more than {MAX_BATCHES_PER_JOB} batches: split it, or raise MaxBatchRequests",
        )
