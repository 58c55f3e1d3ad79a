"""The simulator's real JSON answers validate against FullStory's published Swagger schemas.

Why: the tracker is built and tested against the simulator, so the simulator must not drift
from the provider's contract. Each response is validated against the operation's declared
response schema (resolved from the spec's ``paths`` by HTTP status, ``$ref``s resolved through the
spec's ``definitions``). The top-level response objects are additionally checked in a strict
mode (no properties the spec does not declare), so the simulator cannot invent response fields.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is needed for contract tests")

from jobtracker.simulators.fullstory import FullStorySimulator, SimulatorConfig  # noqa: E402

SPEC_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "specs" / "fullstory"
AUTH = {"Authorization": "Basic contract-key", "Content-Type": "application/json"}
ISO_MILLIS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

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

pytestmark = pytest.mark.skipif(
    not (SPEC_DIR / "users.swagger.json").is_file() or not (SPEC_DIR / "events.swagger.json").is_file(),
    reason=f"FullStory Swagger specs not found in {SPEC_DIR}",
)


class Spec:
    """One Swagger 2.0 document, answering "the schema for this operation's N response"."""

    def __init__(self, path: Path):
        self.doc = json.loads(path.read_text())

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
    return {kind: Spec(SPEC_DIR / f"{kind}.swagger.json") for kind in ("users", "events")}


@pytest.fixture
def sim() -> Iterator[FullStorySimulator]:
    with FullStorySimulator(SimulatorConfig(page_size=2, polls_to_complete=2)) as simulator:
        yield simulator


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
        {"name": "Support Ticket", "timestamp": "2022-03-15T14:23:23Z",
         "user": {"uid": "xyz123"}, "session": {"id": "123456789:123456789"},
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


@pytest.mark.parametrize("kind", ["users", "events"])
def test_error_responses_match_spec(
    kind: str, specs: dict[str, Spec], sim: FullStorySimulator, http: urllib3.PoolManager
) -> None:
    spec, base = specs[kind], sim.base_url
    batch_path = f"/v2/{kind}/batch"
    status, body = call(http, "POST", base + batch_path, {"requests": []}, headers={})
    assert status == 401
    check(spec, "POST", batch_path, 401, body)
    status, body = call(http, "POST", base + batch_path, {"requests": "nope"})
    assert status == 400
    check(spec, "POST", batch_path, 400, body)
    status, body = call(http, "GET", f"{base}{batch_path}/missing")
    assert status == 404
    check(spec, "GET", f"{batch_path}/{{job_id}}", 404, body)
    status, body = call(http, "GET", f"{base}{batch_path}/missing/imports")
    assert status == 404
    check(spec, "GET", f"{batch_path}/{{job_id}}/imports", 404, body)


def test_throttle_response_matches_spec(specs: dict[str, Spec], http: urllib3.PoolManager) -> None:
    with FullStorySimulator(SimulatorConfig(throttle_first_submits=1)) as throttled:
        resp = http.request("POST", throttled.base_url + "/v2/events/batch", body=b'{"requests": []}', headers=AUTH)
    assert resp.status == 429 and resp.headers["Retry-After"].isdigit()
    check(specs["events"], "POST", "/v2/events/batch", 429, json.loads(resp.data))
