"""What the REST API answers, as pydantic models: the one description of every body it sends.

They make the answers' part of the OpenAPI document the API serves (`GET /openapi?format=json`); each
route there names, status by status, which of them it sends. The handlers answer the plain dicts
tracker.model builds (job_view, storage_job_view) and import this module only to serve the document:
validating and re-serializing every answer through the models would cost each request time (and each
cold start the ~50 ms of creating them) for no gain, and pydantic would send absent fields as null.
tests/contract/test_api_contract.py holds the two together: it validates real answers of every route,
errors included, against the served document.

A field that can be absent is left out of the answer, never sent as null (the FullStory Operation schema
types those fields as strings), so it is optional and not nullable here (`Absent`); a field the API sends
as null is required and nullable.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema, models_json_schema

from tracker import catalogue
from tracker.model import BatchState, JobState

# Optional and never null: pydantic needs a default for an optional field; the schema shows none.
Absent = SkipJsonSchema[None]
Count = Annotated[int, Field(ge=0)]
Url = Annotated[str, Field(description="A presigned HTTPS GET URL, valid expiresInSeconds (900 s).")]


def _tidy(schema: dict[str, Any]) -> None:
    """No `default: null` beside a type that excludes null (Absent fields); no property titles that only
    repeat the name (code generators turn them into type names)."""
    for prop in schema.get("properties", {}).values():
        if "default" in prop and prop["default"] is None:
            del prop["default"]
        prop.pop("title", None)


class _Answer(BaseModel):
    model_config = ConfigDict(json_schema_extra=_tidy)


class Error(_Answer):
    """Every error the API answers, whatever its status: a machine-readable code and a sentence. Errors
    API Gateway answers itself (403, 413, 429, 502, 504) carry its response type as the code."""

    code: str = Field(
        description="invalid_request, invalid_source, source_not_allowed, unsupported_format, file_too_large, "
        "inline_too_large, invalid_next_token, not_found, already_finished, not_failed, nothing_to_retry, "
        "still_closing, request_in_progress, idempotency_key_reused, internal_error; from API Gateway "
        "MISSING_AUTHENTICATION_TOKEN, INVALID_SIGNATURE, ACCESS_DENIED, REQUEST_TOO_LARGE, THROTTLED, ...",
        examples=["not_found"],
    )
    message: str = Field(examples=["no job job-0123456789abcdef01234567"])


class JobError(_Answer):
    """Why a job or a batch failed (a cancelled job: code `cancelled`)."""

    code: str
    message: str
    exceptionId: str | Absent = Field(default=None, description="The provider's id of the failure, when it gave one.")


class JobResults(_Answer):
    """Links to the job's result files, each present once the file exists (most once the job has finished)."""

    downloadUrl: Url | Absent = Field(default=None, description="The imported rows (an import) or the export file.")
    errorsUrl: Url | Absent = None
    rejectedUrl: Url | Absent = None
    manifestUrl: Url | Absent = None
    reportUrl: Url | Absent = Field(default=None, description="report.html, beside manifest.json.")


class JobMetrics(_Answer):
    """Accounting of a finished job: rowsIn = imported + providerErrors + rejected."""

    rowsIn: Count
    imported: Count
    providerErrors: Count
    rejected: Count
    inBytes: Count
    outBytes: Count
    batches: Count


class CreatorToken(_Answer):
    """Who created the job: the API caller's IAM ARN, or the S3 uploader's principal."""

    id: str
    description: str


class JobBatch(_Answer):
    """One provider job of the tracker's job (an import is split into batches; an export is one)."""

    index: int = Field(ge=1)
    providerJobId: str | None
    state: BatchState
    providerStatus: str | None
    rows: Count
    imported: Count
    providerErrors: Count
    polls: Count
    submittedAt: AwareDatetime | None
    finishedAt: AwareDatetime | None
    error: JobError | None


