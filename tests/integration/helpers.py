"""Helpers shared by the integration tests."""

from __future__ import annotations

import json
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from tracker.budget import InFlightBudget

from jobtracker.local.session import OfflineSession


def ndjson(rows: list[Any]) -> bytes:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows).encode() + b"\n"


def read_ndjson(session: OfflineSession, key: str) -> list[dict[str, Any]]:
    body = session.stack.client("s3").get_object(Bucket=session.stack.results_bucket, Key=key)["Body"].read()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def read_json(session: OfflineSession, key: str) -> Any:
    return json.loads(
        session.stack.client("s3").get_object(Bucket=session.stack.results_bucket, Key=key)["Body"].read()
    )


def upload_and_wait(session: OfflineSession, key: str, body: bytes, timeout: float = 60) -> dict[str, Any]:
    stack = session.stack
    stack.upload(key, body)
    job_id = stack.wait_until(
        lambda: next((j["id"] for j in stack.jobs() if j["source"]["key"] == key), None), what=f"a job for {key}"
    )
    return stack.wait_for_job(job_id, timeout=timeout)


def users(n: int, start: int = 1, **props: Any) -> list[dict[str, Any]]:
    return [
        {"uid": f"user-{i}", "email": f"user{i}@example.com", "properties": {"plan": "pro", "score": i, **props}}
        for i in range(start, start + n)
    ]


def sigv4_headers(
    method: str, url: str, body: bytes | None, access_key: str, headers: dict[str, str] | None = None
) -> dict[str, str]:
    """Headers of a request signed as API Gateway's AWS_IAM auth wants it (service execute-api); the
    offline API takes the access key as the caller's identity."""
    request = AWSRequest(
        method=method, url=url, data=body, headers={"Content-Type": "application/json", **(headers or {})}
    )
    SigV4Auth(Credentials(access_key, "secret-" + access_key), "execute-api", "us-east-1").add_auth(request)
    return dict(request.headers)


def fullstory_batch_budget() -> InFlightBudget:
    """The running offline stack's in-flight budget of FullStory batch imports (OrgInFlightBudget)."""
    from tracker import wiring

    budget = wiring.budgets().for_type("fullstory.users")
    assert budget is not None, "OrgInFlightBudget is 0: the FullStory batch budget is off"
    return budget


class ApiCalls:
    """The AWS calls the api function makes while handling requests, as (service, operation), e.g.
    ("dynamodb", "GetItem"): a wrapper marks the thread an api invocation runs on, and a botocore
    `before-call` handler on the handlers' own clients (tracker.aws) records the calls made there."""

    def __init__(self, stack: Any) -> None:
        import threading

        from tracker import aws
        from tracker.config import settings

        self.calls: list[tuple[str, str]] = []
        self._inside = threading.local()
        clients = [aws.client(service) for service in ("s3", "sqs", "sns", "stepfunctions")]
        clients.append(aws.table(settings().jobs_table).meta.client)
        for client in clients:
            client.meta.events.register("before-call", self._record)
        lambdas = stack.lambdas
        real_invoke = lambdas.invoke

        def invoke(name: str, event: dict[str, Any]) -> Any:
            if lambdas.by_name_or_arn(name).logical_id != "ApiFunction":
                return real_invoke(name, event)
            self._inside.on = True
            try:
                return real_invoke(name, event)
            finally:
                self._inside.on = False

        lambdas.invoke = invoke

    def _record(self, model: Any, **_: Any) -> None:
        if getattr(self._inside, "on", False):
            self.calls.append((model.service_model.endpoint_prefix, model.name))

    def during(self, action: Any) -> list[tuple[str, str]]:
        """The calls made while `action()` runs."""
        start = len(self.calls)
        action()
        return self.calls[start:]
