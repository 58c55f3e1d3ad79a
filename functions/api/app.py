"""REST API (API Gateway, AWS_IAM auth): create, list, show, cancel and retry jobs; upload and result URLs.

The OpenAPI document it serves (GET /openapi?format=json) is built from these routes: the request
models below, the answer models of tracker.api_models, and every status each route can answer.
"""

import json
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn
from aws_lambda_powertools.event_handler.openapi.params import Header, Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema
from tracker import catalogue, wiring
from tracker.access import Caller, caller_from_identity
from tracker.config import settings
from tracker.control import ControlError, JobControl
from tracker.jobs_api import PRESIGNED_URL_SECONDS, ApiError, JobsApi
from tracker.limits import MAX_INLINE_BODY_BYTES
from tracker.model import JOB_TYPES, storage_job_view
from tracker.observability import logger, metrics, tracer


class _Resolver(APIGatewayRestResolver):
    """Serves the document with the answer models of tracker.api_models, imported only here: they are
    what /openapi describes, and creating them costs every cold start ~50 ms the other routes do not need.

    A request that fails validation is answered 400 {code, message} (invalid_request, below), never with
    the 422 HTTPValidationError Powertools adds to every route of its document, so those are left out
    (a route's own 422, an Idempotency-Key reused, stays)."""

    def get_openapi_schema(self, **kwargs: Any) -> Any:
        from aws_lambda_powertools.event_handler.openapi.models import OpenAPI
        from tracker.api_models import answer_schemas

        document = super().get_openapi_schema(**kwargs).model_dump(by_alias=True, exclude_none=True, mode="json")
        for path_item in document["paths"].values():
            for operation in (path_item[m] for m in ("get", "put", "post", "delete", "patch") if m in path_item):
                answers = operation["responses"]
                if "HTTPValidationError" in json.dumps(answers.get("422", {})):
                    del answers["422"]
                operation["responses"] = dict(sorted(answers.items()))
        schemas = document["components"]["schemas"]
        for unused in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
            schemas.pop(unused, None)
        schemas.update(answer_schemas())
        return OpenAPI.model_validate(document)


# API Gateway's own convention for IAM (SigV4) auth in OpenAPI (x-amazon-apigateway-authtype).
SIGV4 = APIKey.model_validate(
    {
        "type": "apiKey",
        "name": "Authorization",
        "in": APIKeyIn.header,
        "description": "AWS Signature Version 4 (service execute-api) with IAM credentials: the API uses "
        "AWS_IAM authorization, so sign every request (awscurl, botocore SigV4Auth, aws-sigv4 clients).",
        "x-amazon-apigateway-authtype": "awsSigv4",
    }
)
app = _Resolver(enable_validation=True)
app.enable_swagger(
    path="/openapi",
    title="jobtracker API",
    version="1.0.0",
    description="Track provider batch jobs (FullStory imports and exports, Keboola table exports). "
    "Errors are {code, message}. GET /openapi?format=json is this document.",
    security_schemes={"sigv4": SIGV4},
    security=[{"sigv4": []}],
)

JobType = Literal[catalogue.NAMES]  # type: ignore[valid-type]
FileJobType = Literal[catalogue.BATCH_TYPES]  # type: ignore[valid-type]
TrackedProvider = Literal[tuple(catalogue.TRACKABLE)]  # type: ignore[valid-type]


class CreateJobBody(BaseModel):
    """Imports take `requests` or `source`; exports take `params`; `track` takes `provider` + `providerJobId`."""

    model_config = ConfigDict(extra="forbid")
    type: JobType
    requests: list[dict[str, Any]] | None = Field(default=None, min_length=1, max_length=50_000)
    source: str | None = Field(default=None, pattern=r"^s3://[^/]+/.+")
    params: dict[str, Any] | None = None
    provider: TrackedProvider | None = None
    providerJobId: str | None = Field(default=None, min_length=1, max_length=256)


