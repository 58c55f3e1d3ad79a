"""Keboola Storage API table exports: https://keboola.docs.apiary.io.

``POST /v2/storage/tables/{tableId}/export-async`` answers 202 with a storage job; ``GET
/v2/storage/jobs/{id}`` moves ``waiting`` -> ``processing`` -> ``success`` | ``error``; a finished export
carries ``results.file.id`` and ``GET /v2/storage/files/{id}`` hands out a short-lived signed URL.

HTTP, its named errors and the signed-URL download with refresh are tracker.providers.http's: every
failure surfaces as one named error, and a maintenance window (503 + ``Retry-After``) or a 429 comes
back as :class:`Throttled` for the state machine's Wait. The ``X-StorageApi-Token`` goes only to the
stack, never to the download URL (another host: S3, Azure Blob or GCS on a real stack).

Keboola has no idempotency key: a submit retried after a lost answer starts a second export. That
is harmless (an export is read-only) and only the job id recorded last is followed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import urllib3

from tracker.errors import ProviderRejectedError, ProviderThrottledError, ProviderTransientError
from tracker.providers.base import OperationStatus, ResultFile, ResultsNotReady, Submitted, Throttled
from tracker.providers.http import POOL, ErrorBody, ProviderHttp, json_body

STATES = {"waiting": "PENDING", "processing": "RUNNING", "success": "COMPLETED", "error": "FAILED"}
ENDED_OTHERWISE = {"cancelled", "terminated"}  # not sent by table exports, but a job someone else started may be
EXPORT_FORMATS = ("rfc", "escaped", "raw")
DOWNLOAD_ATTEMPTS = 3  # one signed URL, then up to two fresh ones when the previous had expired
CHUNK_BYTES = 64 * 1024
THROTTLE_STATUSES = (429, 503)  # 503 is Keboola's maintenance window, with Retry-After
_DOWNLOAD = "Keboola file download"


def stack_root(stack: str) -> str:
    """``https://connection.keboola.com``, ``connection.keboola.com`` or ``.../v2/storage`` -> the stack root URL."""
    root = (stack or "").strip().rstrip("/")
    if not root:
        raise ValueError("a Keboola stack URL is required, e.g. https://connection.keboola.com")
    if "://" not in root:
        root = "https://" + root
    if root.endswith("/v2/storage"):
        root = root[: -len("/v2/storage")]
    return root


def read_error(response: Any) -> ErrorBody:
    """Keboola's ``{"error","code","status","exceptionId"}`` as ``code: error (exceptionId ...)``; a 404
    is ``not_found`` whatever the body says (a table, a job or a file that is not there)."""
    body = json_body(response)
    text = ""
    if isinstance(body, dict):
        text = ": ".join(str(body[k])[:300] for k in ("code", "error") if body.get(k))
        if body.get("exceptionId"):
            text += f" (exceptionId {body['exceptionId']})"
    return ErrorBody(code="not_found" if response.status == 404 else "", summary=text, detail=text)


