"""FullStory segment export, an operation that produces a file: https://developer.fullstory.com.

``POST /segments/v1/exports`` schedules the export and answers ``{"operationId"}``;
``GET /operations/v1/{id}`` reports ``state`` and ``estimatePctComplete``; a COMPLETED operation's
``results`` carry either ``searchExportId`` (official: ``GET /search/v1/exports/{id}/results`` then
answers ``{"location", "expires"}``, a URL valid about five minutes) or ``downloadUrl`` (the seed's
shape). Both are accepted. The file behind the URL is gzip; it is streamed as-is.

State mapping (the normalized job states of the tracker):
  PENDING with estimatePctComplete 0 or absent -> PENDING (queued, nothing done yet)
  PENDING with estimatePctComplete > 0, RUNNING -> RUNNING
  COMPLETED -> COMPLETED (progress 100)
  FAILED -> FAILED, error {"code": "export_failed", "message": errorDetails}
  anything else -> ProviderRejectedError (code unexpected_state): an unknown state is not retried.

Works for an operation someone else started (``track``): ``status`` and ``result`` need only the
operation id. The file name comes from the download's Content-Disposition (``.csv.gz``,
``.ndjson.gz`` or ``.json.gz``), so it is right whoever chose the format.

HTTP, its named errors and the signed-URL download with refresh are tracker.providers.http's. The
download URL is a signed URL on another host: it never gets the API key.

Create Export documents no Idempotency-Key (developer.fullstory.com "Create Export"; the key the tracker
sends is harmless and may be ignored), so a create whose answer was lost may have started an export. The
documented ``GET /operations/v1`` ("List Operation": newest operations, filtered by ``type``, paged with
``paginationToken``) lets the caller find it: ``find_started`` answers the SEARCH_EXPORT operations created
since an attempt began (less a margin for the two clocks), oldest first. It cannot tell an export another
client started in that window from the lost one: the caller adopts one and names them all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import urllib3

from tracker.errors import ProviderRejectedError, ProviderThrottledError, ProviderTransientError
from tracker.providers.base import OperationStatus, ResultFile, ResultsNotReady, Submitted, Throttled
from tracker.providers.fullstory.client import fullstory_http
from tracker.providers.http import POOL

EXPORTS_PATH = "/segments/v1/exports"
OPERATIONS_PATH = "/operations/v1"
OPERATION_PATH = "/operations/v1/{id}"
EXPORT_OPERATION_TYPE = "SEARCH_EXPORT"
START_CLOCK_MARGIN_SECONDS = 60  # createdAt is FullStory's clock, the attempt's time the tracker's
FIND_STARTED_PAGES = 5  # pages of 100 operations (the documented maximum) searched for a lost export
EXPORT_RESULTS_PATH = "/search/v1/exports/{id}/results"
# Documented request fields, passed through as given (after the aliases below).
EXPORT_FIELDS = ("segmentId", "type", "scope", "format", "timeRange", "segmentTimeRange", "timezone", "fields")
TYPE_ALIASES = {
    "individual": "TYPE_INDIVIDUAL",
    "individuals": "TYPE_INDIVIDUAL",
    "type_individual": "TYPE_INDIVIDUAL",
    "event": "TYPE_EVENT",
    "events": "TYPE_EVENT",
    "type_event": "TYPE_EVENT",
}
FORMAT_ALIASES = {
    "csv": "FORMAT_CSV",
    "json": "FORMAT_JSON",
    "ndjson": "FORMAT_NDJSON",
    "format_csv": "FORMAT_CSV",
    "format_json": "FORMAT_JSON",
    "format_ndjson": "FORMAT_NDJSON",
}
DOWNLOAD_ATTEMPTS = 3  # fresh download URLs asked for before giving up (each lives ~5 minutes)
CHUNK_BYTES = 1024 * 1024
_FILENAME = re.compile(r"""filename\*?=(?:UTF-8'')?"?([^";]+)"?""", re.IGNORECASE)
_EXTENSIONS = (".csv.gz", ".ndjson.gz", ".json.gz")
_DOWNLOAD = "FullStory export download"


def export_request(params: dict[str, Any]) -> dict[str, Any]:
    """The Create Export body from a job's params: the documented fields as given, with friendly
    aliases for ``type`` (individuals/events) and ``format`` (csv/json/ndjson) spelled FullStory's
    way, and ``timeRange`` defaulting to empty bounds (the docs' way of saying "all data")."""
    body = {name: params[name] for name in EXPORT_FIELDS if params.get(name) is not None}
    if isinstance(body.get("type"), str):
        body["type"] = TYPE_ALIASES.get(body["type"].strip().lower(), body["type"])
    if isinstance(body.get("format"), str):
        body["format"] = FORMAT_ALIASES.get(body["format"].strip().lower(), body["format"])
    body.setdefault("timeRange", {"start": "", "end": ""})
    return body