class CreateUploadBody(BaseModel):
    """A file to upload for a job of `type`: its name (the extension tells its format) and its size."""

    model_config = ConfigDict(extra="forbid")
    type: FileJobType
    filename: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="The file's name: .csv, .ndjson, .jsonl or .json, optionally .gz.",
    )
    size: int = Field(ge=1, description="Bytes: up to 64 MiB one PUT, above that in parts.")


def _service() -> JobsApi:
    return wiring.jobs_api()


def _control() -> JobControl:
    return wiring.control()


def _caller() -> Caller:
    identity = app.current_event.raw_event.get("requestContext", {}).get("identity") or {}
    return caller_from_identity(identity, settings().admin_principals)


def _base_url() -> str | None:
    ctx = app.current_event.request_context
    if not ctx.domain_name:
        return None
    stage = f"/{ctx.stage}" if ctx.stage and ctx.domain_name.endswith("amazonaws.com") else ""
    scheme = "http" if ctx.domain_name.startswith(("127.0.0.1", "localhost")) else "https"
    return f"{scheme}://{ctx.domain_name}{stage}"


def _answers(ok: dict[int, tuple[str, str]], errors: dict[int, str]) -> dict[int, OpenAPIResponse]:
    """A route's documented answers: its successes (description, answer model of tracker.api_models; a
    second model after `|`), its own errors and the errors every route can answer, all {code, message}."""

    def json_of(models: str) -> dict[str, Any]:
        refs = [{"$ref": f"#/components/schemas/{name.strip()}"} for name in models.split("|")]
        return {"application/json": {"schema": refs[0] if len(refs) == 1 else {"anyOf": refs}}}

    answers: dict[int, OpenAPIResponse] = {
        status: {"description": text, "content": json_of(models)} for status, (text, models) in ok.items()
    }
    for status in sorted({*errors, *COMMON_ERRORS}):
        text = " Or: ".join(t for t in (errors.get(status), COMMON_ERRORS.get(status)) if t)
        answers[status] = {"description": text, "content": json_of("Error")}
    return answers


COMMON_ERRORS = {
    403: "Not SigV4-signed, a bad or expired signature, or no execute-api:Invoke permission (answered by "
    "API Gateway, code MISSING_AUTHENTICATION_TOKEN, INVALID_SIGNATURE, ...; missing_authentication offline).",
    429: "THROTTLED: over the API's rate limit (API Gateway); wait and send it again.",
    500: "internal_error: the request failed and was logged (or API Gateway could not invoke the function).",
    502: "The function failed outside its error handling (API Gateway).",
    504: "INTEGRATION_TIMEOUT: no answer within 29 s (API Gateway).",
}
NOT_FOUND = {404: "not_found: no such job, or another caller's job (only AdminPrincipals see every job)."}
TOO_LARGE = {413: "A request body over API Gateway's 10 MB (REQUEST_TOO_LARGE; payload_too_large offline)."}
INLINE_TOO_LARGE = {
    413: f"inline_too_large: a body over {MAX_INLINE_BODY_BYTES:,} bytes (upload the rows with POST /uploads and "
    "give the file as `source`); or over API Gateway's 10 MB (REQUEST_TOO_LARGE; payload_too_large offline).",
}
JOB_ID = "A job id (job-...)."


