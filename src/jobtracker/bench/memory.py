"""In-memory stand-ins for what the batch steps and the budgets store in AWS, for the simulations of
`make bench` and for unit tests: the job and batch records (tracker.batch_tasks.BatchRecords), an S3-like
object store (tracker.s3io.ObjectStore) and one budget's records (tracker.scheduling.SlotStore).

Each keeps exactly the semantics the tracker relies on from DynamoDB and S3 -- a conditional write
succeeds or changes nothing; an UpdateItem SETs attributes and appends to lists; a multipart object
appears only when its upload completes -- and counts the requests it serves, so a simulation can say
what a run would cost (`requests`, by service and operation, with the item sizes written and read).
"""

from __future__ import annotations

import io
import itertools
import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from tracker.scheduling import Lease, Limits, Waiter
from tracker.store import DURATION_CACHE_SECONDS, duration_slot


class RequestLog:
    """Requests as AWS would bill them: DynamoDB read and write units (1 KB a write unit, 4 KB a strongly
    consistent read unit, at least one each), S3 requests by class, and every request by operation."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.write_units = 0
        self.read_units = 0.0

    def write(self, operation: str, item: Any) -> None:
        self.calls[f"dynamodb.{operation}"] += 1
        self.write_units += max(1, math.ceil(_size(item) / 1024))

    def read(self, operation: str, items: Any, *, consistent: bool = True) -> None:
        self.calls[f"dynamodb.{operation}"] += 1
        units = max(1, math.ceil(_size(items) / 4096))
        self.read_units += units if consistent else units / 2  # an eventually consistent read is half a unit

    def s3(self, operation: str) -> None:
        self.calls[f"s3.{operation}"] += 1


def _size(value: Any) -> int:
    return len(json.dumps(value, default=str, separators=(",", ":")))


class InMemoryRecords:
    """tracker.batch_tasks.BatchRecords on dicts: jobs by id, batches by (job id, index). Like DynamoDB's
    UpdateItem, an update SETs the given attributes and appends to list attributes."""

    def __init__(self, log: RequestLog | None = None, *, clock: Callable[[], float] | None = None) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.batches: dict[tuple[str, int], dict[str, Any]] = {}
        self.durations: dict[tuple[str, str], dict[str, float]] = {}
        self.claims: dict[str, str] = {}  # provider operation id -> the job that claimed it
        self.log = log or RequestLog()
        # With a clock, durations are read at most every DURATION_CACHE_SECONDS, as JobStore does per container.
        self._clock = clock
        self._read: dict[tuple[str, str], tuple[float, tuple[float, ...]]] = {}

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        job = self.jobs.get(job_id)
        self.log.read("GetItem", job)
        return dict(job) if job is not None else None

    def get_batch(self, job_id: str, index: int) -> dict[str, Any] | None:
        batch = self.batches.get((job_id, index))
        self.log.read("GetItem", batch)
        return dict(batch) if batch is not None else None

    def update_batch(
        self, job_id: str, index: int, fields: dict[str, Any], *, append: dict[str, list[Any]] | None = None
    ) -> bool:
        batch = self.batches.setdefault((job_id, index), {"index": index})
        batch.update(fields)
        for name, items in (append or {}).items():
            batch[name] = [*batch.get(name, []), *items]
        self.log.write("UpdateItem", batch)
        return True

    def advance_key(self, job_id: str, index: int, generation: int, burnt: str, key: str) -> bool:
        """Like JobStore's conditional UpdateItem: moves on only from the generation the caller read."""
        batch = self.batches.setdefault((job_id, index), {"index": index})
        self.log.write("UpdateItem", batch)
        if int(batch.get("keyGeneration", 0)) != generation:
            return False
        batch.update(keyGeneration=generation + 1, idempotencyKey=key)
        batch["burntKeys"] = [*batch.get("burntKeys", []), burnt]
        return True

    def claim_operation(self, operation_id: str, job_id: str) -> bool:
        """Like JobStore's conditional PutItem: the first job to claim a provider operation keeps it."""
        self.log.write("PutItem", {"operation": operation_id, "job": job_id})
        return self.claims.setdefault(operation_id, job_id) == job_id

    def duration_history(self, job_type: str, size_class: str) -> tuple[float, ...]:
        key = (job_type, size_class)
        cached = self._read.get(key)
        if self._clock is not None and cached is not None and self._clock() - cached[0] < DURATION_CACHE_SECONDS:
            return cached[1]
        history = tuple(self.durations.get(key, {}).values())
        self.log.read("GetItem", history, consistent=False)
        if self._clock is not None:
            self._read[key] = (self._clock(), history)
        return history

    def record_duration(self, job_type: str, size_class: str, seconds: float, *, sample_id: str) -> None:
        """Like JobStore: one of DURATION_SLOTS slots per type and size class, chosen by the sample id."""
        self.durations.setdefault((job_type, size_class), {})[duration_slot(sample_id)] = seconds
        self.log.write("UpdateItem", {"sample": sample_id, "seconds": seconds})


