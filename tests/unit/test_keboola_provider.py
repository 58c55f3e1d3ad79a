"""The Keboola Storage provider against the Keboola simulator over real HTTP: every provider state
maps onto the normalized one, and every failure becomes one named error or a Throttled."""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import urllib3
from tracker.errors import ProviderAuthError, ProviderRejectedError, ProviderThrottledError, ProviderTransientError
from tracker.providers.base import OperationStatus, ResultsNotReady, Submitted, Throttled
from tracker.providers.keboola.storage import STATES, KeboolaStorageProvider, stack_root

from jobtracker.simulators.keboola import (
    BROKEN_TABLE,
    DEMO_TABLE,
    KeboolaSimulator,
    KeboolaSimulatorConfig,
    parse_fault,
    parse_keboola_fault,
)

USERS = {"tableId": DEMO_TABLE}


@pytest.fixture
def make(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., tuple[KeboolaSimulator, KeboolaStorageProvider]]]:
    """A simulator and a provider talking to it; the provider reaches the simulator's file storage the
    standard ways: AWS_ENDPOINT_URL_S3 for S3, STORAGE_EMULATOR_HOST for GCS, the SAS connection string
    for Azure."""
    sims: list[KeboolaSimulator] = []

    def make(token: str = "tok", **config: Any) -> tuple[KeboolaSimulator, KeboolaStorageProvider]:
        sim = KeboolaSimulator(KeboolaSimulatorConfig(**config), s3_port=0).start()
        sims.append(sim)
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", sim.s3_base_url)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", sim.base_url)
        return sim, KeboolaStorageProvider(sim.base_url, token, timeout_seconds=5)

    yield make
    for sim in sims:
        sim.stop()


def _rows(provider: KeboolaStorageProvider, job_id: str) -> list[list[str]]:
    data = b"".join(provider.result(job_id).chunks())
    return list(csv.reader(io.StringIO(gzip.decompress(data).decode())))


def _finish(provider: KeboolaStorageProvider, job_id: str) -> OperationStatus:
    for _ in range(10):
        status = provider.status(job_id)
        assert isinstance(status, OperationStatus)
        if status.finished:
            return status
    raise AssertionError("job did not finish")


def test_state_mapping() -> None:
    assert STATES == {"waiting": "PENDING", "processing": "RUNNING", "success": "COMPLETED", "error": "FAILED"}


@pytest.mark.parametrize(
    ("given", "root"),
    [
        ("https://connection.keboola.com", "https://connection.keboola.com"),
        ("connection.eu-central-1.keboola.com", "https://connection.eu-central-1.keboola.com"),
        (" https://connection.north-europe.azure.keboola.com/ ", "https://connection.north-europe.azure.keboola.com"),
        ("https://connection.keboola.com/v2/storage/", "https://connection.keboola.com"),
        ("http://127.0.0.1:8901", "http://127.0.0.1:8901"),
    ],
)
def test_stack_url_forms(given: str, root: str) -> None:
    assert stack_root(given) == root


def test_stack_url_is_required() -> None:
    with pytest.raises(ValueError):
        KeboolaStorageProvider("  ", "tok")


# --------------------------------------------------------------------------- happy path


def test_export_polled_to_completion_and_file_streamed(make: Callable) -> None:
    sim, provider = make(polls_to_start=2, polls_to_complete=3)
    submitted = provider.start({**USERS, "columns": ["id", "email"], "limit": 4}, "job-1")
    assert isinstance(submitted, Submitted) and submitted.provider_status == "waiting"
    assert submitted.provider_job_id.isdigit()
    states = [provider.status(submitted.provider_job_id) for _ in range(3)]
    assert [(s.provider_status, s.state) for s in states] == [
        ("waiting", "PENDING"),
        ("processing", "RUNNING"),
        ("success", "COMPLETED"),
    ]
    assert [s.finished for s in states] == [False, False, True]
    assert states[-1].progress_pct == 100.0 and states[-1].error is None
    result = provider.result(submitted.provider_job_id)
    assert (result.name, result.content_type) == (f"{DEMO_TABLE}.csv.gz", "application/gzip")
    rows = _rows(provider, submitted.provider_job_id)
    assert rows[0] == ["id", "email"] and len(rows) == 5
    (job,) = sim.jobs()
    assert job["tableId"] == DEMO_TABLE
    assert sim.stats["export_posts"] == 1


