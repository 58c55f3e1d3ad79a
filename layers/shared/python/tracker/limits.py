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

#: The largest input object intake takes in; a bigger one is refused before it is read (``file_too_large``,
#: and ``POST /uploads`` refuses to hand out URLs for it). Intake reads the slower format, CSV, at about
#: 6.2 MB per CPU-second through its whole path (read, validate, split, write batches and rejects; measured
#: with jobtracker.bench's ingest data on a busy 2-vCPU machine, so a floor); Lambda gives the intake
#: function's 1,024 MB 0.58 of a vCPU (one per 1,769 MB), so its 900-second timeout reads about 3.2 GB, and
#: 2.6 GB with a fifth of the time kept for everything else. tests/contract/test_aws_limits.py recomputes the
#: bound from template.yaml's Timeout and MemorySize.
MAX_INTAKE_OBJECT_BYTES: Final = 2 * 1024**3
INTAKE_CSV_BYTES_PER_CPU_SECOND: Final = 6_200_000

#: AWS limits the API lives within. API Gateway (REST) accepts request bodies up to 10 MB ("Amazon API
#: Gateway quotas": payload size); Lambda takes a synchronous invocation of at most 6 MB, and the whole
#: proxy event counts, not the body alone (Lambda answers "Request must be smaller than 6291456 bytes for
#: the InvokeFunction operation"; API Gateway then answers 500 "Internal server error", Lambda Developer
#: Guide, "Handling Lambda errors with an API Gateway API").
API_GATEWAY_PAYLOAD_BYTES: Final = 10 * 1024 * 1024
LAMBDA_SYNC_PAYLOAD_BYTES: Final = 6 * 1024 * 1024

#: The largest body of ``POST /jobs`` the API takes (inline ``requests``); bigger ones answer 413
#: ``inline_too_large`` (upload through ``POST /uploads`` instead). The event carries the body as a JSON
#: string, so each quote and backslash in it is escaped once more: at worst the body doubles. Twice the cap
#: plus the rest of the event (headers twice, as headers and multiValueHeaders, at most 10 KB each by API
#: Gateway's quota, the request context, the path) stays under the 6 MB invoke limit with about 150 KB to
#: spare; tests/contract/test_aws_limits.py builds that worst event.
MAX_INLINE_BODY_BYTES: Final = 3_000_000

#: A job has at most this many batches (``too_many_batches`` beyond it: raise MaxBatchRequests or split the
#: file). The distributed Map collects what each child ends with, an empty object (3 bytes in the array),
#: and a state's result must stay within Step Functions' 256 KiB payload quota: 50,000 children make about
#: 150 KB.
MAX_BATCHES_PER_JOB: Final = 50_000
