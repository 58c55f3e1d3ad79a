"""The spec provider over real HTTP on 127.0.0.1: the shipped specs against the Databricks, dbt Cloud and
FullStory simulators, and the safety rules every spec type gets (allowlist, https only, same-host redirects,
size caps, credentials only to the API)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Collection, Iterator
from typing import Any

import pytest
from tracker.errors import ProviderAuthError, ProviderRejectedError, ProviderTransientError
from tracker.providers.base import ResultsNotReady, Throttled
from tracker.providers.spec import provider as spec_provider
from tracker.providers.spec.evaluate import auth_headers
from tracker.providers.spec.hosts import HostAllowlist
from tracker.providers.spec.provider import SpecProvider, connect

from jobtracker.local.settings import template_settings
from jobtracker.simulators.databricks import DatabricksConfig, DatabricksSimulator
from jobtracker.simulators.dbt_cloud import DbtCloudConfig, DbtCloudSimulator
from jobtracker.simulators.faults import Fault, parse_fault
from jobtracker.simulators.fullstory import FullStorySimulator, SimulatorConfig
from jobtracker.simulators.server import Answer, ApiError, Simulator
from jobtracker.specs import shipped_specs

DATABRICKS, DBT, FULLSTORY = shipped_specs()
ACCOUNT = DbtCloudConfig().account_id


def provider_for(spec: Any, sim: Simulator[Any], secret: str = "t", **kwargs: Any) -> SpecProvider:
    host = sim.base_url.split("://", 1)[1]
    options = {"max_result_bytes": 10_000_000, **kwargs}
    allow = options.pop("allowlist", HostAllowlist([host], plain_http_loopback=True))
    return SpecProvider(
        spec,
        base_url=sim.base_url,
        credentials=auth_headers(spec.auth, secret),
        allowlist=allow,
        **options,
    )


@pytest.fixture
def databricks() -> Iterator[DatabricksSimulator]:
    with DatabricksSimulator(DatabricksConfig(token="t")) as sim:
        yield sim


def test_a_databricks_run_from_start_to_result(databricks: DatabricksSimulator) -> None:
    provider = provider_for(DATABRICKS, databricks)
    started = provider.start({"job_id": 101}, "job-1-b00001")
    assert not isinstance(started, Throttled) and started.provider_job_id.isdigit()
    again = provider.start({"job_id": 101}, "job-1-b00001")  # a retried start: Databricks' idempotency token
    assert not isinstance(again, Throttled) and again.provider_job_id == started.provider_job_id
    with pytest.raises(ResultsNotReady):
        provider.result(started.provider_job_id)  # (that read was the first poll: PENDING)
    states = []
    for _ in range(5):
        status = provider.status(started.provider_job_id)
        assert not isinstance(status, Throttled)
        states.append((status.state, status.provider_status))
        if status.finished:
            break
    assert states == [("RUNNING", "RUNNING"), ("COMPLETED", "TERMINATED/SUCCESS")]
    result = provider.result(started.provider_job_id)
    record = json.loads(b"".join(result.chunks()))
    assert result.name == f"run-{started.provider_job_id}.json" and record["state"]["result_state"] == "SUCCESS"


def test_429_is_a_throttled_wait_with_retry_after(databricks: DatabricksSimulator) -> None:
    databricks.config.retry_after_seconds = 7
    databricks.config.faults = (parse_fault("429@submit:1x"),)
    assert provider_for(DATABRICKS, databricks).start({"job_id": 101}, "k") == Throttled(7.0)


def test_a_refused_credential_and_a_refused_request_are_named(databricks: DatabricksSimulator) -> None:
    with pytest.raises(ProviderAuthError) as refused:
        provider_for(DATABRICKS, databricks, secret="wrong").start({"job_id": 101}, "k")
    assert refused.value.code == "forbidden" and "PERMISSION_DENIED: Invalid access token." in refused.value.message
    with pytest.raises(ProviderRejectedError) as caught:
        provider_for(DATABRICKS, databricks).start({"job_id": 999}, "k")
    assert caught.value.code == "INVALID_PARAMETER_VALUE" and "Job 999 does not exist." in caught.value.message


def test_an_unknown_state_is_counted_across_polls(databricks: DatabricksSimulator) -> None:
    databricks.config.future_lifecycle_state = "SUSPENDED_FOR_UPGRADE"
    provider = provider_for(DATABRICKS, databricks)
    started = provider.start({"job_id": 101}, "k")
    assert not isinstance(started, Throttled)
    provider.status(started.provider_job_id)  # PENDING
    streak = 0
    for _ in range(19):
        status = provider.status(started.provider_job_id, unknown_streak=streak)
        assert not isinstance(status, Throttled) and status.state == "RUNNING"
        streak = status.unknown_streak
    final = provider.status(started.provider_job_id, unknown_streak=streak)
    assert not isinstance(final, Throttled) and final.state == "FAILED"
    assert final.error is not None and final.error["code"] == "unknown_provider_state"


def test_answers_and_results_are_read_only_up_to_their_caps(
    databricks: DatabricksSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = provider_for(DATABRICKS, databricks)
    started = provider.start({"job_id": 101}, "k")
    assert not isinstance(started, Throttled)
    monkeypatch.setattr(spec_provider, "MAX_ANSWER_BYTES", 200)  # a run record is about 1.5 KB
    with pytest.raises(ProviderRejectedError) as caught:
        provider.status(started.provider_job_id)
    assert caught.value.code == "answer_too_large" and "more than 200 bytes" in caught.value.message
    monkeypatch.undo()
    with DbtCloudSimulator() as dbt:
        small = provider_for(DBT, dbt, max_result_bytes=100, params={"account_id": ACCOUNT})
        run = small.start({"account_id": ACCOUNT, "job_id": 201}, "k")
        assert not isinstance(run, Throttled)
        for _ in range(4):
            small.status(run.provider_job_id)
        result = small.result(run.provider_job_id)
        with pytest.raises(ProviderRejectedError) as too_big:
            b"".join(result.chunks())
        assert too_big.value.code == "result_too_large"


def test_only_allowed_hosts_get_a_request_and_only_over_https(databricks: DatabricksSimulator) -> None:
    host = databricks.base_url.split("://", 1)[1]
    elsewhere = provider_for(
        DATABRICKS, databricks, allowlist=HostAllowlist(["cloud.getdbt.com"], plain_http_loopback=True)
    )
    with pytest.raises(ProviderRejectedError) as caught:
        elsewhere.start({"job_id": 101}, "k")
    assert caught.value.code == "host_not_allowed" and "not in the tracker's HttpJobHosts" in caught.value.message
    deployed = provider_for(DATABRICKS, databricks, allowlist=HostAllowlist([host]))  # as in AWS: https only
    with pytest.raises(ProviderRejectedError, match=r"plain http to 127\.0\.0\.1 is refused"):
        deployed.start({"job_id": 101}, "k")
    assert databricks.requests == []


@pytest.mark.parametrize(
    ("entries", "url", "allowed"),
    [
        (["cloud.getdbt.com"], "https://cloud.getdbt.com/api/v2/x", True),
        (["cloud.getdbt.com"], "https://cloud.getdbt.com:8443/api", False),
        (["cloud.getdbt.com:8443"], "https://cloud.getdbt.com:8443/api", True),
        (["*.cloud.databricks.com"], "https://dbc-1.cloud.databricks.com/api", True),
        (["*.cloud.databricks.com"], "https://cloud.databricks.com/api", False),
        (["*.cloud.databricks.com"], "https://evil.com/.cloud.databricks.com", False),
        (["*.cloud.databricks.com"], "https://x.cloud.databricks.com.evil.com/", False),
        (["api.fullstory.com"], "http://api.fullstory.com/x", False),
        (["api.fullstory.com"], "https://user:pw@api.fullstory.com/x", False),
        (["api.fullstory.com"], "ftp://api.fullstory.com/x", False),
        ([], "https://api.fullstory.com/x", False),
    ],
)
def test_the_allowlist(entries: list[str], url: str, allowed: bool) -> None:
    allow = HostAllowlist(entries, plain_http_loopback=True)
    if allowed:
        assert allow.check(url, what="x") == url
    else:
        with pytest.raises(ProviderRejectedError):
            allow.check(url, what="x")


def test_an_allowlist_entry_is_a_host_not_a_url() -> None:
    with pytest.raises(ValueError, match="is not host, host:port or"):
        HostAllowlist(["https://cloud.getdbt.com"])
    assert HostAllowlist(["127.0.0.1:8902"], plain_http_loopback=True).check("http://127.0.0.1:8902/x", what="x")


class _Redirector(Simulator[Any]):
    """A test server (not a provider): answers every API path with a redirect to `location`, and records the
    headers each request came with."""

    title = server_name = "redirector"
    injected_errors = {"500": ("e", "e"), "429": ("e", "e")}
    internal_error = ("e", "e")
    malformed_answer = (200, b"{", {})

    def __init__(self) -> None:
        config = type("Config", (), {"faults": (), "fault_seed": None, "retry_after_seconds": 1})()
        super().__init__(config)
        self.location = ""
        self.seen: list[tuple[str, dict[str, str]]] = []

    def fault_targets(self, method: str, path: str) -> Collection[str]:
        return ()

    def error_answer(self, err: ApiError) -> Answer:
        return err.status, b"{}", {}

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes, fault: Fault | None) -> Answer:
        self.seen.append((raw_path, dict(headers)))
        if raw_path.startswith("/final"):
            return 200, json.dumps({"run_id": 1}).encode(), {}
        if raw_path.startswith("/file"):
            return 200, b"the file", {"Content-Type": "text/plain"}
        return 302, b"", {"Location": self.location}


def test_redirects_are_followed_only_to_the_same_host() -> None:
    with _Redirector() as same:
        provider = provider_for(DATABRICKS, same)
        same.location = "/final"
        started = provider.start({"job_id": 1}, "k")
        assert not isinstance(started, Throttled) and started.provider_job_id == "1"
        assert [path for path, _ in same.seen] == ["/api/2.2/jobs/run-now", "/final"]
        with _Redirector() as other:
            same.location = other.base_url + "/final"  # another port: another origin
            both = HostAllowlist([h.split("://")[1] for h in (same.base_url, other.base_url)], plain_http_loopback=True)
            with pytest.raises(ProviderRejectedError) as caught:
                provider_for(DATABRICKS, same, allowlist=both).start({"job_id": 1}, "k")
            assert caught.value.code == "redirect_refused" and other.seen == []
        same.location = "/api/again"  # a loop
        with pytest.raises(ProviderRejectedError, match="redirected too many times"):
            provider.start({"job_id": 1}, "k")


def test_a_download_url_gets_no_credentials_and_an_expired_one_is_asked_for_again() -> None:
    config = SimulatorConfig(api_key="fs-key", operation_polls_to_complete=1, expire_first_locations=1)
    with FullStorySimulator(config) as fullstory, _Redirector() as storage:
        provider = provider_for(FULLSTORY, fullstory, secret="fs-key")
        started = provider.start({"segmentId": "everyone", "format": "FORMAT_NDJSON"}, "job-9-b00001")
        assert not isinstance(started, Throttled)
        status = provider.status(started.provider_job_id)
        assert not isinstance(status, Throttled) and status.state == "COMPLETED" and status.progress_pct == 100
        result = provider.result(started.provider_job_id)
        rows = gzip.decompress(b"".join(result.chunks())).splitlines()
        assert result.name.startswith("segment-export-") and result.name.endswith(".ndjson.gz") and len(rows) == 36
        assert fullstory.operation_stats["expired_downloads"] == 1 and fullstory.operation_stats["downloads"] == 1
        # Where a download URL points at another (allowed) host, it goes there without the API's credentials.
        url_spec = FULLSTORY.model_copy(update={"result": FULLSTORY.result.model_copy(update={"request": None})})
        hosts = [fullstory.base_url.split("://")[1], storage.base_url.split("://")[1]]
        allow = HostAllowlist(hosts, plain_http_loopback=True)
        url_provider = provider_for(url_spec, fullstory, secret="fs-key", allowlist=allow)
        answer = {"state": "COMPLETED", "location": storage.base_url + "/file?sig=1"}
        url_provider._final_answer = lambda _id: answer  # type: ignore[method-assign]
        stored = url_provider.result("op-1")
        assert b"".join(stored.chunks()) == b"the file"
        assert [(path, "Authorization" in headers) for path, headers in storage.seen] == [("/file?sig=1", False)]


def test_connect_reads_the_secret_and_base_url_from_the_template_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = template_settings({"DatabricksHost": ""})
    monkeypatch.setattr("tracker.providers.secrets.read_secret_string", lambda arn, what: "dapi-1")
    with pytest.raises(ProviderRejectedError) as caught:
        connect(DATABRICKS, settings)
    assert caught.value.code == "not_configured" and "set the template parameter DatabricksHost" in caught.value.message
    settings = template_settings({"DatabricksHost": "https://dbc-1.cloud.databricks.com"})
    provider = connect(DATABRICKS, settings, {"job_id": 101})
    assert provider._http._headers == {"Authorization": "Bearer dapi-1"}
    monkeypatch.setattr("tracker.providers.secrets.read_secret_string", lambda arn, what: "two\nlines")
    with pytest.raises(ProviderAuthError) as bad:
        connect(DATABRICKS, settings)
    assert bad.value.code == "invalid_secret" and "two" not in bad.value.message


def test_a_non_json_answer_is_transient(databricks: DatabricksSimulator) -> None:
    databricks.config.faults = (parse_fault("malformed@submit:1x"),)
    with pytest.raises(ProviderTransientError) as caught:
        provider_for(DATABRICKS, databricks).start({"job_id": 101}, "k")
    assert caught.value.code == "answer_not_json"
