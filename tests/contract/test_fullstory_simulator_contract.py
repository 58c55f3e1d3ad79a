"""The FullStory simulator against FullStory's published Swagger specs, both ways.

Answers: every batch route the specs document (users and events, /v2 and /v2beta: create, status,
imports, errors) answers, in every status the spec documents for it that the simulator can be brought to
give (200, 202, 400, 401, 403, 404, 429, 500), a body that validates against the operation's response
schema for that status (``$ref``s resolved through the spec's ``definitions``), also in a strict mode
where the top-level objects may hold no property the spec does not declare, so the simulator cannot
invent fields. The statuses it never gives are listed with the reason (``NOT_GIVEN``), and the test fails
if the spec documents one that is neither given nor listed.

Requests: bodies generated from the specs' request schemas -- required fields only, every field, and
required fields plus each optional field or nested field on its own -- plus the specs' own examples, each
first checked against the spec's request schema, are accepted (200) on both versions, and every row is
imported unless a rule the spec states in words refuses it (``documented_refusal``: the schema allows what
its descriptions then refuse; the simulator follows the descriptions, as the service does). Documented
headers and query parameters (``Idempotency-Key``, ``page_token``, ``include_schema``) are accepted too.

Where the spec and the docs (developer.fullstory.com) differ: the specs list ``/v2beta/users/batch`` while
the docs show only ``/v2``, so both are served; ``JobStatusResponse.errors`` is "only included for failed
imports" in its description but required by the schema and present in the docs' example of a COMPLETED
job, so it is always sent.

The specs are vendored in tests/contract/fixtures/fullstory (MIT, from FullStory's Node SDK; see its README).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
import urllib3

from jobtracker.simulators.fullstory import FullStorySimulator, SimulatorConfig, parse_fault
from tests.contract.schemas import FULLSTORY_SPECS

SPEC_DIR = FULLSTORY_SPECS
AUTH = {"Authorization": "Basic contract-key", "Content-Type": "application/json"}
ISO_MILLIS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
KINDS = ("users", "events")
VERSIONS = ("v2", "v2beta")

# Response definitions whose own (top-level) properties must be exactly what the spec declares.
STRICT_TOP_LEVEL = {
    "fullstory.v2.apierror.ErrorResponse",
    "fullstory.v2.job.JobMetadata",
    "fullstory.v2.job.JobStatusResponse",
    "fullstory.v2.users.CreateBatchUserImportJobResponse",
    "fullstory.v2.users.GetBatchUserImportsResponse",
    "fullstory.v2.users.GetBatchUserImportErrorsResponse",
    "fullstory.v2.users.GetBatchUserImportErrorsResponse.FailedUserImport",
    "fullstory.v2.events.CreateBatchEventsImportJobResponse",
    "fullstory.v2.events.GetBatchEventsImportsResponse",
    "fullstory.v2.events.GetBatchEventsImportErrorsResponse",
    "fullstory.v2.events.GetBatchEventsImportErrorsResponse.FailedEventsImport",
}


class Spec:
    """One Swagger 2.0 document, answering "the schema for this operation's N response"."""

    def __init__(self, path: Any):
        self.doc = json.loads(path.read_text())

    def statuses(self, method: str, path: str) -> set[int]:
        return {int(code) for code in self.doc["paths"][path][method.lower()]["responses"]}

    def request_schema(self, method: str, path: str) -> dict[str, Any]:
        (body,) = [p for p in self.doc["paths"][path][method.lower()]["parameters"] if p["in"] == "body"]
        return self._with_definitions(body["schema"], strict=False)

    def definition(self, ref_or_schema: dict[str, Any]) -> dict[str, Any]:
        """A schema with its ``$ref`` followed (Swagger 2.0: ``#/definitions/<name>``)."""
        while "$ref" in ref_or_schema:
            ref_or_schema = self.doc["definitions"][ref_or_schema["$ref"].rsplit("/", 1)[-1]]
        return ref_or_schema

    def response_schema(self, method: str, path: str, status: int) -> dict[str, Any]:
        op = self.doc["paths"][path][method.lower()]
        schema = op["responses"][str(status)]["schema"]
        return self._with_definitions(schema, strict=False)

    def strict_response_schema(self, method: str, path: str, status: int) -> dict[str, Any]:
        op = self.doc["paths"][path][method.lower()]
        return self._with_definitions(op["responses"][str(status)]["schema"], strict=True)

    def _with_definitions(self, schema: dict[str, Any], strict: bool) -> dict[str, Any]:
        definitions = copy.deepcopy(self.doc["definitions"])
        if strict:
            for name in STRICT_TOP_LEVEL & set(definitions):
                definitions[name]["additionalProperties"] = False
        return {**copy.deepcopy(schema), "definitions": definitions}


def validate(schema: dict[str, Any], instance: Any) -> None:
    # Swagger 2.0 schemas are JSON Schema draft 4; date-time is checked via rfc3339-validator.
    validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def check(spec: Spec, method: str, spec_path: str, status: int, body: Any) -> None:
    validate(spec.response_schema(method, spec_path, status), body)
    validate(spec.strict_response_schema(method, spec_path, status), body)


@pytest.fixture(scope="module")
def specs() -> dict[str, Spec]:
    return {kind: Spec(SPEC_DIR / f"{kind}.swagger.json") for kind in KINDS}


@pytest.fixture
def sim() -> Iterator[FullStorySimulator]:
    with FullStorySimulator(SimulatorConfig(page_size=2, polls_to_complete=2)) as simulator:
        yield simulator


def test_the_vendored_specs_and_their_license_are_there() -> None:
    assert "MIT License" in (SPEC_DIR / "LICENSE").read_text()
    for kind in KINDS:
        assert Spec(SPEC_DIR / f"{kind}.swagger.json").doc["swagger"] == "2.0"


@pytest.fixture
def http() -> Iterator[urllib3.PoolManager]:
    pool = urllib3.PoolManager(retries=False)
    yield pool
    pool.clear()


def call(http: urllib3.PoolManager, method: str, url: str, body: Any = None, headers: Any = None) -> tuple:
    data = json.dumps(body).encode() if body is not None else None
    resp = http.request(method, url, body=data, headers=AUTH if headers is None else headers)
    return resp.status, json.loads(resp.data)


BATCHES = {
    "users": [
        {"uid": "xyz123", "display_name": "Daniel Falko", "email": "daniel.falko@example.com",
         "properties": {"pricing_plan": "paid", "popup_help": True, "total_spent": 14.55}},
        {"uid": "abc789", "properties": {"rewards_status": "gold", "address": {"city": "Atlanta"}}},
        {"uid": "nope", "email": "not-an-email"},
        {"uid": "typed", "properties": {"total_spent": "a lot"}},
        {"uid": "", "properties": {"rewards_status": "silver"}},
    ],
    "events": [
        {"name": "Support Ticket", "timestamp": "2022-03-15T14:23:23Z", "session": {"id": "123456789:123456789"},
         "context": {"browser": {"url": "https://app.example.com", "user_agent": "UA"}},
         "properties": {"id": 424242, "priority": "Normal"}},
        {"name": "Checkout", "user": {"id": "123456789"},
         "context": {"location": {"country": "US", "latitude": 33.7, "longitude": -84.4}}},
        {"name": "Plain"},
        {"name": ""},
        {"name": "Late", "timestamp": "last tuesday"},
    ],
}  # fmt: skip


@pytest.mark.parametrize("kind", ["users", "events"])
def test_batch_workflow_responses_match_spec(
    kind: str, specs: dict[str, Spec], sim: FullStorySimulator, http: urllib3.PoolManager
) -> None:
    spec, base = specs[kind], sim.base_url
    batch_path = f"/v2/{kind}/batch"

    status, created = call(http, "POST", base + batch_path, {"requests": BATCHES[kind]})
    assert status == 200
    check(spec, "POST", batch_path, 200, created)
    job_id = created["job"]["id"]
    assert ISO_MILLIS_Z.match(created["job"]["created"])

    status_path = f"{batch_path}/{{job_id}}"
    status, processing = call(http, "GET", f"{base}{batch_path}/{job_id}")
    assert status == 200 and processing["job"]["status"] == "PROCESSING"
    check(spec, "GET", status_path, 200, processing)

    for listing in ("imports", "errors"):
        status, pending = call(http, "GET", f"{base}{batch_path}/{job_id}/{listing}")
        assert status == 202
        validate(spec.doc["paths"][f"{status_path}/{listing}"]["get"]["responses"]["202"]["schema"], pending)

    status, done = call(http, "GET", f"{base}{batch_path}/{job_id}")
    assert status == 200 and done["job"]["status"] == "FAILED"
    check(spec, "GET", status_path, 200, done)
    assert (done["imports"], done["errors"]) == ((2, 3) if kind == "users" else (3, 2))

    for listing in ("imports", "errors"):
        url, seen = f"{base}{batch_path}/{job_id}/{listing}", 0
        while url:
            status, page = call(http, "GET", url)
            assert status == 200
            check(spec, "GET", f"{status_path}/{listing}", 200, page)
            seen += len(page["results"])
            token = page.get("next_page_token")
            url = f"{base}{batch_path}/{job_id}/{listing}?page_token={token}" if token else ""
        assert seen == int(page["total_records"]) == done[listing]


# --- answers: every batch route, every documented status ----------------------------------------------

# Documented statuses the simulator never gives on a route, and why (each one a cause the docs do not name).
NOT_GIVEN = {
    ("POST", "batch", 404): "the route always exists; no documented cause makes creating a batch a 404",
    ("GET", "status", 400): "the call takes nothing but the job id in its path; an unknown id is a 404",
}
# The `code` of each error status, as the specs' examples give it (400's code depends on the mistake).
ERROR_CODES = {401: "unauthorized", 403: "forbidden", 404: "resource_not_found", 429: "too_many_requests"}
ERROR_CODES[500] = "server_error"


def routes(spec: Spec, kind: str) -> list[tuple[str, str, str]]:
    """(method, spec path, role) of every batch route of ``kind`` the spec documents."""
    found = []
    for path, operations in spec.doc["paths"].items():
        match = re.fullmatch(rf"/(v2|v2beta)/{kind}/batch(/\{{job_id\}}(/(imports|errors))?)?", path)
        if match:
            role = "batch" if not match[2] else ("status" if not match[4] else "listing")
            found.extend((method.upper(), path, role) for method in operations)
    return sorted(found)


def test_the_simulator_serves_every_batch_route_of_the_specs(specs: dict[str, Spec]) -> None:
    for kind in KINDS:
        served = {f"{m} /{v}/{kind}/batch{s}" for v in VERSIONS for m, s in (
            ("POST", ""), ("GET", "/{job_id}"), ("GET", "/{job_id}/imports"), ("GET", "/{job_id}/errors"))}  # fmt: skip
        assert {f"{m} {p}" for m, p, _ in routes(specs[kind], kind)} == served


class Caller:
    """Brings a route to each status: a finished and a processing job to ask about, and simulators whose
    configuration gives 429 (the org caps; a fault for the GETs) and 500 (a fault)."""

    def __init__(self, http: urllib3.PoolManager) -> None:
        self.http = http
        config = SimulatorConfig(page_size=1, polls_to_complete=2, forbidden_keys=("forbidden-key",))
        self.sim = FullStorySimulator(config).start()
        self.throttled = FullStorySimulator(SimulatorConfig(in_progress_limit=0, faults=(parse_fault("429"),))).start()
        self.broken = FullStorySimulator(SimulatorConfig(faults=(parse_fault("500"),))).start()
        self.jobs: dict[str, tuple[str, str]] = {}

    def close(self) -> None:
        for simulator in (self.sim, self.throttled, self.broken):
            simulator.stop()

    def job(self, kind: str, finished: bool) -> str:
        key = f"{kind}:{finished}"
        if key not in self.jobs:
            row = {"uid": "a"} if kind == "users" else {"name": "A"}
            status, created, _ = self.send(self.sim, "POST", f"/v2/{kind}/batch", {"requests": [row, row]})
            assert status == 200, created
            job_id = created["job"]["id"]
            if finished:
                while self.send(self.sim, "GET", f"/v2/{kind}/batch/{job_id}")[1]["job"]["status"] == "PROCESSING":
                    pass
            self.jobs[key] = job_id
        return self.jobs[key]

    def send(
        self, sim: FullStorySimulator, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, Any]:
        data = json.dumps(body).encode() if body is not None else None
        resp = self.http.request(method, sim.base_url + path, body=data, headers=AUTH if headers is None else headers)
        return resp.status, json.loads(resp.data) if resp.data else None, resp.headers

    def provoke(self, method: str, path: str, role: str, status: int) -> tuple[int, Any, Any] | None:
        """The answer of ``method path`` brought to ``status``; None when the simulator never gives it there."""
        kind = path.split("/")[2]
        real = path.replace("{job_id}", self.job(kind, finished=status != 202))
        body = {"requests": []} if method == "POST" else None
        if (method, role, status) in NOT_GIVEN:
            return None
        if status in (200, 202):
            return self.send(self.sim, method, real, body)
        if status == 400:
            if role == "batch":
                return self.send(self.sim, method, real, {"requests": "not a list"})
            return self.send(self.sim, method, real + "?page_token=not-a-token")
        if status == 401:
            return self.send(self.sim, method, real, body, headers={"Content-Type": "application/json"})
        if status == 403:
            return self.send(self.sim, method, real, body, headers={"Authorization": "Basic forbidden-key"})
        if status == 404:
            return self.send(self.sim, method, path.replace("{job_id}", "no-such-job"), body)
        if status == 429:
            return self.send(self.throttled, method, real, body)
        if status == 500:
            return self.send(self.broken, method, real, body)
        raise AssertionError(f"the spec documents {status} on {method} {path}: add how to give it, or why not")


@pytest.fixture(scope="module")
def caller() -> Iterator[Caller]:
    http = urllib3.PoolManager(retries=False, timeout=10)
    caller = Caller(http)
    yield caller
    caller.close()
    http.clear()


@pytest.mark.parametrize("kind", KINDS)
def test_every_route_in_every_documented_status_answers_what_the_spec_says(
    kind: str, specs: dict[str, Spec], caller: Caller
) -> None:
    spec, given = specs[kind], []
    for method, path, role in routes(spec, kind):
        for status in sorted(spec.statuses(method, path)):
            answer = caller.provoke(method, path, role, status)
            if answer is None:
                continue
            got, body, headers = answer
            assert got == status, (method, path, status, body)
            if status == 202:  # the spec's 202 schema is {}: anything; the simulator answers an empty object
                validate(spec.doc["paths"][path]["get"]["responses"]["202"]["schema"], body)
            else:
                check(spec, method, path, status, body)
            if status in ERROR_CODES:
                assert body["code"] == ERROR_CODES[status], (method, path, body)
            if status == 429:
                assert headers["Retry-After"].isdigit()  # "A `Retry-After` header will be included"
            given.append((method, path, status))
    assert len(given) >= 4 * 2 * 7  # every route, every version, almost every status


# --- requests: every documented request shape is accepted ---------------------------------------------

FREE_FORM = {"plan": "pro", "address": {"city": "Atlanta", "zip": 30301}}  # an object the schema leaves open
SCALARS = {"string": "text", "integer": 7, "number": 1.5, "boolean": True}


def sample(spec: Spec, schema: dict[str, Any], *, full: bool, example: Any = None) -> Any:
    """An instance of ``schema``: every field (``full``) or the required ones only, with the spec's example
    values where it gives them (the enclosing object's example first: it is one consistent record)."""
    schema = spec.definition(schema)
    kind = schema.get("type", "object")
    if kind == "array":
        return [sample(spec, schema["items"], full=full)]
    if kind != "object":
        return example if example is not None else schema.get("example", SCALARS[kind])
    properties = schema.get("properties")
    if not properties:
        given = example if example is not None else schema.get("example")
        return copy.deepcopy(given) if isinstance(given, dict) else copy.deepcopy(FREE_FORM) if full else {}
    examples = schema.get("example") if isinstance(schema.get("example"), dict) else {}
    names = list(properties) if full else schema.get("required", [])
    return {name: sample(spec, properties[name], full=full, example=examples.get(name)) for name in names}


def optional_paths(spec: Spec, schema: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every optional field, nested ones included (context, context.browser, context.browser.url, ...)."""
    schema = spec.definition(schema)
    required = set(schema.get("required", []))
    for name, field in (schema.get("properties") or {}).items():
        if name not in required:
            yield (*prefix, name)
        yield from optional_paths(spec, field, (*prefix, name))


def with_path(spec: Spec, schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """The required fields plus the field at ``path`` (its parents holding only what leads to it)."""
    request = sample(spec, schema, full=False)
    target, parent = request, spec.definition(schema)
    for name in path[:-1]:
        parent = spec.definition(parent["properties"][name])
        target = target.setdefault(name, sample(spec, parent, full=False))
    examples = parent.get("example") if isinstance(parent.get("example"), dict) else {}
    target[path[-1]] = sample(spec, parent["properties"][path[-1]], full=True, example=examples.get(path[-1]))
    return request


def request_rows(spec: Spec, kind: str) -> list[tuple[str, dict[str, Any]]]:
    body = spec.definition(spec.request_schema("POST", f"/v2/{kind}/batch"))
    row = spec.definition(body["properties"]["requests"]["items"])
    rows = [("required fields only", sample(spec, row, full=False)), ("every field", sample(spec, row, full=True))]
    rows += [(f"required fields + {'.'.join(path)}", with_path(spec, row, path)) for path in optional_paths(spec, row)]
    if isinstance(row.get("example"), dict):
        rows.append(("the spec's example", copy.deepcopy(row["example"])))
    return rows


def documented_refusal(kind: str, row: dict[str, Any], shared: dict[str, Any] | None) -> str | None:
    """Why the spec's words (not its schema) refuse a row, or None."""
    if kind != "events":
        return None
    session = row.get("session") or {}
    if session.get("id") and "user" in row:  # UserIdRequest
        return "If `session.id` is provided ... `user` will not be accepted."
    if session.get("use_most_recent") is True and "user" not in row:  # SessionIdRequest.use_most_recent
        return "If set to `true`, a `user` is required."
    if shared and shared.get("context") and row.get("context"):  # SharedData
        return "If any of the events in the `requests` field also contain a context, the event will fail"
    return None


def submitted(
    caller: Caller, spec: Spec, version: str, kind: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """POST the body (checked against the spec's request schema first), wait for the job: (status, errors)."""
    validate(spec.request_schema("POST", f"/{version}/{kind}/batch"), body)
    status, created, _ = caller.send(caller.sim, "POST", f"/{version}/{kind}/batch", body, headers)
    assert status == 200, created
    job = f"/{version}/{kind}/batch/{created['job']['id']}"
    while (done := caller.send(caller.sim, "GET", job)[1])["job"]["status"] == "PROCESSING":
        pass
    errors, token = [], ""
    while True:
        status, page, _ = caller.send(caller.sim, "GET", f"{job}/errors" + (f"?page_token={token}" if token else ""))
        assert status == 200, page
        errors += page["results"]
        token = page.get("next_page_token")
        if not token:
            return done, errors


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_every_documented_request_shape_is_accepted(
    kind: str, version: str, specs: dict[str, Spec], caller: Caller
) -> None:
    spec = specs[kind]
    rows = request_rows(spec, kind)
    assert len(rows) >= (6 if kind == "users" else 30)  # nested fields included (events: context.*.*)
    done, errors = submitted(caller, spec, version, kind, {"requests": [row for _, row in rows]})
    refused = [(name, row) for name, row in rows if documented_refusal(kind, row, None)]
    assert (done["imports"], done["errors"]) == (len(rows) - len(refused), len(refused)), errors
    item = "user" if kind == "users" else "event"
    assert sorted(json.dumps(e[item], sort_keys=True) for e in errors) == sorted(
        json.dumps(row, sort_keys=True) for _, row in refused
    )


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_the_specs_own_request_examples_and_documented_headers_are_accepted(
    kind: str, version: str, specs: dict[str, Spec], caller: Caller
) -> None:
    spec = specs[kind]
    example = spec.definition(spec.request_schema("POST", f"/v2/{kind}/batch")).get("example")
    bodies = [example] if example else []
    bodies += [{"requests": []}, {"requests": [request_rows(spec, kind)[0][1]]}]
    for number, body in enumerate(bodies):
        headers = {**AUTH, "Idempotency-Key": f"contract-{kind}-{version}-{number}"}
        done, errors = submitted(caller, spec, version, kind, body, headers)
        assert not errors and done["imports"] == len(body["requests"])
    job = caller.job(kind, finished=True)
    for value in ("true", "false"):  # include_schema: a documented bool query parameter of /imports
        status, page, _ = caller.send(
            caller.sim, "GET", f"/{version}/{kind}/batch/{job}/imports?include_schema={value}"
        )
        assert status == 200, page
        check(spec, "GET", f"/{version}/{kind}/batch/{{job_id}}/imports", 200, page)


def test_events_shared_context_is_accepted_and_refuses_rows_with_their_own(
    specs: dict[str, Spec], caller: Caller
) -> None:
    spec = specs["events"]
    body = spec.definition(spec.request_schema("POST", "/v2/events/batch"))
    shared_schema = spec.definition(body["properties"]["shared"])
    shared = sample(spec, shared_schema, full=True)
    rows = [row for _, row in request_rows(spec, "events")]
    done, errors = submitted(caller, spec, "v2", "events", {"requests": rows, "shared": shared})
    refused = [row for row in rows if documented_refusal("events", row, shared)]
    assert any(documented_refusal("events", row, None) is None for row in refused)  # some only for the context
    assert (done["imports"], done["errors"]) == (len(rows) - len(refused), len(refused)), errors


def test_the_generated_shapes_cover_what_the_spec_declares(specs: dict[str, Spec]) -> None:
    """A check of the generator: "every field" holds every declared field, nested ones too."""
    events = dict(request_rows(specs["events"], "events"))
    full = events["every field"]
    assert set(full) == {"user", "session", "context", "name", "timestamp", "properties", "schema"}
    assert set(full["context"]) == {"browser", "mobile", "device", "location"}
    assert set(full["context"]["device"]) >= {"screen_width", "viewport_height"}
    assert events["required fields only"] == {"name": "Support Ticket"}
    assert events["required fields + context.location.latitude"] == {
        "name": "Support Ticket",
        "context": {"location": {"latitude": 1.5}},
    }
    users = dict(request_rows(specs["users"], "users"))
    assert users["required fields only"] == {}
    assert users["every field"]["email"] == "daniel.falko@example.com"  # the spec's example record
