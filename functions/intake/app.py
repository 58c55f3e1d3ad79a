"""Intake: SQS (fed by inbox uploads and by the API) -> one job per file, batches in S3, execution started."""

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import idempotent_function
from aws_lambda_powertools.utilities.typing import LambdaContext
from tracker import idempotency, wiring
from tracker.intake import Upload
from tracker.messages import ApiJobMessage, parse_intake_message
from tracker.observability import logger, metrics, tracer

processor = BatchProcessor(event_type=EventType.SQS)


@idempotent_function(
    data_keyword_argument="upload", config=idempotency.UPLOAD, persistence_store=idempotency.persistence()
)
def take_in_upload(upload: dict[str, Any]) -> dict[str, Any]:
    """Once per upload: a redelivered event replays this answer; one arriving while the first is still
    being taken in fails and comes back later through SQS."""
    job_id, created = wiring.intake().accept_upload(Upload(**upload))
    return {"jobId": job_id, "created": created}


@tracer.capture_method
def handle_message(record: SQSRecord) -> None:
    message = parse_intake_message(record.body)
    if message is None:
        logger.info("ignoring s3:TestEvent")
        return
    if isinstance(message, ApiJobMessage):
        wiring.intake().run(message.job_id)
        logger.info("api job taken in", extra={"job_id": message.job_id})
        metrics.add_metric(name="JobsStarted", unit=MetricUnit.Count, value=1)
        return
    for upload in message:
        outcome = take_in_upload(upload=asdict(upload))
        duplicate = not outcome["created"]  # the upload's job already existed (or its answer was replayed)
        logger.info("upload taken in", extra={"job_id": outcome["jobId"], "key": upload.key, "duplicate": duplicate})
        metrics.add_metric(name="UploadsTakenIn", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="DuplicateUploads" if duplicate else "JobsStarted", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotency.UPLOAD.register_lambda_context(context)
    return process_partial_response(event=event, record_handler=handle_message, processor=processor, context=context)
