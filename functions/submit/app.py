"""Submit one batch to the provider (Idempotency-Key per batch); answers the next phase and wait. From the
WaitForSlot state (`action: wait_for_slot`) it puts the batch to sleep until its budget grants it a slot."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from tracker import wiring
from tracker.batch_tasks import BatchTasks
from tracker.messages import BatchTask, Phase, SlotWaitRequest
from tracker.observability import logger, metrics


def _steps() -> BatchTasks:
    """The batch steps this function runs (built on first use by tracker.wiring)."""
    return wiring.batch_tasks()


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any] | None:
    # Validated with the pydantic model directly: Powertools' event_parser would add ~100 ms of imports
    # (its envelopes and AWS event models) to every cold start of a function polled thousands of times.
    if event.get("action") == "wait_for_slot":
        request = SlotWaitRequest.model_validate(event)
        logger.append_keys(job_id=request.task.jobId, batch=request.task.batch.index)
        _steps().wait_for_slot(request.task, request.task_token)
        return None  # a .waitForTaskToken task ends with the token's SendTaskSuccess, not with this answer
    task = BatchTask.model_validate(event)
    logger.append_keys(job_id=task.jobId, batch=task.batch.index)
    answer = _steps().submit(task)
    if answer.phase == Phase.QUEUED:
        metrics.add_metric(name="BudgetWaits", unit=MetricUnit.Count, value=1)
    elif answer.phase == Phase.THROTTLED:
        metrics.add_metric(name="ProviderThrottled", unit=MetricUnit.Count, value=1)
    elif answer.phase == Phase.POLLING:
        metrics.add_metric(name="BatchesSubmitted", unit=MetricUnit.Count, value=1)
    return answer.for_state_machine()
