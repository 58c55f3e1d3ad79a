"""FullStory batch-import limits and the tracker's own input guards: the one place for these facts.

Provider limits come from FullStory's v2 Swagger specs (``specs/fullstory/users.swagger.json``,
``events.swagger.json``) and developer.fullstory.com; the tracker's guards (line size, batch body
size, decompressed size) are chosen here and can be overridden by configuration where noted.
Standard library only: this module ships in the Lambda layer.
"""

from __future__ import annotations

import re
from typing import Final

# --- FullStory (documented) -------------------------------------------------------------------

#: At most this many entries in one ``POST /v2/{users|events}/batch`` ``requests`` array.
MAX_REQUESTS_PER_BATCH: Final = 50_000

#: ``properties`` may hold up to 500 unique properties. The tracker counts every key at every
#: nesting level (``{"a": {"b": 1}}`` is 2), which never lets through an object FullStory refuses.
MAX_PROPERTIES: Final = 500

#: A property value's size limit, measured on its compact UTF-8 JSON encoding. For a nested
#: object the limit applies to each leaf value (arrays count as one value).
MAX_PROPERTY_VALUE_BYTES: Final = 8192

#: A property name, including the dotted path of its parents for nested objects, is at most this
#: many characters.
MAX_PROPERTY_NAME_CHARS: Final = 512

#: Property names: ASCII letters, digits and ``_``, starting with a letter (nested keys too).
PROPERTY_NAME_PATTERN: Final = r"[A-Za-z][A-Za-z0-9_]*"
PROPERTY_NAME_RE: Final = re.compile(PROPERTY_NAME_PATTERN)  # use .fullmatch()

#: String length limits (characters, as JSON Schema ``maxLength`` counts them).
MAX_UID_CHARS: Final = 256
MAX_DISPLAY_NAME_CHARS: Final = 256
MAX_EMAIL_CHARS: Final = 128

# --- Tracker guards ---------------------------------------------------------------------------

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