def test_whole_table_by_default_and_chunks_can_be_read_twice(make: Callable) -> None:
    sim, provider = make(polls_to_complete=1)
    job_id = provider.start(USERS, "k").provider_job_id
    assert _finish(provider, job_id).state == "COMPLETED"
    result = provider.result(job_id)
    first, second = b"".join(result.chunks()), b"".join(result.chunks())
    assert first == second
    rows = list(csv.reader(io.StringIO(gzip.decompress(first).decode())))
    assert rows[0] == ["id", "name", "email"] and len(rows) == 51
    # One file detail: its credentials served both reads (a refusal would have fetched another).
    assert sim.stats["file_gets"] == 1 and sim.stats["refused"] == 0


def test_a_job_started_elsewhere_is_tracked_by_id(make: Callable) -> None:
    sim, provider = make(polls_to_complete=1)
    http = urllib3.PoolManager(retries=False)
    answer = http.request(
        "POST",
        f"{sim.base_url}/v2/storage/tables/{DEMO_TABLE}/export-async",
        headers={"X-StorageApi-Token": "someone-else"},
    )
    assert answer.status == 202
    job_id = str(answer.json()["id"])
    assert _finish(provider, job_id).state == "COMPLETED"
    assert len(_rows(provider, job_id)) == 51


