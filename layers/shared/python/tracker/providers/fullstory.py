"""FullStory v2 batch import API (users and events): https://developer.fullstory.com.

Plain urllib3 (shipped with botocore in the Lambda runtime) with its own retries switched off: the
state machine owns retrying, so every failure surfaces here as a named error exactly once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import urllib3

from tracker.errors import (
    ProviderAuthError,
    ProviderRejectedError,
    ProviderThrottledError,
    ProviderTransientError,
)
from tracker.providers.base import JobStatus, ResultKind, ResultsNotReady, Submitted, Throttled, retry_after_seconds

ENDPOINTS = {"fullstory.users": "/v2/users/batch", "fullstory.events": "/v2/events/batch"}
FINISHED = {"COMPLETED", "FAILED"}
PAGE_RETRIES = 3
PAGE_BACKOFF_SECONDS = 0.2
PAGE_RETRY_AFTER_CAP_SECONDS = 5.0
_POOL = urllib3.PoolManager(maxsize=10, retries=False, timeout=urllib3.Timeout(connect=5.0, read=30.0))


class FullStoryBatchProvider:
    def __init__(
        self,
        *,
        job_type: str,
        api_key: str,
        base_url: str,
        timeout_seconds: float = 30.0,
        pool: urllib3.PoolManager = _POOL,
    ) -> None:
        if job_type not in ENDPOINTS:
            raise ValueError(f"FullStory has no batch endpoint for job type {job_type!r}")
        self._root = base_url.rstrip("/") + ENDPOINTS[job_type]
        self._api_key = api_key
        self._pool = pool
        self._timeout = urllib3.Timeout(connect=min(5.0, timeout_seconds), read=timeout_seconds)

    # -- protocol ---------------------------------------------------------------------------
    def submit(self, body: bytes, idempotency_key: str) -> Submitted | Throttled:
        response = self._call("POST", self._root, body=body, extra_headers={"Idempotency-Key": idempotency_key})
        if response.status == 429:
            return Throttled(retry_after_seconds(response.headers))
        payload = self._json(response)
        job = payload.get("job") if isinstance(payload, dict) else None
        if not isinstance(job, dict) or not isinstance(job.get("id"), str) or not job["id"]:
            raise ProviderTransientError("FullStory accepted the batch but its answer has no job id")
        return Submitted(provider_job_id=job["id"], provider_status=str(job.get("status", "PROCESSING")))

    def status(self, provider_job_id: str) -> JobStatus | Throttled:
        response = self._call("GET", f"{self._root}/{provider_job_id}")
        if response.status == 429:
            return Throttled(retry_after_seconds(response.headers))
        payload = self._json(response)
        job = payload.get("job") if isinstance(payload, dict) else None
        if not isinstance(job, dict) or "status" not in job:
            raise ProviderTransientError("FullStory job status answer has no job.status")
        status = str(job["status"])
        return JobStatus(
            provider_status=status,
            finished=status in FINISHED,
            imports=_count(payload.get("imports")),
            errors=_count(payload.get("errors")),
        )

    def pages(self, provider_job_id: str, kind: ResultKind) -> Iterator[list[dict]]:
        """Pages in order. The next page is fetched in the background while the caller writes the
        current one (paging is mostly waiting for FullStory; writing is mostly CPU and S3)."""
        url = f"{self._root}/{provider_job_id}/{kind}"
        seen_tokens: set[str] = set()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="page-prefetch") as prefetch:
            upcoming = prefetch.submit(self._page, url, None, kind, provider_job_id)
            while True:
                payload = upcoming.result()
                results = payload.get("results")
                if results is None:
                    results = []
                if not isinstance(results, list):
                    raise ProviderTransientError(f"FullStory {kind} page has no results list")
                token = payload.get("next_page_token") or None
                if token is not None:
                    if token in seen_tokens:
                        # A token that comes back would page forever; stop loudly instead.
                        raise ProviderRejectedError(
                            f"FullStory repeated next_page_token while paging {kind}", code="paging_loop"
                        )
                    seen_tokens.add(token)
                    upcoming = prefetch.submit(self._page, url, token, kind, provider_job_id)
                yield results
                if token is None:
                    return

    def _page(self, url: str, token: str | None, kind: str, provider_job_id: str) -> dict[str, Any]:
        """One page, retried in place a few times on a transient error or a short 429: a 50-page
        collect should not start over from page one because one page hiccupped. Past these retries
        the named error goes to the state machine, which retries the whole step."""
        for attempt in range(PAGE_RETRIES + 1):
            last_try = attempt == PAGE_RETRIES
            try:
                response = self._call("GET", url, fields={"page_token": token} if token else None)
                if response.status == 202:
                    raise ResultsNotReady(f"FullStory {kind} for job {provider_job_id} not ready (202)")
                if response.status == 429:
                    retry_after = retry_after_seconds(response.headers)
                    if last_try or (retry_after or 0) > PAGE_RETRY_AFTER_CAP_SECONDS:
                        raise ProviderThrottledError(f"FullStory throttled paging {kind}", retry_after=retry_after)
                    time.sleep(retry_after if retry_after is not None else PAGE_BACKOFF_SECONDS * 2**attempt)
                    continue
                payload = self._json(response)
                if not isinstance(payload, dict):
                    raise ProviderTransientError(f"FullStory {kind} page is not a JSON object")
                return payload
            except ProviderTransientError:
                if last_try:
                    raise
                time.sleep(PAGE_BACKOFF_SECONDS * 2**attempt)
        raise AssertionError("unreachable")

    # -- HTTP -------------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        fields: dict[str, str] | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> urllib3.BaseHTTPResponse:
        headers = {"Authorization": f"Basic {self._api_key}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        headers.update(extra_headers or {})
        try:
            response = self._pool.request(
                method, url, body=body, fields=fields, headers=headers, retries=False, timeout=self._timeout
            )
        except urllib3.exceptions.HTTPError as exc:  # reset, refused, timeouts, protocol errors
            raise ProviderTransientError(f"FullStory unreachable: {type(exc).__name__}") from exc
        if response.status in (401, 403):
            raise ProviderAuthError(
                f"FullStory refused the API key ({response.status} {self._error_code(response)})",
                code="unauthorized" if response.status == 401 else "forbidden",
            )
        if response.status >= 500:
            raise ProviderTransientError(f"FullStory answered {response.status} {self._error_code(response)}")
        if response.status >= 400 and response.status != 429:
            code = self._error_code(response)
            raise ProviderRejectedError(
                f"FullStory answered {response.status} {code}: {self._error_message(response)}",
                code=code or "provider_rejected",
            )
        return response

    @staticmethod
    def _json(response: urllib3.BaseHTTPResponse) -> Any:
        try:
            return json.loads(response.data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProviderTransientError(f"FullStory answered malformed JSON ({response.status})") from exc

    @staticmethod
    def _error_code(response: urllib3.BaseHTTPResponse) -> str:
        try:
            code = json.loads(response.data).get("code")
            return str(code) if code else ""
        except (ValueError, AttributeError, UnicodeDecodeError):
            return ""

    @staticmethod
    def _error_message(response: urllib3.BaseHTTPResponse) -> str:
        try:
            return str(json.loads(response.data).get("message", ""))[:300]
        except (ValueError, AttributeError, UnicodeDecodeError):
            return ""


def _count(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
