"""The Keboola simulator's storage jobs validate against the seed JobResponse JSON Schema.

Why: the Keboola provider is built and tested against the simulator, so the simulator must answer
what the seed (``tests/contract/fixtures/seeds/keboola-job-response.schema.json``) describes, in every status a
client can see: ``waiting`` (the export-async answer and a poll), ``processing``, ``success`` and ``error``.

How the seed is applied, and the three places where it cannot be applied as written:

* ``nullable`` is an OpenAPI keyword, not JSON Schema: jsonschema ignores it, so ``startTime``,
  ``endTime`` and ``error`` typed ``string``/``object`` would reject the ``null`` a job carries while
  they have no value. Each answer is validated as a copy with those null fields dropped (they are
  optional in the seed), and the test asserts separately that each is null exactly while it has no
  value: ``startTime`` while waiting, ``endTime`` until the job ended, ``error`` unless it failed.
* ``results.oneOf`` points at ``#/components/schemas/...`` that the seed does not contain, so
  ``results`` is removed from the copy and checked on its own: null until done, null for a failed
  job, ``{"file": {"id": <integer>}}`` (TableExportJobResponse) for a finished export.
* The seed types ``id`` as ``string``; a Keboola stack sends an integer (and the issue asks for
  integer ids), so the copy carries ``str(id)`` and the raw ``id`` is asserted to be an integer.

``date-time`` formats are checked (rfc3339-validator), as in the job-view contract tests.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
import urllib3

from jobtracker.simulators.keboola import (
    BROKEN_TABLE,
    DEMO_TABLE,
    KeboolaSimulator,
    KeboolaSimulatorConfig,
)
from tests.contract.schemas import JOB_RESPONSE_SCHEMA, load

TOKEN = {"X-StorageApi-Token": "contract-token"}
NULLABLE = ("startTime", "endTime", "error")  # the seed marks these `nullable: true`


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    doc = load(JOB_RESPONSE_SCHEMA)
    assert doc.get("title") == "JobResponse", "the seed is not the JobResponse schema any more"
    return doc


@pytest.fixture(scope="module")
def answers() -> Iterator[dict[str, dict[str, Any]]]:
    """One real answer per status: a waiting POST answer, then polls through every status."""
    sim = KeboolaSimulator(KeboolaSimulatorConfig(polls_to_start=2, polls_to_complete=3)).start()
    http = urllib3.PoolManager(retries=False, timeout=10)

    def call(method: str, path: str, body: bytes | None = None) -> dict[str, Any]:
        headers = {**TOKEN, "Content-Type": "application/x-www-form-urlencoded"}
        resp = http.request(method, sim.base_url + path, body=body, headers=headers)
        assert resp.status in (200, 202), resp.data
        return json.loads(resp.data)

    try:
        out: dict[str, dict[str, Any]] = {}
        out["created"] = call("POST", f"/v2/storage/tables/{DEMO_TABLE}/export-async", b"columns=id,email&limit=5")
        job_url = f"/v2/storage/jobs/{out['created']['id']}"
        out["waiting"] = call("GET", job_url)
        out["processing"] = call("GET", job_url)
        out["success"] = call("GET", job_url)
        broken = call("POST", f"/v2/storage/tables/{BROKEN_TABLE}/export-async")
        for _ in range(3):
            out["error"] = call("GET", f"/v2/storage/jobs/{broken['id']}")
        out["file"] = call("GET", f"/v2/storage/files/{out['success']['results']['file']['id']}")
        yield out
    finally:
        sim.stop()


def _validatable(job: dict[str, Any]) -> dict[str, Any]:
    """The copy validated against the seed: nullable nulls dropped, results apart, id as the seed types it."""
    view = copy.deepcopy(job)
    view.pop("results", None)
    for name in NULLABLE:
        if view.get(name) is None:
            view.pop(name, None)
    view["id"] = str(view["id"])
    return view


def _validate(schema: dict[str, Any], instance: Any) -> list[str]:
    cls = jsonschema.validators.validator_for(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The seed with `results` taken out and no room for fields it does not declare."""
    strict = copy.deepcopy(schema)
    strict["properties"].pop("results")
    strict["additionalProperties"] = False
    for name in ("creatorToken", "metrics", "error"):
        strict["properties"][name]["additionalProperties"] = False
    return strict


@pytest.mark.parametrize("state", ["created", "waiting", "processing", "success", "error"])
def test_storage_job_validates_against_the_seed(schema: dict[str, Any], answers: dict, state: str) -> None:
    job = answers[state]
    assert not _validate(schema, _validatable(job))
    # Nothing beyond the seed's properties (results aside), and every property the seed lists is sent.
    assert not _validate(_strict(schema), _validatable(job))
    assert set(job) == set(schema["properties"])
    # What the seed cannot say: ids are integers, and nullable fields are null exactly while empty.
    assert isinstance(job["id"], int) and not isinstance(job["id"], bool)
    expected_status = {"created": "waiting"}.get(state, state)
    assert job["status"] == expected_status
    assert (job["startTime"] is None) == (expected_status == "waiting")
    assert (job["endTime"] is None) == (expected_status in ("waiting", "processing"))
    assert (job["error"] is None) == (expected_status != "error")


@pytest.mark.parametrize("state", ["created", "waiting", "processing", "error"])
def test_results_are_null_until_a_file_exists(answers: dict, state: str) -> None:
    assert answers[state]["results"] is None


def test_finished_export_results_are_a_table_export_job_response(answers: dict) -> None:
    # TableExportJobResponse (the seed's oneOf member for a table export): {"file": {"id": integer}}.
    table_export = {
        "type": "object",
        "required": ["file"],
        "additionalProperties": False,
        "properties": {
            "file": {
                "type": "object",
                "required": ["id"],
                "additionalProperties": False,
                "properties": {"id": {"type": "integer"}},
            }
        },
    }
    results = answers["success"]["results"]
    assert not _validate(table_export, results)
    assert answers["file"]["id"] == results["file"]["id"]


def test_failed_job_error_has_code_message_exception_id(schema: dict[str, Any], answers: dict) -> None:
    error = answers["error"]["error"]
    assert set(error) == {"code", "message", "exceptionId"}
    assert not _validate(schema["properties"]["error"], error)
    assert all(isinstance(v, str) and v for v in error.values())


def test_the_same_job_keeps_its_identity_through_every_status(answers: dict) -> None:
    steady = ("id", "url", "tableId", "operationName", "operationParams", "createdTime", "runId", "creatorToken")
    first = {k: answers["created"][k] for k in steady}
    for state in ("waiting", "processing", "success"):
        assert {k: answers[state][k] for k in steady} == first
    assert first["operationParams"]["export"]["columns"] == ["id", "email"]
    assert answers["success"]["startTime"] == answers["processing"]["startTime"]


def test_the_schema_is_really_checked(schema: dict[str, Any], answers: dict) -> None:
    """A broken answer must fail, or the tests above prove nothing."""
    job = _validatable(answers["success"])
    for breakage in (
        {"createdTime": "yesterday"},
        {"metrics": {"outBytes": "97"}},
        {"creatorToken": {"id": 1}},
        {"status": None},
    ):
        assert _validate(schema, {**job, **breakage}), breakage
    missing = dict(job)
    missing.pop("runId")
    assert _validate(schema, missing)
    assert _validate(_strict(schema), {**job, "extra": 1})
