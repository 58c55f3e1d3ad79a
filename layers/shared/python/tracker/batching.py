"""Split encoded requests into FullStory batch bodies bounded by request count and body size.

Pure domain code (standard library only). Rows arrive already encoded once (``ingest.Row.encoded``)
and are joined byte-wise, so a body is never re-serialized.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracker.limits import (
    BATCH_ENVELOPE_BYTES,
    DEFAULT_MAX_BATCH_BYTES,
    MAX_LINE_BYTES,
    MAX_REQUESTS_PER_BATCH,
)

__all__ = ["BatchBody", "BatchSplitter"]

_PREFIX = b'{"requests":['
_SUFFIX = b"]}"


@dataclass(frozen=True, slots=True)
class BatchBody:
    """One finished batch: ``body`` is ``{"requests":[...]}`` holding ``rows`` requests."""

    index: int  # 1-based, in the order batches are produced
    rows: int
    body: bytes


class BatchSplitter:
    """Accumulate encoded requests; emit a batch as soon as the next row would overflow a limit.

    ``add`` returns the finished batch when adding the row would exceed ``max_requests`` or make the
    body longer than ``max_bytes``; that row then starts the next batch. ``finish`` returns the last,
    partial batch (or None when nothing is pending). Batch indexes start at 1.
    """

    __slots__ = ("_index", "_max_bytes", "_max_requests", "_parts", "_size")

    def __init__(self, max_requests: int = MAX_REQUESTS_PER_BATCH, max_bytes: int = DEFAULT_MAX_BATCH_BYTES) -> None:
        if not 1 <= max_requests <= MAX_REQUESTS_PER_BATCH:
            raise ValueError(f"max_requests must be between 1 and {MAX_REQUESTS_PER_BATCH}, got {max_requests}")
        if max_bytes < MAX_LINE_BYTES + BATCH_ENVELOPE_BYTES:
            raise ValueError(
                f"max_bytes must be at least {MAX_LINE_BYTES + BATCH_ENVELOPE_BYTES} "
                f"(one request of MAX_LINE_BYTES plus the envelope), got {max_bytes}"
            )
        self._max_requests = max_requests
        self._max_bytes = max_bytes
        self._index = 0
        self._parts: list[bytes] = []
        # Body size if the pending rows were emitted now, counting one comma per row and
        # subtracting the one the first row does not need: envelope - 1 + sum(len + 1).
        self._size = BATCH_ENVELOPE_BYTES - 1

    def add(self, row_encoded: bytes) -> BatchBody | None:
        """Queue one encoded request; return the batch it closed, if any."""
        size = len(row_encoded) + 1
        if size + BATCH_ENVELOPE_BYTES - 1 > self._max_bytes:
            raise ValueError(f"a request of {len(row_encoded)} bytes cannot fit in a {self._max_bytes}-byte batch")
        done = None
        if self._parts and (len(self._parts) >= self._max_requests or self._size + size > self._max_bytes):
            done = self._emit()
        self._parts.append(row_encoded)
        self._size += size
        return done

    def finish(self) -> BatchBody | None:
        """Return the pending rows as the last batch, or None when there are none."""
        return self._emit() if self._parts else None

    @property
    def batches_emitted(self) -> int:
        """How many batches ``add``/``finish`` have returned so far."""
        return self._index

    def _emit(self) -> BatchBody:
        parts = self._parts
        self._index += 1
        body = b"".join((_PREFIX, b",".join(parts), _SUFFIX))
        batch = BatchBody(index=self._index, rows=len(parts), body=body)
        self._parts = []
        self._size = BATCH_ENVELOPE_BYTES - 1
        return batch
