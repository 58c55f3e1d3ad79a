"""The protocol every batch provider implements: submit, status, results pages."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

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


class ResultsNotReady(Exception):
    """The provider answered 202: the job's results cannot be paged yet."""


class BatchProvider(Protocol):
    def submit(self, body: bytes, idempotency_key: str) -> Submitted | Throttled: ...

    def status(self, provider_job_id: str) -> JobStatus | Throttled: ...

    def pages(self, provider_job_id: str, kind: ResultKind) -> Iterator[list[dict]]:
        """Yield result pages in order; raises ResultsNotReady before the first page when not ready."""
        ...
