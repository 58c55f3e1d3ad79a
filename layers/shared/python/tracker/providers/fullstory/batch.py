"""FullStory v2 batch imports (users and events): https://developer.fullstory.com.

``POST /v2/{users|events}/batch`` answers a job id; ``GET .../batch/{id}`` its status; the finished
job's ``/imports`` and ``/errors`` are paged with ``next_page_token``. HTTP and its named errors are
tracker.providers.http's; what is FullStory's own is here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import urllib3

from tracker.errors import ProviderRejectedError, ProviderThrottledError, ProviderTransientError
from tracker.providers.base import JobStatus, ResultKind, ResultsNotReady, Submitted, Throttled
from tracker.providers.fullstory.client import fullstory_http
from tracker.providers.http import POOL

USERS_PATH = "/v2/users/batch"
EVENTS_PATH = "/v2/events/batch"
FINISHED = {"COMPLETED", "FAILED"}
PAGE_RETRIES = 3
PAGE_BACKOFF_SECONDS = 0.2
PAGE_RETRY_AFTER_CAP_SECONDS = 5.0


class FullStoryBatchProvider:
    """BatchProvider for one of FullStory's batch import endpoints (``USERS_PATH``, ``EVENTS_PATH``)."""

    def __init__(
        self,
        *,
        path: str,
        api_key: str,
        base_url: str,
        timeout_seconds: float = 30.0,
        pool: urllib3.PoolManager = POOL,
    ) -> None:
        if path not in (USERS_PATH, EVENTS_PATH):
            raise ValueError(f"FullStory has no batch import at {path!r}")
        self._root = base_url.rstrip("/") + path
        self._http = fullstory_http(api_key, timeout_seconds, pool)

    # -- protocol ---------------------------------------------------------------------------
    def submit(self, body: bytes, idempotency_key: str) -> Submitted | Throttled:
        response = self._http.request("POST", self._root, body=body, headers={"Idempotency-Key": idempotency_key})
        if isinstance(response, Throttled):
            return response
        payload = self._http.json(response)
        job = payload.get("job") if isinstance(payload, dict) else None
        if not isinstance(job, dict) or not isinstance(job.get("id"), str) or not job["id"]:
            raise ProviderTransientError("FullStory accepted the batch but its answer has no job id")
        return Submitted(provider_job_id=job["id"], provider_status=str(job.get("status", "PROCESSING")))

    def status(self, provider_job_id: str) -> JobStatus | Throttled:
        response = self._http.request("GET", f"{self._root}/{provider_job_id}")
        if isinstance(response, Throttled):
            return response
        payload = self._http.json(response)
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
                response = self._http.request("GET", url, fields={"page_token": token} if token else None)
                if isinstance(response, Throttled):
                    retry_after = response.retry_after
                    if last_try or (retry_after or 0) > PAGE_RETRY_AFTER_CAP_SECONDS:
                        raise ProviderThrottledError(f"FullStory throttled paging {kind}", retry_after=retry_after)
                    time.sleep(retry_after if retry_after is not None else PAGE_BACKOFF_SECONDS * 2**attempt)
                    continue
                if response.status == 202:
                    raise ResultsNotReady(f"FullStory {kind} for job {provider_job_id} not ready (202)")
                payload = self._http.json(response)
                if not isinstance(payload, dict):
                    raise ProviderTransientError(f"FullStory {kind} page is not a JSON object")
                return payload
            except ProviderTransientError:
                if last_try:
                    raise
                time.sleep(PAGE_BACKOFF_SECONDS * 2**attempt)
        raise AssertionError("unreachable")


def _count(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
