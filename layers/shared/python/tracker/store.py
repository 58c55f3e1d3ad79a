"""DynamoDB records of jobs and batches (single table; keys in one place).

pk = JOB#<id>; the job item has sk = JOB and carries `state`, `createdAt`, `listPk` (feeding the
ByState and ByCreated indexes); batch items have sk = BATCH#<00001> and a `batchState` instead, so
the indexes only ever hold jobs.

pk = STATS#<job type>#<size class>, sk = DURATIONS holds the observed durations of recent provider
jobs of that type and size class (an input of the polling policy); it has no `state`/`listPk` either.

Lifecycle (DynamoDB TTL on `expiresAt`): a finished job's item expires RetentionDays after it finished,
and its batch items (with their poll timelines) carry the same `expiresAt`, written when it finishes;
a retry removes both until the job finishes again. Powertools Idempotency records carry their own.
Never expiring, on purpose: the STATS# duration items (shared by every job of a type and size class, a
fixed 32 slots each, overwritten in place: the polling policy's memory) and the BUDGET# lease items (one
per provider, live state every running batch shares; an expired one would drop leases in use). Both are
bounded by the number of job types, never by the number of jobs.
pk = OPERATION#<provider operation id>, sk = CLAIM names the job an export belongs to (claim_operation).
"""

from __future__ import annotations

import base64
import json
import time
import zlib
from decimal import Decimal
from typing import Any

from tracker import aws

JOB_SK = "JOB"
LIST_PK = "JOBS"
DURATIONS_SK = "DURATIONS"
OPERATION_SK = "CLAIM"
OPERATION_CLAIM_SECONDS = 8 * 86400  # past any job's deadline (MaxJobHours is at most 96)
DURATION_SLOTS = 32  # durations kept per job type and size class
DURATION_CACHE_SECONDS = 300.0  # how long a Lambda container reuses the durations it read


def _pk(job_id: str) -> str:
    return f"JOB#{job_id}"


def _batch_sk(index: int) -> str:
    return f"BATCH#{index:05d}"


def _stats_pk(job_type: str, size_class: str) -> str:
    return f"STATS#{job_type}#{size_class}"


def duration_slot(sample_id: str) -> str:
    """The attribute a duration is kept in: stable for one sample (a retried write lands on the same
    slot), spread evenly over DURATION_SLOTS for many."""
    return f"d{zlib.crc32(sample_id.encode()) % DURATION_SLOTS:02d}"


def plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; hand out ints and floats."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dynamo(v) for v in value]
    return value


def _strip_keys(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in plain(item).items() if k not in ("pk", "sk", "listPk")}


