"""FullStory's documented request limits: the one place for these facts.

From FullStory's v2 Swagger specs (``specs/fullstory/users.swagger.json``, ``events.swagger.json``)
and developer.fullstory.com. Standard library only: this module ships in the Lambda layer.
"""

from __future__ import annotations

import re
from typing import Final

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
