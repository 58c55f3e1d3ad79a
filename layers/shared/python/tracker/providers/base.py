"""The protocols providers implement (BatchProvider: submit, status, results pages; OperationProvider:
start, status, result file) and the values they answer with."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

ResultKind = Literal["imports", "errors"]


@dataclass(frozen=True, slots=True)
class Submitted:
    provider_job_id: str
    provider_status: str


@dataclass(frozen=True, slots=True)
class Throttled:
    retry_after: float | None


@dataclass(frozen=True, slots=True)
class JobStatus:
    provider_status: str
    finished: bool
    imports: int = 0
    errors: int = 0


@dataclass(frozen=True, slots=True)
class NdjsonPage:
    """One page of results as NDJSON: `count` records, one a line, each line ending in a newline; where the
    listing resumes after it, as on ResultPage."""

    lines: bytes
    count: int
    resume_token: str | None = None
    ended_early: str | None = None
    total: int | None = None


class ResultsNotReady(Exception):
    """The provider answered 202: the job's results cannot be paged yet."""


class ResultPage(list):  # type: ignore[type-arg]
    """One page of a result listing: its records (a list, so it is written like one) and where the listing
    resumes after it. ``resume_token`` is the page token to ask for next (None: the listing ended here);
    ``ended_early`` says why the listing was cut short (e.g. a repeated next_page_token), else None."""

    resume_token: str | None = None
    ended_early: str | None = None
    total: int | None = None  # the listing's own count of its records (FullStory's total_records), if given

    @classmethod
    def of(
        cls,
        records: list[dict],
        resume_token: str | None,
        *,
        ended_early: str | None = None,
        total: int | None = None,
    ) -> ResultPage:
        page = cls(records)
        page.resume_token, page.ended_early, page.total = resume_token, ended_early, total
        return page


class BatchProvider(Protocol):
    def submit(self, body: bytes, idempotency_key: str) -> Submitted | Throttled: ...

    def status(self, provider_job_id: str) -> JobStatus | Throttled: ...

    def pages(
        self, provider_job_id: str, kind: ResultKind, *, after: str | None = None, seen: Collection[str] = ()
    ) -> Iterator[ResultPage]:
        """Yield result pages in order, from the start or from page token ``after`` (a listing resumed where an
        earlier call stopped; ``seen`` are the tokens that call already asked for, so a token coming back
        ends the listing across calls too). Raises ResultsNotReady before the first page when not ready,
        and ProviderThrottledError (with Retry-After) when the provider throttles the listing."""
        ...

    def ndjson_pages(
        self, provider_job_id: str, kind: ResultKind, *, after: str | None = None, seen: Collection[str] = ()
    ) -> Iterator[NdjsonPage]:
        """The same pages as NDJSON, ready to store (what collect writes)."""
        ...


# -- operations: one provider job that produces a file (FullStory segment export, Keboola table export) --
@dataclass(frozen=True, slots=True)
class OperationStatus:
    provider_status: str  # the provider's own word (e.g. RUNNING, processing, success)
    state: str  # normalized: PENDING | RUNNING | COMPLETED | FAILED
    progress_pct: float | None = None  # 0..100 when the provider reports progress
    error: dict[str, str] | None = None  # {code, message, exceptionId?} when FAILED
    # Answers in a row whose state the provider could not place (a spec's unknown states): the check step
    # hands it back to the next status() call, so an endless unknown state ends the job at the spec's limit.
    unknown_streak: int = 0

    @property
    def finished(self) -> bool:
        return self.state in ("COMPLETED", "FAILED")


@dataclass(frozen=True, slots=True)
class ResultFile:
    """What an operation produced: stream it with `chunks()`; `name` is the file name to store it under."""

    name: str
    content_type: str
    chunks: Any  # Callable[[], Iterator[bytes]]: opens a fresh download each call (URLs expire)


class OperationProvider(Protocol):
    def start(self, params: dict[str, Any], idempotency_key: str) -> Submitted | Throttled:
        """Create the provider job (export) from the job's params."""
        ...

    def status(self, provider_job_id: str) -> OperationStatus | Throttled:
        """The job's state now. A provider that answered ``unknown_streak`` > 0 is called again with
        ``status(provider_job_id, unknown_streak=N)``."""
        ...

    def result(self, provider_job_id: str) -> ResultFile:
        """The finished job's file. Must cope with short-lived download URLs: each `chunks()` call asks
        the provider for a fresh URL when the previous one expired (403/404/410 on the download)."""
        ...
