"""S3StreamWriter against botocore's Stubber (the S3 answers are scripted; nothing is sent).

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