class JobStore:
    def __init__(self, table_name: str, table: Any | None = None) -> None:
        self._table = table if table is not None else aws.table(table_name)
        self._durations: dict[str, tuple[float, tuple[float, ...]]] = {}  # pk -> (read at, durations)

    # -- jobs -------------------------------------------------------------------------------
    def create_job(self, job: dict[str, Any]) -> bool:
        """Put a new job; False when a job with this id exists (a duplicate event or request)."""
        item = {"pk": _pk(job["id"]), "sk": JOB_SK, "listPk": LIST_PK, **_dynamo(job)}
        try:
            self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        except self._table.meta.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        item = self._table.get_item(Key={"pk": _pk(job_id), "sk": JOB_SK}, ConsistentRead=True).get("Item")
        return _strip_keys(item) if item else None

    def update_job(self, job_id: str, fields: dict[str, Any], *, condition: str | None = None) -> bool:
        return self._update({"pk": _pk(job_id), "sk": JOB_SK}, fields, condition=condition)

    def update_job_of_run(self, job_id: str, run_id: str, fields: dict[str, Any]) -> bool:
        """SET `fields` only while the job is still run by `run_id`; False once a retry gave it another run."""
        return self._update(
            {"pk": _pk(job_id), "sk": JOB_SK}, fields, condition="runId = :run", condition_values={":run": run_id}
        )

    def mark_running(self, job_id: str, run_id: str, started_at: str) -> bool:
        """PENDING -> RUNNING; False when the job already moved on (a redelivered intake message)."""
        try:
            self._table.update_item(
                Key={"pk": _pk(job_id), "sk": JOB_SK},
                UpdateExpression="SET #s = :running, startTime = :t, runId = :r",
                ConditionExpression="#s = :pending",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={
                    ":running": "RUNNING",
                    ":pending": "PENDING",
                    ":t": started_at,
                    ":r": run_id,
                },
            )
        except self._table.meta.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def reopen_job(self, job_id: str, run_id: str, attempt: int, deadline: int, started_at: str) -> bool:
        """FAILED -> RUNNING for a retry; False if the job is not FAILED (anymore)."""
        try:
            self._table.update_item(
                Key={"pk": _pk(job_id), "sk": JOB_SK},
                UpdateExpression=(
                    "SET #s = :running, runId = :r, retries = :n, deadline = :d, startTime = :t "
                    "REMOVE #e, finishedAt, notifyClaimedAt, notifiedAt, expiresAt, accounting"
                ),
                ConditionExpression="#s = :failed",
                ExpressionAttributeNames={"#s": "state", "#e": "error"},
                ExpressionAttributeValues={
                    ":running": "RUNNING",
                    ":failed": "FAILED",
                    ":r": run_id,
                    ":n": attempt,
                    ":d": deadline,
                    ":t": started_at,
                },
            )
        except self._table.meta.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def mark_cancelled(self, job_id: str, by: str, at: str) -> dict[str, Any] | None:
        """PENDING/RUNNING -> FAILED with error `cancelled` (by whom); the job, or None if it had already
        ended. Finalize, which still runs for it (it has no finishedAt yet), keeps this error."""
        try:
            item = self._table.update_item(
                Key={"pk": _pk(job_id), "sk": JOB_SK},
                UpdateExpression="SET #s = :failed, #e = :error, cancelledBy = :by, cancelledAt = :at",
                ConditionExpression="#s IN (:pending, :running)",
                ExpressionAttributeNames={"#s": "state", "#e": "error"},
                ExpressionAttributeValues={
                    ":failed": "FAILED",
                    ":pending": "PENDING",
                    ":running": "RUNNING",
                    ":error": {"code": "cancelled", "message": f"cancelled by {by}"},
                    ":by": by,
                    ":at": at,
                },
                ReturnValues="ALL_NEW",
            )
        except self._table.meta.client.exceptions.ConditionalCheckFailedException:
            return None
        return _strip_keys(item["Attributes"])

    def reset_batch(self, job_id: str, index: int, batch_state: str) -> None:
        """Put a batch back in line for a retry (keeps its provider job id: it is polled, not re-sent)."""
        self._table.update_item(
            Key={"pk": _pk(job_id), "sk": _batch_sk(index)},
            UpdateExpression="SET batchState = :s REMOVE #e, finishedAt, collectedAt, expiresAt",
            ExpressionAttributeNames={"#e": "error"},
            ExpressionAttributeValues={":s": batch_state},
        )

    def claim_notification(self, job_id: str) -> bool:
        """True for exactly one caller per job: the one that then publishes the notification.

        A claim whose publish fails is released (release_notification) so a retry can send it;
        `notifiedAt` is written only after SNS accepted the message.
        """
        return self._update(
            {"pk": _pk(job_id), "sk": JOB_SK},
            {"notifyClaimedAt": int(time.time())},
            condition="attribute_exists(pk) AND attribute_not_exists(notifyClaimedAt)",
        )

    def release_notification(self, job_id: str) -> None:
        self._table.update_item(Key={"pk": _pk(job_id), "sk": JOB_SK}, UpdateExpression="REMOVE notifyClaimedAt")

    def list_jobs(
        self, *, state: str | None = None, owner: str | None = None, limit: int = 50, next_token: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first, optionally only one owner's (ByOwner index) and/or one state; the token is the
        opaque, base64 DynamoDB LastEvaluatedKey. With both filters a page may hold fewer than `limit`
        jobs while a nextToken still follows."""
        kwargs: dict[str, Any]
        if owner:
            kwargs = {
                "IndexName": "ByOwner",
                "KeyConditionExpression": "ownerId = :o",
                "ExpressionAttributeValues": {":o": owner},
            }
            if state:
                kwargs["FilterExpression"] = "#s = :v"
                kwargs["ExpressionAttributeNames"] = {"#s": "state"}
                kwargs["ExpressionAttributeValues"][":v"] = state
        elif state:
            kwargs = {
                "IndexName": "ByState",
                "KeyConditionExpression": "#s = :v",
                "ExpressionAttributeNames": {"#s": "state"},
                "ExpressionAttributeValues": {":v": state},
            }
        else:
            kwargs = {
                "IndexName": "ByCreated",
                "KeyConditionExpression": "listPk = :v",
                "ExpressionAttributeValues": {":v": LIST_PK},
            }
        kwargs.update(ScanIndexForward=False, Limit=limit)
        if next_token:
            kwargs["ExclusiveStartKey"] = decode_token(next_token)
        page = self._table.query(**kwargs)
        last = page.get("LastEvaluatedKey")
        return [_strip_keys(i) for i in page.get("Items", [])], encode_token(last) if last else None

    # -- batches ----------------------------------------------------------------------------
    def put_batches(self, job_id: str, batches: list[dict[str, Any]]) -> None:
        with self._table.batch_writer() as writer:
            for batch in batches:
                writer.put_item(Item={"pk": _pk(job_id), "sk": _batch_sk(batch["index"]), **_dynamo(batch)})

    def expire_batches(self, job_id: str, indexes: list[int], expires_at: int) -> None:
        """Give the job's batch items the job's own expiry (they go when it goes). A batch item that is gone
        already is not written again."""
        for index in indexes:
            self._update(
                {"pk": _pk(job_id), "sk": _batch_sk(index)},
                {"expiresAt": expires_at},
                condition="attribute_exists(pk)",
            )

    def keep_batch(self, job_id: str, index: int) -> None:
        """No expiry while the job runs again (a retry); finalize gives it the job's new one."""
        self._table.update_item(Key={"pk": _pk(job_id), "sk": _batch_sk(index)}, UpdateExpression="REMOVE expiresAt")

    def get_batch(self, job_id: str, index: int) -> dict[str, Any] | None:
        item = self._table.get_item(Key={"pk": _pk(job_id), "sk": _batch_sk(index)}, ConsistentRead=True).get("Item")
        return _strip_keys(item) if item else None

    def update_batch(
        self,
        job_id: str,
        index: int,
        fields: dict[str, Any],
        *,
        condition: str | None = None,
        append: dict[str, list[Any]] | None = None,
    ) -> bool:
        """SET `fields`; `append` adds items to list attributes (e.g. the poll timeline)."""
        return self._update({"pk": _pk(job_id), "sk": _batch_sk(index)}, fields, condition=condition, append=append)

    def advance_key(self, job_id: str, index: int, generation: int, burnt: str, key: str) -> bool:
        """Move a batch from Idempotency-Key generation `generation` (key `burnt`) to the next, whose key is
        `key`, before any request carries it; False when another attempt already moved it on (the write is
        conditional, so a retried call never skips a generation). Burnt keys are kept in `burntKeys`."""
        try:
            self._table.update_item(
                Key={"pk": _pk(job_id), "sk": _batch_sk(index)},
                UpdateExpression=(
                    "SET keyGeneration = :next, idempotencyKey = :key, "
                    "burntKeys = list_append(if_not_exists(burntKeys, :empty), :burnt)"
                ),
                ConditionExpression=(
                    "attribute_exists(pk) AND (attribute_not_exists(keyGeneration) OR keyGeneration = :g)"
                    if generation == 0
                    else "keyGeneration = :g"
                ),
                ExpressionAttributeValues={
                    ":next": generation + 1,
                    ":key": key,
                    ":g": generation,
                    ":empty": [],
                    ":burnt": [burnt],
                },
            )
        except self._table.meta.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def claim_operation(self, operation_id: str, job_id: str) -> bool:
        """True when the provider operation `operation_id` is this job's: claimed now, or by this job before.
        An export found after a lost answer is adopted only when no other job claimed it first (its item,
        pk = OPERATION#<id>, expires with the retention period's TTL like the jobs)."""
        try:
            self._table.put_item(
                Item={
                    "pk": f"OPERATION#{operation_id}",
                    "sk": OPERATION_SK,
                    "jobId": job_id,
                    "expiresAt": int(time.time()) + OPERATION_CLAIM_SECONDS,
                },
                ConditionExpression="attribute_not_exists(pk) OR jobId = :job",
                ExpressionAttributeValues={":job": job_id},
            )
        except self._table.meta.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def list_batches(self, job_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :b)",
            "ExpressionAttributeValues": {":pk": _pk(job_id), ":b": "BATCH#"},
            "ConsistentRead": True,
        }
        while True:
            page = self._table.query(**kwargs)
            items.extend(_strip_keys(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- provider job durations (input of the polling policy) -------------------------------
    def record_duration(self, job_type: str, size_class: str, seconds: float, *, sample_id: str) -> None:
        """Keep one observed provider job duration among the recent ones of its type and size class.

        One write, no read: the duration replaces slot `duration_slot(sample_id)` of DURATION_SLOTS, so
        the item stays small, concurrent writers never conflict and a retried step rewrites its own slot.
        Older durations are replaced at random, so the item holds a sample of the recent ones.
        """
        self._table.update_item(
            Key={"pk": _stats_pk(job_type, size_class), "sk": DURATIONS_SK},
            UpdateExpression="SET #slot = :seconds, updatedAt = :now",
            ExpressionAttributeNames={"#slot": duration_slot(sample_id)},
            ExpressionAttributeValues={":seconds": Decimal(str(round(seconds, 1))), ":now": int(time.time())},
        )

    def duration_history(self, job_type: str, size_class: str) -> tuple[float, ...]:
        """The recent durations (seconds) of this type and size class; read at most every
        DURATION_CACHE_SECONDS per container (an eventually consistent GetItem)."""
        pk = _stats_pk(job_type, size_class)
        cached = self._durations.get(pk)
        if cached is not None and time.monotonic() - cached[0] < DURATION_CACHE_SECONDS:
            return cached[1]
        item = self._table.get_item(Key={"pk": pk, "sk": DURATIONS_SK}).get("Item") or {}
        durations = tuple(
            float(value) for name, value in item.items() if len(name) == 3 and name[0] == "d" and name[1:].isdigit()
        )
        self._durations[pk] = (time.monotonic(), durations)
        return durations

    # -- helpers ----------------------------------------------------------------------------
    def _update(
        self,
        key: dict[str, str],
        fields: dict[str, Any],
        *,
        condition: str | None,
        append: dict[str, list[Any]] | None = None,
        condition_values: dict[str, Any] | None = None,
    ) -> bool:
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values = {f":v{i}": _dynamo(value) for i, value in enumerate(fields.values())}
        clauses = [f"#f{i} = :v{i}" for i in range(len(fields))]
        for i, (name, items) in enumerate((append or {}).items()):
            names[f"#a{i}"] = name
            values[f":a{i}"] = _dynamo(list(items))
            values[":empty"] = []
            clauses.append(f"#a{i} = list_append(if_not_exists(#a{i}, :empty), :a{i})")
        kwargs: dict[str, Any] = {
            "Key": key,
            "UpdateExpression": "SET " + ", ".join(clauses),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if condition:
            kwargs["ConditionExpression"] = condition
            values.update(condition_values or {})
        try:
            self._table.update_item(**kwargs)
        except self._table.meta.client.exceptions.ConditionalCheckFailedException:
            return False
        return True


def encode_token(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(plain(key), separators=(",", ":")).encode()).decode()


def decode_token(token: str) -> dict[str, Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("nextToken is not a token this API issued") from exc
    if not isinstance(key, dict) or not all(isinstance(v, str) for v in key.values()):
        raise ValueError("nextToken is not a token this API issued")
    return key
