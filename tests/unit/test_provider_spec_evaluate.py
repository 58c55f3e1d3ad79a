"""What a spec says about one answer or one request: every rule of the shipped specs, bad answers, params."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from tracker.errors import ProviderRejectedError, ProviderTransientError, TrackerError
from tracker.providers.fullstory.client import authorization
from tracker.providers.spec.evaluate import (
    SpecParamsError,
    auth_headers,
    decode_answer,
    evaluate_status,
    read_job_id,
    render_result,
    render_start,
    render_status,
    result_file_name,
    vanished,
    vanished_reading,
)

from jobtracker.specs import read_spec_text, shipped_specs

DATABRICKS, DBT, FULLSTORY = shipped_specs()


def run(lifecycle: str, result: str | None = None, message: str = "") -> dict[str, Any]:
    state: dict[str, Any] = {"life_cycle_state": lifecycle, "state_message": message}
    if result is not None:
        state["result_state"] = result
    return {"run_id": 1, "state": state}


@pytest.mark.parametrize(
    ("lifecycle", "result", "expected"),
    [
        ("QUEUED", None, "PENDING"),
        ("PENDING", None, "PENDING"),
        ("BLOCKED", None, "PENDING"),
        ("WAITING_FOR_RETRY", None, "PENDING"),
        ("RUNNING", None, "RUNNING"),
        ("TERMINATING", None, "RUNNING"),
        ("TERMINATED", "SUCCESS", "COMPLETED"),
        ("TERMINATED", "SUCCESS_WITH_FAILURES", "COMPLETED"),
        ("TERMINATED", "FAILED", "FAILED"),
        ("TERMINATED", "TIMEDOUT", "FAILED"),
        ("TERMINATED", "CANCELED", "FAILED"),
        ("TERMINATED", "MAXIMUM_CONCURRENT_RUNS_REACHED", "FAILED"),
        ("TERMINATED", "EXCLUDED", "FAILED"),
        ("TERMINATED", "UPSTREAM_FAILED", "FAILED"),
        ("TERMINATED", "UPSTREAM_CANCELED", "FAILED"),
        ("TERMINATED", "DISABLED", "FAILED"),
        ("SKIPPED", None, "FAILED"),
        ("INTERNAL_ERROR", None, "FAILED"),
    ],
)
def test_databricks_two_field_state(lifecycle: str, result: str | None, expected: str) -> None:
    reading = evaluate_status(DATABRICKS, run(lifecycle, result, "why"))
    assert reading.state == expected
    assert reading.provider_status == "/".join(x for x in (lifecycle, result) if x)
    if expected == "FAILED":
        assert reading.error == {"code": result or lifecycle, "message": "why"}
    else:
        assert reading.error is None


def test_databricks_failure_without_a_message_still_says_what_happened() -> None:
    reading = evaluate_status(DATABRICKS, run("TERMINATED", "TIMEDOUT"))
    assert reading.error == {
        "code": "TIMEDOUT",
        "message": "Databricks job run (Jobs API 2.2) ended TERMINATED/TIMEDOUT",
    }


@pytest.mark.parametrize(
    ("status", "humanized", "expected", "code"),
    [
        (1, "Queued", "PENDING", None),
        (2, "Starting", "PENDING", None),
        (3, "Running", "RUNNING", None),
        (10, "Success", "COMPLETED", None),
        (20, "Error", "FAILED", "ERROR"),
        (30, "Cancelled", "FAILED", "CANCELLED"),
    ],
)
def test_dbt_cloud_integer_codes(status: int, humanized: str, expected: str, code: str | None) -> None:
    answer = {
        "status": {"code": 200},
        "data": {"status": status, "status_humanized": humanized, "status_message": None},
    }
    reading = evaluate_status(DBT, answer)
    assert (reading.state, reading.provider_status) == (expected, humanized)
    assert (reading.error or {}).get("code") == code


BOOLEAN_SPEC = """\
name: bools
title: dbt Cloud by flags
baseUrl: https://cloud.getdbt.com
auth: {type: bearer, secret: {parameter: Tok}}
inFlight: 1
status:
  path: /runs/{providerJobId}/
  state:
    fields:
      complete: data.is_complete
      error: data.is_error
      cancelled: data.is_cancelled
    rules:
      - when: {complete: false}
        state: RUNNING
      - when: {complete: true, error: false, cancelled: false}
        state: COMPLETED
      - when: {complete: true, cancelled: true}
        state: FAILED
        code: CANCELLED
      - when: {complete: true, error: true}
        state: FAILED
    unknown: {then: FAILED}
