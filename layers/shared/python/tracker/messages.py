"""Boundary models: what each handler accepts, validated with pydantic at the edge.

Only the fields the tracker uses are declared; extra fields are ignored so that AWS adding fields to
an event never breaks intake.
"""

from __future__ import annotations

import json
from typing import Any, Literal
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


class BatchTask(BaseModel):
    """The state a distributed Map child carries from task to task."""

    model_config = ConfigDict(extra="allow")
    jobId: str
    type: str
    deadline: int
    batch: BatchRef
    attempt: int = 0
    nextPollSeconds: int = 0
    providerJobId: str | None = None
    phase: str | None = None


class ResultsRequest(_Lenient):
    action: Literal["collect", "batch_failed"]
    task: BatchTask


class FinalizeRequest(_Lenient):
    action: Literal["finalize", "finalize_failed"]
    execution: str
    input: dict[str, Any]


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
