"""Submit one batch to the provider (Idempotency-Key per batch); answers the next phase and wait."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from tracker import wiring
from tracker.messages import BatchTask, Phase
from tracker.observability import logger, metrics, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Validated with the pydantic model directly: Powertools' event_parser would add ~100 ms of imports
    # (its envelopes and AWS event models) to every cold start of a function polled thousands of times.
    task = BatchTask.model_validate(event)
    logger.append_keys(job_id=task.jobId, batch=task.batch.index)
    answer = wiring.batch_tasks().submit(task)
    if answer.phase == Phase.THROTTLED:
        metrics.add_metric(name="ProviderThrottled", unit=MetricUnit.Count, value=1)
    elif answer.phase == Phase.POLLING:
        metrics.add_metric(name="BatchesSubmitted", unit=MetricUnit.Count, value=1)
    return answer.for_state_machine()