"""


def test_boolean_fields_and_the_true_is_not_1_trap() -> None:
    spec = read_spec_text(BOOLEAN_SPEC, source="bools.yaml")
    flags = {"is_complete": True, "is_error": False, "is_cancelled": True}
    assert evaluate_status(spec, {"data": flags}).error == {
        "code": "CANCELLED",
        "message": "dbt Cloud by flags ended true/false/true",
    }
    assert evaluate_status(spec, {"data": {**flags, "is_cancelled": False}}).state == "COMPLETED"
    # 1 is not true: an API answering integers does not match boolean rules, and then=FAILED ends the job.
    reading = evaluate_status(spec, {"data": {"is_complete": 1, "is_error": 0, "is_cancelled": 0}})
    assert reading.state == "FAILED" and reading.error is not None
    assert reading.error["code"] == "unknown_provider_state"
    assert "complete=1, error=0, cancelled=0; the spec fails unknown states" in reading.error["message"]


def test_an_endless_unknown_state_ends_the_job_at_the_limit() -> None:
    streak = 0
    for _ in range(19):
        reading = evaluate_status(DATABRICKS, run("HIBERNATING"), unknown_streak=streak)
        assert reading.state == "RUNNING" and reading.warnings
        streak = reading.unknown_streak
    assert streak == 19
    final = evaluate_status(DATABRICKS, run("HIBERNATING"), unknown_streak=streak)
    assert final.state == "FAILED" and final.unknown_streak == 20
    assert final.error is not None and final.error["code"] == "unknown_provider_state"
    assert "lifecycle=HIBERNATING, result=null; 20 answers in a row (limit 20)" in final.error["message"]


def test_a_known_state_resets_the_unknown_streak() -> None:
    assert evaluate_status(DATABRICKS, run("RUNNING"), unknown_streak=7).unknown_streak == 0


def test_a_selector_that_matches_nothing_is_a_named_error() -> None:
    with pytest.raises(ProviderRejectedError) as caught:
        evaluate_status(DATABRICKS, {"run_id": 1, "status": {"state": "RUNNING"}})
    assert caught.value.code == "answer_field_missing"
    assert str(caught.value) == (
        "[answer_field_missing] http:databricks status: state field 'lifecycle': selector 'state.life_cycle_state' "
        "matched nothing: $ has no field 'state' (fields: run_id, status)"
    )
    # The class the state machine does not retry: the API changed or the spec is wrong; the job ends FAILED.
    assert type(caught.value) is ProviderRejectedError


@pytest.mark.parametrize("answer", [[1, 2], "RUNNING", None, 3])
def test_an_answer_of_the_wrong_shape_is_a_named_error(answer: Any) -> None:
    with pytest.raises(ProviderRejectedError, match="matched nothing: \\$ is"):
        evaluate_status(DBT, answer)


def test_a_state_field_holding_an_object_is_the_wrong_type() -> None:
    with pytest.raises(ProviderRejectedError) as caught:
        evaluate_status(DBT, {"data": {"status": {"code": 10}}})
    assert caught.value.code == "answer_wrong_type" and "is an object, not a value" in str(caught.value)


def test_a_non_json_answer_is_a_named_error() -> None:
    with pytest.raises(ProviderTransientError) as caught:
        decode_answer(b"<html><body>502 Bad Gateway</body></html>", what="http:dbt_cloud status")
    # A proxy's error page or a cut body: retried a few times (the class the state machine retries), then FAILED.
    assert type(caught.value) is ProviderTransientError and caught.value.code == "answer_not_json"
    assert "http:dbt_cloud status: the answer is not JSON (41 bytes starting '<html><body>502" in str(caught.value)
    assert decode_answer(b'{"a": 1}', what="x") == {"a": 1}


PROGRESS_SPEC = BOOLEAN_SPEC.replace("name: bools", "name: prog").replace(
    "  state:\n", "  progress:\n    done: data.done\n    total: data.total\n  state:\n"
)


def test_progress_from_done_and_total_and_percent() -> None:
    spec = read_spec_text(PROGRESS_SPEC, source="prog.yaml")
    running = {"is_complete": False, "is_error": False, "is_cancelled": False}
    assert evaluate_status(spec, {"data": {**running, "done": 3, "total": 12}}).progress_pct == 25.0
    assert evaluate_status(spec, {"data": {**running, "done": 30, "total": 12}}).progress_pct == 100.0
    assert evaluate_status(spec, {"data": {**running, "done": 3, "total": 0}}).progress_pct is None
    reading = evaluate_status(spec, {"data": {**running, "done": "three", "total": 12}})
    assert reading.state == "RUNNING" and reading.progress_pct is None
    assert reading.warnings == ("progress: progress.done is 'three', not a number",)
    percent = read_spec_text(
        PROGRESS_SPEC.replace("name: prog", "name: pct").replace(
            "    done: data.done\n    total: data.total\n", "    percent: data.fraction\n    scale: 100\n"
        ),
        source="pct.yaml",
    )
    assert evaluate_status(percent, {"data": {**running, "fraction": 0.425}}).progress_pct == 42.5
    missing = evaluate_status(percent, {"data": running})
    assert missing.progress_pct is None and "matched nothing" in missing.warnings[0]
    assert evaluate_status(percent, {"data": {**running, "is_complete": True}}).progress_pct == 100.0


def test_status_text_that_matches_nothing_falls_back_to_the_state_fields() -> None:
    reading = evaluate_status(DBT, {"data": {"status": 3}})
    assert reading.provider_status == "3" and reading.warnings[0].startswith(
        "status.text: selector 'data.status_humanized'"
    )


def test_start_request_keeps_json_types_and_drops_absent_optional_params() -> None:
    request = render_start(DATABRICKS, {"job_id": 101}, idempotency_key="job-abc-b00001")
    assert (request.method, request.path, request.body) == (
        "POST",
        "/api/2.2/jobs/run-now",
        {"job_id": 101, "idempotency_token": "job-abc-b00001"},
    )
    request = render_start(DATABRICKS, {"job_id": 7, "job_parameters": {"day": "2026-12-01"}}, idempotency_key="k")
    assert request.body == {"job_id": 7, "job_parameters": {"day": "2026-12-01"}, "idempotency_token": "k"}
    request = render_start(DBT, {"account_id": 1, "job_id": 2, "steps_override": ["dbt build"]}, idempotency_key="k1")
    assert request.path == "/api/v2/accounts/1/jobs/2/run/"
    assert request.body == {"cause": "Triggered by jobtracker (k1)", "steps_override": ["dbt build"]}


def test_headers_and_defaults_fill_the_start_request() -> None:
    request = render_start(FULLSTORY, {"segmentId": "everyone"}, idempotency_key="job-1-b00001")
    assert request.headers == {"Idempotency-Key": "job-1-b00001"}
    assert request.body == {
        "segmentId": "everyone",
        "type": "TYPE_EVENT",
        "format": "FORMAT_CSV",
        "timeRange": {"start": "", "end": ""},
    }


def test_missing_unknown_and_mistyped_params_are_all_named() -> None:
    with pytest.raises(SpecParamsError) as caught:
        render_start(DBT, {"job_id": "2", "acount_id": 1}, idempotency_key="k")
    assert caught.value.code == "invalid_params"
    message = str(caught.value)
    assert "params.account_id is required" in message
    assert "params.job_id: Input should be a valid integer" in message
    assert "params.acount_id is not a param of http:dbt_cloud (params: account_id, git_branch, job_id" in message


def test_status_request_encodes_path_values() -> None:
    request = render_status(DBT, {"account_id": 1, "job_id": 2}, provider_job_id="7/../8")
    assert request.path == "/api/v2/accounts/1/runs/7%2F..%2F8/"
    request = render_status(DATABRICKS, {"job_id": 1}, provider_job_id="880000000001")
    assert (request.path, request.query) == ("/api/2.2/jobs/runs/get", {"run_id": "880000000001"})


def test_tracking_needs_only_the_params_the_status_request_uses() -> None:
    with pytest.raises(SpecParamsError, match=r"params\.account_id is required"):
        render_status(DBT, {"job_id": 2}, provider_job_id="7")


def test_the_job_id_is_read_from_the_start_answer() -> None:
    assert read_job_id(DATABRICKS, {"run_id": 880000000001, "number_in_job": 880000000001}) == "880000000001"
    assert read_job_id(DBT, {"status": {"code": 200}, "data": {"id": 300000001}}) == "300000001"
    with pytest.raises(ProviderRejectedError, match=r"answer_field_missing.*'run_id' matched nothing"):
        read_job_id(DATABRICKS, {"number_in_job": 1})
    with pytest.raises(ProviderRejectedError, match=r"answer_wrong_type.*is True, not a job id"):
        read_job_id(DATABRICKS, {"run_id": True})


def test_result_sources() -> None:
    source = render_result(DBT, {"account_id": 1, "job_id": 2}, {}, provider_job_id="9")
    assert source is not None and source.url is None and source.url_selector is None
    assert source.request is not None and source.request.path == "/api/v2/accounts/1/runs/9/artifacts/run_results.json"
    assert result_file_name(DBT, {"account_id": 1}, provider_job_id="9") == "run_results.json"
    source = render_result(DATABRICKS, {"job_id": 1}, {}, provider_job_id="88")
    assert source is not None and source.request is not None
    assert result_file_name(DATABRICKS, {}, provider_job_id="88") == "run-88.json"
    url_spec = read_spec_text(BOOLEAN_SPEC + "result:\n  url: data.download\n  fileName: out.csv\n", source="b.yaml")
    found = render_result(
        url_spec, {}, {"data": {"download": "https://files.example.com/x?sig=1"}}, provider_job_id="1"
    )
    assert found is not None and found.url == "https://files.example.com/x?sig=1" and found.request is None
    with pytest.raises(ProviderRejectedError, match="answer_wrong_type"):
        render_result(url_spec, {}, {"data": {"download": "ftp://x"}}, provider_job_id="1")


def test_a_result_request_may_read_the_last_status_answer() -> None:
    final = {"state": "COMPLETED", "results": {"searchExportId": "se/1"}}
    source = render_result(FULLSTORY, {"segmentId": "everyone"}, final, provider_job_id="op=")
    assert source is not None and source.request is not None and source.url_selector == "location"
    assert source.request.path == "/search/v1/exports/se%2F1/results"
    with pytest.raises(ProviderRejectedError) as caught:
        render_result(FULLSTORY, {"segmentId": "everyone"}, {"state": "COMPLETED"}, provider_job_id="op")
    assert caught.value.code == "answer_field_missing" and "answer.results.searchExportId" in caught.value.message


@pytest.mark.parametrize(
    ("job_id", "disposition", "name"),
    [
        ("c2VhcmNo==", 'attachment; filename="everyone-2026-12-01.csv.gz"', "segment-export-c2VhcmNo.csv.gz"),
        ("../../etc", 'attachment; filename="x.ndjson.gz"', "segment-export-etc.ndjson.gz"),
        ("7", None, "segment-export-7"),
        ("7", 'attachment; filename="../../evil sh"', "segment-export-7"),
    ],
)
def test_result_file_names_stay_in_the_jobs_folder(job_id: str, disposition: str | None, name: str) -> None:
    assert result_file_name(FULLSTORY, {}, provider_job_id=job_id, disposition=disposition) == name


def test_vanished_jobs() -> None:
    assert vanished(DATABRICKS, 400) and vanished(DATABRICKS, 404) and not vanished(DATABRICKS, 500)
    assert vanished(DBT, 404) and not vanished(DBT, 400)
    reading = vanished_reading(DBT, 404, "7")
    assert reading.state == "FAILED" and reading.error is not None and reading.error["code"] == "provider_job_not_found"


def test_credentials_headers() -> None:
    assert auth_headers(DATABRICKS.auth, "dapi123") == {"Authorization": "Bearer dapi123"}
    assert auth_headers(DBT.auth, "dbtc_abc\n") == {"Authorization": "Token dbtc_abc"}
    assert auth_headers(DBT.auth, '{"token": "dbtc_x"}', key="token") == {"Authorization": "Token dbtc_x"}
    # FullStory's secret is the key, or JSON {"apiKey": ...}, as the built-in provider reads it.
    assert auth_headers(FULLSTORY.auth, "k1") == auth_headers(FULLSTORY.auth, '{"apiKey": "k1"}') == {
        "Authorization": "Basic k1"
    }
    # A key stored with its scheme goes as it is, as the built-in provider (and FullStory's Node SDK) sends it.
    assert auth_headers(FULLSTORY.auth, " Basic k1\n") == {"Authorization": authorization(" Basic k1\n")}
    assert auth_headers(FULLSTORY.auth, "Basic k1") == {"Authorization": "Basic k1"}
    assert auth_headers(DBT.auth, "Bearer x") == {"Authorization": "Token Bearer x"}  # no keepScheme: prefixed
    basic = read_spec_text(BOOLEAN_SPEC.replace("type: bearer", "type: basic"), source="b.yaml").auth
    expected = "Basic " + base64.b64encode(b"svc:p@ss:word").decode()
    assert auth_headers(basic, "svc:p@ss:word") == {"Authorization": expected}
    assert auth_headers(basic, '{"username": "svc", "password": "p@ss:word"}') == {"Authorization": expected}


@pytest.mark.parametrize(
    ("secret", "key", "message"),
    [
        ("", None, "empty"),
        ("abc\ndef", None, "several lines"),
        ('{"token": 1}', "token", "no string field 'token'"),
        ("{not json", None, "looks like JSON"),
    ],
)
def test_bad_secrets_are_named_without_their_value(secret: str, key: str | None, message: str) -> None:
    with pytest.raises(TrackerError, match=message) as caught:
        auth_headers(DBT.auth, secret, key=key)
    assert caught.value.code == "invalid_secret"
    assert secret.strip() == "" or secret not in str(caught.value)
