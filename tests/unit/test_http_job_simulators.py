"""Databricks and dbt Cloud simulators, driven through respond() (no server: the answer the shared server would
send) and through the shipped specs: render the spec's request, let the simulator answer, read it with the spec."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from tracker.providers.spec.evaluate import (
    RenderedRequest,
    decode_answer,
    evaluate_status,
    read_job_id,
    render_start,
    render_status,
    vanished,
)
from tracker.providers.spec.model import ProviderSpec

from jobtracker.simulators.databricks import DEFAULT_JOBS, DatabricksConfig, DatabricksSimulator
from jobtracker.simulators.dbt_cloud import DEFAULT_DBT_JOBS, DbtCloudSimulator
from jobtracker.simulators.faults import parse_fault
from jobtracker.specs import shipped_specs

DATABRICKS, DBT, _FULLSTORY = shipped_specs()
BEARER = {"Authorization": "Bearer dapi-test"}
TOKEN = {"Authorization": "Token dbtc-test"}


def call(sim: Any, request: RenderedRequest, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
    path = request.path + ("?" + urlencode(request.query) if request.query else "")
    body = json.dumps(request.body).encode() if request.body is not None else b""
    status, payload, answer_headers = sim.respond(request.method, path, headers, body)
    return status, answer_headers, decode_answer(payload, what=path)


def follow(spec: ProviderSpec, sim: Any, params: dict[str, Any], headers: dict[str, str]) -> list[tuple[str, str]]:
    """Start a job through the spec and poll until the spec reads a terminal state: (state, provider word)s."""
    status, _, answer = call(sim, render_start(spec, params, idempotency_key="k"), headers)
    assert status == 200, answer
    provider_job_id = read_job_id(spec, answer)
    seen = []
    for _ in range(10):
        status, _, answer = call(
            sim, render_status(spec, params, provider_job_id=provider_job_id), headers
        )
        assert status == 200, answer
        reading = evaluate_status(spec, answer)
        seen.append((reading.state, reading.provider_status))
        if reading.finished:
            assert reading.state == "COMPLETED" or reading.error
            return seen
    raise AssertionError(f"never finished: {seen}")


EXPECTED_DATABRICKS = {
    "SUCCESS": ("COMPLETED", "TERMINATED/SUCCESS"),
    "SUCCESS_WITH_FAILURES": ("COMPLETED", "TERMINATED/SUCCESS_WITH_FAILURES"),
    "FAILED": ("FAILED", "TERMINATED/FAILED"),
    "TIMEDOUT": ("FAILED", "TERMINATED/TIMEDOUT"),
    "CANCELED": ("FAILED", "TERMINATED/CANCELED"),
    "SKIPPED": ("FAILED", "SKIPPED"),
    "INTERNAL_ERROR": ("FAILED", "INTERNAL_ERROR"),
}


@pytest.mark.parametrize("job", DEFAULT_JOBS, ids=lambda j: j.outcome)
def test_every_databricks_outcome_read_through_the_spec(job: Any) -> None:
    sim = DatabricksSimulator(DatabricksConfig(terminating_polls=1))
    seen = follow(DATABRICKS, sim, {"job_id": job.job_id}, BEARER)
    assert seen[:3] == [("PENDING", "PENDING"), ("RUNNING", "RUNNING"), ("RUNNING", "TERMINATING")]
    assert seen[3] == EXPECTED_DATABRICKS[job.outcome]


@pytest.mark.parametrize(
    ("job", "last"),
    list(zip(DEFAULT_DBT_JOBS, [("COMPLETED", "Success"), ("FAILED", "Error"), ("FAILED", "Cancelled")], strict=True)),
    ids=lambda v: getattr(v, "outcome", ""),
)
def test_every_dbt_cloud_outcome_read_through_the_spec(job: Any, last: tuple[str, str]) -> None:
    sim = DbtCloudSimulator()
    seen = follow(DBT, sim, {"account_id": sim.config.account_id, "job_id": job.job_id}, TOKEN)
    assert seen == [("PENDING", "Queued"), ("PENDING", "Starting"), ("RUNNING", "Running"), last]


def test_dbt_cloud_run_moves_through_1_2_3_and_carries_the_documented_envelope() -> None:
    sim = DbtCloudSimulator()
    base = f"/api/v2/accounts/{sim.config.account_id}"
    status, body, _ = sim.respond("POST", f"{base}/jobs/201/run/", TOKEN, b'{"cause": "test"}')
    answer = json.loads(body)
    assert status == 200 and answer["status"] == {
        "code": 200,
        "is_success": True,
        "user_message": "Success!",
        "developer_message": "",
    }
    run_id = answer["data"]["id"]
    assert answer["data"]["status"] == 1 and answer["data"]["status_humanized"] == "Queued"
    statuses = [json.loads(sim.respond("GET", f"{base}/runs/{run_id}/", TOKEN, b"")[1])["data"] for _ in range(4)]
    assert [(d["status"], d["in_progress"], d["is_complete"]) for d in statuses] == [
        (1, True, False),
        (2, True, False),
        (3, True, False),
        (10, False, True),
    ]
    assert statuses[-1]["is_success"] and not statuses[-1]["is_error"] and not statuses[-1]["is_cancelled"]
    status, body, _ = sim.respond("GET", f"{base}/runs/{run_id}/artifacts/run_results.json", TOKEN, b"")
    assert status == 200 and json.loads(body)["results"][0]["status"] == "success"


def test_dbt_cloud_refuses_what_the_api_refuses() -> None:
    sim = DbtCloudSimulator()
    base = f"/api/v2/accounts/{sim.config.account_id}"
    assert sim.respond("POST", f"{base}/jobs/201/run/", {}, b'{"cause": "x"}')[0] == 401
    assert sim.respond("POST", f"{base}/jobs/201/run/", {"Authorization": "Bearer t"}, b'{"cause": "x"}')[0] == 200
    status, body, _ = sim.respond("POST", f"{base}/jobs/201/run/", TOKEN, b"{}")
    assert status == 400 and json.loads(body)["status"]["user_message"] == "cause: This field is required."
    assert sim.respond("POST", f"{base}/jobs/201/run/", TOKEN, json.dumps({"cause": "x" * 256}).encode())[0] == 400
    status, body, _ = sim.respond("GET", f"{base}/runs/999/", TOKEN, b"")
    assert status == 404 and json.loads(body)["data"] is None and vanished(DBT, status)
    assert sim.respond("GET", "/api/v2/accounts/1/runs/300000001/", TOKEN, b"")[0] == 404
    status, _, headers = sim.respond("GET", f"{base}/runs/999/", TOKEN, b"", parse_fault("429:1x"))
    assert status == 429 and headers["Retry-After"] == "1"


def test_databricks_idempotency_token_returns_the_same_run() -> None:
    sim = DatabricksSimulator()
    body = json.dumps({"job_id": 101, "idempotency_token": "job-1"}).encode()
    first = json.loads(sim.respond("POST", "/api/2.2/jobs/run-now", BEARER, body)[1])
    again = json.loads(sim.respond("POST", "/api/2.1/jobs/run-now", BEARER, body)[1])
    other = json.loads(sim.respond("POST", "/api/2.2/jobs/run-now", BEARER, b'{"job_id": 101}')[1])
    assert first == again and other["run_id"] != first["run_id"]
    too_long = json.dumps({"job_id": 101, "idempotency_token": "x" * 65}).encode()
    assert sim.respond("POST", "/api/2.2/jobs/run-now", BEARER, too_long)[0] == 400


def test_databricks_errors_have_the_documented_body() -> None:
    sim = DatabricksSimulator()
    status, body, _ = sim.respond("GET", "/api/2.2/jobs/runs/get?run_id=42", BEARER, b"")
    assert (status, json.loads(body)) == (
        400,
        {"error_code": "INVALID_PARAMETER_VALUE", "message": "Run 42 does not exist."},
    )
    assert vanished(DATABRICKS, status)
    sim404 = DatabricksSimulator(DatabricksConfig(missing_run_status=404))
    status, body, _ = sim404.respond("GET", "/api/2.1/jobs/runs/get?run_id=42", BEARER, b"")
    assert (status, json.loads(body)["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    status, body, _ = sim.respond("POST", "/api/2.2/jobs/run-now", BEARER, b'{"job_id": 999}')
    assert (status, json.loads(body)["message"]) == (400, "Job 999 does not exist.")
    assert sim.respond("GET", "/api/2.2/jobs/list", {}, b"")[0] == 401
    sim.config.faults = (parse_fault("429@pages:2x"),)
    listing = "/api/2.2/jobs/list"
    answers = [sim.respond("GET", listing, BEARER, b"", sim.roll_fault("GET", listing)) for _ in range(3)]
    assert [a[0] for a in answers] == [429, 429, 200]
    assert answers[0][2]["Retry-After"] == "1" and json.loads(answers[0][1])["error_code"] == "REQUEST_LIMIT_EXCEEDED"


def test_databricks_list_pages_with_page_tokens() -> None:
    sim = DatabricksSimulator()
    first = json.loads(sim.respond("GET", "/api/2.2/jobs/list?limit=5", BEARER, b"")[1])
    assert [j["job_id"] for j in first["jobs"]] == [101, 102, 103, 104, 105] and first["next_page_token"] == "5"
    second = json.loads(sim.respond("GET", "/api/2.2/jobs/list?limit=5&page_token=5", BEARER, b"")[1])
    assert [j["job_id"] for j in second["jobs"]] == [106, 107] and "next_page_token" not in second
    assert sim.respond("GET", "/api/2.2/jobs/list?limit=101", BEARER, b"")[0] == 400


def test_a_run_that_vanishes_mid_way_is_terminal_through_the_spec() -> None:
    sim = DatabricksSimulator()
    run_id = json.loads(sim.respond("POST", "/api/2.2/jobs/run-now", BEARER, b'{"job_id": 101}')[1])["run_id"]
    sim.forget_run(run_id)
    status, _, _ = call(
        sim, render_status(DATABRICKS, {"job_id": 101}, provider_job_id=str(run_id)), BEARER
    )
    assert vanished(DATABRICKS, status)


def test_the_server_reads_chunked_bodies() -> None:
    import http.client

    with DatabricksSimulator() as server:
        host, port = server.base_url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        connection.request(
            "POST",
            "/api/2.2/jobs/run-now",
            body=iter([b'{"job_id": ', b"101}"]),
            headers={"Authorization": "Bearer t", "Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        assert response.status == 200 and "run_id" in json.loads(response.read())
        connection.close()
