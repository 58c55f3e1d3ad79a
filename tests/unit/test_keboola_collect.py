"""collect of a Keboola table export (tracker.batch_tasks with in-memory records and objects, the real
provider against the simulator): the file is streamed up in parts while its slices come down, and a
download that fails mid-way aborts the upload, leaving nothing under results/."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import pytest
from tracker import layout, s3io
from tracker.errors import ProviderRejectedError
from tracker.messages import Phase
from tracker.providers.keboola.storage import KeboolaStorageProvider

from jobtracker.simulators.keboola import DEMO_TABLE, KeboolaSimulator, KeboolaSimulatorConfig
from tests.unit.test_batch_tasks import JOB, RESULTS, Harness, harness


@pytest.fixture
def keboola(monkeypatch: pytest.MonkeyPatch) -> Iterator[KeboolaSimulator]:
    with KeboolaSimulator(KeboolaSimulatorConfig(polls_to_complete=1, backend="gcp")) as sim:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", sim.base_url)
        monkeypatch.setattr(s3io, "PART_BYTES", 256)  # a multipart upload from the first slice on
        yield sim


def _exported(keboola: KeboolaSimulator) -> tuple[Harness, object]:
    provider = KeboolaStorageProvider(keboola.base_url, "tok")
    h = harness(provider)
    h.records.jobs[JOB]["operationParams"] = {"tableId": DEMO_TABLE}
    task = h.steps.submit(h.task("keboola.table_export"))
    task = h.steps.check(task)
    assert task.phase == Phase.DONE
    return h, task


def test_slices_stream_into_one_multipart_object(keboola: KeboolaSimulator) -> None:
    h, task = _exported(keboola)
    assert h.steps.collect(task).phase == Phase.COLLECTED
    key = layout.result_key(JOB, f"{DEMO_TABLE}.csv.gz")
    lines = gzip.decompress(h.objects.objects[(RESULTS, key)]).decode().splitlines()
    assert lines[0] == '"id","name","email"' and len(lines) == 51
    assert h.objects.content_types[(RESULTS, key)] == "application/gzip" and h.objects.uploads == {}
    assert h.record()["outBytes"] == len(h.objects.objects[(RESULTS, key)])


def test_a_missing_slice_aborts_the_upload_and_leaves_no_result(keboola: KeboolaSimulator) -> None:
    keboola.config.drop_slices = (2,)
    h, task = _exported(keboola)
    started: list[str] = []
    create = h.objects.create_multipart_upload

    def recording_create(**kwargs: str) -> dict[str, str]:
        answer = create(**kwargs)
        started.append(answer["UploadId"])
        return answer

    h.objects.create_multipart_upload = recording_create  # type: ignore[method-assign]
    with pytest.raises(ProviderRejectedError) as err:
        h.steps.collect(task)
    assert err.value.code == "slice_missing"
    assert started and h.objects.uploads == {}  # an upload had begun, and was aborted
    assert not [key for _, key in h.objects.objects if key.startswith("results/")]


def test_an_abort_that_fails_does_not_hide_why_the_download_failed(keboola: KeboolaSimulator) -> None:
    keboola.config.drop_slices = (2,)
    h, task = _exported(keboola)

    def refused(**_: str) -> None:
        raise PermissionError("AccessDenied: s3:AbortMultipartUpload")

    h.objects.abort_multipart_upload = refused  # type: ignore[method-assign]
    with pytest.raises(ProviderRejectedError) as err:
        h.steps.collect(task)
    assert err.value.code == "slice_missing"
