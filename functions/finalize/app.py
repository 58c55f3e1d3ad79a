"""The end of a job: finalize it after its batches (`finalize`), close it FAILED when finalize itself failed
(`finalize_failed`), close it when its execution ended without reaching Finalize (the EventBridge rule
on TIMED_OUT / ABORTED / FAILED executions), or close it when intake gave up on it (the intake dead-letter
queue: FAILED `intake_failed`)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import TypeAdapter
from tracker import wiring
from tracker.executions import job_id_of_execution
from tracker.messages import (
    ApiJobMessage,
    ExecutionStatusChange,
    FinalizeEvent,
    IntakeDeadLetters,
    StepFailure,
    parse_intake_message,
)
from tracker.observability import logger, metrics, tracer

_request: TypeAdapter[FinalizeEvent] = TypeAdapter(FinalizeEvent)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = _request.validate_python(event)
    if isinstance(request, IntakeDeadLetters):
        return _close_dead_letters(event, context)
    if isinstance(request, ExecutionStatusChange):
        detail = request.detail
        logger.append_keys(job_id=job_id_of_execution(detail.name))
        return wiring.control().close_ended_execution(detail.name, detail.execution_arn, detail.status, detail.error)
    job_id = request.input.jobId
    logger.append_keys(job_id=job_id)
    if request.action == "finalize":
        error = None
        if request.input.mapError is not None:
            code, message = request.input.mapError.code_and_message()
            error = {"code": code, "message": message}
        return wiring.finalizer().finalize(job_id, execution_error=error)
    code, message = (request.input.finalizeError or StepFailure()).code_and_message()
    return wiring.finalizer().fail_job(job_id, "finalize_failed", f"{code}: {message}")


def _close_dead_letters(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Each message closes its job; one that names no job (unreadable) fails and stays in the queue for an
    operator. Powertools' batch utility is imported here only: no other request of this function needs it."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    processor = BatchProcessor(event_type=EventType.SQS)
    return process_partial_response(event=event, record_handler=_close_abandoned, processor=processor, context=context)


def _close_abandoned(record: Any) -> None:
    message = parse_intake_message(record.body)
    if message is None:
        return  # S3's s3:TestEvent: no job
    intake = wiring.intake()
    if isinstance(message, ApiJobMessage):
        closed = [intake.abandon(message.job_id)]
    else:
        closed = [intake.abandon_upload(upload) for upload in message]
    logger.warning("intake gave up; jobs closed", extra={"closed": [c["jobId"] for c in closed if c]})
