"""Split encoded requests into FullStory batch bodies bounded by request count and body size.

Pure domain code (standard library only). Rows arrive already encoded once (``ingest.Row.encoded``)
and are joined byte-wise, so a body is never re-serialized.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tracker.limits import (
    BATCH_ENVELOPE_BYTES,
    DEFAULT_MAX_BATCH_BYTES,
    MAX_LINE_BYTES,
    MAX_REQUESTS_PER_BATCH,
)

__all__ = ["BatchBody", "BatchSplitter", "UpsertOrder", "expand_runs", "iter_requests", "line_runs"]

_PREFIX = b'{"requests":['
_SUFFIX = b"]}"
_DECODER = json.JSONDecoder()


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


def iter_requests(body: bytes) -> Iterator[dict]:
    """The requests of a batch body written by :class:`BatchSplitter`, in order, decoded one at a time (the
    whole body is never turned into one big list of objects)."""
    text = body.decode("utf-8")
    if not (text.startswith(_PREFIX.decode()) and text.endswith(_SUFFIX.decode())):
        raise ValueError("not a batch body of BatchSplitter")
    decode = _DECODER.raw_decode
    position, end = len(_PREFIX), len(text) - len(_SUFFIX)
    while position < end:
        request, position = decode(text, position)
        yield request
        if position < end and text[position] == ",":
            position += 1


def line_runs(lines: Iterable[int]) -> list[list[int]]:
    """Source line numbers as runs ``[first, count]``: a batch of consecutive lines is one pair."""
    runs: list[list[int]] = []
    for line in lines:
        if runs and runs[-1][0] + runs[-1][1] == line:
            runs[-1][1] += 1
        else:
            runs.append([line, 1])
    return runs


def expand_runs(runs: Iterable[Iterable[int]]) -> list[int]:
    """The line numbers :func:`line_runs` compressed."""
    return [line for first, count in runs for line in range(first, first + count)]


UPSERT_ORDER_MAX_IDS = 1_000_000  # identities remembered per file (about 100 MB of intake's memory at most)


class UpsertOrder:
    """Which earlier batch each batch must follow so that rows sharing an identity (a users import's ``uid``)
    reach the provider in file order: FullStory's users import is an upsert whose most recent values win, so
    the last row of a uid in the file wins only if no earlier row of it is applied after it.

    Rows of one uid inside one batch keep their file order there. For a batch that repeats a uid of an
    earlier batch, ``close`` answers the latest such batch (0: none), and the batch waits until the provider
    has finished that one. Memory is bounded: past ``max_ids`` distinct identities the file is no longer
    tracked uid by uid and every later batch follows the one before it (in order, one at a time)."""

    __slots__ = ("_after", "_identity", "_last", "_max_ids", "_overflow")

    def __init__(self, identity: str | None, max_ids: int = UPSERT_ORDER_MAX_IDS) -> None:
        self._identity = identity
        self._max_ids = max_ids
        self._last: dict[str, int] = {}  # identity -> the latest batch holding it
        self._after = 0
        self._overflow = False

    def add(self, request: dict, batch_index: int) -> None:
        """A row of the batch now being filled (``batch_index``)."""
        if self._identity is None:
            return
        value = request.get(self._identity)
        if not isinstance(value, str):
            return
        earlier = self._last.get(value)
        if earlier is not None:
            if earlier != batch_index:
                self._after = max(self._after, earlier)
            self._last[value] = batch_index
        elif len(self._last) < self._max_ids:
            self._last[value] = batch_index
        else:
            self._overflow = True

    def close(self, batch_index: int) -> int:
        """The batch ``batch_index`` is complete: the earlier batch it must follow (0: none)."""
        after = max(self._after, batch_index - 1) if self._overflow else self._after
        self._after = 0
        return after
