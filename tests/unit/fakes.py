"""In-memory stand-ins for what tracker.batch_tasks depends on (records, object store, budgets, clock), so a
batch's state changes are unit-tested without moto. Each keeps only the behaviour the steps rely on."""

from __future__ import annotations

import io
import itertools
from typing import Any


class Clock:
    """A clock the test moves: `clock()` is now (epoch seconds), `clock.advance(s)` passes time."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class InMemoryRecords:
    """tracker.batch_tasks.BatchRecords on dicts: jobs by id, batches by (job id, index). Like DynamoDB's
    UpdateItem, an update SETs the given attributes and appends to list attributes."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.batches: dict[tuple[str, int], dict[str, Any]] = {}
        self.durations: dict[tuple[str, str], dict[str, float]] = {}
        self.claims: dict[str, str] = {}  # provider operation id -> the job that claimed it

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        job = self.jobs.get(job_id)
        return dict(job) if job is not None else None

    def get_batch(self, job_id: str, index: int) -> dict[str, Any] | None:
        batch = self.batches.get((job_id, index))
        return dict(batch) if batch is not None else None

    def update_batch(
        self, job_id: str, index: int, fields: dict[str, Any], *, append: dict[str, list[Any]] | None = None
    ) -> bool:
        batch = self.batches.setdefault((job_id, index), {"index": index})
        batch.update(fields)
        for name, items in (append or {}).items():
            batch[name] = [*batch.get(name, []), *items]
        return True

    def advance_key(self, job_id: str, index: int, generation: int, burnt: str, key: str) -> bool:
        """Like JobStore's conditional UpdateItem: moves on only from the generation the caller read."""
        batch = self.batches.setdefault((job_id, index), {"index": index})
        if int(batch.get("keyGeneration", 0)) != generation:
            return False
        batch.update(keyGeneration=generation + 1, idempotencyKey=key)
        batch["burntKeys"] = [*batch.get("burntKeys", []), burnt]
        return True

    def claim_operation(self, operation_id: str, job_id: str) -> bool:
        return self.claims.setdefault(operation_id, job_id) == job_id

    def duration_history(self, job_type: str, size_class: str) -> tuple[float, ...]:
        return tuple(self.durations.get((job_type, size_class), {}).values())

    def record_duration(self, job_type: str, size_class: str, seconds: float, *, sample_id: str) -> None:
        self.durations.setdefault((job_type, size_class), {})[sample_id] = seconds


class InMemoryObjects:
    """tracker.s3io.ObjectStore on a dict of (bucket, key) -> bytes, multipart uploads included (an object
    appears only when its upload completes; an aborted one leaves nothing)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.content_types: dict[tuple[str, str], str] = {}
        self.uploads: dict[str, dict[int, bytes]] = {}
        self._ids = itertools.count(1)

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        return {"Body": io.BytesIO(self.objects[(Bucket, Key)])}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str) -> dict[str, Any]:
        self.objects[(Bucket, Key)] = bytes(Body)
        self.content_types[(Bucket, Key)] = ContentType
        return {}

    def create_multipart_upload(self, *, Bucket: str, Key: str, ContentType: str) -> dict[str, Any]:
        upload_id = f"upload-{next(self._ids)}"
        self.uploads[upload_id] = {}
        self.content_types[(Bucket, Key)] = ContentType
        return {"UploadId": upload_id}

    def upload_part(self, *, Bucket: str, Key: str, UploadId: str, PartNumber: int, Body: bytes) -> dict[str, Any]:
        self.uploads[UploadId][PartNumber] = bytes(Body)
        return {"ETag": f'"{UploadId}-{PartNumber}"'}

    def complete_multipart_upload(
        self, *, Bucket: str, Key: str, UploadId: str, MultipartUpload: dict[str, Any]
    ) -> dict[str, Any]:
        parts = self.uploads.pop(UploadId)
        self.objects[(Bucket, Key)] = b"".join(parts[p["PartNumber"]] for p in MultipartUpload["Parts"])
        return {}

    def abort_multipart_upload(self, *, Bucket: str, Key: str, UploadId: str) -> dict[str, Any]:
        self.uploads.pop(UploadId, None)
        return {}

    def lines(self, bucket: str, key: str) -> list[bytes]:
        return self.objects[(bucket, key)].splitlines()


class CountingSlots:
    """tracker.batch_tasks.Slots: at most `limit` holders at once; acquiring a held slot keeps it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.holders: set[str] = set()
        self.renewals: list[str] = []

    def acquire(self, lease_id: str) -> bool:
        if lease_id in self.holders or len(self.holders) < self.limit:
            self.holders.add(lease_id)
            return True
        return False

    def renew(self, lease_id: str) -> None:
        self.renewals.append(lease_id)
        self.acquire(lease_id)

    def release(self, lease_id: str) -> None:
        self.holders.discard(lease_id)


class OneBudget:
    """tracker.batch_tasks.SlotBudgets with one budget for every task type."""

    def __init__(self, slots: CountingSlots) -> None:
        self.slots = slots

    def for_type(self, task_type: str) -> CountingSlots:
        return self.slots
