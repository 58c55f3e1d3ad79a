"""FullStory's request rules for batch imports of users and events: what one row must be before it is
sent, so FullStory's documented refusals are caught locally with a line number and a reason.

The readers of tracker.ingest apply these rules (``USERS``, ``EVENTS``; the catalogue hands them to
intake) to every row; they know no provider themselves. The limits are FullStory's documented ones
(tracker/providers/fullstory/limits.py).

Decisions (documented here because other code relies on them):

* Anonymous users: the users batch spec marks no field as required, so a request without ``uid``
  and ``email`` is accepted. A request carrying none of ``uid``, ``display_name``, ``email``,
  ``id``, ``properties`` (e.g. ``{}``) is rejected (``empty_request``): it would only create an
  empty anonymous user.
* ``null`` for an optional field is treated as absent (protobuf JSON semantics, which FullStory's
  API follows) and passed through unchanged.
* Events ``shared``: a JSON document ``{"requests": [...], "shared": {...}}`` raises
  ``InputError("unsupported_shared")``. ``shared`` applies to a whole provider batch while the
  tracker splits a file into several batches, and FullStory fails every event that also has its
  own ``context``; copy the context into each event instead. (If ``shared`` follows the
  ``requests`` array, the error comes after the array's rows were yielded.)
* Property counting: ``MAX_PROPERTIES`` is checked against every key at every nesting level
  (``{"a": {"b": 1}}`` counts 2), never letting through an object FullStory refuses. Name rules
  apply to nested keys too; the dotted path of a nested key is limited to
  ``MAX_PROPERTY_NAME_CHARS``; the value-size limit applies to each leaf value (arrays count as
  one value) measured as compact UTF-8 JSON.
* CSV: ``uid``, ``display_name``, ``email`` (users) and ``name``, ``timestamp`` (events) are fields;
  ``user``, ``session``, ``context`` (events) hold JSON; a ``properties`` column holds a JSON object;
  every other named column is a string property. A CSV of events needs a ``name`` column, a CSV of
  users a ``uid`` column: it identifies the user a row updates (users import is an upsert by uid), so
  a header without it was misread or belongs to another file, and the job fails ``missing_column``
  rather than creating a new anonymous user per row. (Inline or NDJSON users may still omit uid.)

Reasons name the field and the limit and never quote a property value (values are personal data;
names are not). The validators run once per row on the hot path of intake: they compare classes
(``value.__class__ is dict``) rather than call isinstance where that is safe, and cache property
names already known to be good.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from tracker.ingest import CsvColumn, RowInvalid, RowRules, shown_name
from tracker.ingest import encode_compact as _encode
from tracker.providers.fullstory.limits import (
    MAX_DISPLAY_NAME_CHARS,
    MAX_EMAIL_CHARS,
    MAX_PROPERTIES,
    MAX_PROPERTY_NAME_CHARS,
    MAX_PROPERTY_VALUE_BYTES,
    MAX_UID_CHARS,
    PROPERTY_NAME_RE,
)

_GOOD_NAMES: set[str] = set()  # cache of property names already known to satisfy the rule
_GOOD_NAMES_MAX = 8192
_name_ok = PROPERTY_NAME_RE.fullmatch


def _check_name(name: Any, path: str) -> None:
    """Raise unless ``name`` satisfies the property-name rule (not the path-length rule)."""
    if not isinstance(name, str) or _name_ok(name) is None:
        raise RowInvalid(
            "invalid_property_name",
            f"Property name {shown_name(path)} must use only letters, digits or '_' and start with a letter.",
        )
    if len(name) <= MAX_PROPERTY_NAME_CHARS:
        if len(_GOOD_NAMES) >= _GOOD_NAMES_MAX:
            _GOOD_NAMES.clear()
        _GOOD_NAMES.add(name)


def _name_too_long(path: str) -> RowInvalid:
    return RowInvalid(
        "property_name_too_long",
        f"Property name {shown_name(path)} is {len(path)} characters including its parents; "
        f"the limit is {MAX_PROPERTY_NAME_CHARS}.",
    )


def _too_many(field: str, count: int) -> RowInvalid:
    return RowInvalid(
        "too_many_properties",
        f"Field '{field}' has {count} properties (nested keys included); the limit is {MAX_PROPERTIES}.",
    )


def _count_nested(obj: dict, path: str, count: int, field: str) -> int:
    """Check the names of a nested properties object; return the running key count."""
    count += len(obj)
    if count > MAX_PROPERTIES:
        raise _too_many(field, count)
    good = _GOOD_NAMES
    for name, value in obj.items():
        if name not in good:
            _check_name(name, f"{path}.{name}" if isinstance(name, str) else path)
        if len(path) + 1 + len(name) > MAX_PROPERTY_NAME_CHARS:
            raise _name_too_long(f"{path}.{name}")
        if value.__class__ is dict:
            count = _count_nested(value, f"{path}.{name}", count, field)
    return count


def _check_leaf_sizes(obj: dict, path: str) -> None:
    for name, value in obj.items():
        dotted = f"{path}.{name}" if path else name
        if value.__class__ is dict:
            _check_leaf_sizes(value, dotted)
            continue
        size = len(_encode(value).encode("utf-8"))
        if size > MAX_PROPERTY_VALUE_BYTES:
            raise RowInvalid(
                "property_value_too_large",
                f"Property {shown_name(dotted)} is {size} bytes as JSON; "
                f"the limit is {MAX_PROPERTY_VALUE_BYTES} bytes.",
            )


def _check_properties(props: Any, size: int, field: str = "properties") -> None:
    """``size`` is the byte size of the whole request's compact encoding: when it is within the
    value limit no single value can exceed it, so the per-value encoding is skipped."""
    if props.__class__ is not dict:
        if props is None:
            return
        raise RowInvalid("invalid_type", f"Field '{field}' must be a JSON object.")
    count = len(props)
    if count > MAX_PROPERTIES:
        raise _too_many(field, count)
    good = _GOOD_NAMES
    for name, value in props.items():
        if name not in good:
            _check_name(name, name)
            if len(name) > MAX_PROPERTY_NAME_CHARS:
                raise _name_too_long(name)
        if value.__class__ is dict:
            count = _count_nested(value, name, count, field)
    if size > MAX_PROPERTY_VALUE_BYTES:
        _check_leaf_sizes(props, "")


def _unknown_field(request: dict, allowed: frozenset[str], kind: str, prefix: str = "") -> RowInvalid:
    name = next(k for k in request if k not in allowed)
    return RowInvalid(
        "unknown_field",
        f"Field {shown_name(prefix + str(name))} is not part of a FullStory {kind} "
        f"(allowed: {', '.join(sorted(allowed))}).",
    )


def _check_string(request: dict, field: str, limit: int | None, label: str = "") -> bool:
    """Type/length of an optional string field; True when present (not None)."""
    value = request.get(field)
    if value is None:
        return False
    if value.__class__ is not str and not isinstance(value, str):
        raise RowInvalid("invalid_type", f"Field '{label or field}' must be a string.")
    if limit is not None and len(value) > limit:
        raise RowInvalid(
            "value_too_long", f"Field '{label or field}' has {len(value)} characters; the limit is {limit}."
        )
    return True


def _check_object(request: dict, field: str) -> Any:
    value = request.get(field)
    if value is not None and value.__class__ is not dict:
        raise RowInvalid("invalid_type", f"Field '{field}' must be a JSON object.")
    return value


_USER_FIELDS = frozenset({"id", "uid", "display_name", "email", "properties", "schema"})


def _validate_user(request: dict, size: int) -> None:
    if not _USER_FIELDS.issuperset(request):
        raise _unknown_field(request, _USER_FIELDS, "users request")
    present = _check_string(request, "uid", MAX_UID_CHARS)
    present = _check_string(request, "display_name", MAX_DISPLAY_NAME_CHARS) or present
    present = _check_string(request, "email", MAX_EMAIL_CHARS) or present
    present = _check_string(request, "id", None) or present
    props = request.get("properties")
    if props is not None:
        _check_properties(props, size)
        present = True
    _check_object(request, "schema")
    if not present:
        raise RowInvalid(
            "empty_request",
            "The users request has none of 'uid', 'display_name', 'email', 'id' or 'properties'.",
        )


_EVENT_FIELDS = frozenset({"user", "session", "context", "name", "timestamp", "properties", "schema"})
_EVENT_USER_FIELDS = frozenset({"uid", "id"})
_EVENT_SESSION_FIELDS = frozenset({"id", "use_most_recent"})
_EVENT_CONTEXT_FIELDS = frozenset({"browser", "mobile", "device", "location"})
# RFC 3339 section 5.6 date-time: full-date "T" partial-time time-offset ("T" and "Z" in either case), the
# format of the spec's example (specs/fullstory/events.swagger.json: "2022-03-15T14:23:23Z"). ISO 8601's
# other forms -- a date alone, week or ordinal dates, the basic format without separators, a time without
# an offset -- are refused here with the form named, never sent to be guessed at.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_WEEK_OR_ORDINAL = re.compile(r"\d{4}-?(W\d{2}(-?\d)?|\d{3})([Tt].*)?", re.ASCII)
_BASIC = re.compile(r"\d{8}([Tt]\d{2,6}.*)?", re.ASCII)
_NO_OFFSET = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}(:\d{2}(\.\d+)?)?", re.ASCII)
_SPACE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}.*", re.ASCII)


def _rfc3339_problem(value: str) -> str | None:
    """None for an RFC 3339 date-time with ``Z`` or an offset that names a real instant; else what it is."""
    match = _RFC3339.fullmatch(value) if len(value) <= 64 else None
    if match is None:
        if _DATE_ONLY.fullmatch(value):
            return "a date without a time"
        if _WEEK_OR_ORDINAL.fullmatch(value):
            return "an ISO 8601 week or ordinal date"
        if _BASIC.fullmatch(value):
            return "ISO 8601 basic format (no separators)"
        if _NO_OFFSET.fullmatch(value):
            return "a time without 'Z' or a UTC offset"
        if _SPACE.fullmatch(value):
            return "a date and time separated by a space instead of 'T'"
        return "not an RFC 3339 date-time"
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    offset = match[8]
    try:
        datetime(year, month, day, hour, minute, second)
        if offset not in ("Z", "z") and (int(offset[1:3]) > 23 or int(offset[4:6]) > 59):
            raise ValueError(offset)
    except ValueError:
        return "not a valid date and time"
    return None


def _validate_event(request: dict, size: int) -> None:
    if not _EVENT_FIELDS.issuperset(request):
        raise _unknown_field(request, _EVENT_FIELDS, "events request")
    name = request.get("name")
    if name is None:
        raise RowInvalid("missing_field", "Field 'name' is required for an event.")
    if not isinstance(name, str):
        raise RowInvalid("invalid_type", "Field 'name' must be a string.")
    if not name or name.isspace():
        raise RowInvalid("empty_field", "Field 'name' must not be empty.")
    timestamp = request.get("timestamp")
    if timestamp is not None:
        if not isinstance(timestamp, str):
            raise RowInvalid("invalid_type", "Field 'timestamp' must be an RFC 3339 date-time string.")
        if (problem := _rfc3339_problem(timestamp)) is not None:
            raise RowInvalid(
                "invalid_timestamp",
                f"Field 'timestamp' is {problem}; it must be an RFC 3339 date-time with 'Z' or a UTC offset "
                "(e.g. 2022-03-15T14:23:23Z or 2022-03-15T14:23:23.5+01:00).",
            )
    user = _check_object(request, "user")
    if user is not None:
        if not _EVENT_USER_FIELDS.issuperset(user):
            raise _unknown_field(user, _EVENT_USER_FIELDS, "event user", "user.")
        _check_string(user, "uid", MAX_UID_CHARS, "user.uid")
        _check_string(user, "id", None, "user.id")
    session = _check_object(request, "session")
    if session is not None:
        if not _EVENT_SESSION_FIELDS.issuperset(session):
            raise _unknown_field(session, _EVENT_SESSION_FIELDS, "event session", "session.")
        if _check_string(session, "id", None, "session.id") and user is not None:
            raise RowInvalid("conflicting_fields", "An event with 'session.id' must not also have 'user'.")
        most_recent = session.get("use_most_recent")
        if most_recent is not None:
            if most_recent.__class__ is not bool:
                raise RowInvalid("invalid_type", "Field 'session.use_most_recent' must be true or false.")
            if most_recent and user is None:
                raise RowInvalid("missing_field", "Field 'user' is required when 'session.use_most_recent' is true.")
    context = _check_object(request, "context")
    if context is not None:
        if not _EVENT_CONTEXT_FIELDS.issuperset(context):
            raise _unknown_field(context, _EVENT_CONTEXT_FIELDS, "event context", "context.")
        for key, value in context.items():
            if value is not None and value.__class__ is not dict:
                raise RowInvalid("invalid_type", f"Field 'context.{key}' must be a JSON object.")
    props = request.get("properties")
    if props is not None:
        _check_properties(props, size)
    _check_object(request, "schema")


USERS = RowRules(
    rows="users",
    validate=_validate_user,
    csv_columns={"uid": CsvColumn.TEXT, "display_name": CsvColumn.TEXT, "email": CsvColumn.TEXT},
    csv_required=("uid",),
    identity="uid",  # the users import is an upsert by uid (seed 002; ../shared/DESIGN.md)
)

EVENTS = RowRules(
    rows="events",
    validate=_validate_event,
    csv_columns={
        "name": CsvColumn.TEXT,
        "timestamp": CsvColumn.TEXT,
        "user": CsvColumn.JSON,
        "session": CsvColumn.JSON,
        "context": CsvColumn.JSON,
    },
    csv_required=("name",),
    refused_document_keys={
        "shared": (
            "unsupported_shared",
            'A top-level "shared" object is not supported: the file is split into several batches; '
            "put the context on each event instead.",
        )
    },
)
