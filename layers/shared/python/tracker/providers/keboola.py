"""Keboola Storage API table exports (job type ``keboola.table_export``): https://keboola.docs.apiary.io.

``POST /v2/storage/tables/{tableId}/export-async`` answers 202 with a storage job; ``GET
/v2/storage/jobs/{id}`` moves ``waiting`` -> ``processing`` -> ``success`` | ``error``; a finished export
carries ``results.file.id`` and ``GET /v2/storage/files/{id}`` hands out a short-lived signed URL.

Plain urllib3 (shipped with botocore in the Lambda runtime) with its own retries switched off: the
state machine owns retrying and waiting, so every failure surfaces here as one named error, and a
maintenance window (503 + ``Retry-After``) or a 429 comes back as :class:`Throttled` for the state
machine's Wait. The ``X-StorageApi-Token`` goes only to the stack, never to the download URL (another
host: S3, Azure Blob or GCS on a real stack).

Keboola has no idempotency key: a submit retried after a lost answer starts a second export. That
is harmless (an export is read-only) and only the job id recorded last is followed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import urllib3

from tracker.errors import (
    ProviderAuthError,
    ProviderRejectedError,
    ProviderThrottledError,
    ProviderTransientError,
)
from tracker.providers.base import (
    OperationStatus,
    ResultFile,
    ResultsNotReady,
    Submitted,
    Throttled,
    retry_after_seconds,
)

JOB_TYPE = "keboola.table_export"
STATES = {"waiting": "PENDING", "processing": "RUNNING", "success": "COMPLETED", "error": "FAILED"}
ENDED_OTHERWISE = {"cancelled", "terminated"}  # not sent by table exports, but a job someone else started may be
EXPORT_FORMATS = ("rfc", "escaped", "raw")
DOWNLOAD_ATTEMPTS = 3  # one signed URL, then up to two fresh ones when the previous had expired
EXPIRED_URL_STATUSES = (400, 403, 404, 410)
CHUNK_BYTES = 64 * 1024
_POOL = urllib3.PoolManager(maxsize=10, retries=False, timeout=urllib3.Timeout(connect=5.0, read=30.0))


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


class KeboolaStorageProvider:
    """:class:`~tracker.providers.base.OperationProvider` for Keboola Storage table exports."""

    def __init__(
        self,
        stack_url: str,
        token: str,
        timeout_seconds: float = 30.0,
        *,
        pool: urllib3.PoolManager = _POOL,
        download_attempts: int = DOWNLOAD_ATTEMPTS,
    ) -> None:
        self._root = stack_root(stack_url)
        self._token = token
        self._pool = pool
        self._timeout = urllib3.Timeout(connect=min(5.0, timeout_seconds), read=timeout_seconds)
        self._download_attempts = max(1, download_attempts)

    # -- protocol ---------------------------------------------------------------------------
    def start(self, params: dict[str, Any], idempotency_key: str) -> Submitted | Throttled:
        """Start ``export-async`` for ``params["tableId"]`` (optional ``columns``, ``limit``, ``format``).
        The file is always asked for gzip-compressed. ``idempotency_key`` has no Keboola counterpart."""
        table_id = params.get("tableId")
        if not isinstance(table_id, str) or not table_id.strip():
            raise ProviderRejectedError("keboola.table_export needs params.tableId", code="invalid_params")
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
        response = self._call("POST", url, fields=fields)
        if isinstance(response, Throttled):
            return response
        job = self._job(response)
        return Submitted(provider_job_id=str(job["id"]), provider_status=str(job.get("status", "waiting")))

    def status(self, provider_job_id: str) -> OperationStatus | Throttled:
        response = self._call("GET", self._job_url(provider_job_id))
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
        response = self._call("GET", self._job_url(provider_job_id))
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
        for attempt in range(1, self._download_attempts + 1):
            url = self._signed_url(file_url)
            try:
                # No token: the signed URL is the credential, and it points at another host.
                response = self._pool.request(
                    "GET", url, preload_content=False, retries=False, timeout=self._timeout, redirect=False
                )
            except urllib3.exceptions.HTTPError as exc:
                raise ProviderTransientError(f"Keboola file download unreachable: {type(exc).__name__}") from exc
            if response.status != 200:
                response.drain_conn()
                response.release_conn()
                if response.status not in EXPIRED_URL_STATUSES:
                    raise ProviderTransientError(f"Keboola file download answered {response.status}")
                if attempt == self._download_attempts:
                    raise ProviderTransientError(
                        f"Keboola file download refused {attempt} signed URLs in a row "
                        f"(last answer {response.status}): they keep expiring",
                        code="download_url_expired",
                    )
                continue  # an expired (or revoked) URL: the file detail signs a fresh one
            complete = False
            try:
                yield from response.stream(CHUNK_BYTES)
                complete = True
            except urllib3.exceptions.HTTPError as exc:
                raise ProviderTransientError(f"Keboola file download broke off: {type(exc).__name__}") from exc
            finally:
                if not complete:  # abandoned or broken mid-way: never hand a half-read connection back
                    response.close()
                response.release_conn()
            return

    def _signed_url(self, file_url: str) -> str:
        response = self._call("GET", file_url)
        if isinstance(response, Throttled):
            raise ProviderThrottledError("Keboola throttled the file detail", retry_after=response.retry_after)
        detail = self._json(response)
        if not isinstance(detail, dict) or not isinstance(detail.get("url"), str) or not detail["url"]:
            raise ProviderTransientError("Keboola file detail has no url")
        if detail.get("isSliced"):
            # A sliced file's url is a manifest of s3:// slices readable only with federation credentials.
            raise ProviderRejectedError("Keboola exported a sliced file; not supported", code="sliced_file")
        return detail["url"]

    # -- HTTP -------------------------------------------------------------------------------
    def _job_url(self, provider_job_id: str) -> str:
        job_id = str(provider_job_id).strip()
        if not job_id:
            raise ProviderRejectedError("empty Keboola job id", code="not_found")
        return f"{self._root}/v2/storage/jobs/{quote(job_id, safe='')}"

    def _call(
        self, method: str, url: str, *, fields: dict[str, str] | None = None
    ) -> urllib3.BaseHTTPResponse | Throttled:
        headers = {"X-StorageApi-Token": self._token, "Accept": "application/json"}
        try:
            if fields is not None:  # form-urlencoded body, as the official clients send it
                response = self._pool.request(
                    method,
                    url,
                    fields=fields,
                    encode_multipart=False,
                    headers=headers,
                    retries=False,
                    timeout=self._timeout,
                )
            else:
                response = self._pool.request(method, url, headers=headers, retries=False, timeout=self._timeout)
        except urllib3.exceptions.HTTPError as exc:  # reset, refused, timeouts, protocol errors
            raise ProviderTransientError(f"Keboola unreachable: {type(exc).__name__}") from exc
        if response.status in (429, 503):  # 503 is Keboola's maintenance window, with Retry-After
            return Throttled(retry_after_seconds(response.headers))
        if response.status in (401, 403):
            raise ProviderAuthError(
                f"Keboola refused the Storage API token ({response.status} {_describe(response)})",
                code="unauthorized" if response.status == 401 else "forbidden",
            )
        if response.status >= 500:
            raise ProviderTransientError(f"Keboola answered {response.status} {_describe(response)}")
        if response.status == 404:
            raise ProviderRejectedError(f"Keboola answered 404 {_describe(response)}", code="not_found")
        if response.status >= 400:
            raise ProviderRejectedError(f"Keboola answered {response.status} {_describe(response)}")
        return response

    def _job(self, response: urllib3.BaseHTTPResponse) -> dict[str, Any]:
        job = self._json(response)
        if not isinstance(job, dict) or isinstance(job.get("id"), bool) or job.get("id") in (None, ""):
            raise ProviderTransientError("Keboola storage job answer has no id")
        if not isinstance(job.get("status"), str):
            raise ProviderTransientError("Keboola storage job answer has no status")
        return job

    @staticmethod
    def _json(response: urllib3.BaseHTTPResponse) -> Any:
        try:
            return json.loads(response.data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProviderTransientError(f"Keboola answered malformed JSON ({response.status})") from exc


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


def _describe(response: urllib3.BaseHTTPResponse) -> str:
    """``code: error (exceptionId ...)`` from Keboola's ``{"error","code","status","exceptionId"}`` body."""
    try:
        body = json.loads(response.data)
    except (ValueError, UnicodeDecodeError):
        return ""
    if not isinstance(body, dict):
        return ""
    text = ": ".join(str(body[k])[:300] for k in ("code", "error") if body.get(k))
    if body.get("exceptionId"):
        text += f" (exceptionId {body['exceptionId']})"
    return text