class Job(_Answer):
    """The normalized job (DESIGN.md "API contract"); it reads as a FullStory Operation."""

    id: str = Field(examples=["job-0123456789abcdef01234567"])
    type: Literal[catalogue.NAMES] = Field(description="The job type given at creation.")  # type: ignore[valid-type]
    operationName: str = Field(description="The same as type.")
    state: JobState = Field(description="A cancelled or timed-out job is FAILED with an error code.")
    createdAt: AwareDatetime
    startTime: AwareDatetime | Absent = None
    finishedAt: AwareDatetime | Absent = None
    estimatePctComplete: float = Field(ge=0, le=100)
    errorDetails: str | Absent = Field(default=None, description="error.message, when the job failed.")
    error: JobError | None
    results: JobResults
    metrics: JobMetrics
    runId: str | None = Field(description="The Step Functions execution ARN, once the job has started.")
    url: str | None = Field(description="This job's URL in the API.")
    operationParams: dict[str, Any]
    creatorToken: CreatorToken
    batches: list[JobBatch]


class JobList(_Answer):
    """One page of jobs, newest first."""

    jobs: list[Job]
    nextToken: str | None = Field(description="Pass as ?nextToken= for the next page; null on the last page.")


class StorageJobMetrics(_Answer):
    inCompressed: bool
    inBytes: Count
    outCompressed: bool
    outBytes: Count


class StorageJobError(_Answer):
    code: str
    message: str
    exceptionId: str


class StorageJob(_Answer):
    """The same job as a Keboola Storage JobResponse (`?view=storage-job`); files are under resultUrls."""

    id: str
    status: Literal["waiting", "processing", "success", "error"]
    url: str
    tableId: str = Field(description="The job type.")
    operationName: str
    operationParams: dict[str, Any]
    createdTime: AwareDatetime
    startTime: AwareDatetime | Absent = None
    endTime: AwareDatetime | Absent = None
    runId: str
    creatorToken: CreatorToken
    metrics: StorageJobMetrics
    error: StorageJobError | Absent = None
    resultUrls: JobResults
    estimatePctComplete: float = Field(ge=0, le=100)


class ResultFiles(_Answer):
    """Presigned URLs of the result files that exist."""

    imports: Url | Absent = None
    errors: Url | Absent = None
    rejected: Url | Absent = None
    manifest: Url | Absent = None
    report: Url | Absent = None
    download: Url | Absent = Field(default=None, description="The file of an export.")


class JobResultLinks(_Answer):
    """GET /jobs/{id}/results: the job's files as presigned URLs."""

    jobId: str
    state: JobState
    expiresInSeconds: int = Field(gt=0)
    files: ResultFiles


UploadUrl = Annotated[str, Field(description="A presigned HTTPS URL, valid expiresInSeconds.")]


class UploadPart(_Answer):
    partNumber: int = Field(ge=1)
    url: UploadUrl = Field(description="PUT this part's bytes here; keep the ETag header of the answer.")


class CreateJobFromUpload(_Answer):
    """The body of POST /jobs that takes the uploaded file in."""

    type: Literal[catalogue.BATCH_TYPES]  # type: ignore[valid-type]
    source: str


class Upload(_Answer):
    """POST /uploads: where the file goes (your own prefix of the inbox bucket) and the URLs that put it
    there; `url` for one PUT, or `parts` + `completeUrl` (+ `abortUrl`) for a multipart upload."""

    source: str = Field(description="s3://<inbox>/uploads/<you>/<id>/<name>: give it to POST /jobs as `source`.")
    createJob: CreateJobFromUpload
    expiresInSeconds: int = Field(gt=0)
    method: Literal["PUT"]
    url: UploadUrl | Absent = None
    partSize: int | Absent = Field(default=None, gt=0, description="Bytes per part (the last one is smaller).")
    parts: list[UploadPart] | Absent = None
    completeUrl: UploadUrl | Absent = Field(
        default=None,
        description="POST the S3 CompleteMultipartUpload XML (each part's number and ETag) here once every part is up.",
    )
    abortUrl: UploadUrl | Absent = Field(default=None, description="DELETE to give up the multipart upload.")


ANSWERS = (Error, Job, JobList, JobResultLinks, StorageJob, Upload)


def answer_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of every answer and of what it is made of, by name, for #/components/schemas."""
    _, schemas = models_json_schema(
        [(model, "serialization") for model in ANSWERS], ref_template="#/components/schemas/{model}"
    )
    return schemas["$defs"]
