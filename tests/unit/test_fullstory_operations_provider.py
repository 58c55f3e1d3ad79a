"""The FullStory segment-export provider against the simulator over real HTTP (no sleeps): start,
status with progress, the result file in both result shapes, expired download URLs, failures."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import urllib3
from tracker.errors import ProviderAuthError, ProviderRejectedError, ProviderThrottledError, ProviderTransientError
from tracker.providers.base import OperationProvider, OperationStatus, ResultFile, ResultsNotReady, Submitted, Throttled
from tracker.providers.fullstory.exports import (
    FullStorySegmentExportProvider,
    export_request,
    operation_status,
)

from jobtracker.simulators.fullstory import FullStorySimulator, SimulatorConfig, parse_fault

PARAMS = {"segmentId": "everyone", "type": "TYPE_EVENT", "format": "FORMAT_CSV", "timeRange": {"start": "", "end": ""}}


@pytest.fixture
def make() -> Iterator[Callable[..., tuple[FullStorySimulator, FullStorySegmentExportProvider]]]:
    started: list[FullStorySimulator] = []

    def factory(key: str = "key", **config: Any) -> tuple[FullStorySimulator, FullStorySegmentExportProvider]:
        sim = FullStorySimulator(SimulatorConfig(**config)).start()
        started.append(sim)
        return sim, FullStorySegmentExportProvider(key, sim.base_url + "/", timeout_seconds=10)

    yield factory
    for sim in started:
        sim.stop()


def run_to_end(provider: FullStorySegmentExportProvider, op_id: str, limit: int = 20) -> list[OperationStatus]:
    seen: list[OperationStatus] = []
    for _ in range(limit):
        status = provider.status(op_id)
        assert isinstance(status, OperationStatus)
        seen.append(status)
        if status.finished:
            return seen
    raise AssertionError(f"{op_id} not finished after {limit} polls")


def read_file(result: ResultFile) -> bytes:
    data = b"".join(result.chunks())
    assert data[:2] == b"\x1f\x8b"  # stored as the gzip it is
    return gzip.decompress(data)


def test_it_is_an_operation_provider() -> None:
    provider: OperationProvider = FullStorySegmentExportProvider("k", "http://127.0.0.1:9")
    assert provider is not None


# --------------------------------------------------------------------------- happy paths


def test_happy_path_progress_reaches_100_and_the_csv_file_is_fetched(make) -> None:
    sim, provider = make(operation_polls_to_complete=5)
    submitted = provider.start(PARAMS, "job-1")
    assert isinstance(submitted, Submitted) and submitted.provider_status == "PENDING"
    seen = run_to_end(provider, submitted.provider_job_id)
    assert [s.state for s in seen] == ["PENDING", "RUNNING", "RUNNING", "RUNNING", "COMPLETED"]
    assert [s.provider_status for s in seen] == ["PENDING"] * 4 + ["COMPLETED"]
    progress = [s.progress_pct for s in seen]
    assert progress[0] == 0 and progress[-1] == 100 and progress == sorted(progress)
    result = provider.result(submitted.provider_job_id)
    assert result.content_type == "application/gzip"
    assert result.name.startswith("segment-export-") and result.name.endswith(".csv.gz")
    assert "=" not in result.name and "/" not in result.name
    rows = list(csv.DictReader(io.StringIO(read_file(result).decode())))
    assert len(rows) == 36
    stats = sim.operation_stats
    assert (stats["result_location_gets"], stats["downloads"], stats["expired_downloads"]) == (1, 1, 0)


def test_seed_running_state_and_the_download_url_shape(make) -> None:
    sim, provider = make(operation_polls_to_complete=3, seed_states=True, results_shape="downloadUrl")
    op_id = provider.start({**PARAMS, "format": "FORMAT_NDJSON"}, "job-2").provider_job_id
    seen = run_to_end(provider, op_id)
    assert [(s.provider_status, s.state) for s in seen] == [
        ("PENDING", "PENDING"),
        ("RUNNING", "RUNNING"),
        ("COMPLETED", "COMPLETED"),
    ]
    result = provider.result(op_id)
    assert result.name.endswith(".ndjson.gz")
    rows = [json.loads(line) for line in read_file(result).splitlines()]
    assert len(rows) == 36 and "EventType" in rows[0]
    assert sim.operation_stats["result_location_gets"] == 0  # the operation itself linked the file


def test_params_aliases_and_the_idempotency_key(make) -> None:
    sim, provider = make(operation_polls_to_complete=1, export_idempotency=True)
    params = {"segmentId": "everyone", "type": "individuals", "format": "json", "fields": ["UserEmail"], "extra": 1}
    first = provider.start(params, "same-key")
    again = provider.start(params, "same-key")
    assert first == again
    assert sim.operation_stats["operations_created"] == 1 and sim.operation_stats["replayed_exports"] == 1
    (op,) = sim.operations()
    assert (op["type"], op["format"]) == ("TYPE_INDIVIDUAL", "FORMAT_JSON")
    assert export_request(params) == {
        "segmentId": "everyone",
        "type": "TYPE_INDIVIDUAL",
        "format": "FORMAT_JSON",
        "fields": ["UserEmail"],
        "timeRange": {"start": "", "end": ""},
    }
    run_to_end(provider, first.provider_job_id)
    result = provider.result(first.provider_job_id)
    assert result.name.endswith(".json.gz")
    assert json.loads(read_file(result))[0] == {"UserEmail": "user0@example.com"}


def test_track_an_operation_someone_else_started(make) -> None:
    sim, provider = make(operation_polls_to_complete=2)
    http = urllib3.PoolManager(retries=False)
    answer = http.request(
        "POST",
        sim.base_url + "/segments/v1/exports",
        body=json.dumps({**PARAMS, "segmentId": "rageClicks", "format": "FORMAT_NDJSON"}).encode(),
        headers={"Authorization": "Basic other-key", "Content-Type": "application/json"},
    )
    op_id = json.loads(answer.data)["operationId"]
    assert run_to_end(provider, op_id)[-1].state == "COMPLETED"
    result = provider.result(op_id)
    assert result.name.endswith(".ndjson.gz")  # the format comes from the download, not from our params
    assert len(read_file(result).splitlines()) == 36


# --------------------------------------------------------------------------- expiring URLs


@pytest.mark.parametrize(
    ("shape", "dead"),
    # with downloadUrl, the COMPLETED status poll already handed out one (unused) URL
    [("searchExportId", 1), ("downloadUrl", 2)],
)
def test_an_expired_download_url_is_refetched(make, shape: str, dead: int) -> None:
    sim, provider = make(operation_polls_to_complete=1, results_shape=shape, expire_first_locations=dead)
    op_id = provider.start(PARAMS, "job-3").provider_job_id
    run_to_end(provider, op_id)
    result = provider.result(op_id)
    assert len(read_file(result).splitlines()) == 37
    stats = sim.operation_stats
    assert (stats["expired_downloads"], stats["downloads"]) == (1, 1)
    # chunks() again starts a fresh download (a later retry of the step gets a new URL too).
    assert len(read_file(result).splitlines()) == 37
    assert sim.operation_stats["downloads"] == 2


def test_urls_that_keep_expiring_end_in_a_transient_error_after_bounded_attempts(make) -> None:
    sim, provider = make(operation_polls_to_complete=1, download_ttl_seconds=0)
    op_id = provider.start(PARAMS, "job-4").provider_job_id
    run_to_end(provider, op_id)
    with pytest.raises(ProviderTransientError) as info:
        provider.result(op_id)
    assert info.value.code == "download_url_expired"
    assert sim.operation_stats["expired_downloads"] == 3 and sim.operation_stats["downloads"] == 0


def test_download_faults_are_transient_errors(make) -> None:
    _, provider = make(operation_polls_to_complete=1, faults=(parse_fault("malformed@download:1x"),))
    op_id = provider.start(PARAMS, "job-5").provider_job_id
    run_to_end(provider, op_id)
    result = provider.result(op_id)
    with pytest.raises(ProviderTransientError, match="not a gzip"):
        b"".join(result.chunks())
    assert len(read_file(result).splitlines()) == 37  # the next attempt is clean

    _, provider = make(operation_polls_to_complete=1, faults=(parse_fault("500@download:1x"),))
    op_id = provider.start(PARAMS, "job-6").provider_job_id
    run_to_end(provider, op_id)
    with pytest.raises(ProviderTransientError, match="500"):
        provider.result(op_id)
    assert read_file(provider.result(op_id))


def test_result_before_completion_or_of_a_failed_export(make) -> None:
    _, provider = make(operation_polls_to_complete=5)
    op_id = provider.start(PARAMS, "job-7").provider_job_id
    with pytest.raises(ResultsNotReady):
        provider.result(op_id)
    _, provider = make(operation_polls_to_complete=1)
    op_id = provider.start({**PARAMS, "segmentId": "broken"}, "job-8").provider_job_id
    run_to_end(provider, op_id)
    with pytest.raises(ProviderRejectedError) as info:
        provider.result(op_id)
    assert info.value.code == "export_failed"


# --------------------------------------------------------------------------- failures


def test_failed_export_maps_to_failed_with_the_error_details(make) -> None:
    _, provider = make(operation_polls_to_complete=3)
    op_id = provider.start({**PARAMS, "segmentId": "broken"}, "job-9").provider_job_id
    seen = run_to_end(provider, op_id)
    failed = seen[-1]
    assert (failed.provider_status, failed.state, failed.finished) == ("FAILED", "FAILED", True)
    assert failed.error is not None and failed.error["code"] == "export_failed"
    assert "broken" in failed.error["message"]
    assert failed.progress_pct is not None and failed.progress_pct < 100


def test_throttling_answers_throttled_with_retry_after(make) -> None:
    faults = (parse_fault("429@export:1x"), parse_fault("429@operation:1x"), parse_fault("429-bare@operation:1x"))
    _, provider = make(operation_polls_to_complete=2, faults=faults, retry_after_seconds=9)
    assert provider.start(PARAMS, "job-10") == Throttled(9.0)
    op_id = provider.start(PARAMS, "job-10").provider_job_id
    assert provider.status(op_id) == Throttled(9.0)
    assert provider.status(op_id) == Throttled(None)
    assert run_to_end(provider, op_id)[-1].state == "COMPLETED"


def test_throttled_result_lookups_raise_the_named_throttle_error(make) -> None:
    _, provider = make(operation_polls_to_complete=1, faults=(parse_fault("429@results:1x"),))
    op_id = provider.start(PARAMS, "job-11").provider_job_id
    run_to_end(provider, op_id)
    with pytest.raises(ProviderThrottledError) as info:
        provider.result(op_id)
    assert info.value.retry_after == 1.0


def test_auth_failures(make) -> None:
    _, provider = make(key="wrong", api_key="right")
    with pytest.raises(ProviderAuthError) as info:
        provider.start(PARAMS, "job-12")
    assert info.value.code == "unauthorized"
    with pytest.raises(ProviderAuthError):
        provider.status("anything")


def test_rejections_and_transient_errors(make) -> None:
    _, provider = make()
    with pytest.raises(ProviderRejectedError) as info:
        provider.start({**PARAMS, "segmentId": "no-such-segment"}, "job-13")
    assert info.value.code == "resource_not_found"
    with pytest.raises(ProviderRejectedError) as info:
        provider.start({**PARAMS, "format": "xml"}, "job-14")
    assert info.value.code == "invalid_argument"
    with pytest.raises(ProviderRejectedError):
        provider.status("no-such-operation")

    faults = ("500@export:1x", "reset@operation:1x", "malformed@operation:1x")
    _, provider = make(operation_polls_to_complete=1, faults=tuple(parse_fault(f) for f in faults))
    with pytest.raises(ProviderTransientError):
        provider.start(PARAMS, "job-15")
    op_id = provider.start(PARAMS, "job-15").provider_job_id
    with pytest.raises(ProviderTransientError):
        provider.status(op_id)  # reset: the answer is lost
    with pytest.raises(ProviderTransientError, match="malformed"):
        provider.status(op_id)
    assert provider.status(op_id).state == "COMPLETED"

    unreachable = FullStorySegmentExportProvider("k", "http://127.0.0.1:9", timeout_seconds=1)
    with pytest.raises(ProviderTransientError):
        unreachable.status("x")


# --------------------------------------------------------------------------- mapping


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        ({"state": "PENDING"}, ("PENDING", None)),
        ({"state": "PENDING", "estimatePctComplete": 0}, ("PENDING", 0.0)),
        ({"state": "PENDING", "estimatePctComplete": 12.5}, ("RUNNING", 12.5)),
        ({"state": "RUNNING", "estimatePctComplete": 0}, ("RUNNING", 0.0)),
        ({"state": "RUNNING", "estimatePctComplete": 140}, ("RUNNING", 100.0)),
        ({"state": "RUNNING", "estimatePctComplete": "50"}, ("RUNNING", None)),
        ({"state": "COMPLETED", "estimatePctComplete": 97}, ("COMPLETED", 100.0)),
        ({"state": "COMPLETED"}, ("COMPLETED", 100.0)),
    ],
)
def test_state_mapping(operation: dict, expected: tuple) -> None:
    status = operation_status(operation)
    assert (status.state, status.progress_pct) == expected
    assert status.provider_status == operation["state"]


def test_failed_without_details_and_unknown_states() -> None:
    status = operation_status({"state": "FAILED", "errorDetails": ""})
    assert status.error == {"code": "export_failed", "message": "FullStory export failed"}
    with pytest.raises(ProviderRejectedError) as info:
        operation_status({"state": "CANCELLED"})
    assert info.value.code == "unexpected_state"


def test_find_started_lists_the_exports_created_since_an_attempt_oldest_first(make) -> None:
    """Create Export documents no Idempotency-Key: after a lost answer the caller looks the export up with
    List Operation (GET /operations/v1?type=SEARCH_EXPORT) instead of starting another."""
    from datetime import UTC, datetime, timedelta

    sim, provider = make()
    params = {"segmentId": "everyone", "type": "individuals", "format": "csv"}
    since = datetime.now(UTC).isoformat()
    first, second = provider.start(params, "k1"), provider.start(params, "k1")  # the key is ignored: two exports
    assert first != second and sim.operation_stats["operations_created"] == 2
    assert provider.find_started(params, since) == [first.provider_job_id, second.provider_job_id]
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert provider.find_started(params, later) == []  # beyond the clock margin: none of these
    assert sim.operation_stats["operation_lists"] == 2


def test_an_operation_counts_only_if_it_is_an_export_created_since_then_of_no_other_segment() -> None:
    from tracker.providers.fullstory.exports import _started_since

    floor = datetime_of("2026-01-01T00:00:00Z")
    export = {"id": "op", "type": "SEARCH_EXPORT", "createdAt": "2026-01-01T00:00:01.5Z"}
    assert _started_since(export, floor, "everyone") == (datetime_of("2026-01-01T00:00:01.5Z"), "op")
    assert _started_since({**export, "createdAt": "2025-12-31T23:59:59Z"}, floor, "everyone") is None
    assert _started_since({**export, "type": "DELETE_USER"}, floor, "everyone") is None
    assert _started_since({**export, "details": {"segmentId": "other"}}, floor, "everyone") is None
    assert _started_since({**export, "details": {"segmentId": "everyone"}}, floor, "everyone") is not None


def datetime_of(value: str):
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00"))
