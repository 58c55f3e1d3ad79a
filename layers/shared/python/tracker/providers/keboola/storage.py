"""Keboola Storage API table exports: https://keboola.docs.apiary.io.

``POST /v2/storage/tables/{tableId}/export-async`` answers 202 with a storage job; ``GET
/v2/storage/jobs/{id}`` moves ``waiting`` -> ``processing`` -> ``success`` | ``error``; a finished export
carries ``results.file.id``; ``GET /v2/storage/files/{id}?federationToken=1`` says where the file lies
(S3, Azure Blob Storage or GCS, sliced or not) with short-lived credentials, and files.py downloads it.

HTTP, its named errors and the signed-URL download with refresh are tracker.providers.http's: every
failure surfaces as one named error, and a maintenance window (503 + ``Retry-After``) or a 429 comes
back as :class:`Throttled` for the state machine's Wait. The ``X-StorageApi-Token`` goes only to the
stack, never to file storage (another host: S3, Azure Blob or GCS on a real stack).

Keboola has no idempotency key: a submit retried after a lost answer starts a second export. That
is harmless (an export is read-only) and only the job id recorded last is followed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import urllib3

from tracker.errors import ProviderRejectedError, ProviderThrottledError, ProviderTransientError
from tracker.providers.base import OperationStatus, ResultFile, ResultsNotReady, Submitted, Throttled
from tracker.providers.http import POOL, ErrorBody, ProviderHttp, json_body
from tracker.providers.keboola.files import CREDENTIAL_ATTEMPTS, FileDetail, FileDownload

STATES = {"waiting": "PENDING", "processing": "RUNNING", "success": "COMPLETED", "error": "FAILED"}
ENDED_OTHERWISE = {"cancelled", "terminated"}  # not sent by table exports, but a job someone else started may be
EXPORT_FORMATS = ("rfc", "escaped", "raw")
DOWNLOAD_ATTEMPTS = CREDENTIAL_ATTEMPTS  # per object: its credentials, then up to two fresh file details
THROTTLE_STATUSES = (429, 503)  # 503 is Keboola's maintenance window, with Retry-After
TABLE_EXPORT = "tableExport"  # the operationName of an export-async job


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
        columns: list[str] | str | None = None,
    ) -> None:
        """``columns``: the columns a table export asked for (its params.columns), the header of its file."""
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
        self._columns = _column_list(columns)

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
        columns = _column_list(params.get("columns"))
        if columns:
            fields["columns"] = ",".join(columns)
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
        """The export's file as one stream (tracker.providers.keboola.files): the file detail with
        federation credentials, the manifest and every slice of a sliced file, and the header row a table
        export lacks. The first bytes are read here, so the name and content type say what the file is."""
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
        table_id = str(job.get("tableId") or "")
        table_export = job.get("operationName") == TABLE_EXPORT and bool(table_id)
        file_url = f"{self._root}/v2/storage/files/{quote(str(file_id), safe='')}"
        download = FileDownload(
            lambda: self._file_detail(file_url, str(file_id)),
            self._http,
            columns=self._header(job, table_id) if table_export else None,
            attempts=self._download_attempts,
        ).open()
        if table_export:
            name = f"{table_id}.csv.gz" if download.gzip else f"{table_id}.csv"
            content_type = "application/gzip" if download.gzip else "text/csv"
        else:  # a file some other storage job produced: as Keboola names it
            name = download.detail.name
            content_type = "application/gzip" if download.gzip else "application/octet-stream"
        return ResultFile(name=name, content_type=content_type, chunks=download.chunks)

    # -- download ---------------------------------------------------------------------------
    def _file_detail(self, file_url: str, file_id: str) -> FileDetail:
        """``GET /v2/storage/files/{id}?federationToken=1``: where the file lies and fresh credentials."""
        response = self._http.request("GET", file_url, fields={"federationToken": "1"})
        if isinstance(response, Throttled):
            raise ProviderThrottledError("Keboola throttled the file detail", retry_after=response.retry_after)
        return FileDetail.parse(self._http.json(response), file_id, self._http)

    def _header(self, job: dict[str, Any], table_id: str) -> list[str]:
        """The exported columns, in order, as the official clients choose them: the columns asked for (this
        job's params.columns, else the export's own ``operationParams.export.columns``), else every column
        of the table detail (``GET /v2/storage/tables/{id}``)."""
        if self._columns:
            return list(self._columns)
        operation = job.get("operationParams")
        export = operation.get("export") if isinstance(operation, dict) else None
        asked = export.get("columns") if isinstance(export, dict) else None
        if isinstance(asked, list) and asked and all(isinstance(c, str) for c in asked):
            return list(asked)
        response = self._http.request("GET", f"{self._root}/v2/storage/tables/{quote(table_id, safe='')}")
        if isinstance(response, Throttled):
            raise ProviderThrottledError("Keboola throttled the table detail", retry_after=response.retry_after)
        table = self._http.json(response)
        columns = table.get("columns") if isinstance(table, dict) else None
        if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
            raise ProviderTransientError(f"Keboola table {table_id} detail has no columns")
        return columns

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


def _column_list(columns: Any) -> list[str]:
    """params.columns as a list: a JSON list, or Keboola's comma-separated string."""
    if isinstance(columns, list | tuple):
        return [str(c).strip() for c in columns if str(c).strip()]
    if isinstance(columns, str):
        return [c.strip() for c in columns.split(",") if c.strip()]
    return []


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
