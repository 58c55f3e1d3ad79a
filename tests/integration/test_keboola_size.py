"""A big Keboola table export downloads with flat memory and an exact row count (issue 11, item 6).

The simulator (this process) holds a table of 200,000 rows and exports it as 8 gzip slices on its S3
endpoint. In a child process -- so its memory is the tracker's own -- the tracker's collect path runs:
``KeboolaStorageProvider.result`` into ``S3StreamWriter``, a multipart upload (parts of 1 MiB here, so a
file of about 10 MB has many parts; 8 MiB in the Lambda). The object store there counts the rows of every
part as it arrives and keeps nothing, so the child's peak RSS (VmHWM) is the download's. The same run on
a table ten times smaller is the baseline: flat means the big export needs no more memory than the small
one (plus a small margin) while its file is ten times bigger.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from jobtracker.simulators.keboola import KeboolaSimulator, KeboolaSimulatorConfig

REPO = Path(__file__).resolve().parents[2]
CHILD = r"""
import json, sys, zlib
from tracker.providers.keboola.storage import KeboolaStorageProvider
from tracker import s3io
from tracker.s3io import S3StreamWriter
from jobtracker.bench.child import peak_rss_mb

class CountingStore:
    '''tracker.s3io.ObjectStore that reads each part as it comes (gunzip, count lines) and keeps nothing.'''
    def __init__(self):
        self.lines, self.parts, self.size, self._gz = 0, 0, 0, zlib.decompressobj(wbits=47)
    def _eat(self, data):
        self.size += len(data)
        for start in range(0, len(data), 65536):  # in small pieces: counting must not cost memory itself
            piece = data[start : start + 65536]
            while piece:
                self.lines += self._gz.decompress(piece).count(b"\n")
                piece = self._gz.unused_data if self._gz.eof else b""
                if self._gz.eof:
                    self._gz = zlib.decompressobj(wbits=47)
    def put_object(self, *, Bucket, Key, Body, ContentType): self._eat(Body)
    def create_multipart_upload(self, *, Bucket, Key, ContentType): return {"UploadId": "u"}
    def upload_part(self, *, Bucket, Key, UploadId, PartNumber, Body):
        self.parts += 1; self._eat(Body); return {"ETag": str(PartNumber)}
    def complete_multipart_upload(self, *, Bucket, Key, UploadId, MultipartUpload): pass
    def abort_multipart_upload(self, *, Bucket, Key, UploadId): pass

base_url, job_id = sys.argv[1], sys.argv[2]
s3io.PART_BYTES = 1024 * 1024
result = KeboolaStorageProvider(base_url, "tok").result(job_id)
store = CountingStore()
writer = S3StreamWriter("results", "results/job/" + result.name, content_type=result.content_type, s3=store)
for chunk in result.chunks():
    writer.write(chunk)
writer.close()
print(json.dumps({"lines": store.lines, "parts": store.parts, "bytes": store.size, "peak_rss_mb": peak_rss_mb()}))
"""


def export_in_child(rows: int) -> dict:
    config = KeboolaSimulatorConfig(polls_to_complete=1, slice_rows=25_000, min_slices=8)
    with KeboolaSimulator(config, s3_port=0) as sim:
        sim.add_table("in.c-main.big", ["id", "name", "email", "note"], _rows(rows))
        http_job = _export(sim)
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL_S3": sim.s3_base_url,
            "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "layers/shared/python"), str(REPO)]),
        }
        done = subprocess.run(
            [sys.executable, "-c", CHILD, sim.base_url, http_job],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        measured = json.loads(done.stdout.strip().splitlines()[-1])
        measured["slices"] = len(sim.file_objects(next(iter(sim._files))))
        return measured


def _rows(count: int) -> list[list[str]]:
    """Rows that compress about as real ones do (a hash per row, not one repeated letter)."""
    return [
        [str(i), f"User {i}", f"user{i}@example.com", hashlib.sha1(str(i).encode()).hexdigest()]
        for i in range(1, count + 1)
    ]


def _export(sim: KeboolaSimulator) -> str:
    from tracker.providers.keboola.storage import KeboolaStorageProvider

    provider = KeboolaStorageProvider(sim.base_url, "tok")
    job_id = provider.start({"tableId": "in.c-main.big"}, "k").provider_job_id
    assert provider.status(job_id).state == "COMPLETED"
    return job_id


def test_200k_rows_in_8_slices_export_with_flat_memory_and_an_exact_row_count() -> None:
    small = export_in_child(20_000)
    big = export_in_child(200_000)
    print(f"\nkeboola export: 20,000 rows {small}\nkeboola export: 200,000 rows {big}")
    assert big["slices"] == 8 and big["lines"] == 200_001  # the header and every row, once
    assert small["lines"] == 20_001
    assert big["parts"] >= 6 and big["bytes"] > 8 * small["bytes"]  # a multipart upload, ten times the data
    assert big["peak_rss_mb"] <= small["peak_rss_mb"] + 6, (small, big)  # ... in the same memory
