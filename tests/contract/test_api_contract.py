"""The OpenAPI document the API serves (GET /openapi?format=json) is valid OpenAPI 3.1 and true.

One offline stack (the real handler behind the offline API Gateway, SigV4 required) answers every route
in every way a client meets: created, replayed, listed, running, completed, failed, cancelled, retried,
and each error status. Every answer must validate against the schema the document gives for its route
and status, read strictly (a field the document does not name fails too), and every status the
document names must have been answered here (UNREACHED says which cannot be, and why). So a client
generated from the document can read every answer the API sends.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import jsonschema
import openapi_spec_validator
import pytest
import urllib3

from jobtracker.local.session import OfflineSession
from jobtracker.local.stack import REPO_ROOT
from jobtracker.local.template import load_template
from jobtracker.simulators.fullstory import SimulatorConfig, parse_fault
from tests.integration.helpers import sigv4_headers, users

HTTP = urllib3.PoolManager(retries=False, timeout=30)
ALICE, BOB = "AKIDALICE", "AKIDBOB"
OPERATION_IDS = {
    ("post", "/jobs"): "createJob",
    ("post", "/uploads"): "createUpload",
    ("get", "/jobs"): "listJobs",
    ("get", "/jobs/{job_id}"): "getJob",
    ("get", "/jobs/{job_id}/results"): "getJobResults",
    ("post", "/jobs/{job_id}/cancel"): "cancelJob",
    ("post", "/jobs/{job_id}/retry"): "retryJob",
}
# Documented statuses no offline request can bring about, with the reason.
UNREACHED = {
    **{
        (operation_id, status): reason
        for operation_id in OPERATION_IDS.values()
        for status, reason in {
            429: "API Gateway's throttling (MethodSettings) is not emulated offline",
            500: "an unexpected failure inside the handler",
            502: "a crash of the function outside its error handling",
            504: "API Gateway's 29 s integration timeout",
        }.items()
        # A body whose Lambda event is over 6 MB: API Gateway answers 500 (the offline API too).
        if (operation_id, status) not in {("createJob", 500), ("createUpload", 500)}
    },
    ("createJob", 409): "a second request while the first with the same Idempotency-Key is still running (a race)",
}
EXPORT = {"segmentId": "everyone", "type": "TYPE_INDIVIDUAL", "format": "FORMAT_CSV"}
OVER_10_MB = b"{" + b" " * (10 * 1024 * 1024 + 1) + b"}"
OVER_6_MB = b"{" + b" " * (7 * 1000 * 1000) + b"}"  # under API Gateway's 10 MB, over Lambda's 6 MB invoke
OVER_INLINE_CAP = b'{"type": "fullstory.users", "requests": [{"uid": "a"}]' + b" " * 3_000_000 + b"}"


@dataclass(frozen=True)
class Answer:
    method: str
    path: str
    status: int
    content_type: str
    body: Any
    view: str | None = None  # which schema of an anyOf this answer must be (getJob: Job or StorageJob)


class Client:
    """Calls the offline API as a SigV4-signing client and keeps every answer."""

    def __init__(self, session: OfflineSession) -> None:
        self.base_url = session.api.base_url
        self.answers: list[Answer] = []

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = ALICE,
        headers: dict[str, str] | None = None,
        view: str | None = None,
    ) -> Answer:
        url = self.base_url + path
        data = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
        sent = sigv4_headers(method, url, data, key, headers) if key else {"Content-Type": "application/json"}
        response = HTTP.request(method, url, body=data, headers=sent)
        answer = Answer(
            method.lower(),
            path,
            response.status,
            response.headers.get("Content-Type", ""),
            json.loads(response.data) if response.data else None,
            view,
        )
        self.answers.append(answer)
        return answer


@pytest.fixture(scope="module")
def served() -> tuple[dict[str, Any], list[Answer]]:
    sim = SimulatorConfig(polls_to_complete=1, operation_polls_to_complete=1)
    parameters = {
        "PollMinSeconds": 0,
        "PollMaxSeconds": 0,
        "MaxBatchRequests": 2,
        "AdminPrincipals": "arn:aws:iam::123456789012:user/AKIDADMIN",  # offline, everyone is admin by default
    }
    with OfflineSession(
        parameters=parameters, simulator_config=sim, api_port=0, allow_unsigned=False, retry_time_scale=0.0
    ) as session:
        api = Client(session)
        document = api.call("GET", "/openapi?format=json").body
        api.answers.clear()  # the document itself is not one of its operations
        stack = session.stack

        # Created, replayed, refused.
        rows = {"type": "fullstory.users", "requests": [*users(3), {"uid": "x" * 300}]}
        created = api.call("POST", "/jobs", rows, headers={"Idempotency-Key": "contract-1"})
        assert created.status == 202, created
        assert api.call("POST", "/jobs", rows, headers={"Idempotency-Key": "contract-1"}).status == 200
        other_body = {"type": "fullstory.users", "requests": users(1)}
        assert api.call("POST", "/jobs", other_body, headers={"Idempotency-Key": "contract-1"}).status == 422
        for bad in (
            {"type": "fullstory.users"},
            {"type": "fullstory.nope", "requests": users(1)},
            {"type": "fullstory.users", "requests": users(1), "extra": 1},
            {"type": "fullstory.segment_export"},
            b"{not json",
        ):
            assert api.call("POST", "/jobs", bad).status == 400, bad
        assert api.call("POST", "/jobs", {"type": "fullstory.users", "source": "s3://elsewhere/x.csv"}).status == 403
        assert api.call("POST", "/jobs", OVER_INLINE_CAP).body["code"] == "inline_too_large"
        assert api.call("POST", "/jobs", OVER_6_MB, headers={"Connection": "close"}).status == 500

        # Upload URLs: one PUT, or parts; refused for a file intake would refuse.
        upload = {"type": "fullstory.users", "filename": "people.csv", "size": 1000}
        assert "url" in api.call("POST", "/uploads", upload).body
        assert len(api.call("POST", "/uploads", {**upload, "size": 100 * 2**20}).body["parts"]) == 7
        assert api.call("POST", "/uploads", {**upload, "filename": "people.xlsx"}).status == 400
        assert api.call("POST", "/uploads", {**upload, "size": 2**40}).body["code"] == "file_too_large"
        assert api.call("POST", "/uploads", upload, key=None).status == 403
        assert api.call("POST", "/uploads", OVER_6_MB, headers={"Connection": "close"}).status == 500

        export = api.call("POST", "/jobs", {"type": "fullstory.segment_export", "params": EXPORT})
        assert export.status == 202, export
        job_id, export_id = created.body["id"], export.body["id"]

        # Completed: an import (with a rejected row) and an export (one downloaded file).
        assert [stack.wait_for_job(j)["state"] for j in (job_id, export_id)] == ["COMPLETED", "COMPLETED"]
        files = {}
        for finished in (job_id, export_id):
            api.call("GET", f"/jobs/{finished}", view="Job")
            api.call("GET", f"/jobs/{finished}?view=storage-job", view="StorageJob")
            files[finished] = set(api.call("GET", f"/jobs/{finished}/results").body["files"])
        assert files == {
            job_id: {"imports", "errors", "rejected", "manifest", "report"},
            export_id: {"download", "manifest", "report"},
        }
        first_page = api.call("GET", "/jobs?limit=1")
        assert first_page.body["nextToken"], first_page
        api.call("GET", f"/jobs?limit=1&nextToken={first_page.body['nextToken']}")
        assert api.call("GET", "/jobs?state=COMPLETED").body["nextToken"] is None
        assert api.call("POST", f"/jobs/{job_id}/cancel").body["code"] == "already_finished"
        assert api.call("POST", f"/jobs/{job_id}/retry").body["code"] == "not_failed"

        # Running (FullStory accepts the batches and never finishes them), cancelled, retried.
        session.simulator.config.faults = (parse_fault("stuck"),)
        stuck = api.call("POST", "/jobs", {"type": "fullstory.users", "requests": users(4)})
        stuck_id = stuck.body["id"]
        stack.wait_until(
            lambda: [bool(b.get("polls")) for b in stack.list_batches(stuck_id)] == [True, True],
            what="both batches accepted and polled",
        )
        api.call("GET", f"/jobs/{stuck_id}", view="Job")
        api.call("GET", f"/jobs/{stuck_id}?view=storage-job", view="StorageJob")
        api.call("GET", f"/jobs/{stuck_id}/results")
        assert api.call("GET", "/jobs?state=RUNNING").body["jobs"][0]["id"] == stuck_id
        assert api.call("POST", f"/jobs/{stuck_id}/cancel").status == 200
        api.call("GET", f"/jobs/{stuck_id}", view="Job")  # cancelled, not yet closed
        assert api.call("POST", f"/jobs/{stuck_id}/retry").body["code"] in ("still_closing", "not_failed")
        stack.wait_for_job(stuck_id)
        api.call("GET", f"/jobs/{stuck_id}", view="Job")
        api.call("GET", f"/jobs/{stuck_id}?view=storage-job", view="StorageJob")
        assert api.call("POST", f"/jobs/{stuck_id}/retry").status == 202
        assert api.call("POST", f"/jobs/{stuck_id}/retry").body["code"] == "not_failed"

        # Errors every client meets.
        for query in ("limit=0", "state=SLEEPING", "nextToken=garbage"):
            assert api.call("GET", f"/jobs?{query}").status == 400, query
        assert api.call("GET", f"/jobs/{job_id}?view=nope").status == 400
        for path in ("/jobs/{}", "/jobs/{}/results", "/jobs/{}/cancel", "/jobs/{}/retry"):
            method = "POST" if path.endswith(("cancel", "retry")) else "GET"
            assert api.call(method, path.format("job-doesnotexist")).status == 404
            assert api.call(method, path.format(job_id), key=BOB).status == 404  # another caller's job
            assert api.call(method, path.format(job_id), key=None).status == 403  # not signed
        assert api.call("GET", "/jobs", key=None).status == 403
        assert api.call("POST", "/jobs", other_body, key=None).status == 403
        for path in ("/jobs", "/uploads", f"/jobs/{job_id}/cancel", f"/jobs/{job_id}/retry"):
            # Over the limit the offline API answers 413 and closes the connection: a fresh one for what follows.
            assert api.call("POST", path, OVER_10_MB, headers={"Connection": "close"}).status == 413
        yield document, api.answers


def _operation(document: dict[str, Any], method: str, path: str) -> tuple[str, dict[str, Any]]:
    path = path.split("?", 1)[0]
    for template, item in document["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path) and method in item:
            return template, item[method]
    raise AssertionError(f"{method.upper()} {path} is not in the document")


def _closed(schema: Any) -> Any:
    """The schema with every object that lists its properties closed to others: a field the API sends
    must be documented, not merely tolerated."""
    if isinstance(schema, dict):
        closed = {k: _closed(v) for k, v in schema.items()}
        if "properties" in closed and "additionalProperties" not in closed:
            closed["additionalProperties"] = False
        return closed
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


def _problems(document: dict[str, Any], schema: dict[str, Any], body: Any) -> list[str]:
    root = {**schema, "components": _closed(copy.deepcopy(document["components"]))}
    validator = jsonschema.Draft202012Validator(root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}" for e in validator.iter_errors(body)]


def check(document: dict[str, Any], answer: Answer) -> list[str]:
    """What is wrong with one answer, measured against the document: an undocumented status, another
    content type, or a body its schema refuses."""
    template, operation = _operation(document, answer.method, answer.path)
    where = f"{answer.method.upper()} {answer.path} -> {answer.status}"
    documented = operation["responses"].get(str(answer.status))
    if documented is None:
        return [f"{where}: status not documented for {template}"]
    if answer.content_type != "application/json":
        return [f"{where}: Content-Type {answer.content_type!r}"]
    schema = documented["content"]["application/json"]["schema"]
    if answer.view:
        schema = {"$ref": f"#/components/schemas/{answer.view}"}
    return [f"{where}: {problem}" for problem in _problems(document, schema, answer.body)]


def test_the_served_document_is_valid_openapi(served):
    document, _ = served
    openapi_spec_validator.validate(document)
    assert document["openapi"].startswith("3.1")


def test_the_document_has_the_template_routes_each_with_a_stable_unique_operation_id(served):
    document, _ = served
    found = {
        (method, path): operation["operationId"]
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert found == OPERATION_IDS
    template = load_template(REPO_ROOT / "template.yaml")
    events = template["Resources"]["ApiFunction"]["Properties"]["Events"].values()
    deployed = {
        (e["Properties"]["Method"].lower(), re.sub(r"\{[^}]+\}", "{}", e["Properties"]["Path"]))
        for e in events
        if e["Type"] == "Api" and e["Properties"]["Path"] != "/openapi"
    }
    assert deployed == {(method, re.sub(r"\{[^}]+\}", "{}", path)) for method, path in OPERATION_IDS}


def test_every_route_requires_sigv4_as_api_gateway_describes_it(served):
    document, _ = served
    scheme = document["components"]["securitySchemes"]["sigv4"]
    assert scheme | {"description": ""} == {
        "type": "apiKey",
        "name": "Authorization",
        "in": "header",
        "x-amazon-apigateway-authtype": "awsSigv4",
        "description": "",
    }
    assert document["security"] == [{"sigv4": []}]
    assert not [op for item in document["paths"].values() for op in item.values() if "security" in op]  # no opt-out


def test_no_schema_is_left_empty(served):
    """`{}` (anything goes) is what an untyped answer becomes; a generated client cannot use it."""
    document, _ = served

    def empty_places(node: Any, where: str) -> list[str]:
        if node == {}:
            return [where]
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        return [place for key, child in children for place in empty_places(child, f"{where}/{key}")]

    assert not empty_places(document, "")
    for item in document["paths"].values():
        for operation in item.values():
            for answer in operation["responses"].values():
                assert answer["content"]["application/json"]["schema"]


def test_every_answer_matches_the_schema_documented_for_its_status(served):
    document, answers = served
    problems = [problem for answer in answers for problem in check(document, answer)]
    assert not problems, "\n".join(problems)


def test_every_documented_status_was_answered(served):
    document, answers = served
    documented = {
        (op["operationId"], int(status))
        for item in document["paths"].values()
        for op in item.values()
        for status in op["responses"]
    }
    seen = {(_operation(document, a.method, a.path)[1]["operationId"], a.status) for a in answers}
    assert documented - seen == set(UNREACHED)
    assert seen <= documented


def test_the_checks_can_fail(served):
    """An answer the document does not describe must fail, or the tests above prove nothing."""
    document, answers = served
    job = next(a for a in answers if a.view == "Job" and a.body["state"] == "COMPLETED" and a.body["batches"])
    assert not check(document, job)
    broken = {
        "an undocumented field": {**job.body, "internal": 1},
        "a missing field": {k: v for k, v in job.body.items() if k != "metrics"},
        "null where the field is left out instead": {**job.body, "finishedAt": None},
        "a timestamp that is not one": {**job.body, "createdAt": "yesterday"},
        "an unknown state": {**job.body, "state": "DONE"},
        "a batch without its counts": {**job.body, "batches": [{"index": 1}]},
    }
    for what, body in broken.items():
        assert check(document, Answer(job.method, job.path, 200, "application/json", body, "Job")), what
    assert check(document, Answer("get", "/jobs", 200, "application/json", {"jobs": [], "nextToken": 5}))
    assert check(document, Answer("get", "/jobs", 404, "application/json", {"code": "x", "message": "y"}))
    assert check(document, Answer("get", "/jobs", 400, "application/json", {"message": "no code"}))
    with pytest.raises(Exception):  # noqa: B017 - the validator's own error types vary by problem
        openapi_spec_validator.validate({**document, "paths": {"/x": {"get": {"responses": {"200": {}}}}}})


def test_the_answer_models_stay_off_the_request_path():
    """They are created only to serve the document: a cold start of the api function does not pay for them."""
    handler, layer = REPO_ROOT / "functions" / "api", REPO_ROOT / "layers" / "shared" / "python"
    program = (
        f"import sys; sys.path[:0] = [{str(handler)!r}, {str(layer)!r}]; import app; "
        "print(sorted(m for m in sys.modules if m.startswith('tracker.')))"
    )
    env = {"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "1"}
    run = subprocess.run([sys.executable, "-I", "-c", program], capture_output=True, text=True, env=env, check=True)
    loaded = json.loads(run.stdout.strip().replace("'", '"'))
    assert "tracker.model" in loaded  # the check sees the layer's modules
    assert "tracker.api_models" not in loaded


def test_api_gateways_own_errors_answer_the_documented_error(served):
    """403, 413, 429, 5xx from API Gateway itself: its gateway responses (template.yaml) fill in
    {code, message} as the document promises, whatever the error type and message."""
    document, _ = served
    api = load_template(REPO_ROOT / "template.yaml")["Resources"]["JobsApi"]["Properties"]
    responses = api["GatewayResponses"]
    assert set(responses) == {"DEFAULT_4XX", "DEFAULT_5XX"}
    for response_type, response in responses.items():
        body = response["ResponseTemplates"]["application/json"]
        for message in ("Missing Authentication Token", 'A "quoted" message'):
            filled = body.replace("$context.error.responseType", response_type).replace(
                "$context.error.messageString", json.dumps(message)  # API Gateway quotes it (messageString)
            )
            status = 403 if response_type == "DEFAULT_4XX" else 504
            answer = Answer("get", "/jobs", status, "application/json", json.loads(filled))
            assert not check(document, answer), filled
            assert answer.body == {"code": response_type, "message": message}
