"""Keboola table exports through the whole offline stack (the real ASL, handlers and S3 in moto) for each
file storage backend: sliced files land as one result with their header, credentials that expire mid-way
are renewed, and a missing slice, a malformed manifest or refused credentials end the job FAILED with
their own code, the partial upload aborted and no result file under results/."""

from __future__ import annotations

import gzip
import json

import pytest

from jobtracker.local.session import OfflineSession
from jobtracker.simulators.keboola import DEMO_TABLE, KeboolaSimulatorConfig
from tests.integration.test_job_types import HTTP, check_views, get, run, stored

EXPORT = {"type": "keboola.table_export", "params": {"tableId": DEMO_TABLE}}


def session(backend: str, **config: object) -> OfflineSession:
    return OfflineSession(
        parameters={"PollMinSeconds": 0, "PollMaxSeconds": 0},
        keboola_config=KeboolaSimulatorConfig(polls_to_complete=1, backend=backend, **config),  # type: ignore[arg-type]
        api_port=0,
        allow_unsigned=True,
        retry_time_scale=0.0,
    )


def result_files(offline: OfflineSession, job_id: str) -> list[str]:
    s3 = offline.stack.client("s3")
    listed = s3.list_objects_v2(Bucket=offline.stack.results_bucket, Prefix=f"results/{job_id}/")
    return [item["Key"].rsplit("/", 1)[1] for item in listed.get("Contents", [])]


def assert_failed_cleanly(offline: OfflineSession, job: dict, code: str) -> None:
    assert job["state"] == "FAILED" and job["error"]["code"] == code, job.get("error")
    assert not [name for name in result_files(offline, job["id"]) if ".csv" in name]  # nothing half-written
    uploads = offline.stack.client("s3").list_multipart_uploads(Bucket=offline.stack.results_bucket)
    assert not uploads.get("Uploads")  # the partial upload was aborted


@pytest.mark.parametrize("backend", ["azure", "gcp"])
def test_sliced_export_survives_expiry_and_fails_cleanly_on_each_broken_file(backend: str) -> None:
    with session(backend, credentials_uses=2) as offline:
        job = run(offline, {**EXPORT, "params": {**EXPORT["params"], "columns": ["email", "id"]}})
        assert job["state"] == "COMPLETED", job.get("error")
        lines = gzip.decompress(stored(offline, job["resultKeys"]["download"])).decode().splitlines()
        assert lines[0] == '"email","id"' and len(lines) == 51 and len(set(lines)) == 51
        assert offline.keboola.stats["refused"] >= 1  # the credentials expired mid-way and were renewed
        check_views(offline, job["id"])

        offline.keboola.config.credentials_uses = None
        offline.keboola.config.drop_slices = (1,)
        assert_failed_cleanly(offline, run(offline, EXPORT), "slice_missing")

        offline.keboola.config.drop_slices = ()
        offline.keboola.config.manifest_body = b'{"entries": "s3://nope"}'
        assert_failed_cleanly(offline, run(offline, EXPORT), "manifest_malformed")

        offline.keboola.config.manifest_body = None
        offline.keboola.config.credentials_ttl_seconds = 0
        failed = run(offline, EXPORT)
        assert_failed_cleanly(offline, failed, "credentials_refused")
        assert get(offline, f"/jobs/{failed['id']}")["error"]["code"] == "credentials_refused"


def test_sliced_export_on_s3_lands_with_its_header_and_a_tracked_one_too() -> None:
    with session("aws") as offline:
        job = run(offline, EXPORT)
        assert job["state"] == "COMPLETED", job.get("error")
        assert job["resultKeys"]["download"].endswith(f"{DEMO_TABLE}.csv.gz")
        lines = gzip.decompress(stored(offline, job["resultKeys"]["download"])).decode().splitlines()
        assert lines[0] == '"id","name","email"' and [line.split(",")[0] for line in lines[1:]] == [
            f'"{i}"' for i in range(1, 51)
        ]
        # A storage job someone else started, without gzip and with its own columns: followed and
        # downloaded the same way, its header from the job's own columns, its name from its bytes.
        started = HTTP.request(
            "POST",
            offline.keboola.base_url + f"/v2/storage/tables/{DEMO_TABLE}/export-async",
            body=b"gzip=0&columns=name",
            headers={"X-StorageApi-Token": "t", "Content-Type": "application/x-www-form-urlencoded"},
        )
        kbc = json.loads(started.data)
        tracked = run(offline, {"type": "track", "provider": "keboola.storage", "providerJobId": str(kbc["id"])})
        assert tracked["state"] == "COMPLETED" and tracked["resultKeys"]["download"].endswith(f"{DEMO_TABLE}.csv")
        text = stored(offline, tracked["resultKeys"]["download"]).decode()
        assert text.startswith('"name"\n"Ada Dijkstra"\n') and len(text.splitlines()) == 51

        offline.keboola.config.manifest_body = b"<html>Access Denied</html>"
        assert_failed_cleanly(offline, run(offline, EXPORT), "manifest_malformed")
