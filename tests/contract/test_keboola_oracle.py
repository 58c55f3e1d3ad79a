"""Keboola's official Python client as the oracle of a table export: ``kbcstorage`` (pinned dev dependency)
exports a table from the simulator with ``Tables.export_to_file`` -- its own S3 (boto3), Azure Blob and
GCS clients, pointed at the simulator's file storage the standard ways (``AWS_ENDPOINT_URL_S3``,
``STORAGE_EMULATOR_HOST``, the SAS connection string) -- and the tracker's Keboola provider exports the
same table: both hold the same header and the same rows, byte for byte."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import pytest
from tracker.providers.base import OperationStatus
from tracker.providers.keboola.storage import KeboolaStorageProvider

from jobtracker.simulators.keboola import DEMO_TABLE, KeboolaSimulator, KeboolaSimulatorConfig

kbcstorage_tables = pytest.importorskip("kbcstorage.tables")


@pytest.fixture
def keboola(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[KeboolaSimulator]:
    backend, sliced = request.param
    config = KeboolaSimulatorConfig(polls_to_complete=1, backend=backend, sliced=sliced, slice_rows=7)
    with KeboolaSimulator(config, s3_port=0) as sim:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", sim.s3_base_url)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", sim.base_url)
        monkeypatch.chdir(tmp_path)  # kbcstorage writes each slice into the working directory first
        yield sim


def tracker_export(sim: KeboolaSimulator, columns: list[str] | None) -> bytes:
    provider = KeboolaStorageProvider(sim.base_url, "tracker-token", columns=columns)
    job_id = provider.start({"tableId": DEMO_TABLE, **({"columns": columns} if columns else {})}, "k").provider_job_id
    status = provider.status(job_id)
    assert isinstance(status, OperationStatus) and status.state == "COMPLETED"
    return gzip.decompress(b"".join(provider.result(job_id).chunks()))


@pytest.mark.parametrize(
    "keboola",
    [("aws", True), ("azure", True), ("gcp", True), ("aws", False), ("azure", False), ("gcp", False)],
    ids=["aws-sliced", "azure-sliced", "gcp-sliced", "aws-unsliced", "azure-unsliced", "gcp-unsliced"],
    indirect=True,
)
@pytest.mark.parametrize("columns", [None, ["email", "id"]], ids=["all-columns", "some-columns"])
def test_kbcstorage_export_to_file_and_the_tracker_hold_the_same_file(
    keboola: KeboolaSimulator, tmp_path: Path, columns: list[str] | None
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    path = kbcstorage_tables.Tables(keboola.base_url, "oracle-token").export_to_file(
        DEMO_TABLE, str(out), columns=columns
    )
    oracle = Path(path).read_bytes()
    mine = tracker_export(keboola, columns)
    assert mine == oracle
    header, *rows = mine.decode().splitlines()
    assert header == ",".join(f'"{c}"' for c in (columns or ["id", "name", "email"]))
    assert len(rows) == 50 == len(oracle.decode().splitlines()) - 1
    if keboola.config.sliced:
        assert keboola.stats["object_gets"] >= 2 * 8  # both read the 8 slices (7 rows each)
