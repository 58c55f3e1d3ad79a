"""A Distributed Map run fails, offline as in AWS, once too many of its child executions fail.

Step Functions fails a Map Run, with error States.ExceedToleratedFailureThreshold, as soon as its failed
items exceed ToleratedFailureCount or ToleratedFailurePercentage; both default to 0, so by default the
first failed child fails the Map state and stops its siblings (Step Functions Developer Guide, "Distributed
Map state": "Setting failure thresholds for Distributed Map states"; the error name is one of the
Amazon States Language's predefined ones). moto 5 parses both fields but says they "currently have no
effect", and lets every child fail silently: offline, one batch's failure could never abort the others,
and a Map without a threshold would look as robust as one with it.

`honour_tolerated_failures()` patches moto's distributed item processor: each failed (or timed-out) child
is counted against its Map Run's thresholds, and the first one past them fails the run with that error,
so no further child starts (the ones already running finish: AWS stops them). A field moto reads as 0 is
taken as not given when the other one is set: moto keeps no difference between the two, and AWS has no
use for a threshold of 0 beside a non-zero one. What a tolerated failure adds to the Map's result array
(moto: null) is not modelled further; the tracker's Map discards its result (ResultPath null).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def exceeds(failed: int, total: int, count: float, percentage: float) -> bool:
    """Whether `failed` of `total` children are more than the Map Run tolerates."""
    thresholds = []
    if count:
        thresholds.append(failed > count)
    if percentage:
        thresholds.append(total > 0 and 100.0 * failed / total > percentage)
    return any(thresholds) if thresholds else failed > 0


def honour_tolerated_failures() -> Callable[[], None]:
    """Patch moto (see the module docstring); returns the undo."""
    from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (
        distributed_item_processor_worker as worker_module,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    worker = worker_module.DistributedItemProcessorWorker
    original = worker._eval_job

    def eval_job(self: Any, env: Any, job: Any) -> None:
        counts = self._map_run_record.item_counter
        failed_before = counts.failed.get() + counts.timed_out.get()
        original(self, env, job)
        failed = counts.failed.get() + counts.timed_out.get()
        if failed == failed_before:
            return
        record = self._map_run_record
        total = self._job_pool._jobs_number
        if exceeds(failed, total, record.tolerated_failure_count, record.tolerated_failure_percentage):
            error = StatesErrorNameType.StatesExceedToleratedFailureThreshold.to_name()
            cause = f"{failed} of {total} child executions failed, more than the Map Run tolerates"
            details = EventDetails(mapRunFailedEventDetails=MapRunFailedEventDetails(error=error, cause=cause))
            job.job_output = FailureEventException(
                failure_event=FailureEvent(
                    env=env,
                    error_name=StatesErrorName(typ=StatesErrorNameType.StatesExceedToleratedFailureThreshold),
                    event_type=HistoryEventType.MapRunFailed,
                    event_details=details,
                )
            )

    worker._eval_job = eval_job  # type: ignore[method-assign]

    def restore() -> None:
        worker._eval_job = original  # type: ignore[method-assign]

    return restore
