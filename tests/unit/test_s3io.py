"""S3StreamWriter on the in-memory object store: parts in order while the next fills, errors surface, aborts."""

from __future__ import annotations

import pytest
from tracker import s3io
from tracker.s3io import S3StreamWriter

from tests.unit.fakes import InMemoryObjects


@pytest.fixture(autouse=True)
def small_parts(monkeypatch):
    monkeypatch.setattr(s3io, "PART_BYTES", 10)


def test_parts_are_uploaded_in_order_and_assembled_on_close():
    objects = InMemoryObjects()
    with S3StreamWriter("b", "k", s3=objects) as writer:
        for n in range(25):
            writer.write_lines(f"{n:03d}\n".encode(), 1)
    assert objects.objects[("b", "k")] == b"".join(f"{n:03d}\n".encode() for n in range(25))
    assert writer.lines == 25 and objects.uploads == {}
    assert objects.log.calls["s3.UploadPart"] == 9  # eight parts of three 4-byte lines, then the last line


def test_a_small_object_is_one_put():
    objects = InMemoryObjects()
    with S3StreamWriter("b", "k", s3=objects) as writer:
        writer.write_lines(b'{"a":1}\n', 1)
    assert objects.objects[("b", "k")] == b'{"a":1}\n' and objects.log.calls["s3.UploadPart"] == 0


def test_a_failed_part_is_raised_and_the_upload_aborted():
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
