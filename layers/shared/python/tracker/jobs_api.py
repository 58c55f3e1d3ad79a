"""What the REST API does, apart from HTTP: create jobs (same intake as uploads), list, show, result URLs."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tracker import catalogue, layout
from tracker.access import Caller, can_see
from tracker.config import Settings
from tracker.intake import new_job, new_job_id
from tracker.model import JobState, job_view
from tracker.s3io import parse_s3_uri, s3_uri
from tracker.store import JobStore

PRESIGNED_URL_SECONDS = 900


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
        if idempotency_key:
            digest = hashlib.sha256(f"{caller.owner}\0{idempotency_key}".encode()).hexdigest()
            job_id = f"job-{digest[:24]}"
            existing = self._store.get_job(job_id)
            if existing is not None:
                return existing, False
        else:
            job_id = new_job_id()

        if source is not None:
            try:
                bucket, key = parse_s3_uri(source)
            except ValueError as exc:
                raise ApiError(400, "invalid_source", str(exc)) from exc
            if bucket != self._settings.inbox_bucket:
                raise ApiError(
                    400,
                    "invalid_source",
                    f"source must be an object in the inbox bucket {self._settings.inbox_bucket}",
                )
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
            digest = hashlib.sha256(f"{caller.owner}\0{idempotency_key}".encode()).hexdigest()
            job_id = f"job-{digest[:24]}"
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

    def get_job(self, job_id: str, caller: Caller) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        job = self._store.get_job(job_id)
        if job is None or not can_see(caller, job):
            raise ApiError(404, "not_found", f"no job {job_id}")
        return job, sorted(self._store.list_batches(job_id), key=lambda b: int(b["index"]))

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
        if not JobState(job["state"]).terminal:
            keys = {k: v for k, v in keys.items() if k == "rejected" and job.get("intakeDone")}
        return {
            name: self._s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": self._settings.results_bucket, "Key": key},
                ExpiresIn=PRESIGNED_URL_SECONDS,
            )
            for name, key in keys.items()
        }
