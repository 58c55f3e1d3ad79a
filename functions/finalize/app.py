"""The end of a job: finalize it after its batches (`finalize`), close it FAILED when finalize itself failed
(`finalize_failed`), or close it when its execution ended without reaching Finalize (the EventBridge rule
on TIMED_OUT / ABORTED / FAILED executions)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import TypeAdapter
from tracker import wiring
from tracker.executions import job_id_of_execution
from tracker.messages import ExecutionStatusChange, FinalizeRequest, StepFailure
from tracker.observability import logger, metrics, tracer

_request = TypeAdapter(FinalizeRequest | ExecutionStatusChange)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = _request.validate_python(event)
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
