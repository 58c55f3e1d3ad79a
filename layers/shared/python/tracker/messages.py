"""Boundary models: what each handler accepts, validated with pydantic at the edge.

Only the fields the tracker uses are declared; extra fields are ignored so that AWS adding fields to
an event never breaks intake.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tracker.executions import ExecutionInput

if TYPE_CHECKING:  # intake (and what it imports) is the intake function's; the batch functions never need it
    from tracker.intake import Upload


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _S3Bucket(_Lenient):
    name: str


class _S3Object(_Lenient):
    key: str
    size: int = 0
    version_id: str | None = Field(default=None, alias="versionId")
    sequencer: str | None = None
    etag: str | None = Field(default=None, alias="eTag")


class _S3Entity(_Lenient):
    bucket: _S3Bucket
    object: _S3Object


class _UserIdentity(_Lenient):
    principal_id: str = Field(default="", alias="principalId")


class S3EventRecord(_Lenient):
    event_source: str = Field(alias="eventSource")
    event_name: str = Field(default="", alias="eventName")
    s3: _S3Entity
    user_identity: _UserIdentity = Field(default_factory=_UserIdentity, alias="userIdentity")

    def upload(self) -> Upload:
        from tracker.intake import Upload

        return Upload(
            bucket=self.s3.bucket.name,
            # S3 URL-encodes keys in notifications (spaces arrive as '+').
            key=unquote_plus(self.s3.object.key),
            version=self.s3.object.version_id,
            sequencer=self.s3.object.sequencer,
            etag=self.s3.object.etag,
            size=self.s3.object.size,
            principal=self.user_identity.principal_id,
        )


class S3Notification(_Lenient):
    records: list[S3EventRecord] = Field(alias="Records")


class ApiJobMessage(_Lenient):
    """Sent by the API after it recorded a PENDING job: intake runs it like an upload."""

    job_id: str = Field(alias="jobId")


class UnknownIntakeMessage(ValueError):
    pass


def parse_intake_message(body: str) -> list[Upload] | ApiJobMessage | None:
    """Uploads of an S3 notification, an API job, or None for S3's s3:TestEvent."""
    try:
        data: Any = json.loads(body)
    except ValueError as exc:
        raise UnknownIntakeMessage("intake message is not JSON") from exc
    if not isinstance(data, dict):
        raise UnknownIntakeMessage("intake message is not a JSON object")
    if data.get("Event") == "s3:TestEvent":
        return None
    try:
        if "Records" in data:
            return [r.upload() for r in S3Notification.model_validate(data).records if r.event_source == "aws:s3"]
        if "jobId" in data:
            return ApiJobMessage.model_validate(data)
    except ValidationError as exc:
        raise UnknownIntakeMessage(f"intake message has an unexpected shape: {exc.error_count()} error(s)") from exc
    raise UnknownIntakeMessage("intake message is neither an S3 notification nor an API job")


class BatchRef(_Lenient):
    index: int = Field(ge=1)
    key: str
    rows: int = Field(ge=0)
    bytes: int = Field(ge=0)


class Phase(StrEnum):
    """Where a batch stands after a step; the ASL's Choice states route on it (tests/contract/test_asl_phases.py
    checks that every phase a step answers is routed to the step it means, and that the ASL tests for no other)."""

    QUEUED = "queued"  # the org budget is full: sleep until a release wakes the batch (WaitForSlot), then submit
    THROTTLED = "throttled"  # the provider refused the submit (429): wait, submit again
    POLLING = "polling"  # the provider job runs: wait `nextPollSeconds`, check again
    DONE = "done"  # the provider job finished: collect its results
    RESULTS_PENDING = "results_pending"  # results not ready yet (202): wait, collect again
    RESULTS_THROTTLED = "results_throttled"  # paging got a 429: wait Retry-After, collect on from the stored page
    COLLECTED = "collected"  # results stored: the batch ended
    FAILED = "failed"  # the batch ended FAILED with `error`


class PollClock(_Lenient):
    """The polling state a running provider job carries from check to check (seconds since the epoch, and
    relative to `since` for `pctAt`)."""

    since: float  # when the provider accepted the job (the wait before the first check began)
    last: float | None = None  # when it was last seen running
    pct: float | None = None  # its last reported progress, 0..100
    pctAt: float | None = None  # seconds after `since` at which `pct` was reported
    rate: float | None = None  # progress in percentage points per second, when known
    unknown: int | None = None  # answers in a row whose state the provider could not place (a spec's limit)


