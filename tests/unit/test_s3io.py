"""S3StreamWriter against botocore's Stubber (the S3 answers are scripted; nothing is sent) and on the in-memory
object store (parts in order while the next fills, errors surface, aborts).

The abort of a multipart upload runs while another error is on its way to the state machine, whose
Retry/Catch match that error by name: a refused abort (AccessDenied, as on AWS when the role lacks
s3:AbortMultipartUpload) must never replace it.
"""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.stub import Stubber
from tracker import s3io
from tracker.errors import ProviderTransientError
from tracker.s3io import S3StreamWriter

from tests.unit.fakes import InMemoryObjects

BUCKET, KEY = "results", "work/job-1/results/imports-00000.ndjson"


@pytest.fixture
def s3() -> Iterator[tuple[object, Stubber]]:
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="unit", aws_secret_access_key="unit")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def _one_part_open(stubber: Stubber) -> None:
    stubber.add_response(
        "create_multipart_upload",
        {"UploadId": "u-1"},
        {"Bucket": BUCKET, "Key": KEY, "ContentType": "application/x-ndjson"},
    )
    stubber.add_response(
        "upload_part",
        {"ETag": '"e1"'},
        {"Bucket": BUCKET, "Key": KEY, "UploadId": "u-1", "PartNumber": 1, "Body": b"x" * 8},
    )


def test_refused_abort_leaves_the_named_error_of_the_with_block(s3, monkeypatch: pytest.MonkeyPatch) -> None:
    client, stubber = s3
    monkeypatch.setattr(s3io, "PART_BYTES", 8)
    _one_part_open(stubber)
    stubber.add_client_error("abort_multipart_upload", "AccessDenied", "not authorized", 403)
    with pytest.raises(ProviderTransientError, match="page 2 failed"), S3StreamWriter(BUCKET, KEY, s3=client) as w:
        w.write(b"x" * 8)
        raise ProviderTransientError("page 2 failed")


def test_refused_abort_called_in_an_except_block_leaves_the_error_being_handled(
    s3, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pattern of BatchTasks.collect: abort() in `except BaseException:` then `raise`.
    client, stubber = s3
    monkeypatch.setattr(s3io, "PART_BYTES", 8)
    _one_part_open(stubber)
    stubber.add_client_error("abort_multipart_upload", "AccessDenied", "not authorized", 403)
    writer = S3StreamWriter(BUCKET, KEY, s3=client)
    with pytest.raises(ProviderTransientError):
        try:
            writer.write(b"x" * 8)
            raise ProviderTransientError("page 2 failed")
        except BaseException:
            writer.abort()
            raise


def test_abort_removes_the_open_upload_once(s3, monkeypatch: pytest.MonkeyPatch) -> None:
    client, stubber = s3
    monkeypatch.setattr(s3io, "PART_BYTES", 8)
    _one_part_open(stubber)
    stubber.add_response("abort_multipart_upload", {}, {"Bucket": BUCKET, "Key": KEY, "UploadId": "u-1"})
    writer = S3StreamWriter(BUCKET, KEY, s3=client)
    writer.write(b"x" * 8)
    writer.abort()
    writer.abort()  # nothing left to abort: no second call (the Stubber would refuse it)


def test_abort_without_an_upload_calls_nothing(s3) -> None:
    client, _ = s3
    writer = S3StreamWriter(BUCKET, KEY, s3=client)
    writer.write(b"small")
    writer.abort()


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3io, "PART_BYTES", 10)


def test_parts_are_uploaded_in_order_and_assembled_on_close(small_parts):
    objects = InMemoryObjects()
    with S3StreamWriter("b", "k", s3=objects) as writer:
        for n in range(25):
            writer.write_lines(f"{n:03d}\n".encode(), 1)
    assert objects.objects[("b", "k")] == b"".join(f"{n:03d}\n".encode() for n in range(25))
    assert writer.lines == 25 and objects.uploads == {}
    assert objects.log.calls["s3.UploadPart"] == 9  # eight parts of three 4-byte lines, then the last line


def test_a_small_object_is_one_put(small_parts):
    objects = InMemoryObjects()
    with S3StreamWriter("b", "k", s3=objects) as writer:
        writer.write_lines(b'{"a":1}\n', 1)
    assert objects.objects[("b", "k")] == b'{"a":1}\n' and objects.log.calls["s3.UploadPart"] == 0


def test_a_failed_part_is_raised_and_the_upload_aborted(small_parts):
    class Failing(InMemoryObjects):
        def upload_part(self, **kwargs):
            if kwargs["PartNumber"] == 2:
                raise RuntimeError("S3 said no")
            return super().upload_part(**kwargs)

    objects = Failing()
    with pytest.raises(RuntimeError, match="S3 said no"), S3StreamWriter("b", "k", s3=objects) as writer:
        for _ in range(10):
            writer.write(b"0123456789")
    assert ("b", "k") not in objects.objects and objects.uploads == {}  # nothing stored, no parts left
