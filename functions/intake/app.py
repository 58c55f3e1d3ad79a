"""Intake: SQS (fed by inbox uploads and by the API) -> one job per file, batches in S3, execution started."""

from collections.abc import Callable
from dataclasses import asdict
from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from tracker import wiring
from tracker.intake import Upload
from tracker.messages import ApiJobMessage, parse_intake_message
from tracker.observability import logger, metrics


@cache
def take_in_upload() -> Callable[..., dict[str, Any]]:
    """Once per upload: a redelivered event replays the answer; one arriving while the first is still being
    taken in fails and comes back later through SQS. Powertools Idempotency (and boto3 behind its
    DynamoDB layer) is imported on the first upload, like every other AWS client of the tracker: the
    import alone costs about three quarters of `import boto3` on every cold start."""
    from aws_lambda_powertools.utilities.idempotency import idempotent_function
    from tracker import idempotency

    @idempotent_function(
        data_keyword_argument="upload", config=idempotency.UPLOAD, persistence_store=idempotency.persistence()
    )
    def take_in(upload: dict[str, Any]) -> dict[str, Any]:
        job_id, created = wiring.intake().accept_upload(Upload(**upload))
        return {"jobId": job_id, "created": created}

    return take_in


def handle_message(body: str, context: LambdaContext) -> None:
    message = parse_intake_message(body)
    if message is None:
        logger.info("ignoring s3:TestEvent")
        return
    if isinstance(message, ApiJobMessage):
        wiring.intake().run(message.job_id)
        logger.info("api job taken in", extra={"job_id": message.job_id})
        metrics.add_metric(name="JobsStarted", unit=MetricUnit.Count, value=1)
        return
    take_in = take_in_upload()
    from tracker import idempotency  # imported by take_in_upload() already

    idempotency.UPLOAD.register_lambda_context(context)
    for upload in message:
        outcome = take_in(upload=asdict(upload))
        duplicate = not outcome["created"]  # the upload's job already existed (or its answer was replayed)
        logger.info("upload taken in", extra={"job_id": outcome["jobId"], "key": upload.key, "duplicate": duplicate})
        metrics.add_metric(name="UploadsTakenIn", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="DuplicateUploads" if duplicate else "JobsStarted", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """SQS partial batch response (the event source reports batch item failures): a message that fails comes
    back later, the others are deleted; when every message failed the invocation fails, as Powertools'
    BatchProcessor does, so Lambda counts the error. Written out rather than that processor, whose import
    (its event models, asyncio) costs about three quarters of `import boto3` on every cold start for what
    is, at BatchSize 1 (template.yaml), a loop over one record."""
    records = event.get("Records", [])
    failures, errors = [], []
    for record in records:
        try:
            handle_message(record["body"], context)
        except Exception as exc:
            logger.exception("intake message failed; SQS delivers it again", extra={"message_id": record["messageId"]})
            failures.append({"itemIdentifier": record["messageId"]})
            errors.append((type(exc), exc, exc.__traceback__))
    if records and len(failures) == len(records):
        from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

        raise BatchProcessingError(
            msg=f"All records failed processing. {len(errors)} individual errors logged separately below.",
            child_exceptions=errors,
        )
    return {"batchItemFailures": failures}