class KeboolaStorageProvider:
    """:class:`~tracker.providers.base.OperationProvider` for Keboola Storage table exports."""

    def __init__(
        self,
        stack_url: str,
        token: str,
        timeout_seconds: float = 30.0,
        *,
        pool: urllib3.PoolManager = POOL,
        download_attempts: int = DOWNLOAD_ATTEMPTS,
    ) -> None:
        self._root = stack_root(stack_url)
        self._http = ProviderHttp(
            "Keboola",
            headers={"X-StorageApi-Token": token},
            credential="the Storage API token",
            read_error=read_error,
            throttle_statuses=THROTTLE_STATUSES,
            timeout_seconds=timeout_seconds,
            pool=pool,
        )
        self._download_attempts = max(1, download_attempts)

    # -- protocol ---------------------------------------------------------------------------
    def start(self, params: dict[str, Any], idempotency_key: str) -> Submitted | Throttled:
        """Start ``export-async`` for ``params["tableId"]`` (optional ``columns``, ``limit``, ``format``).
        The file is always asked for gzip-compressed. ``idempotency_key`` has no Keboola counterpart."""
        table_id = params.get("tableId")
        if not isinstance(table_id, str) or not table_id.strip():
            raise ProviderRejectedError("a Keboola table export needs params.tableId", code="invalid_params")
        fields = {"gzip": "1", "format": str(params.get("format") or "rfc")}
        if fields["format"] not in EXPORT_FORMATS:
            raise ProviderRejectedError(
                f"params.format must be one of {', '.join(EXPORT_FORMATS)}", code="invalid_params"
            )
        columns = params.get("columns")
        if columns:
            fields["columns"] = ",".join(columns) if isinstance(columns, list | tuple) else str(columns)
        if params.get("limit") is not None:
            fields["limit"] = str(params["limit"])
        url = f"{self._root}/v2/storage/tables/{quote(table_id.strip(), safe='')}/export-async"
        response = self._http.request("POST", url, fields=fields)
        if isinstance(response, Throttled):
            return response
        job = self._job(response)
        return Submitted(provider_job_id=str(job["id"]), provider_status=str(job.get("status", "waiting")))

    def status(self, provider_job_id: str) -> OperationStatus | Throttled:
        response = self._http.request("GET", self._job_url(provider_job_id))
        if isinstance(response, Throttled):
            return response
        job = self._job(response)
        status = str(job["status"])
        if status in ENDED_OTHERWISE:
            return OperationStatus(
                status, "FAILED", error={"code": status, "message": f"Keboola job {provider_job_id} was {status}"}
            )
        state = STATES.get(status, "RUNNING")  # an unknown word is polled again, bounded by the job's deadline
        error = _job_error(job, provider_job_id) if state == "FAILED" else None
        return OperationStatus(status, state, progress_pct=100.0 if state == "COMPLETED" else None, error=error)

    def result(self, provider_job_id: str) -> ResultFile:
        """The export's file. ``chunks()`` asks the file detail for a fresh signed URL on every call and
        again (up to ``download_attempts`` URLs) whenever the download refuses an expired one."""
        response = self._http.request("GET", self._job_url(provider_job_id))
        if isinstance(response, Throttled):
            raise ProviderThrottledError("Keboola throttled reading the job", retry_after=response.retry_after)
        job = self._job(response)
        status = str(job["status"])
        if status in ("waiting", "processing"):
            raise ResultsNotReady(f"Keboola job {provider_job_id} is still {status}")
        if status != "success":
            raise ProviderRejectedError(f"Keboola job {provider_job_id} ended {status}: no file", code="job_failed")
        results = job.get("results")
        file_info = results.get("file") if isinstance(results, dict) else None
        file_id = file_info.get("id") if isinstance(file_info, dict) else None
        if isinstance(file_id, bool) or not isinstance(file_id, int | str) or not str(file_id).strip():
            raise ProviderRejectedError(f"Keboola job {provider_job_id} has no results.file.id", code="no_result_file")
        table_id = str(job.get("tableId") or f"keboola-job-{provider_job_id}")
        file_url = f"{self._root}/v2/storage/files/{quote(str(file_id), safe='')}"
        return ResultFile(
            name=f"{table_id}.csv.gz", content_type="application/gzip", chunks=lambda: self._download(file_url)
        )

    # -- download ---------------------------------------------------------------------------
    def _download(self, file_url: str) -> Iterator[bytes]:
        # No token: the signed URL is the credential, and it points at another host.
        response = self._http.open_signed(
            lambda: self._signed_url(file_url), what=_DOWNLOAD, attempts=self._download_attempts
        )
        yield from self._http.stream(response, what=_DOWNLOAD, chunk_bytes=CHUNK_BYTES)

    def _signed_url(self, file_url: str) -> str:
        response = self._http.request("GET", file_url)
        if isinstance(response, Throttled):
            raise ProviderThrottledError("Keboola throttled the file detail", retry_after=response.retry_after)
        detail = self._http.json(response)
        if not isinstance(detail, dict) or not isinstance(detail.get("url"), str) or not detail["url"]:
            raise ProviderTransientError("Keboola file detail has no url")
        if detail.get("isSliced"):
            # A sliced file's url is a manifest of s3:// slices readable only with federation credentials.
            raise ProviderRejectedError("Keboola exported a sliced file; not supported", code="sliced_file")
        return detail["url"]

    # -- answers ----------------------------------------------------------------------------
    def _job_url(self, provider_job_id: str) -> str:
        job_id = str(provider_job_id).strip()
        if not job_id:
            raise ProviderRejectedError("empty Keboola job id", code="not_found")
        return f"{self._root}/v2/storage/jobs/{quote(job_id, safe='')}"

    def _job(self, response: urllib3.BaseHTTPResponse) -> dict[str, Any]:
        job = self._http.json(response)
        if not isinstance(job, dict) or isinstance(job.get("id"), bool) or job.get("id") in (None, ""):
            raise ProviderTransientError("Keboola storage job answer has no id")
        if not isinstance(job.get("status"), str):
            raise ProviderTransientError("Keboola storage job answer has no status")
        return job


def _job_error(job: dict[str, Any], provider_job_id: str) -> dict[str, str]:
    """Keboola's ``error{code,message,exceptionId}``, copied as strings; a generic one when it is missing."""
    raw = job.get("error")
    error: dict[str, str] = {}
    if isinstance(raw, dict):
        for key in ("code", "message", "exceptionId"):
            if raw.get(key) not in (None, ""):
                error[key] = str(raw[key])
    error.setdefault("code", "provider_failed")
    error.setdefault("message", f"Keboola job {provider_job_id} ended with status error")
    return error