class InMemoryObjects:
    """tracker.s3io.ObjectStore on a dict of (bucket, key) -> bytes, multipart uploads included (an object
    appears only when its upload completes; an aborted one leaves nothing)."""

    def __init__(self, log: RequestLog | None = None) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.content_types: dict[tuple[str, str], str] = {}
        self.uploads: dict[str, dict[int, bytes]] = {}
        self._ids = itertools.count(1)
        self.log = log or RequestLog()

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        self.log.s3("GetObject")
        return {"Body": io.BytesIO(self.objects[(Bucket, Key)])}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str) -> dict[str, Any]:
        self.log.s3("PutObject")
        self.objects[(Bucket, Key)] = bytes(Body)
        self.content_types[(Bucket, Key)] = ContentType
        return {}

    def create_multipart_upload(self, *, Bucket: str, Key: str, ContentType: str) -> dict[str, Any]:
        self.log.s3("CreateMultipartUpload")
        upload_id = f"upload-{next(self._ids)}"
        self.uploads[upload_id] = {}
        self.content_types[(Bucket, Key)] = ContentType
        return {"UploadId": upload_id}

    def upload_part(self, *, Bucket: str, Key: str, UploadId: str, PartNumber: int, Body: bytes) -> dict[str, Any]:
        self.log.s3("UploadPart")
        self.uploads[UploadId][PartNumber] = bytes(Body)
        return {"ETag": f'"{UploadId}-{PartNumber}"'}

    def complete_multipart_upload(
        self, *, Bucket: str, Key: str, UploadId: str, MultipartUpload: dict[str, Any]
    ) -> dict[str, Any]:
        self.log.s3("CompleteMultipartUpload")
        parts = self.uploads.pop(UploadId)
        self.objects[(Bucket, Key)] = b"".join(parts[p["PartNumber"]] for p in MultipartUpload["Parts"])
        return {}

    def abort_multipart_upload(self, *, Bucket: str, Key: str, UploadId: str) -> dict[str, Any]:
        self.log.s3("AbortMultipartUpload")
        self.uploads.pop(UploadId, None)
        return {}

    def lines(self, bucket: str, key: str) -> list[bytes]:
        return self.objects[(bucket, key)].splitlines()


class MemorySlotStore:
    """tracker.scheduling.SlotStore in memory, with the conditions tracker.budget.DynamoSlotStore puts on
    each write (so the simulation runs the protocol the Lambdas run, not a friendlier one)."""

    def __init__(self, log: RequestLog | None = None) -> None:
        self._leases: dict[str, Lease] = {}
        self._waiters: dict[str, Waiter] = {}
        self.log = log or RequestLog()

    def leases(self) -> list[Lease]:
        self.log.read("GetItem", [list(self._leases)])
        return list(self._leases.values())

    def add_lease(self, lease: Lease, limits: Limits) -> bool:
        self.log.write("UpdateItem", list(self._leases))
        if lease.lease_id in self._leases or len(self._leases) >= limits.slots:
            return False
        if limits.operations is not None and self.rows() + lease.rows > limits.operations:
            return False
        self._leases[lease.lease_id] = lease
        return True

    def renew_lease(self, lease_id: str, expires: float) -> bool:
        self.log.write("UpdateItem", list(self._leases))
        if lease_id not in self._leases:
            return False
        self._leases[lease_id] = replace(self._leases[lease_id], expires=expires)
        return True

    def remove_lease(self, lease: Lease, *, only_if_unrenewed: bool = False) -> bool:
        self.log.write("UpdateItem", list(self._leases))
        held = self._leases.get(lease.lease_id)
        if held is None or held.rows != lease.rows or (only_if_unrenewed and held.expires != lease.expires):
            return False
        del self._leases[lease.lease_id]
        return True

    def waiters(self) -> list[Waiter]:
        self.log.read("Query", [w.token or "" for w in self._waiters.values()])
        return list(self._waiters.values())

    def put_waiter(self, waiter: Waiter) -> None:
        self.log.write("UpdateItem", waiter.token or "")
        old = self._waiters.get(waiter.lease_id)
        self._waiters[waiter.lease_id] = replace(waiter, since=old.since) if old else waiter

    def set_waiter_token(self, lease_id: str, token: str, seen: float) -> bool:
        self.log.write("UpdateItem", token)
        old = self._waiters.get(lease_id)
        if old is None:
            return False
        self._waiters[lease_id] = replace(old, token=token, seen=seen)
        return True

    def take_waiter(self, lease_id: str) -> Waiter | None:
        self.log.write("DeleteItem", lease_id)
        return self._waiters.pop(lease_id, None)

    # -- what a simulation or a test looks at (not part of the protocol; not counted) ---------------
    def rows(self) -> int:
        return sum(lease.rows for lease in self._leases.values())

    def held(self) -> dict[str, Lease]:
        return dict(self._leases)

    def waiting(self) -> dict[str, Waiter]:
        return dict(self._waiters)