@app.post(
    "/jobs",
    operation_id="createJob",
    summary="Create a job",
    description="An import (`requests` inline, or `source`: a file you uploaded, see POST /uploads), an export "
    "(`params`) or `track` of a provider job started elsewhere (`provider` + `providerJobId`). With an "
    "Idempotency-Key, the same request again answers the job the first one created (200) instead of creating "
    "another.",
    tags=["jobs"],
    responses=_answers(
        {
            202: ("The job, created (PENDING).", "Job"),
            200: ("An Idempotency-Key replay: the job already created.", "Job"),
        },
        {
            400: "invalid_request or invalid_source: the body does not fit the job type.",
            403: "source_not_allowed: `source` is not a file you uploaded (only AdminPrincipals name any file "
            "of the inbox bucket).",
            409: "request_in_progress: a request with this Idempotency-Key is still running; send it again.",
            422: "idempotency_key_reused: this Idempotency-Key came with a different body.",
            **INLINE_TOO_LARGE,
        },
    ),
)
def create_job(
    body: CreateJobBody,
    idempotency_key: Annotated[
        str | SkipJsonSchema[None],
        Header(
            alias="Idempotency-Key",
            description="Per caller: the same key answers the job it first created (200); within 24 h, the same "
            "key with another body is refused (422).",
        ),
    ] = None,
) -> Response[dict[str, Any]]:
    caller = _caller()
    service = _service()
    if body.type in JOB_TYPES and (body.params or body.provider or body.providerJobId):
        raise ApiError(400, "invalid_request", f"{body.type} jobs take 'requests' or 'source', not params/provider")
    if idempotency_key:
        job, created = _create_once(service, body, caller, idempotency_key)
    else:
        job, created = _create(service, body, caller, None)
    view = service.view(job, [], base_url=_base_url())
    return Response(status_code=202 if created else 200, content_type="application/json", body=view)


def _create(service: JobsApi, body: CreateJobBody, caller: Caller, key: str | None) -> tuple[dict[str, Any], bool]:
    if body.type in JOB_TYPES:
        return service.create_job(
            job_type=body.type, requests=body.requests, source=body.source, caller=caller, idempotency_key=key
        )
    if body.requests is not None or body.source is not None:
        raise ApiError(400, "invalid_request", f"{body.type} jobs take no 'requests' or 'source'")
    return service.create_task_job(
        job_type=body.type,
        params=body.params,
        provider=body.provider,
        provider_job_id=body.providerJobId,
        caller=caller,
        idempotency_key=key,
    )


def _create_once(service: JobsApi, body: CreateJobBody, caller: Caller, key: str) -> tuple[dict[str, Any], bool]:
    """POST /jobs with an Idempotency-Key, through Powertools Idempotency (per caller and key; the same
    key with another body is refused). Imported here, not at the top: only this path needs it, and it
    costs ~120 ms of cold start."""
    from aws_lambda_powertools.utilities.idempotency import idempotent_function
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyValidationError,
    )
    from tracker import idempotency

    idempotency.CREATE_JOB.register_lambda_context(app.lambda_context)
    fresh: list[bool] = []

    @idempotent_function(
        data_keyword_argument="request", config=idempotency.CREATE_JOB, persistence_store=idempotency.persistence()
    )
    def create_once(request: dict[str, Any]) -> dict[str, Any]:
        job, created = _create(service, body, caller, key)
        fresh.append(created)
        return {"jobId": job["id"]}

    try:
        job_id = create_once(request={"owner": caller.owner, "key": key, "body": body.model_dump(mode="json")})["jobId"]
    except IdempotencyValidationError as exc:
        raise ApiError(422, "idempotency_key_reused", "this Idempotency-Key was used with a different body") from exc
    except IdempotencyAlreadyInProgressError as exc:
        raise ApiError(409, "request_in_progress", "a request with this Idempotency-Key is still running") from exc
    job, _ = service.get_job(job_id, caller)
    return job, bool(fresh and fresh[0])


