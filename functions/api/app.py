"""REST API (API Gateway, AWS_IAM auth): POST /jobs, GET /jobs, GET /jobs/{id}, GET /jobs/{id}/results."""

from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field
from tracker import aws, catalogue, wiring
from tracker.access import Caller, caller_from_identity
from tracker.config import settings
from tracker.control import ControlError, JobControl
from tracker.jobs_api import PRESIGNED_URL_SECONDS, ApiError, JobsApi
from tracker.model import JOB_TYPES, storage_job_view
from tracker.observability import logger, metrics, tracer

app = APIGatewayRestResolver(enable_validation=True)
app.enable_swagger(path="/openapi", title="jobtracker API")

JobType = Literal[catalogue.NAMES]  # type: ignore[valid-type]
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


def _service() -> JobsApi:
    return JobsApi(settings(), wiring.store(), aws.client("s3"), aws.client("sqs"))


def _control() -> JobControl:
    return JobControl(
        settings(), wiring.store(), aws.client("stepfunctions"), aws.client("s3"), wiring.finalizer(), wiring.budgets()
    )


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


@app.post("/jobs")
def create_job(body: CreateJobBody) -> Response[dict[str, Any]]:
    headers = app.current_event.headers
    key = headers.get("Idempotency-Key") or headers.get("idempotency-key")
    caller = _caller()
    service = _service()
    if body.type in JOB_TYPES and (body.params or body.provider or body.providerJobId):
        raise ApiError(400, "invalid_request", f"{body.type} jobs take 'requests' or 'source', not params/provider")
    if key:
        job, created = _create_once(service, body, caller, key)
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


@app.get("/jobs")
def list_jobs(
    state: Annotated[Literal["PENDING", "RUNNING", "COMPLETED", "FAILED"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    nextToken: Annotated[str | None, Query(max_length=2048)] = None,
) -> dict[str, Any]:
    service = _service()
    jobs, token = service.list_jobs(caller=_caller(), state=state, limit=limit, next_token=nextToken)
    base = _base_url()
    return {"jobs": [service.view(job, [], base_url=base) for job in jobs], "nextToken": token}


@app.get("/jobs/<job_id>")
def get_job(job_id: str, view: Annotated[Literal["operation", "storage-job"], Query()] = "operation") -> dict[str, Any]:
    """The normalized job; `?view=storage-job` answers it as a Keboola Storage JobResponse."""
    service = _service()
    job, batches = service.get_job(job_id, _caller())
    normalized = service.view(job, batches, base_url=_base_url())
    return storage_job_view(job, normalized) if view == "storage-job" else normalized


@app.get("/jobs/<job_id>/results")
def get_job_results(job_id: str) -> dict[str, Any]:
    service = _service()
    job, _ = service.get_job(job_id, _caller())
    return {
        "jobId": job_id,
        "state": job["state"],
        "expiresInSeconds": PRESIGNED_URL_SECONDS,
        "files": service.result_urls(job),
    }


@app.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str) -> dict[str, Any]:
    caller = _caller()
    service = _service()
    job, _ = service.get_job(job_id, caller)
    _control().cancel(job, by=caller.arn)
    job, batches = service.get_job(job_id, caller)
    return service.view(job, batches, base_url=_base_url())


@app.post("/jobs/<job_id>/retry")
def retry_job(job_id: str) -> Response[dict[str, Any]]:
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
    return app.resolve(_json_body(event), context)


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
