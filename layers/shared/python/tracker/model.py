"""The normalized job: states, the accounting rule and the API view.

DynamoDB keeps plain attribute maps (see store.py); this module turns them into the view that the
REST API returns and the notification carries. Field names follow DESIGN.md's API contract, which
is shaped so a client of the FullStory Operation schema or the Keboola JobResponse schema feels at home.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from tracker import catalogue

JOB_TYPES = catalogue.BATCH_TYPES  # the job types whose rows come from a file or `requests` (tracker.catalogue)


class JobState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED)


def closed(job: dict[str, Any]) -> bool:
    """The job has ended for good: its final state, manifest and notification are written (finalize sets
    finishedAt with them). A cancelled job is FAILED at once but closed only once finalize has run."""
    return JobState(job["state"]).terminal and bool(job.get("finishedAt"))


class BatchState(StrEnum):
    PENDING = "PENDING"  # written, not yet accepted by the provider
    RUNNING = "RUNNING"  # provider job id known, provider still processing
    COLLECTING = "COLLECTING"  # provider finished; results being paged into S3
    COMPLETED = "COMPLETED"  # provider COMPLETED, results saved
    PARTIAL = "PARTIAL"  # provider FAILED with some rows imported (or none), results saved
    FAILED = "FAILED"  # the tracker could not finish this batch (auth, deadline, unreachable)

    @property
    def finished(self) -> bool:
        return self in (BatchState.COMPLETED, BatchState.PARTIAL, BatchState.FAILED)

    @property
    def accounted(self) -> bool:
        """Every row of the batch is in imports or errors."""
        return self in (BatchState.COMPLETED, BatchState.PARTIAL)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(value: Any) -> datetime | None:
    """A job record's timestamp (now_iso's form, or any ISO 8601 date-time) as an aware datetime; None when
    absent or unreadable (views show "-" rather than fail on one odd field)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Accounting:
    """rows in = imported + provider errors + rejected locally + unlisted. `unlisted` are rows the provider
    listed neither as imported nor as an error (named one by one in unlisted.ndjson): accounted for, and a
    warning, never a reason to fail a finished job."""

    rows_in: int
    imported: int
    provider_errors: int
    rejected: int
    unlisted: int = 0

    @property
    def accounted(self) -> int:
        return self.imported + self.provider_errors + self.rejected + self.unlisted

    @property
    def balanced(self) -> bool:
        return self.rows_in == self.accounted

    @property
    def line(self) -> str:
        sign = "=" if self.balanced else "!="
        unlisted = f" + unlisted {self.unlisted}" if self.unlisted else ""
        return (
            f"rows in {self.rows_in} {sign} imported {self.imported} + provider errors "
            f"{self.provider_errors} + rejected {self.rejected}{unlisted}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "rowsIn": self.rows_in,
            "imported": self.imported,
            "providerErrors": self.provider_errors,
            "rejected": self.rejected,
            "unlisted": self.unlisted,
            "balanced": self.balanced,
            "check": self.line,
        }


def batch_progress(batch_state: str) -> float:
    """Share of a batch's work done, for estimatePctComplete (FullStory batches report no percentage)."""
    return {
        BatchState.PENDING: 0.0,
        BatchState.RUNNING: 0.4,
        BatchState.COLLECTING: 0.8,
    }.get(BatchState(batch_state), 1.0)


def _batch_done(batch: dict[str, Any]) -> float:
    """A running provider job that reports its progress (an export) counts by it."""
    if batch["batchState"] == BatchState.RUNNING.value and batch.get("progressPct") is not None:
        return 0.8 * min(100.0, max(0.0, float(batch["progressPct"]))) / 100
    return batch_progress(batch["batchState"])


def estimate_pct_complete(job: dict[str, Any], batches: list[dict[str, Any]]) -> float:
    if JobState(job["state"]).terminal:
        return 100.0
    if not batches:
        return 0.0
    total_rows = sum(int(b.get("rows", 0)) for b in batches) or len(batches)
    done = sum(_batch_done(b) * (int(b.get("rows", 0)) or 1) for b in batches)
    # Intake is the first 5 %; the last 5 % is finalize.
    return round(5 + 90 * done / total_rows, 1)