@app.post(
    "/uploads",
    operation_id="createUpload",
    summary="Upload a file for a job",
    description="Presigned URLs that put the file into your own prefix of the inbox bucket (no S3 rights "
    "needed): PUT it to `url`, or, for a file over 64 MiB, each `partSize` slice to its part's URL (keep each "
    "answer's ETag header), then POST the CompleteMultipartUpload XML of the parts to `completeUrl` (DELETE "
    "`abortUrl` to give up). Then create the job with the `createJob` body (POST /jobs).",
    tags=["jobs"],
    responses=_answers(
        {201: ("Where and how to upload the file.", "Upload")},
        {
            400: "invalid_request (an unknown type, a bad name or size) or unsupported_format (the extension).",
            413: "file_too_large: bigger than intake reads within its time limit; split the file.",
        },
    ),
)
def create_upload(body: CreateUploadBody) -> Response[dict[str, Any]]:
    answer = _service().create_upload(job_type=body.type, filename=body.filename, size=body.size, caller=_caller())
    return Response(status_code=201, content_type="application/json", body=answer)


@app.get(
    "/jobs",
    operation_id="listJobs",
    summary="List jobs",
    description="The caller's jobs (every job for AdminPrincipals), newest first, a page at a time.",
    tags=["jobs"],
    responses=_answers(
        {200: ("One page of jobs.", "JobList")},
        {400: "invalid_request (a bad state or limit) or invalid_next_token."},
    ),
)
def list_jobs(
    state: Annotated[Literal["PENDING", "RUNNING", "COMPLETED", "FAILED"] | SkipJsonSchema[None], Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    nextToken: Annotated[str | SkipJsonSchema[None], Query(max_length=2048)] = None,
) -> dict[str, Any]:
    service = _service()
    jobs, token = service.list_jobs(caller=_caller(), state=state, limit=limit, next_token=nextToken)
    base = _base_url()
    return {"jobs": [service.view(job, [], base_url=base) for job in jobs], "nextToken": token}


@app.get(
    "/jobs/<job_id>",
    operation_id="getJob",
    summary="Show a job",
    description="The normalized job (a FullStory Operation); `?view=storage-job` answers it as a Keboola Storage "
    "JobResponse instead.",
    tags=["jobs"],
    responses=_answers(
        {200: ("The job: a Job, or a StorageJob with ?view=storage-job.", "Job | StorageJob")},
        {400: "invalid_request: an unknown view.", **NOT_FOUND},
    ),
)
def get_job(
    job_id: Annotated[str, Path(description=JOB_ID)],
    view: Annotated[Literal["operation", "storage-job"], Query()] = "operation",
) -> dict[str, Any]:
    service = _service()
    job, batches = service.get_job(job_id, _caller())
    normalized = service.view(job, batches, base_url=_base_url())
    return storage_job_view(job, normalized) if view == "storage-job" else normalized


@app.get(
    "/jobs/<job_id>/results",
    operation_id="getJobResults",
    summary="Links to a job's result files",
    description="Presigned URLs of the files that exist: rejected rows as soon as intake is done, the rest once "
    "the job has finished.",
    tags=["jobs"],
    responses=_answers({200: ("The job's files.", "JobResultLinks")}, NOT_FOUND),
)
def get_job_results(job_id: Annotated[str, Path(description=JOB_ID)]) -> dict[str, Any]:
    service = _service()
    job, _ = service.get_job(job_id, _caller())
    return {
        "jobId": job_id,
        "state": job["state"],
        "expiresInSeconds": PRESIGNED_URL_SECONDS,
        "files": service.result_urls(job),
    }


@app.post(
    "/jobs/<job_id>/cancel",
    operation_id="cancelJob",
    summary="Cancel a job",
    description="Stops its execution and marks it FAILED with error code `cancelled` at once, whatever its size; "
    "results so far are kept. The answer leaves out the batches. The job's files, manifest and notification "
    "follow when its execution has stopped (finishedAt is then set).",
    tags=["jobs"],
    responses=_answers(
        {200: ("The job, cancelled (FAILED), without its batches.", "Job")},
        {**NOT_FOUND, 409: "already_finished: the job had already ended.", **TOO_LARGE},
    ),
)
def cancel_job(job_id: Annotated[str, Path(description=JOB_ID)]) -> dict[str, Any]:
    caller = _caller()
    service = _service()
    cancelled = _control().cancel(service.get_job_record(job_id, caller), by=caller.arn)
    return service.view(cancelled, [], base_url=_base_url())


@app.post(
    "/jobs/<job_id>/retry",
    operation_id="retryJob",
    summary="Retry a failed job",
    description="Runs again only the batches that did not finish; a batch the provider accepted is polled, "
    "never sent again.",
    tags=["jobs"],
    responses=_answers(
        {202: ("The job, running again.", "Job")},
        {
            **NOT_FOUND,
            409: "not_failed, nothing_to_retry, or still_closing (a cancelled job whose execution is still "
            "stopping): the job cannot be retried now.",
            **TOO_LARGE,
        },
    ),
)
def retry_job(job_id: Annotated[str, Path(description=JOB_ID)]) -> Response[dict[str, Any]]:
    caller = _caller()
    service = _service()
    job, _ = service.get_job(job_id, caller)
    _control().retry(job)
    job, batches = service.get_job(job_id, caller)
    return Response(
        status_code=202, content_type="application/json", body=service.view(job, batches, base_url=_base_url())
    )


@app.exception_handler(ControlError)
def conflict(exc: ControlError) -> Response:
    return Response(status_code=409, content_type="application/json", body={"code": exc.code, "message": exc.message})


@app.exception_handler(ApiError)
def api_error(exc: ApiError) -> Response:
    return Response(
        status_code=exc.status, content_type="application/json", body={"code": exc.code, "message": exc.message}
    )


@app.exception_handler(RequestValidationError)
def invalid_request(exc: RequestValidationError) -> Response:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ()) if p != 'body')}: {err.get('msg')}" for err in exc.errors()[:5]
    )
    return Response(
        status_code=400, content_type="application/json", body={"code": "invalid_request", "message": problems}
    )


