"""The tracker's own input guards and batch sizes: the one place for these facts.

The guards (line size, batch body size, decompressed size) are chosen here and can be overridden by
configuration where noted. A provider's request rules (FullStory's property and field limits) live in
its package (tracker/providers/fullstory/limits.py). Standard library only: this module ships in the
Lambda layer.
"""

from __future__ import annotations

from typing import Final

#: At most this many entries in one ``POST /v2/{users|events}/batch`` ``requests`` array (FullStory's
#: documented limit), the default of ``MAX_BATCH_REQUESTS``: the most rows the tracker puts in one batch.
MAX_REQUESTS_PER_BATCH: Final = 50_000

#: Default cap on one batch request body (``{"requests":[...]}``) in bytes; configurable
#: (``MAX_BATCH_BYTES``). FullStory documents no body limit; 8 MiB keeps each submit well inside
#: Lambda memory and HTTP timeouts.
DEFAULT_MAX_BATCH_BYTES: Final = 8 * 1024 * 1024

#: One input line (NDJSON/CSV physical line) or one JSON-array element, and one re-encoded
#: request, may be at most this many bytes. Longer ones are rejected without being loaded.
MAX_LINE_BYTES: Final = 1024 * 1024

#: Default cap on the decompressed size of a gzip input (guards against gzip bombs); configurable.
DEFAULT_MAX_UNCOMPRESSED_BYTES: Final = 10 * 1024**3

#: ``b'{"requests":['`` + ``b']}'``: the fixed bytes around the joined rows of a batch body.
BATCH_ENVELOPE_BYTES: Final = len(b'{"requests":[') + len(b"]}")

#: A rejected row keeps at most this much of its raw text as ``source``.
MAX_REJECT_SOURCE_CHARS: Final = 1024