def job_view(
    job: dict[str, Any],
    batches: list[dict[str, Any]],
    *,
    url: str | None = None,
    result_urls: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    """The normalized job of DESIGN.md's API contract. It reads as a FullStory Operation (seed schema):
    fields without a value yet (finishedAt while running, errorDetails without an error, result URLs
    before they exist) are left out rather than sent as null, because that schema types them as strings."""
    error = job.get("error")
    result_urls = result_urls or {}
    view: dict[str, Any] = {
        "id": job["id"],
        "type": job["type"],
        "operationName": job["type"],
        "state": job["state"],
        "createdAt": job["createdAt"],
        "startTime": job.get("startTime"),
        "finishedAt": job.get("finishedAt"),
        "estimatePctComplete": estimate_pct_complete(job, batches),
        "errorDetails": error["message"] if error else None,
        "error": error,
        "results": _without_none(
            {
                # the imported rows of an import; the file of an export
                "downloadUrl": result_urls.get("imports") or result_urls.get("download"),
                "errorsUrl": result_urls.get("errors"),
                "rejectedUrl": result_urls.get("rejected"),
                "manifestUrl": result_urls.get("manifest"),
                **{f"{name}Url": link for name, link in result_urls.items() if name not in RESULT_URL_NAMES},
            }
        ),
        "metrics": {
            "rowsIn": int(job.get("rowsIn", 0)),
            "imported": int(job.get("imported", 0)),
            "providerErrors": int(job.get("providerErrors", 0)),
            "rejected": int(job.get("rejected", 0)),
            "inBytes": int(job.get("inBytes", 0)),
            "outBytes": int(job.get("outBytes", 0)),
            "batches": int(job.get("batchCount", 0)),
        },
        "runId": job.get("runId"),
        "url": url,
        "operationParams": job.get("operationParams", {}),
        "creatorToken": job.get("creatorToken", {}),
        "batches": [batch_view(b) for b in batches],
    }
    for optional in ("startTime", "finishedAt", "errorDetails"):
        if view[optional] is None:
            del view[optional]
    return view


RESULT_URL_NAMES = ("imports", "errors", "rejected", "manifest", "download")
STORAGE_JOB_STATUS = {"PENDING": "waiting", "RUNNING": "processing", "COMPLETED": "success", "FAILED": "error"}


def storage_job_view(job: dict[str, Any], view: dict[str, Any]) -> dict[str, Any]:
    """The same job as a Keboola Storage JobResponse (seed schema; `GET /jobs/{id}?view=storage-job`).

    `results` there is one of Keboola's own result shapes, none of which fits an import, so this view
    leaves it out and links the files under `resultUrls`. The schema marks startTime, endTime and error
    `nullable` (an OpenAPI keyword a JSON Schema validator does not know), so absent values are left out."""
    error = job.get("error")
    view_ = {
        "id": job["id"],
        "status": STORAGE_JOB_STATUS[job["state"]],
        "url": view.get("url") or "",
        "tableId": job["type"],
        "operationName": job["type"],
        "operationParams": job.get("operationParams", {}),
        "createdTime": job["createdAt"],
        "startTime": job.get("startTime"),
        "endTime": job.get("finishedAt"),
        "runId": job.get("runId") or "",
        "creatorToken": {
            "id": str(job.get("creatorToken", {}).get("id", "")),
            "description": str(job.get("creatorToken", {}).get("description", "")),
        },
        "metrics": {
            "inCompressed": str(job.get("source", {}).get("key", "")).endswith(".gz"),
            "inBytes": int(job.get("inBytes", 0)),
            "outCompressed": False,
            "outBytes": int(job.get("outBytes", 0)),
        },
        "error": (
            {"code": error["code"], "message": error["message"], "exceptionId": error.get("exceptionId") or job["id"]}
            if error
            else None
        ),
        "resultUrls": view["results"],
        "estimatePctComplete": view["estimatePctComplete"],
    }
    return {k: v for k, v in view_.items() if v is not None}


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def batch_view(batch: dict[str, Any]) -> dict[str, Any]:
    return {
        "index": int(batch["index"]),
        "providerJobId": batch.get("providerJobId"),
        "state": batch["batchState"],
        "providerStatus": batch.get("providerStatus"),
        "rows": int(batch.get("rows", 0)),
        "imported": int(batch.get("imported", 0)),
        "providerErrors": int(batch.get("providerErrors", 0)),
        "polls": int(batch.get("polls", 0)),
        "submittedAt": batch.get("submittedAt"),
        "finishedAt": batch.get("finishedAt"),
        "error": batch.get("error"),
    }