def test_the_token_goes_to_the_stack_only(make: Callable) -> None:
    class Recording(urllib3.PoolManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.seen: list[tuple[str, dict[str, str]]] = []

        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            self.seen.append((url, dict(kwargs.get("headers") or {})))
            return super().request(method, url, *args, **kwargs)

    sim, _ = make(polls_to_complete=1, download_ttl_seconds=3600)  # one download: no refresh on a slow machine
    pool = Recording(retries=False)
    provider = KeboolaStorageProvider(sim.base_url, "secret-token", pool=pool)
    job_id = provider.start(USERS, "k").provider_job_id
    _finish(provider, job_id)
    _rows(provider, job_id)
    api = [h for url, h in pool.seen if "/v2/storage/" in url]
    downloads = [h for url, h in pool.seen if "/download/" in url]
    assert api and all(h["X-StorageApi-Token"] == "secret-token" for h in api)
    assert len(downloads) == 1 and all("X-StorageApi-Token" not in h for h in downloads)


# --------------------------------------------------------------------------- failed jobs


def test_error_job_is_failed_with_keboolas_error(make: Callable) -> None:
    sim, provider = make()
    job_id = provider.start({"tableId": BROKEN_TABLE}, "k").provider_job_id
    status = _finish(provider, job_id)
    assert (status.provider_status, status.state, status.progress_pct) == ("error", "FAILED", None)
    http = urllib3.PoolManager(retries=False)
    keboola = http.request("GET", f"{sim.base_url}/v2/storage/jobs/{job_id}", headers={"X-StorageApi-Token": "t"})
    assert status.error == keboola.json()["error"]
    assert set(status.error) == {"code", "message", "exceptionId"}
    assert status.error["code"] == "storage.tables.exportFailed"
    with pytest.raises(ProviderRejectedError) as err:
        provider.result(job_id)
    assert err.value.code == "job_failed"


def test_result_before_the_job_is_done_is_not_ready(make: Callable) -> None:
    _, provider = make(polls_to_complete=5)
    job_id = provider.start(USERS, "k").provider_job_id
    with pytest.raises(ResultsNotReady):
        provider.result(job_id)


# --------------------------------------------------------------------------- throttling and maintenance


def test_maintenance_503_is_throttled_with_retry_after(make: Callable) -> None:
    sim, provider = make(maintenance_retry_after_seconds=45, polls_to_complete=1)
    job_id = provider.start(USERS, "k").provider_job_id
    sim.config.maintenance = True
    assert provider.start(USERS, "k") == Throttled(45.0)
    assert provider.status(job_id) == Throttled(45.0)
    with pytest.raises(ProviderThrottledError) as err:
        provider.result(job_id)
    assert err.value.retry_after == 45.0
    sim.config.maintenance = False
    assert _finish(provider, job_id).state == "COMPLETED"
    assert sim.stats["maintenance"] == 3


def test_maintenance_fault_mid_poll(make: Callable) -> None:
    _, provider = make(faults=(parse_keboola_fault("maintenance@status:1x"),), maintenance_retry_after_seconds=5)
    job_id = provider.start(USERS, "k").provider_job_id
    assert provider.status(job_id) == Throttled(5.0)
    assert provider.status(job_id).state == "RUNNING"


def test_429_is_throttled(make: Callable) -> None:
    _, provider = make(faults=(parse_fault("429@submit:1x"), parse_fault("429-bare@status:1x")), retry_after_seconds=3)
    assert provider.start(USERS, "k") == Throttled(3.0)
    job_id = provider.start(USERS, "k").provider_job_id
    assert provider.status(job_id) == Throttled(None)


# --------------------------------------------------------------------------- auth and rejections


def test_wrong_token_is_an_auth_error(make: Callable) -> None:
    _, provider = make(token="wrong")
    # any non-empty token is accepted unless the simulator is started with one
    assert isinstance(provider.start(USERS, "k"), Submitted)
    sim = KeboolaSimulator(KeboolaSimulatorConfig(token="right")).start()
    try:
        wrong = KeboolaStorageProvider(sim.base_url, "wrong")
        for call in (lambda: wrong.start(USERS, "k"), lambda: wrong.status("1"), lambda: wrong.result("1")):
            with pytest.raises(ProviderAuthError) as err:
                call()
            assert err.value.code == "unauthorized" and "storage.tokenInvalid" in err.value.message
        assert isinstance(KeboolaStorageProvider(sim.base_url, "right").start(USERS, "k"), Submitted)
    finally:
        sim.stop()


def test_unknown_table_and_job_are_not_found(make: Callable) -> None:
    _, provider = make()
    with pytest.raises(ProviderRejectedError) as err:
        provider.start({"tableId": "in.c-main.nope"}, "k")
    assert err.value.code == "not_found" and "storage.tables.notFound" in err.value.message
    for call in (lambda: provider.status("123"), lambda: provider.result("123")):
        with pytest.raises(ProviderRejectedError) as err:
            call()
        assert err.value.code == "not_found"


@pytest.mark.parametrize(
    "params",
    [{}, {"tableId": ""}, {"tableId": 7}, {"tableId": DEMO_TABLE, "format": "xml"}],
)
def test_bad_params_are_rejected_before_any_call(make: Callable, params: dict) -> None:
    sim, provider = make()
    with pytest.raises(ProviderRejectedError) as err:
        provider.start(params, "k")
    assert err.value.code == "invalid_params"
    assert sim.stats["export_posts"] == 0


def test_keboola_validation_error_is_rejected(make: Callable) -> None:
    _, provider = make()
    with pytest.raises(ProviderRejectedError) as err:
        provider.start({**USERS, "columns": "id,nope"}, "k")
    assert err.value.code == "provider_rejected" and "storage.tables.validation" in err.value.message


# --------------------------------------------------------------------------- transient failures


@pytest.mark.parametrize("fault", ["500@status:1x", "reset@status:1x", "malformed@status:1x"])
def test_transient_failures_are_named(make: Callable, fault: str) -> None:
    _, provider = make(faults=(parse_fault(fault),))
    job_id = provider.start(USERS, "k").provider_job_id
    with pytest.raises(ProviderTransientError):
        provider.status(job_id)
    assert provider.status(job_id).state in ("RUNNING", "COMPLETED")


def test_reset_submit_is_transient_and_refused_connection_too(make: Callable) -> None:
    sim, provider = make(faults=(parse_fault("reset@submit:1x"),))
    with pytest.raises(ProviderTransientError):
        provider.start(USERS, "k")
    assert sim.stats["export_posts"] == 1  # the export did start: a retry starts another, harmlessly
    base = sim.base_url
    sim.stop()
    with pytest.raises(ProviderTransientError):
        KeboolaStorageProvider(base, "tok", timeout_seconds=2).status("1")


# --------------------------------------------------------------------------- short-lived download URLs


def test_expired_url_is_fetched_again(make: Callable) -> None:
    sim, provider = make(polls_to_complete=1, expire_first_urls=2)
    job_id = provider.start(USERS, "k").provider_job_id
    _finish(provider, job_id)
    assert len(_rows(provider, job_id)) == 51
    stats = sim.stats
    assert (stats["file_gets"], stats["downloads"], stats["expired_downloads"]) == (3, 3, 2)


def test_urls_that_keep_expiring_end_transient(make: Callable) -> None:
    sim, provider = make(polls_to_complete=1, download_ttl_seconds=0)
    job_id = provider.start(USERS, "k").provider_job_id
    _finish(provider, job_id)
    with pytest.raises(ProviderTransientError) as err:
        b"".join(provider.result(job_id).chunks())
    assert err.value.code == "download_url_expired"
    assert sim.stats["file_gets"] == 3 and sim.stats["expired_downloads"] == 3


def test_download_server_error_is_transient(make: Callable) -> None:
    _, provider = make(polls_to_complete=1, faults=(parse_fault("500@pages:2x"),))
    job_id = provider.start(USERS, "k").provider_job_id
    _finish(provider, job_id)
    with pytest.raises(ProviderTransientError):  # the file detail answers 500
        provider.result(job_id)
    with pytest.raises(ProviderTransientError):  # and once more
        provider.result(job_id)
    assert len(_rows(provider, job_id)) == 51


# --------------------------------------------------------------------------- files on S3, Azure Blob, GCS

BACKENDS = ("aws", "azure", "gcp")


def _exported(make: Callable, params: dict | None = None, **config: Any) -> tuple[KeboolaSimulator, Any, str]:
    # Signed URLs that outlive a slow machine: only the storage credentials expire in these tests.
    sim, provider = make(polls_to_complete=1, **{"download_ttl_seconds": 3600, **config})
    job_id = provider.start(params or USERS, "k").provider_job_id
    assert _finish(provider, job_id).state == "COMPLETED"
    return sim, provider, job_id


def _members(data: bytes) -> list[bytes]:
    """Each gzip member of a file, decompressed on its own."""
    members = []
    while data:
        reader = zlib.decompressobj(wbits=31)
        members.append(reader.decompress(data))
        data = reader.unused_data
    return members


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sliced", [True, False], ids=["sliced", "unsliced"])
def test_export_file_on_every_backend_is_one_gzip_with_the_header(make: Callable, backend: str, sliced: bool) -> None:
    sim, provider, job_id = _exported(make, backend=backend, sliced=sliced)
    result = provider.result(job_id)
    assert (result.name, result.content_type) == (f"{DEMO_TABLE}.csv.gz", "application/gzip")
    data = b"".join(result.chunks())
    members = _members(data)
    # The header is a gzip member of its own, quoted as kbcstorage and the PHP TableExporter write it;
    # Keboola's slices follow, each its own member (three for the demo table), headerless.
    assert members[0] == b'"id","name","email"\n'
    assert len(members) == (1 + 3 if sliced else 2)
    rows = list(csv.reader(io.StringIO(gzip.decompress(data).decode())))
    assert rows[0] == ["id", "name", "email"] and len(rows) == 51
    assert [row[0] for row in rows[1:]] == [str(i) for i in range(1, 51)]  # every row once, in order
    assert rows[7][1] == 'Frances "Hopper", Jr.'  # RFC 4180 quoting survives the slicing
    assert sim.stats["refused"] == 0 and sim.stats["missing"] == 0


def test_file_detail_is_asked_with_federation_credentials(make: Callable) -> None:
    class Recording(urllib3.PoolManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.urls: list[str] = []

        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            self.urls.append(
                url + ("?" + "&".join(f"{k}={v}" for k, v in kwargs["fields"].items()) if kwargs.get("fields") else "")
            )
            return super().request(method, url, *args, **kwargs)

    sim, _, job_id = _exported(make, backend="gcp")
    pool = Recording(retries=False)
    b"".join(KeboolaStorageProvider(sim.base_url, "tok", pool=pool).result(job_id).chunks())
    details = [url for url in pool.urls if "/v2/storage/files/" in url]
    assert details and all(url.endswith("federationToken=1") for url in details)


@pytest.mark.parametrize("backend", BACKENDS)
def test_plain_csv_is_detected_from_the_bytes(make: Callable, backend: str) -> None:
    """A storage job someone else started with gzip=0: the result is text, named and typed as such."""
    sim, provider = make(polls_to_complete=1, backend=backend)
    http = urllib3.PoolManager(retries=False)
    answer = http.request(
        "POST",
        f"{sim.base_url}/v2/storage/tables/{DEMO_TABLE}/export-async",
        fields={"gzip": "0", "columns": "email,id"},
        encode_multipart=False,
        headers={"X-StorageApi-Token": "elsewhere"},
    )
    job_id = str(answer.json()["id"])
    assert _finish(provider, job_id).state == "COMPLETED"
    result = provider.result(job_id)
    assert (result.name, result.content_type) == (f"{DEMO_TABLE}.csv", "text/csv")
    text = b"".join(result.chunks()).decode()
    # The header: the columns that export asked for (its operationParams), not the table's.
    assert text.startswith('"email","id"\n"ada.dijkstra1@example.com","1"\n') and len(text.splitlines()) == 51


@pytest.mark.parametrize(
    ("params", "header"),
    [
        ({"columns": ["email", "id"]}, '"email","id"'),
        ({"columns": "name,id"}, '"name","id"'),
        ({}, '"id","name","email"'),  # the table detail's columns
    ],
)
def test_header_is_the_requested_columns_or_the_tables(make: Callable, params: dict, header: str) -> None:
    sim, _ = make(polls_to_complete=1, backend="azure")
    provider = KeboolaStorageProvider(sim.base_url, "tok", columns=params.get("columns"))
    job_id = provider.start({**USERS, **params}, "k").provider_job_id
    _finish(provider, job_id)
    lines = gzip.decompress(b"".join(provider.result(job_id).chunks())).decode().splitlines()
    assert lines[0] == header and len(lines) == 51


@pytest.mark.parametrize("backend", BACKENDS)
def test_credentials_expiring_mid_way_are_renewed_and_the_download_goes_on(make: Callable, backend: str) -> None:
    # Each set of credentials opens two objects, then storage refuses it as expired: the first bytes and
    # slice 1 use the first set, slice 2 is refused, a fresh file detail brings new credentials...
    sim, provider, job_id = _exported(make, backend=backend, credentials_uses=2)
    result = provider.result(job_id)
    data = b"".join(result.chunks())
    rows = list(csv.reader(io.StringIO(gzip.decompress(data).decode())))
    assert [row[0] for row in rows[1:]] == [str(i) for i in range(1, 51)]  # nothing twice, nothing lost
    stats = sim.stats
    assert stats["refused"] >= 1 and stats["file_gets"] == 1 + stats["refused"]


def test_credentials_expiring_by_the_clock_are_renewed(make: Callable) -> None:
    now = [1_800_000_000.0]
    sim, provider, job_id = _exported(make, backend="aws", credentials_ttl_seconds=60, clock=lambda: now[0])
    result = provider.result(job_id)
    stream = result.chunks()
    assert next(stream) == gzip.compress(b'"id","name","email"\n', mtime=0)
    first = next(stream)  # slice 1, with the first credentials
    now[0] += 61  # a long download: the credentials expire before slice 2
    rest = b"".join(stream)
    assert len(gzip.decompress(first + rest).splitlines()) == 50
    assert sim.stats["refused"] == 1 and sim.stats["file_gets"] == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_credentials_refused_again_after_a_refresh_end_the_download(make: Callable, backend: str) -> None:
    sim, provider, job_id = _exported(make, backend=backend, credentials_ttl_seconds=0)
    with pytest.raises(ProviderAuthError) as err:
        provider.result(job_id)
    assert err.value.code == "credentials_refused"
    assert sim.stats["file_gets"] == 3  # the first credentials and two fresh ones, all refused


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_missing_slice_is_its_own_failure(make: Callable, backend: str) -> None:
    sim, provider, job_id = _exported(make, backend=backend)
    (file,) = list(sim._files)  # the one exported file
    sim.remove_object(file, 2)
    chunks = provider.result(job_id).chunks()
    with pytest.raises(ProviderRejectedError) as err:
        b"".join(chunks)
    assert err.value.code == "slice_missing" and "slice 3 of 3" in err.value.message
    assert sim.stats["missing"] == 1


def test_a_missing_unsliced_file_is_its_own_failure(make: Callable) -> None:
    sim, provider, job_id = _exported(make, backend="aws", sliced=False)
    (file,) = list(sim._files)
    sim.remove_object(file, 0)
    with pytest.raises(ProviderRejectedError) as err:
        provider.result(job_id)
    assert err.value.code == "file_missing"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "manifest",
    [b"<html>not json", b'{"files": []}', b'{"entries": [{"path": "x"}]}', b'{"entries": [{"url": "ftp://x/y"}]}'],
)
def test_a_malformed_manifest_is_its_own_failure(make: Callable, backend: str, manifest: bytes) -> None:
    sim, provider, job_id = _exported(make, backend=backend)
    (file,) = list(sim._files)
    sim.replace_manifest(file, manifest)
    with pytest.raises(ProviderRejectedError) as err:
        provider.result(job_id)
    assert err.value.code == "manifest_malformed"


def test_an_empty_export_is_the_header_alone(make: Callable) -> None:
    _, provider, job_id = _exported(make, {**USERS, "limit": 0}, backend="gcp")
    data = b"".join(provider.result(job_id).chunks())
    assert gzip.decompress(data) == b'"id","name","email"\n'


def test_big_table_streams_in_many_slices_with_an_exact_row_count(make: Callable) -> None:
    sim, provider = make(polls_to_complete=1, slice_rows=4_000)
    sim.add_table("in.c-main.big", ["id", "value"], [[i, f"v{i}"] for i in range(20_000)])
    job_id = provider.start({"tableId": "in.c-main.big"}, "k").provider_job_id
    _finish(provider, job_id)
    result = provider.result(job_id)
    (file,) = list(sim._files)
    assert len(sim.file_objects(file)) == 5
    largest = 0
    lines = 0
    reader = zlib.decompressobj(wbits=47)
    for chunk in result.chunks():
        largest = max(largest, len(chunk))
        lines += reader.decompress(chunk).count(b"\n")
        while reader.eof and reader.unused_data:
            rest, reader = reader.unused_data, zlib.decompressobj(wbits=47)
            lines += reader.decompress(rest).count(b"\n")
    assert lines == 20_001 and largest <= 256 * 1024  # streamed in bounded chunks
