"""The simulator's GET /operations/v1/{id} answers validate against the seed Operation JSON Schema
(tests/contract/fixtures/seeds/fullstory-operation.schema.json) with its format checker: running (official PENDING and
the seed's RUNNING), completed (official ``results.searchExportId`` and the seed's
``results.downloadUrl``) and failed. The top level is also checked strictly (no property the seed
does not declare), so the simulator cannot invent fields. The export-results answer is checked
against the shape FullStory documents for GET /search/v1/exports/{id}/results.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import urllib3

from jobtracker.simulators.fullstory import FullStorySimulator, SimulatorConfig
from tests.contract.schemas import OPERATION_SCHEMA, load

AUTH = {"Authorization": "Basic contract-key", "Content-Type": "application/json"}
EXPORT = {"segmentId": "everyone", "type": "TYPE_EVENT", "format": "FORMAT_CSV", "timeRange": {"start": "", "end": ""}}
# As documented for Get Export Results: location (a URL) and expires (UTC RFC 3339).
EXPORT_RESULTS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["location", "expires"],
    "additionalProperties": False,
    "properties": {
        "location": {"type": "string", "format": "uri"},
        "expires": {"type": "string", "format": "date-time"},
    },
}


def _seed_schema() -> dict[str, Any]:
    return load(OPERATION_SCHEMA)


def _validator(schema: dict[str, Any]) -> Any:
    # No check_schema(): the seed's "$id" ("#/components/schemas/Operation", a fragment) is not a valid
    # 2020-12 $id, but the schema validates instances fine and is the reference as given.
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def validate(schema: dict[str, Any], instance: Any) -> None:
    errors = sorted(_validator(schema).iter_errors(instance), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    _check_uris(instance)


def _check_uris(instance: Any) -> None:
    """``format: uri`` is only enforced by jsonschema when rfc3987 is installed: check it here too."""
    results = instance.get("results") if isinstance(instance, dict) else None
    for url in [(results or {}).get("downloadUrl"), instance.get("location")]:
        if url is not None:
            parts = urlsplit(url)
            assert parts.scheme in ("http", "https") and parts.netloc, url


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    return {**copy.deepcopy(schema), "additionalProperties": False}


@pytest.fixture(scope="module")
def seed() -> dict[str, Any]:
    schema = _seed_schema()
    assert schema["title"] == "Operation"
    return schema


@pytest.fixture
def make() -> Iterator[Callable[..., tuple[FullStorySimulator, urllib3.PoolManager]]]:
    started: list[FullStorySimulator] = []
    http = urllib3.PoolManager(retries=False, timeout=10)

    def factory(**config: Any) -> tuple[FullStorySimulator, urllib3.PoolManager]:
        sim = FullStorySimulator(SimulatorConfig(**config)).start()
        started.append(sim)
        return sim, http

    yield factory
    for sim in started:
        sim.stop()


def _operations(sim: FullStorySimulator, http: urllib3.PoolManager, **export: Any) -> list[dict[str, Any]]:
    """Create an export and GET the operation until it is terminal; every answer, in order."""
    created = http.request(
        "POST", sim.base_url + "/segments/v1/exports", body=json.dumps({**EXPORT, **export}), headers=AUTH
    )
    assert created.status == 200, created.data
    op_id = json.loads(created.data)["operationId"]
    answers = []
    for _ in range(20):
        resp = http.request("GET", f"{sim.base_url}/operations/v1/{op_id}", headers=AUTH)
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
        answers.append(json.loads(resp.data))
        if answers[-1]["state"] in ("COMPLETED", "FAILED"):
            return answers
    raise AssertionError("operation did not finish")


def test_the_format_checker_is_live(seed: dict[str, Any]) -> None:
    """Guard against a vacuous contract: a bad date-time or percentage must fail the seed schema."""
    assert list(_validator(seed).iter_errors({"createdAt": "yesterday"}))
    assert list(_validator(seed).iter_errors({"estimatePctComplete": 101}))
    assert list(_validator(seed).iter_errors({"state": "DONE"}))


@pytest.mark.parametrize("seed_states", [False, True], ids=["official-states", "seed-states"])
@pytest.mark.parametrize("shape", ["searchExportId", "downloadUrl"])
def test_running_and_completed_operations_validate(make, seed: dict[str, Any], seed_states: bool, shape: str) -> None:
    sim, http = make(operation_polls_to_complete=4, seed_states=seed_states, results_shape=shape)
    answers = _operations(sim, http)
    states = [a["state"] for a in answers]
    assert states == ["PENDING", "RUNNING" if seed_states else "PENDING", states[2], "COMPLETED"]
    for answer in answers:
        validate(seed, answer)
        validate(strict(seed), answer)
    running, done = answers[1], answers[-1]
    assert "finishedAt" not in running and "results" not in running
    assert done["estimatePctComplete"] == 100 and "finishedAt" in done
    if shape == "downloadUrl":
        assert set(done["results"]) == {"downloadUrl"}
    else:
        assert set(done["results"]) == {"searchExportId", "expires"}
        resp = http.request(
            "GET", f"{sim.base_url}/search/v1/exports/{done['results']['searchExportId']}/results", headers=AUTH
        )
        assert resp.status == 200
        validate(EXPORT_RESULTS_SCHEMA, json.loads(resp.data))


def test_failed_operation_validates(make, seed: dict[str, Any]) -> None:
    sim, http = make(operation_polls_to_complete=3)
    answers = _operations(sim, http, segmentId="broken")
    failed = answers[-1]
    assert failed["state"] == "FAILED" and failed["errorDetails"]
    for answer in answers:
        validate(seed, answer)
        validate(strict(seed), answer)


def test_wall_clock_completion_validates(make, seed: dict[str, Any]) -> None:
    sim, http = make(operation_polls_to_complete=None, operation_seconds=0.0, results_shape="downloadUrl")
    (done,) = _operations(sim, http, format="FORMAT_NDJSON", type="TYPE_INDIVIDUAL")
    validate(strict(seed), done)