class StepFailure(_Lenient):
    """What a Catch puts at its ResultPath: the error name and its cause (Step Functions' error output)."""

    error: str = Field(default="States.TaskFailed", alias="Error")
    cause: str | None = Field(default=None, alias="Cause")

    def code_and_message(self) -> tuple[str, str]:
        return error_from_failure({"Error": self.error, "Cause": self.cause})


class BatchError(BaseModel):
    code: str
    message: str
    exceptionId: str | None = None  # the provider's reference to its error, when it gives one


class BatchTask(BaseModel):
    """The state a distributed Map child carries from task to task: the ItemSelector's fields, then what
    each step answers. Every field is declared, so a field the ASL adds without a home here is refused
    rather than silently dropped between two steps."""

    model_config = ConfigDict(extra="forbid")
    jobId: str
    type: str
    deadline: int
    batch: BatchRef
    attempt: int = 0
    nextPollSeconds: int = 0
    providerJobId: str | None = None
    providerStatus: str | None = None
    phase: Phase | None = None
    poll: PollClock | None = None
    failure: StepFailure | None = None  # set by the ASL's Catch before RecordBatchFailure
    state: str | None = None  # the batch's final state, once collected
    error: BatchError | None = None  # why the batch ended FAILED

    def answer(self, phase: Phase, **changes: Any) -> BatchTask:
        """This task moved on to `phase`, with the other fields that change (validated like the input)."""
        return type(self).model_validate({**dict(self), "phase": phase, **changes})

    def for_state_machine(self) -> dict[str, Any]:
        """The JSON the state machine carries on (absent rather than null fields)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class SlotWaitRequest(_Lenient):
    """The submit function's input from the WaitForSlot state: sleep until a budget slot is granted."""

    action: Literal["wait_for_slot"]
    task: BatchTask
    task_token: str = Field(alias="taskToken", min_length=1)


class CollectRequest(_Lenient):
    """The collect function's input: page a finished batch's results, or record the failure the ASL caught."""

    action: Literal["collect", "batch_failed"]
    task: BatchTask


class FinalizeInput(ExecutionInput):
    """The execution's input as the Finalize states pass it on, with the error a Catch added on the way."""

    mapError: StepFailure | None = None  # the Map itself failed (its Catch)
    finalizeError: StepFailure | None = None  # Finalize failed (its Catch, before FinalizeAsFailed)


class FinalizeRequest(_Lenient):
    action: Literal["finalize", "finalize_failed"]
    execution: str
    input: FinalizeInput


class ExecutionStatusDetail(_Lenient):
    execution_arn: str = Field(alias="executionArn")
    name: str
    status: str
    error: str | None = None
    cause: str | None = None


class ExecutionStatusChange(_Lenient):
    """EventBridge 'Step Functions Execution Status Change' for TIMED_OUT / ABORTED / FAILED executions."""

    detail_type: Literal["Step Functions Execution Status Change"] = Field(alias="detail-type")
    detail: ExecutionStatusDetail


class _SqsRecord(_Lenient):
    message_id: str = Field(alias="messageId")
    body: str
    event_source: Literal["aws:sqs"] = Field(alias="eventSource")


class IntakeDeadLetters(_Lenient):
    """Messages of the intake dead-letter queue (the finalize function's SQS event source): each names a
    job, or an upload, intake gave up on."""

    records: list[_SqsRecord] = Field(alias="Records", min_length=1)


#: Everything the finalize function is invoked with.
FinalizeEvent = FinalizeRequest | ExecutionStatusChange | IntakeDeadLetters

_CODED = re.compile(r"^\[(?P<code>[a-z0-9_]+)\] (?P<message>.*)$", re.DOTALL)
_ERROR_CODES = {
    "States.Timeout": "task_timeout",
    "States.TaskFailed": "task_failed",
    "Lambda.Unknown": "task_crashed",
}


def error_from_failure(failure: Mapping[str, Any]) -> tuple[str, str]:
    """Turn the ASL's {Error, Cause} into (code, message); handler errors carry "[code] message"."""
    name = str(failure.get("Error", "States.TaskFailed"))
    cause = failure.get("Cause") or ""
    message = cause
    try:
        parsed = json.loads(cause)
        if isinstance(parsed, dict):
            message = str(parsed.get("errorMessage", cause))
    except (TypeError, ValueError):
        pass
    if match := _CODED.match(message):
        return match["code"], match["message"]
    return _ERROR_CODES.get(name, re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "task_failed"), (
        message[:500] or name
    )
