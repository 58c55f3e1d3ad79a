"""Streaming S3 writes: NDJSON out in bounded memory, multipart once an object outgrows one part."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from tracker import aws
from tracker.observability import logger

PART_BYTES = 8 * 1024 * 1024  # S3 minimum is 5 MiB for every part but the last
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


class ObjectStore(Protocol):
    """The S3 client calls the streaming code makes (a boto3 S3 client in AWS; in-memory in unit tests)."""

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]: ...

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str) -> Any: ...

    def create_multipart_upload(self, *, Bucket: str, Key: str, ContentType: str) -> dict[str, Any]: ...

    def upload_part(self, *, Bucket: str, Key: str, UploadId: str, PartNumber: int, Body: bytes) -> dict[str, Any]: ...

    def complete_multipart_upload(
        self, *, Bucket: str, Key: str, UploadId: str, MultipartUpload: dict[str, Any]
    ) -> Any: ...

    def abort_multipart_upload(self, *, Bucket: str, Key: str, UploadId: str) -> Any: ...


class S3StreamWriter:
    """Buffers up to PART_BYTES; small objects become one PutObject, large ones a multipart upload.

    Aborts the multipart upload if the writer is left by an exception, so no orphaned parts linger.
    """

    def __init__(
        self, bucket: str, key: str, *, content_type: str = "application/x-ndjson", s3: ObjectStore | None = None
    ) -> None:
        self.bucket, self.key = bucket, key
        self.bytes_written = 0
        self.lines = 0
        self._s3 = s3 or aws.client("s3")
        self._content_type = content_type
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def write(self, data: bytes) -> None:
        self._buffer += data
        self.bytes_written += len(data)
        if len(self._buffer) >= PART_BYTES:
            self._flush_part()

    def write_record(self, record: Any) -> None:
        self.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode() + b"\n")
        self.lines += 1

    def write_records(self, records: Iterable[Any]) -> None:
        """A page at a time: one encode call and one buffer append for the whole page."""
        encode = _ENCODER.encode
        lines = [encode(record) for record in records]
        if lines:
            self.write(("\n".join(lines) + "\n").encode())
            self.lines += len(lines)

    def close(self) -> None:
        if self._upload_id is None:
            self._s3.put_object(
                Bucket=self.bucket, Key=self.key, Body=bytes(self._buffer), ContentType=self._content_type
            )
        else:
            if self._buffer:
                self._flush_part()
            self._s3.complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
            )
        self._buffer = bytearray()

    def abort(self) -> None:
        """Never raises: it runs while another error is being handled, which the ASL retries and
        catches by name. A refused or failed abort is logged; the results bucket's
        AbortIncompleteMultipartUpload lifecycle rule removes the parts it leaves."""
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is None:
            return
        try:
            self._s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload_id)
        except Exception:
            logger.warning(
                "multipart upload not aborted; the lifecycle rule removes its parts",
                extra={"bucket": self.bucket, "key": self.key},
                exc_info=True,
            )

    def _flush_part(self) -> None:
        if self._upload_id is None:
            self._upload_id = self._s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self._content_type
            )["UploadId"]
        number = len(self._parts) + 1
        etag = self._s3.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=bytes(self._buffer)
        )["ETag"]
        self._parts.append({"PartNumber": number, "ETag": etag})
        self._buffer = bytearray()

    def __enter__(self) -> S3StreamWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def iter_object_chunks(bucket: str, key: str, *, chunk_bytes: int = 1024 * 1024, s3: Any = None) -> Iterator[bytes]:
    body = (s3 or aws.client("s3")).get_object(Bucket=bucket, Key=key)["Body"]
    try:
        yield from body.iter_chunks(chunk_bytes)
    finally:
        body.close()


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket or not key:
        raise ValueError(f"s3 URI needs a bucket and a key: {uri!r}")
    return bucket, key


def iter_object_lines(
    bucket: str, key: str, *, s3: ObjectStore | None = None, chunk_bytes: int = 1024 * 1024
) -> Iterator[bytes]:
    """The object's non-empty lines (without their newline), read in chunks: memory holds one chunk and one
    line, whatever the object's size."""
    body = (s3 or aws.client("s3")).get_object(Bucket=bucket, Key=key)["Body"]
    tail = b""
    try:
        while chunk := body.read(chunk_bytes):
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            yield from (line for line in lines if line.strip())
        if tail.strip():
            yield tail
    finally:
        body.close()
