"""The end of a batch inside the Map: page its results into S3 (`collect`), or record the error the state
machine caught for it (`batch_failed`); answers the batch's next phase."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from tracker import wiring
from tracker.messages import CollectRequest
from tracker.observability import logger, metrics, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = CollectRequest.model_validate(event)
    logger.append_keys(job_id=request.task.jobId, batch=request.task.batch.index)
    tasks = wiring.batch_tasks()
    answer = tasks.collect(request.task) if request.action == "collect" else tasks.record_failure(request.task)
    return answer.for_state_machine()
