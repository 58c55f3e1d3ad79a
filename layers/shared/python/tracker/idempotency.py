"""Powertools Idempotency, the first of the tracker's three layers against doing work twice (the
others: a deterministic provider Idempotency-Key per batch, and an execution named after its job).

Records live in the jobs table itself (pk = "idempotency#<function>", sk = hash of the key), expire
through the table's TTL attribute, and carry none of the attributes the job-list indexes use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig

from tracker.config import settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord


def _upload_seen_before(answer: dict[str, Any], record: DataRecord) -> dict[str, Any]:
    """A replayed answer means this event repeats an upload already taken in: whatever the first event
    found, this one created nothing (intake counts it as a duplicate upload)."""
    return {**answer, "created": False}


# An upload is one job for a week: S3's at-least-once redeliveries come within minutes.
UPLOAD = IdempotencyConfig(
    event_key_jmespath="[bucket, key, version, sequencer, etag]",
    raise_on_no_idempotency_key=True,
    expires_after_seconds=7 * 86400,
    response_hook=_upload_seen_before,
)
# POST /jobs with an Idempotency-Key: per caller, for 24 hours (as FullStory's own keys); the same key
# with a different body is refused rather than answered with the first job.
CREATE_JOB = IdempotencyConfig(
    event_key_jmespath="[owner, key]",
    payload_validation_jmespath="body",
    raise_on_no_idempotency_key=True,
    expires_after_seconds=86400,
)


def persistence() -> DynamoDBPersistenceLayer:
    return DynamoDBPersistenceLayer(
        table_name=settings().jobs_table, key_attr="pk", sort_key_attr="sk", expiry_attr="expiresAt"
    )