class FullStorySegmentExportProvider:
    """OperationProvider for FullStory segment exports (and for following any FullStory operation)."""

    def __init__(
        self,
        api_key: str,
        base_url: str,
        timeout_seconds: float = 30.0,
        *,
        pool: urllib3.PoolManager = POOL,
        download_attempts: int = DOWNLOAD_ATTEMPTS,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._http = fullstory_http(api_key, timeout_seconds, pool)
        self._download_attempts = max(1, download_attempts)

    # -- protocol ---------------------------------------------------------------------------
    def start(self, params: dict[str, Any], idempotency_key: str) -> Submitted | Throttled:
        body = json.dumps(export_request(params)).encode()
        response = self._http.request(
            "POST", self._base + EXPORTS_PATH, body=body, headers={"Idempotency-Key": idempotency_key}
        )
        if isinstance(response, Throttled):
            return response
        payload = self._http.json(response)
        operation_id = payload.get("operationId") if isinstance(payload, dict) else None
        if not isinstance(operation_id, str) or not operation_id:
            raise ProviderTransientError("FullStory accepted the export but its answer has no operationId")
        return Submitted(provider_job_id=operation_id, provider_status="PENDING")

    def find_started(self, params: dict[str, Any], since: str) -> list[str]:
        """Ids of the exports created since ``since`` (RFC 3339, the tracker's clock, less
        START_CLOCK_MARGIN_SECONDS), oldest first: the export an attempt whose answer was lost may have started.
        An operation whose ``details`` name another segment is left out (details are not documented per type,
        so without them every export of the window counts)."""
        floor = _instant(since)
        if floor is None:
            raise ValueError(f"not an RFC 3339 time: {since!r}")
        floor -= timedelta(seconds=START_CLOCK_MARGIN_SECONDS)
        segment = params.get("segmentId")
        found: list[tuple[datetime, str]] = []
        token: str | None = None
        for _ in range(FIND_STARTED_PAGES):
            fields = {"type": EXPORT_OPERATION_TYPE, "limit": "100"}
            if token:
                fields["paginationToken"] = token
            response = self._http.request("GET", self._base + OPERATIONS_PATH, fields=fields)
            if isinstance(response, Throttled):
                raise ProviderThrottledError("FullStory throttled listing operations", retry_after=response.retry_after)
            payload = self._http.json(response)
            operations = payload.get("operations") if isinstance(payload, dict) else None
            for operation in operations if isinstance(operations, list) else []:
                if (candidate := _started_since(operation, floor, segment)) is not None:
                    found.append(candidate)
            token = payload.get("nextPaginationToken") if isinstance(payload, dict) else None
            if not token:
                break
        return [operation_id for _, operation_id in sorted(found)]

    def status(self, provider_job_id: str) -> OperationStatus | Throttled:
        operation = self._operation(provider_job_id)
        if isinstance(operation, Throttled):
            return operation
        return operation_status(operation)

    def result(self, provider_job_id: str) -> ResultFile:
        """The export file. Opens the first download here (its Content-Disposition names the file);
        the first ``chunks()`` streams it, every later call starts a fresh download. Each download
        that meets an expired URL asks FullStory for a fresh one, at most ``download_attempts`` URLs."""
        locate = _Locator(self, provider_job_id)
        first = self._open_download(locate)
        name = _file_name(provider_job_id, first.headers)
        pending: list[urllib3.BaseHTTPResponse] = [first]

        def chunks() -> Iterator[bytes]:
            response = pending.pop() if pending else self._open_download(locate)
            yield from self._http.stream(response, what=_DOWNLOAD, chunk_bytes=CHUNK_BYTES, gzip=True)

        return ResultFile(name=name, content_type="application/gzip", chunks=chunks)

    # -- operation and locations ------------------------------------------------------------
    def _operation(self, operation_id: str) -> dict[str, Any] | Throttled:
        response = self._http.request("GET", self._base + OPERATION_PATH.format(id=quote(operation_id, safe="")))
        if isinstance(response, Throttled):
            return response
        payload = self._http.json(response)
        if not isinstance(payload, dict) or not isinstance(payload.get("state"), str):
            raise ProviderTransientError("FullStory operation answer has no state")
        return payload

    def _search_export_location(self, search_export_id: str) -> str:
        url = self._base + EXPORT_RESULTS_PATH.format(id=quote(search_export_id, safe=""))
        response = self._http.request("GET", url)
        if isinstance(response, Throttled):
            raise ProviderThrottledError(
                "FullStory throttled the export results request", retry_after=response.retry_after
            )
        payload = self._http.json(response)
        location = payload.get("location") if isinstance(payload, dict) else None
        if not isinstance(location, str) or not location:
            raise ProviderTransientError("FullStory export results answer has no location")
        return location

    def _open_download(self, locate: _Locator) -> urllib3.BaseHTTPResponse:
        return self._http.open_signed(locate, what=_DOWNLOAD, attempts=self._download_attempts)


class _Locator:
    """Hands out download URLs for one operation: from ``results.downloadUrl`` (each GET of the
    operation gives a fresh one) or via ``results.searchExportId`` and the export results endpoint
    (remembered, so a re-fetch costs one call)."""

    def __init__(self, provider: FullStorySegmentExportProvider, operation_id: str) -> None:
        self._provider = provider
        self._operation_id = operation_id
        self._search_export_id: str | None = None

    def __call__(self) -> str:
        if self._search_export_id is not None:
            return self._provider._search_export_location(self._search_export_id)
        operation = self._provider._operation(self._operation_id)
        if isinstance(operation, Throttled):
            raise ProviderThrottledError("FullStory throttled the operation request", retry_after=operation.retry_after)
        state = operation_status(operation)
        if state.state == "FAILED":
            raise ProviderRejectedError(
                f"FullStory export {self._operation_id} failed: {(state.error or {}).get('message', '')}",
                code="export_failed",
            )
        if state.state != "COMPLETED":
            raise ResultsNotReady(f"FullStory operation {self._operation_id} is {state.provider_status}")
        results = operation.get("results")
        results = results if isinstance(results, dict) else {}
        download_url = results.get("downloadUrl")
        search_export_id = results.get("searchExportId")
        if isinstance(search_export_id, str) and search_export_id:
            self._search_export_id = search_export_id
        if isinstance(download_url, str) and download_url:
            return download_url  # the seed's shape: the operation itself links the file
        if self._search_export_id is not None:
            return self._provider._search_export_location(self._search_export_id)
        raise ProviderTransientError(
            f"FullStory operation {self._operation_id} completed without results.downloadUrl or searchExportId"
        )


def operation_status(operation: dict[str, Any]) -> OperationStatus:
    """Map a FullStory Operation (either the official or the seed's vocabulary) onto the tracker's states."""
    provider_state = str(operation.get("state", ""))
    pct = _pct(operation.get("estimatePctComplete"))
    if provider_state == "COMPLETED":
        return OperationStatus(provider_status=provider_state, state="COMPLETED", progress_pct=100.0)
    if provider_state == "FAILED":
        details = operation.get("errorDetails")
        message = details.strip() if isinstance(details, str) and details.strip() else "FullStory export failed"
        return OperationStatus(
            provider_status=provider_state,
            state="FAILED",
            progress_pct=pct,
            error={"code": "export_failed", "message": message},
        )
    if provider_state == "RUNNING" or (provider_state == "PENDING" and (pct or 0.0) > 0.0):
        return OperationStatus(provider_status=provider_state, state="RUNNING", progress_pct=pct)
    if provider_state == "PENDING":
        return OperationStatus(provider_status=provider_state, state="PENDING", progress_pct=pct)
    raise ProviderRejectedError(
        f"FullStory operation is in a state the tracker does not know: {provider_state!r}", code="unexpected_state"
    )


def _pct(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return min(100.0, max(0.0, float(value)))


def _file_name(operation_id: str, headers: Any) -> str:
    """segment-export-<id>.<csv|ndjson|json>.gz, the format read from Content-Disposition."""
    stem = "segment-export-" + (re.sub(r"[^A-Za-z0-9_-]+", "_", operation_id).strip("_") or "operation")
    match = _FILENAME.search(headers.get("Content-Disposition") or "")
    filename = (match.group(1) if match else "").lower()
    for extension in _EXTENSIONS:
        if filename.endswith(extension):
            return stem + extension
    return stem + ".gz"


def _instant(value: Any) -> datetime | None:
    """An RFC 3339 time as an aware datetime (FullStory's createdAt has microseconds and Z); None otherwise."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _started_since(operation: Any, floor: datetime, segment: Any) -> tuple[datetime, str] | None:
    """(created, id) of an export created at or after ``floor`` that may be the given segment's."""
    if not isinstance(operation, dict) or operation.get("type", EXPORT_OPERATION_TYPE) != EXPORT_OPERATION_TYPE:
        return None
    created, operation_id, details = _instant(operation.get("createdAt")), operation.get("id"), operation.get("details")
    if isinstance(details, dict) and details.get("segmentId") not in (None, segment):
        return None
    if created is None or created < floor or not isinstance(operation_id, str) or not operation_id:
        return None
    return created, operation_id
