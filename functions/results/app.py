"""Results and the end of a job: collect a batch's results, record a batch failure, finalize the job,
or close a job whose execution timed out / was stopped (EventBridge)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import TypeAdapter
from tracker import wiring
from tracker.batch_tasks import error_from_failure, idempotency_key
from tracker.control import job_id_of_execution
from tracker.messages import ExecutionStatusChange, FinalizeRequest, ResultsRequest
from tracker.observability import logger, metrics, tracer

_request = TypeAdapter(ResultsRequest | FinalizeRequest | ExecutionStatusChange)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = _request.validate_python(event)
    if isinstance(request, ResultsRequest):
        logger.append_keys(job_id=request.task.jobId, batch=request.task.batch.index)
        task = request.task.model_dump(mode="json")
        if request.action == "collect":
            return wiring.batch_tasks().collect(task)
        return wiring.batch_tasks().record_failure(task)
    if isinstance(request, FinalizeRequest):
        job_id = request.input["jobId"]
        logger.append_keys(job_id=job_id)
        if request.action == "finalize":
            map_error = request.input.get("mapError")
            error = None
            if map_error:
                code, message = error_from_failure(map_error)
                error = {"code": code, "message": message}
            return wiring.finalizer().finalize(job_id, execution_error=error)
        code, message = error_from_failure(request.input.get("finalizeError") or {})
        return wiring.finalizer().fail_job(job_id, "finalize_failed", f"{code}: {message}")
    # The execution ended without reaching Finalize (timeout, stop, unexpected failure).
    detail = request.detail
    job_id = job_id_of_execution(detail.name)
    logger.append_keys(job_id=job_id)
    job = wiring.store().get_job(job_id)
    if job is None or job.get("runId") != detail.execution_arn:
        # A late event about an execution the job has moved past (e.g. before a retry): nothing to close.
        return {"jobId": job_id, "state": job["state"] if job else None, "ignored": True}
    for batch in wiring.store().list_batches(job_id):  # the dead execution's tasks hold no provider slot anymore
        wiring.budgets().release_everywhere(idempotency_key(job_id, int(batch["index"])))
    return wiring.finalizer().fail_job(
        job_id,
        {"TIMED_OUT": "execution_timed_out", "ABORTED": "cancelled"}.get(detail.status, "execution_failed"),
        f"execution {detail.status.lower()}" + (f": {detail.error}" if detail.error else ""),
    )
