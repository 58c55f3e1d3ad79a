"""What the REST API does, apart from HTTP: create jobs (same intake as uploads), upload URLs, list, show,
result URLs."""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from typing import Any

from tracker import catalogue, layout
from tracker.access import Caller, can_see, may_read_source, upload_prefix
from tracker.config import Settings
from tracker.ingest import InputError, detect_format
from tracker.intake import new_job, new_job_id
from tracker.limits import MAX_INTAKE_OBJECT_BYTES
from tracker.model import closed, job_view
from tracker.s3io import parse_s3_uri, s3_uri
from tracker.store import JobStore

PRESIGNED_URL_SECONDS = 900
# Upload URLs live an hour: a big file's parts take a while. (AWS ends a presigned URL sooner when the
# signing role's temporary credentials expire first.)
UPLOAD_URL_SECONDS = 3600
# Files up to this size go up in one PUT; bigger ones in parts of PART_BYTES (S3: parts of 5 MiB to 5 GiB,
# at most 10,000; MAX_INTAKE_OBJECT_BYTES makes at most 128 here).
SINGLE_PUT_MAX_BYTES = 64 * 1024 * 1024
PART_BYTES = 16 * 1024 * 1024


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class JobsApi:
    def __init__(self, settings: Settings, store: JobStore, s3: Any, sqs: Any) -> None:
        self._settings = settings
        self._store = store
        self._s3 = s3
        self._sqs = sqs

    def create_job(
        self,
        *,
        job_type: str,
        requests: list[dict[str, Any]] | None,
        source: str | None,
        caller: Caller,
        idempotency_key: str | None,
    ) -> tuple[dict[str, Any], bool]:
        """(job, created). A repeated Idempotency-Key from the same caller answers the first job."""
        if (requests is None) == (source is None):
            raise ApiError(
                400, "invalid_request", "give exactly one of 'requests' (inline rows) or 'source' (s3://...)"
            )
        if source is not None:
            try:
                bucket, key = parse_s3_uri(source)
            except ValueError as exc:
                raise ApiError(400, "invalid_source", str(exc)) from exc
            if bucket != self._settings.inbox_bucket or not may_read_source(caller, key):
                raise ApiError(
                    403,
                    "source_not_allowed",
                    f"source must be a file you uploaded: s3://{self._settings.inbox_bucket}/"
                    f"{upload_prefix(caller)}... (POST /uploads gives you one)",
                )
        if idempotency_key:
            job_id = keyed_job_id(caller, idempotency_key)
            existing = self._store.get_job(job_id)
            if existing is not None:
                return existing, False
        else:
            job_id = new_job_id()

        if source is not None:
            job_source = {"bucket": bucket, "key": key, "version": None, "uri": source}
            params: dict[str, Any] = {"source": source}
        else:
            key = layout.source_key(job_id)
            body = json.dumps({"requests": requests}, separators=(",", ":")).encode()
            self._s3.put_object(
                Bucket=self._settings.results_bucket, Key=key, Body=body, ContentType="application/json"
            )
            job_source = {
                "bucket": self._settings.results_bucket,
                "key": key,
                "version": None,
                "uri": s3_uri(self._settings.results_bucket, key),
            }
            params = {"source": "inline", "requests": len(requests or [])}

        job = new_job(job_id, job_type, job_source, caller.creator_token(), params, caller.owner)
        if not self._store.create_job(job):
            return self._store.get_job(job_id) or job, False
        self._sqs.send_message(QueueUrl=self._settings.intake_queue_url, MessageBody=json.dumps({"jobId": job_id}))
        return job, True

    def create_task_job(
        self,
        *,
        job_type: str,
        params: dict[str, Any] | None,
        provider: str | None,
        provider_job_id: str | None,
        caller: Caller,
        idempotency_key: str | None,
    ) -> tuple[dict[str, Any], bool]:
        """An operation (an export) or `track` of a provider job someone else started (tracker.catalogue):
        one task through the same state machine, results and notification."""
        try:
            task_type, operation_params = catalogue.task_params(
                job_type, params, provider, provider_job_id, self._settings
            )
        except catalogue.ParamsError as exc:
            raise ApiError(400, exc.code, exc.message) from exc
        if idempotency_key:
            job_id = keyed_job_id(caller, idempotency_key)
            if (existing := self._store.get_job(job_id)) is not None:
                return existing, False
        else:
            job_id = new_job_id()
        source = {"bucket": "", "key": "", "version": None, "uri": ""}
        job = new_job(job_id, job_type, source, caller.creator_token(), operation_params, caller.owner)
        job["taskType"] = task_type
        if provider_job_id:
            job["providerJobId"] = provider_job_id
        if not self._store.create_job(job):
            return self._store.get_job(job_id) or job, False
        self._sqs.send_message(QueueUrl=self._settings.intake_queue_url, MessageBody=json.dumps({"jobId": job_id}))
        return job, True

    def create_upload(self, *, job_type: str, filename: str, size: int, caller: Caller) -> dict[str, Any]:
        """Presigned URLs that put a file of `size` bytes into the caller's own prefix of the inbox bucket:
        one PUT, or for a big file its parts, then complete (or abort). Nothing starts until POST /jobs
        names the uploaded file as its `source`."""
        if job_type not in catalogue.BATCH_TYPES:
            kinds = ", ".join(catalogue.BATCH_TYPES)
            raise ApiError(400, "invalid_request", f"{job_type} jobs take no file (only {kinds} do)")
        try:
            detect_format(filename)
        except InputError as exc:
            raise ApiError(400, exc.code, exc.message) from exc
        if size > MAX_INTAKE_OBJECT_BYTES:
            raise ApiError(
                413,
                "file_too_large",
                f"{filename} has {size} bytes; intake takes files of at most {MAX_INTAKE_OBJECT_BYTES} bytes: split it",
            )
        bucket = self._settings.inbox_bucket
        key = f"{upload_prefix(caller)}{secrets.token_hex(8)}/{filename}"
        answer: dict[str, Any] = {
            "source": s3_uri(bucket, key),
            "createJob": {"type": job_type, "source": s3_uri(bucket, key)},
            "expiresInSeconds": UPLOAD_URL_SECONDS,
            "method": "PUT",
        }
        target = {"Bucket": bucket, "Key": key}
        if size <= SINGLE_PUT_MAX_BYTES:
            answer["url"] = self._presign("put_object", target)
            return answer
        upload_id = self._s3.create_multipart_upload(**target)["UploadId"]
        part = {**target, "UploadId": upload_id}
        answer["partSize"] = PART_BYTES
        answer["parts"] = [
            {"partNumber": n, "url": self._presign("upload_part", {**part, "PartNumber": n})}
            for n in range(1, math.ceil(size / PART_BYTES) + 1)
        ]
        answer["completeUrl"] = self._presign("complete_multipart_upload", part)
        answer["abortUrl"] = self._presign("abort_multipart_upload", part)
        return answer

    def _presign(self, operation: str, params: dict[str, Any]) -> str:
        return str(self._s3.generate_presigned_url(operation, Params=params, ExpiresIn=UPLOAD_URL_SECONDS))

    def get_job(self, job_id: str, caller: Caller) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        job = self.get_job_record(job_id, caller)
        return job, sorted(self._store.list_batches(job_id), key=lambda b: int(b["index"]))

    def get_job_record(self, job_id: str, caller: Caller) -> dict[str, Any]:
        """The job without its batches (one read, whatever the job's size)."""
        job = self._store.get_job(job_id)
        if job is None or not can_see(caller, job):
            raise ApiError(404, "not_found", f"no job {job_id}")
        return job

    def view(self, job: dict[str, Any], batches: list[dict[str, Any]], *, base_url: str | None) -> dict[str, Any]:
        return job_view(
            job, batches, url=f"{base_url}/jobs/{job['id']}" if base_url else None, result_urls=self.result_urls(job)
        )

    def list_jobs(
        self, *, caller: Caller, state: str | None, limit: int, next_token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        owner = None if caller.admin else caller.owner
        try:
            return self._store.list_jobs(state=state, owner=owner, limit=limit, next_token=next_token)
        except ValueError as exc:
            raise ApiError(400, "invalid_next_token", str(exc)) from exc

    def result_urls(self, job: dict[str, Any]) -> dict[str, str | None]:
        """Presigned GET URLs of the job's result files that exist (all five once it has finished)."""
        keys: dict[str, str] = dict(job.get("resultKeys") or {})
        if "rejected" not in keys and job.get("rejectedKey"):
            keys["rejected"] = job["rejectedKey"]
        if job.get("reportKey"):
            keys["report"] = job["reportKey"]  # report.html, beside manifest.json
        if not closed(job):
            keys = {k: v for k, v in keys.items() if k == "rejected" and job.get("intakeDone")}
        return {
            name: self._s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": self._settings.results_bucket, "Key": key},
                ExpiresIn=PRESIGNED_URL_SECONDS,
            )
            for name, key in keys.items()
        }


def keyed_job_id(caller: Caller, idempotency_key: str) -> str:
    """The job a caller's Idempotency-Key names (another caller's same key names another job)."""
    digest = hashlib.sha256(f"{caller.owner}\0{idempotency_key}".encode()).hexdigest()
    return f"job-{digest[:24]}"