@app.not_found
def not_found(exc: Exception) -> Response:
    return Response(
        status_code=404, content_type="application/json", body={"code": "not_found", "message": "no such route"}
    )


@app.exception_handler(Exception)
def unexpected(exc: Exception) -> Response:
    logger.exception("unexpected API error")
    return Response(
        status_code=500,
        content_type="application/json",
        body={"code": "internal_error", "message": "the request failed; it has been logged"},
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return _inline_too_large(event) or app.resolve(_json_body(event), context)


def _inline_too_large(event: dict[str, Any]) -> dict[str, Any] | None:
    """413 for a POST /jobs body over MAX_INLINE_BODY_BYTES, before anything reads it: such a body is near
    Lambda's 6 MB invoke limit, past which it would never reach this function (tracker.limits)."""
    if event.get("httpMethod") != "POST" or event.get("resource") != "/jobs" or not event.get("body"):
        return None
    body = event["body"]
    size = len(body) * 3 // 4 - body[-2:].count("=") if event.get("isBase64Encoded") else len(body.encode())
    if size <= MAX_INLINE_BODY_BYTES:
        return None
    message = (
        f"the body has {size:,} bytes; inline requests take at most {MAX_INLINE_BODY_BYTES:,}. Upload the "
        "rows as a file (POST /uploads), then create the job with it as `source`"
    )
    return {
        "statusCode": 413,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"code": "inline_too_large", "message": message}),
        "isBase64Encoded": False,
    }


def _json_body(event: dict[str, Any]) -> dict[str, Any]:
    """The API speaks JSON only: a body sent without a JSON Content-Type (curl -d sends a form type) is
    read as JSON too, rather than rejected as a form with confusing field errors."""
    headers = event.get("headers") or {}
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    if event.get("body") and "json" not in content_type.lower():
        headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        headers["Content-Type"] = "application/json"
        multi = {k: v for k, v in (event.get("multiValueHeaders") or {}).items() if k.lower() != "content-type"}
        multi["Content-Type"] = ["application/json"]
        event = {**event, "headers": headers, "multiValueHeaders": multi}
    return event
