"""FullStory v2 batch imports (users and events): https://developer.fullstory.com.

``POST /v2/{users|events}/batch`` answers a job id; ``GET .../batch/{id}`` its status; the finished
job's ``/imports`` and ``/errors`` are paged with ``next_page_token``. HTTP and its named errors are
tracker.providers.http's; what is FullStory's own is here.

Idempotency-Key (developer.fullstory.com "Idempotent Requests"): FullStory saves the status and body of
the first answer to a key, "including 500 errors", and replays it for 24 hours; a newer text of the page
exempts 429 and "server errors above 500", which may be retried. So:

* a 500 that FullStory itself answered (its ``{"code", "message"}`` error body) is a failure stored under
  the key: sending the key again only replays it. ``submit`` raises ProviderTransientError with
  ``burns_key`` set, and the caller moves the batch to a new key before the retry;
* a 500 without FullStory's error body (a proxy's page), 501-599, a lost connection or a timeout keep the
  key: nothing was stored, or the first answer may have been a success that only the resend can recover;
* a request that "conflicted with another that was executing concurrently" under the same key saves
  nothing and errors. The page names no status for it; FullStory's v2 API is grpc-gateway generated (its
  Swagger files, ../shared/specs/fullstory), where a concurrency conflict (gRPC ABORTED) is 409 Conflict.
  A 409 on submit is therefore "the first request is still running": the same key, later (Throttled).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import urllib3

from tracker.errors import ProviderRejectedError, ProviderThrottledError, ProviderTransientError
from tracker.providers.base import JobStatus, ResultKind, ResultPage, ResultsNotReady, Submitted, Throttled
from tracker.providers.fullstory.client import fullstory_http
from tracker.providers.fullstory.reconcile import Reconciliation, reconcile
from tracker.providers.http import POOL

USERS_PATH = "/v2/users/batch"
EVENTS_PATH = "/v2/events/batch"
FINISHED = {"COMPLETED", "FAILED"}
PAGE_RETRIES = 3
PAGE_BACKOFF_SECONDS = 0.2
STORED_FAILURE_STATUS = 500  # the one 5xx FullStory stores under an Idempotency-Key (module docstring)
KEY_CONFLICT_STATUS = 409  # a same-key request overlapping one still executing (module docstring)

log = logging.getLogger(__name__)


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
        self._kind = "users" if path == USERS_PATH else "events"
        self._http = fullstory_http(api_key, timeout_seconds, pool)

    # -- protocol ---------------------------------------------------------------------------
    def submit(self, body: bytes, idempotency_key: str) -> Submitted | Throttled:
        try:
            response = self._http.request(
                "POST", self._root, body=body, headers={"Idempotency-Key": idempotency_key}
            )
        except ProviderTransientError as exc:
            # FullStory's own 500 is stored under the key: a resend can only replay it (module docstring).
            exc.burns_key = exc.status == STORED_FAILURE_STATUS and bool(exc.provider_code)
            raise
        except ProviderRejectedError as exc:
            if exc.status != KEY_CONFLICT_STATUS:
                raise
            log.warning("FullStory is still executing an earlier request with Idempotency-Key %s", idempotency_key)
            return Throttled(None)
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

    def pages(
        self, provider_job_id: str, kind: ResultKind, *, after: str | None = None, seen: Collection[str] = ()
    ) -> Iterator[ResultPage]:
        """Pages in order, from the start or from page token ``after``. The next page is fetched in the
        background while the caller writes the current one (paging is mostly waiting for FullStory; writing
        is mostly CPU and S3).

        A ``next_page_token`` already asked for (here or, via ``seen``, by an earlier call) ends the listing,
        as FullStory's Node SDK ends paging; the last page says so in ``ended_early`` and the records never
        listed are named by reconciliation. A 429 is raised at once (ProviderThrottledError with its
        Retry-After) for the caller to wait through the state machine, never in a sleeping Lambda."""
        url = f"{self._root}/{provider_job_id}/{kind}"
        asked: set[str] = set(seen)
        if after is not None:
            asked.add(after)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="page-prefetch") as prefetch:
            upcoming = prefetch.submit(self._page, url, after, kind, provider_job_id)
            while True:
                payload = upcoming.result()
                results = payload.get("results")
                if results is None:
                    results = []
                if not isinstance(results, list):
                    raise ProviderTransientError(f"FullStory {kind} page has no results list")
                token = payload.get("next_page_token") or None
                ended_early = None
                if token is not None and token in asked:
                    ended_early = f"FullStory repeated a next_page_token while listing {kind}: paging stopped there"
                    token = None
                if token is not None:
                    asked.add(token)
                    upcoming = prefetch.submit(self._page, url, token, kind, provider_job_id)
                yield ResultPage.of(
                    results, token, ended_early=ended_early, total=_total(payload.get("total_records"))
                )
                if token is None:
                    return

    def reconcile(
        self, sent: Iterable[dict[str, Any]], imports: Iterable[dict[str, Any]], errors: Iterable[dict[str, Any]]
    ) -> Reconciliation:
        """Which sent rows the listings name, and how (tracker.providers.fullstory.reconcile)."""
        return reconcile(self._kind, sent, imports, errors)

    def _page(self, url: str, token: str | None, kind: str, provider_job_id: str) -> dict[str, Any]:
        """One page, retried in place a few times on a transient error: a 50-page collect should not start
        over because one page hiccupped. Past these retries the named error goes to the state machine,
        which retries the step from the last stored page. A 429 is not waited out here: it is raised with
        its Retry-After for the state machine's Wait state."""
        for attempt in range(PAGE_RETRIES + 1):
            try:
                response = self._http.request("GET", url, fields={"page_token": token} if token else None)
                if isinstance(response, Throttled):
                    raise ProviderThrottledError(
                        f"FullStory throttled paging {kind}", retry_after=response.retry_after
                    )
                if response.status == 202:
                    raise ResultsNotReady(f"FullStory {kind} for job {provider_job_id} not ready (202)")
                payload = self._http.json(response)
                if not isinstance(payload, dict):
                    raise ProviderTransientError(f"FullStory {kind} page is not a JSON object")
                return payload
            except ProviderTransientError:
                if attempt == PAGE_RETRIES:
                    raise
                time.sleep(PAGE_BACKOFF_SECONDS * 2**attempt)
        raise AssertionError("unreachable")


def _count(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _total(value: Any) -> int | None:
    """``total_records`` is a string in FullStory's answers ("98"); None when absent or not a count."""
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
