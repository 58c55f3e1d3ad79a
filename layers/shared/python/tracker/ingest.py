"""Turn an input file stream into validated FullStory batch requests and rejected rows.

Pure domain code for the Lambda layer: standard library only (the Lambda runtime has neither
ijson nor pydantic in the layer). Everything streams: input is read in bounded chunks, one row
(or JSON-array element) at a time, so memory stays flat whatever the file size.

Formats (see ``detect_format``): NDJSON (``.ndjson``/``.jsonl``), a JSON document (``.json``) and
CSV (``.csv``), each optionally gzip-compressed (``.gz``). Input is UTF-8, with or without a BOM.

``read_requests`` yields, in input order, a ``Row`` for every request that passed validation (with
its compact JSON encoding, computed once and reused by ``batching.BatchSplitter``) and a
``Rejected`` for every row that did not. Problems that make the whole file unreadable raise
``InputError``; rows yielded before such an error stay yielded, the caller decides what to do.
``validate_request`` (and ``make_row``, which also returns the encoded ``Row``) apply the same
per-request checks to requests that did not come from a file, e.g. inline rows of ``POST /jobs``.

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
* CSV decode errors: each physical line is decoded on its own; a record touching a line that is
  not valid UTF-8 is rejected (``invalid_utf8``), the rest of the file is read. Only an
  undecodable header is a job-level ``InputError``.
* Invalid UTF-8 inside a JSON document is decoded with ``surrogateescape``: an element holding
  such bytes in a string is rejected (``invalid_utf8``); outside strings it is a syntax error of
  the document (``InputError``). JSON ``\\ud800``-style unpaired surrogate escapes are rejected
  the same way, since they cannot be encoded as UTF-8.
* Non-standard JSON (``NaN``, ``Infinity``) and numbers that overflow a float are ``invalid_json``.
* A request whose compact encoding exceeds ``MAX_LINE_BYTES`` is rejected (``request_too_large``),
  so ``BatchSplitter`` never sees a row bigger than a batch.
* The gzip decompressed-size cap applies to gzip input only (plain input's size is the object's).

Rejection ``code`` values are short snake_case strings; ``reason`` is one sentence naming the
field and the limit and never quotes a property value (values are personal data; names are not).
``Rejected.source`` is the parsed object when there is one, else the raw text cut to 1 KiB; it is
always encodable as UTF-8 JSON.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import json
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, Literal, TypeAlias

from tracker.limits import (
    DEFAULT_MAX_UNCOMPRESSED_BYTES,
    MAX_DISPLAY_NAME_CHARS,
    MAX_EMAIL_CHARS,
    MAX_LINE_BYTES,
    MAX_PROPERTIES,
    MAX_PROPERTY_NAME_CHARS,
    MAX_PROPERTY_VALUE_BYTES,
    MAX_REJECT_SOURCE_CHARS,
    MAX_UID_CHARS,
    PROPERTY_NAME_RE,
)

__all__ = [
    "InputError",
    "InputFormat",
    "JobType",
    "Rejected",
    "Row",
    "detect_format",
    "make_row",
    "read_requests",
    "validate_request",
]

JobType: TypeAlias = Literal["fullstory.users", "fullstory.events"]
FormatKind: TypeAlias = Literal["csv", "ndjson", "json"]


class InputError(Exception):
    """A job-level problem: the file as a whole cannot be read (``code`` is short snake_case)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"InputError({self.code!r}, {self.message!r})"


@dataclass(frozen=True, slots=True)
class InputFormat:
    kind: FormatKind
    gzip: bool


@dataclass(frozen=True, slots=True)
class Row:
    """A valid request. ``encoded`` is its compact JSON (UTF-8), computed once."""

    line: int
    request: dict
    encoded: bytes


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row refused locally; ``line`` is the 1-based physical line where it starts."""

    line: int
    code: str
    reason: str
    source: Any


# --- format detection ---------------------------------------------------------------------------

_KINDS: dict[str, FormatKind] = {"csv": "csv", "ndjson": "ndjson", "jsonl": "ndjson", "json": "json"}


def detect_format(key: str) -> InputFormat:
    """Format from the object key's suffix (case-insensitive): .csv, .ndjson, .jsonl, .json, each
    optionally followed by .gz."""
    name = key.rsplit("/", 1)[-1].lower()
    compressed = name.endswith(".gz")
    if compressed:
        name = name[:-3]
    _, dot, ext = name.rpartition(".")
    kind = _KINDS.get(ext) if dot else None
    if kind is None:
        raise InputError(
            "unsupported_format",
            f"Cannot tell the format of {key!r}: the name must end in .csv, .ndjson, .jsonl or .json, "
            "optionally followed by .gz.",
        )
    return InputFormat(kind=kind, gzip=compressed)


# --- JSON codec -----------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_decode = _DECODER.decode
_raw_decode = _DECODER.raw_decode
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False)


def _make_fast_encode() -> Callable[[Any], str]:
    """``_ENCODER.encode`` without its per-call setup: build the C encoder once.

    ``JSONEncoder.encode`` re-creates the C encoder object on every call, which costs about as much
    as encoding a small request. The C encoder is reusable when ``check_circular`` is off (no
    markers dict). Falls back to ``_ENCODER.encode`` if this CPython lacks it or behaves differently.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    basestring = getattr(json.encoder, "c_encode_basestring", None)
    if make is None or basestring is None:
        return _ENCODER.encode
    try:
        c_encoder = make(None, _ENCODER.default, basestring, None, ":", ",", False, False, False)
        join = "".join

        def encode(obj: Any) -> str:
            if obj.__class__ is str:
                return basestring(obj)
            return join(c_encoder(obj, 0))

        probe = {"a": [1, 2.5, True, None, "é\n"], "b": {"c": -1}}
        if encode(probe) != _ENCODER.encode(probe):  # pragma: no cover - other CPython
            return _ENCODER.encode
        try:
            encode({"x": float("inf")})
        except ValueError:
            return encode
        return _ENCODER.encode  # pragma: no cover - allow_nan not honoured
    except Exception:  # pragma: no cover - other CPython
        return _ENCODER.encode


_encode = _make_fast_encode()


def _text_source(raw: str | bytes | None, obj: Any = None) -> str:
    """Raw input as a UTF-8-safe string of at most 1 KiB for ``Rejected.source``; with no raw
    text, ``obj`` rendered as ASCII JSON."""
    if raw is None:
        try:
            raw = json.dumps(obj, ensure_ascii=True, default=repr)
        except (ValueError, RecursionError):
            raw = repr(obj)
        return raw[:MAX_REJECT_SOURCE_CHARS]
    if isinstance(raw, bytes):
        return raw[: MAX_REJECT_SOURCE_CHARS * 4].decode("utf-8", "replace")[:MAX_REJECT_SOURCE_CHARS]
    raw = raw[:MAX_REJECT_SOURCE_CHARS]
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raw = raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        raw = raw.encode("utf-8", "replace").decode("utf-8")  # any other lone surrogate -> '?'
    return raw


# --- validation -----------------------------------------------------------------------------------


class _Invalid(Exception):
    """Internal: carries (code, reason) out of nested validation."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(code, reason)
        self.problem = (code, reason)


def _shown(name: str, limit: int = 64) -> str:
    """A field/property name for a reason sentence (names are not personal data; long ones cut)."""
    return repr(name if len(name) <= limit else name[:limit] + "...")


_GOOD_NAMES: set[str] = set()  # cache of property names already known to satisfy the rule
_GOOD_NAMES_MAX = 8192
_name_ok = PROPERTY_NAME_RE.fullmatch


def _check_name(name: Any, path: str) -> None:
    """Raise unless ``name`` satisfies the property-name rule (not the path-length rule)."""
    if not isinstance(name, str) or _name_ok(name) is None:
        raise _Invalid(
            "invalid_property_name",
            f"Property name {_shown(path)} must use only letters, digits or '_' and start with a letter.",
        )
    if len(name) <= MAX_PROPERTY_NAME_CHARS:
        if len(_GOOD_NAMES) >= _GOOD_NAMES_MAX:
            _GOOD_NAMES.clear()
        _GOOD_NAMES.add(name)


def _name_too_long(path: str) -> _Invalid:
    return _Invalid(
        "property_name_too_long",
        f"Property name {_shown(path)} is {len(path)} characters including its parents; "
        f"the limit is {MAX_PROPERTY_NAME_CHARS}.",
    )


def _too_many(field: str, count: int) -> _Invalid:
    return _Invalid(
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
            raise _Invalid(
                "property_value_too_large",
                f"Property {_shown(dotted)} is {size} bytes as JSON; the limit is {MAX_PROPERTY_VALUE_BYTES} bytes.",
            )


def _check_properties(props: Any, size: int, field: str = "properties") -> None:
    """``size`` is the byte size of the whole request's compact encoding: when it is within the
    value limit no single value can exceed it, so the per-value encoding is skipped."""
    if props.__class__ is not dict:
        if props is None:
            return
        raise _Invalid("invalid_type", f"Field '{field}' must be a JSON object.")
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


def _unknown_field(request: dict, allowed: frozenset[str], kind: str, prefix: str = "") -> _Invalid:
    name = next(k for k in request if k not in allowed)
    return _Invalid(
        "unknown_field",
        f"Field {_shown(prefix + str(name))} is not part of a FullStory {kind} "
        f"(allowed: {', '.join(sorted(allowed))}).",
    )


def _check_string(request: dict, field: str, limit: int | None, label: str = "") -> bool:
    """Type/length of an optional string field; True when present (not None)."""
    value = request.get(field)
    if value is None:
        return False
    if value.__class__ is not str and not isinstance(value, str):
        raise _Invalid("invalid_type", f"Field '{label or field}' must be a string.")
    if limit is not None and len(value) > limit:
        raise _Invalid("value_too_long", f"Field '{label or field}' has {len(value)} characters; the limit is {limit}.")
    return True


def _check_object(request: dict, field: str) -> Any:
    value = request.get(field)
    if value is not None and value.__class__ is not dict:
        raise _Invalid("invalid_type", f"Field '{field}' must be a JSON object.")
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
        raise _Invalid(
            "empty_request",
            "The users request has none of 'uid', 'display_name', 'email', 'id' or 'properties'.",
        )


_EVENT_FIELDS = frozenset({"user", "session", "context", "name", "timestamp", "properties", "schema"})
_EVENT_USER_FIELDS = frozenset({"uid", "id"})
_EVENT_SESSION_FIELDS = frozenset({"id", "use_most_recent"})
_EVENT_CONTEXT_FIELDS = frozenset({"browser", "mobile", "device", "location"})
_ISO_CHARS = frozenset("0123456789-+:.,TWZ")
_fromisoformat = datetime.fromisoformat


def _is_iso8601(value: str) -> bool:
    """ISO-8601 date or date-time as ``datetime.fromisoformat`` reads it, 'T' as the separator."""
    if len(value) > 64 or not _ISO_CHARS.issuperset(value):
        return False
    try:
        _fromisoformat(value)
    except ValueError:
        return False
    return True


def _validate_event(request: dict, size: int) -> None:
    if not _EVENT_FIELDS.issuperset(request):
        raise _unknown_field(request, _EVENT_FIELDS, "events request")
    name = request.get("name")
    if name is None:
        raise _Invalid("missing_field", "Field 'name' is required for an event.")
    if not isinstance(name, str):
        raise _Invalid("invalid_type", "Field 'name' must be a string.")
    if not name or name.isspace():
        raise _Invalid("empty_field", "Field 'name' must not be empty.")
    timestamp = request.get("timestamp")
    if timestamp is not None:
        if not isinstance(timestamp, str):
            raise _Invalid("invalid_type", "Field 'timestamp' must be an ISO-8601 string.")
        if not _is_iso8601(timestamp):
            raise _Invalid(
                "invalid_timestamp",
                "Field 'timestamp' is not an ISO-8601 date-time (e.g. 2022-03-15T14:23:23Z).",
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
            raise _Invalid("conflicting_fields", "An event with 'session.id' must not also have 'user'.")
        most_recent = session.get("use_most_recent")
        if most_recent is not None:
            if most_recent.__class__ is not bool:
                raise _Invalid("invalid_type", "Field 'session.use_most_recent' must be true or false.")
            if most_recent and user is None:
                raise _Invalid("missing_field", "Field 'user' is required when 'session.use_most_recent' is true.")
    context = _check_object(request, "context")
    if context is not None:
        if not _EVENT_CONTEXT_FIELDS.issuperset(context):
            raise _unknown_field(context, _EVENT_CONTEXT_FIELDS, "event context", "context.")
        for key, value in context.items():
            if value is not None and value.__class__ is not dict:
                raise _Invalid("invalid_type", f"Field 'context.{key}' must be a JSON object.")
    props = request.get("properties")
    if props is not None:
        _check_properties(props, size)
    _check_object(request, "schema")


_VALIDATORS: dict[str, Callable[[dict, int], None]] = {
    "fullstory.users": _validate_user,
    "fullstory.events": _validate_event,
}


def _validator(job_type: str) -> Callable[[dict, int], None]:
    try:
        return _VALIDATORS[job_type]
    except KeyError:
        raise ValueError(f"unknown job type {job_type!r}; expected one of {sorted(_VALIDATORS)}") from None


def _to_row(validate: Callable[[dict, int], None], line: int, obj: Any, raw: str | bytes | None) -> Row | Rejected:
    """Encode once, validate, and wrap. ``raw`` is the input text, used only as a reject source
    when ``obj`` itself cannot be (None: render ``obj``)."""
    if obj.__class__ is not dict and not isinstance(obj, dict):
        try:
            _encode(obj).encode("utf-8")
            source = obj
        except (UnicodeEncodeError, ValueError, RecursionError):
            source = _text_source(raw, obj)
        return Rejected(
            line, "invalid_json", f"Line {line} is JSON but not an object; each request must be one.", source
        )
    try:
        encoded = _encode(obj).encode("utf-8")
    except UnicodeEncodeError:
        return Rejected(
            line,
            "invalid_utf8",
            "The request contains text that is not valid UTF-8 (or an unpaired surrogate escape).",
            _text_source(raw, obj),
        )
    except ValueError:
        return Rejected(
            line, "invalid_json", "The request contains a number too large for JSON.", _text_source(raw, obj)
        )
    except RecursionError:
        return Rejected(line, "invalid_json", "The request is nested too deeply.", _text_source(raw, obj))
    if len(encoded) > MAX_LINE_BYTES:
        return Rejected(
            line,
            "request_too_large",
            f"The request is {len(encoded)} bytes as compact JSON; the limit is {MAX_LINE_BYTES} bytes.",
            _text_source(raw, obj),
        )
    try:
        validate(obj, len(encoded))
    except _Invalid as problem:
        return Rejected(line, problem.problem[0], problem.problem[1], obj)
    return Row(line, obj, encoded)


def make_row(job_type: JobType, request: Any, line: int = 0) -> Row | Rejected:
    """Validate and encode one request (e.g. an inline request of ``POST /jobs``), as the readers do."""
    validate = _validator(job_type)
    if not isinstance(request, dict):
        return Rejected(line, "invalid_type", "A request must be a JSON object.", _text_source(None, request))
    return _to_row(validate, line, request, None)


def validate_request(job_type: JobType, request: Any) -> tuple[str, str] | None:
    """Check one request against FullStory's documented limits: None when valid, else
    ``(code, reason)``. Also refuses requests that cannot be encoded as UTF-8 JSON or whose encoding
    exceeds ``MAX_LINE_BYTES``. Raises ValueError for an unknown job type."""
    result = make_row(job_type, request)
    return None if isinstance(result, Row) else (result.code, result.reason)


# --- byte source ----------------------------------------------------------------------------------

_CHUNK = 256 * 1024
_BOM = codecs.BOM_UTF8


def _byte_reader(stream: BinaryIO, fmt: InputFormat, max_uncompressed_bytes: int) -> Callable[[int], bytes]:
    """A ``read(n)`` over the (decompressed) input that turns gzip failures into InputError."""
    if not fmt.gzip:
        return stream.read
    archive = gzip.GzipFile(fileobj=stream, mode="rb")
    total = 0

    def read(n: int) -> bytes:
        nonlocal total
        try:
            data = archive.read(n)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise InputError(
                "corrupt_gzip",
                f"The gzip input is truncated or corrupt after {total} decompressed bytes ({exc}).",
            ) from exc
        total += len(data)
        if total > max_uncompressed_bytes:
            raise InputError("too_large", f"The gzip input decompresses to more than {max_uncompressed_bytes} bytes.")
        return data

    return read


class _TooLong:
    """Marker yielded by ``_iter_lines`` for a line over MAX_LINE_BYTES; keeps its first bytes."""

    __slots__ = ("head",)

    def __init__(self, head: bytes) -> None:
        self.head = head


def _iter_lines(read: Callable[[int], bytes], max_line: int = MAX_LINE_BYTES) -> Iterator[bytes | _TooLong]:
    """Physical lines without their b"\\n" (a CR of CRLF stays), leading UTF-8 BOM removed.

    Reads fixed-size chunks; a line longer than ``max_line`` is never held in full: once the
    pending part exceeds the limit, the rest is discarded up to the next newline.
    """
    chunk = read(_CHUNK)
    while chunk and len(chunk) < len(_BOM):
        more = read(_CHUNK)
        if not more:
            break
        chunk += more
    if chunk.startswith(_BOM):
        chunk = chunk[len(_BOM) :] or read(_CHUNK)
    pending = b""
    while chunk:
        if pending:
            chunk = pending + chunk
        lines = chunk.split(b"\n")
        pending = lines.pop()
        if len(chunk) <= max_line:
            yield from lines
        else:
            for line in lines:
                yield _TooLong(line[:MAX_REJECT_SOURCE_CHARS]) if len(line) > max_line else line
        if len(pending) > max_line:
            head = pending[:MAX_REJECT_SOURCE_CHARS]
            pending = b""
            while True:
                chunk = read(_CHUNK)
                if not chunk:
                    yield _TooLong(head)
                    return
                cut = chunk.find(b"\n")
                if cut >= 0:
                    yield _TooLong(head)
                    chunk = chunk[cut + 1 :]
                    break
            if chunk:
                continue
        chunk = read(_CHUNK)
    if pending:
        yield _TooLong(pending[:MAX_REJECT_SOURCE_CHARS]) if len(pending) > max_line else pending


def _line_too_long(line: int, head: bytes) -> Rejected:
    return Rejected(line, "line_too_long", f"Line {line} is longer than {MAX_LINE_BYTES} bytes.", _text_source(head))


# --- NDJSON ---------------------------------------------------------------------------------------


def _read_ndjson(read: Callable[[int], bytes], validate: Callable[[dict, int], None]) -> Iterator[Row | Rejected]:
    number = 0
    for line in _iter_lines(read):
        number += 1
        if line.__class__ is not bytes:
            yield _line_too_long(number, line.head)
            continue
        if not line or line.isspace():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Rejected(
                number,
                "invalid_utf8",
                f"Line {number} is not valid UTF-8 (byte {exc.start + 1}).",
                _text_source(line),
            )
            continue
        try:
            obj = _decode(text)
        except json.JSONDecodeError as exc:
            yield Rejected(
                number,
                "invalid_json",
                f"Line {number} is not valid JSON: {exc.msg} at column {exc.colno}.",
                _text_source(text),
            )
            continue
        except (ValueError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            yield Rejected(number, "invalid_json", f"Line {number} is not valid JSON: {reason}.", _text_source(text))
            continue
        yield _to_row(validate, number, obj, text)


# --- JSON document --------------------------------------------------------------------------------

_WS = re.compile(r"[ \t\n\r]*")
_STRUCTURE = re.compile(r'["\[\]{},]')
_IN_STRING = re.compile(r'["\\]')
_TOO_BIG = object()


class _JsonDocument:
    """Incremental reader of ``[...]`` or ``{"requests": [...]}`` yielding one element at a time.

    Why hand-written: the Lambda runtime has no ijson, and ``json.load`` would hold the whole
    document (and its parsed objects) in memory. The input is decoded chunk by chunk into a sliding
    text buffer; each array element is parsed with ``json.JSONDecoder.raw_decode`` (the C scanner)
    at the element's offset. When the buffer ends inside an element, more text is read and the
    element is parsed again from its start; an element longer than MAX_LINE_BYTES is skipped with a
    light structural scan (strings, brackets) and rejected. Consumed text is dropped as the scan
    moves on, so memory is bounded by one element plus one chunk. Newlines are counted as the
    buffer advances to give each element the line where it starts.
    """

    def __init__(self, read: Callable[[int], bytes], validate: Callable[[dict, int], None], job_type: str) -> None:
        self._read = read
        self._validate = validate
        self._job_type = job_type
        self._utf8 = codecs.getincrementaldecoder("utf-8-sig")("surrogateescape")
        self._buf = ""
        self._pos = 0
        self._eof = False
        self._line_pos = 0  # newlines before this offset of _buf are counted in _line
        self._line = 1

    # buffer plumbing

    def _more(self) -> bool:
        """Append decoded text, first dropping everything before ``_pos``; False at end of input."""
        while not self._eof:
            data = self._read(_CHUNK)
            if not data:
                self._eof = True
            text = self._utf8.decode(data, final=not data)
            if text:
                keep = self._pos
                if keep:
                    self._line_at(keep)
                    self._buf = self._buf[keep:] + text
                    self._pos = 0
                    self._line_pos = 0
                else:
                    self._buf += text
                return True
        return False

    def _line_at(self, pos: int) -> int:
        self._line += self._buf.count("\n", self._line_pos, pos)
        self._line_pos = pos
        return self._line

    def _where(self, pos: int) -> str:
        line = self._line + self._buf.count("\n", self._line_pos, pos)
        column = pos - self._buf.rfind("\n", 0, pos)
        return f"line {line} column {column}"

    def _peek(self) -> str:
        """Skip whitespace; the next character ('' at end of input) without consuming it."""
        while True:
            self._pos = _WS.match(self._buf, self._pos).end()
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if not self._more():
                return ""

    def _syntax_error(self, what: str, pos: int | None = None) -> InputError:
        return InputError(
            "invalid_json_document",
            f"The JSON document is invalid at {self._where(self._pos if pos is None else pos)}: {what}.",
        )

    def _truncated(self) -> InputError:
        return InputError("truncated_json", "The JSON document ends before its closing brackets (truncated file?).")

    def _value(self) -> tuple[Any, int] | object:
        """Parse the value at ``_pos`` (not consumed): (object, end), or _TOO_BIG."""
        while True:
            buf, start = self._buf, self._pos
            try:
                obj, end = _raw_decode(buf, start)
            except json.JSONDecodeError as exc:
                unterminated = exc.msg.startswith("Unterminated string")
                if self._eof:
                    if unterminated or not buf[exc.pos :].strip():
                        raise self._truncated() from None
                    raise self._syntax_error(exc.msg, exc.pos) from None
                if not (unterminated or exc.pos >= len(buf) - 16):  # not merely cut at the buffer end
                    raise self._syntax_error(exc.msg, exc.pos) from None
                if len(buf) - start > MAX_LINE_BYTES:
                    return _TOO_BIG
                self._more()
                continue
            except RecursionError:
                raise self._syntax_error("nested too deeply") from None
            except ValueError as exc:  # NaN/Infinity, oversized integer literal
                raise self._syntax_error(str(exc)) from None
            if end == len(buf) and not self._eof and buf[end - 1] in "0123456789":
                self._more()  # a number may continue in the next chunk
                continue
            return obj, end

    def _skip_value(self) -> None:
        """Move ``_pos`` past the (huge) value starting there without parsing it."""
        depth = 0
        in_string = False
        i = self._pos
        while True:
            buf = self._buf
            if i >= len(buf):
                overflow = i - len(buf)
                self._pos = len(buf)
                if not self._more():
                    raise self._truncated()
                i = self._pos + overflow
                continue
            if in_string:
                match = _IN_STRING.search(buf, i)
                if match is None:
                    i = len(buf)
                elif match.group() == "\\":
                    i = match.end() + 1
                else:
                    in_string = False
                    i = match.end()
                    if depth == 0:
                        self._pos = i
                        return
                continue
            match = _STRUCTURE.search(buf, i)
            if match is None:
                i = len(buf)
                continue
            char = match.group()
            i = match.end()
            if char == '"':
                in_string = True
            elif char in "[{":
                depth += 1
            elif depth == 0:  # ',' ']' '}' closing a top-level scalar
                self._pos = match.start()
                return
            elif char != ",":
                depth -= 1
                if depth == 0:
                    self._pos = i
                    return

    @staticmethod
    def _too_big(line: int) -> str:
        return f"The array element starting at line {line} is longer than {MAX_LINE_BYTES} bytes."

    def _key(self) -> str:
        char = self._peek()
        if char != '"':
            raise (self._truncated() if char == "" else self._syntax_error("expected a property name in quotes"))
        key, self._pos = self._value()  # type: ignore[misc]  # keys are short: never _TOO_BIG
        char = self._peek()
        if char != ":":
            raise (self._truncated() if char == "" else self._syntax_error("expected ':' after a property name"))
        self._pos += 1
        return key

    def _bad_key(self, key: str) -> InputError:
        if key == "shared":
            if self._job_type == "fullstory.events":
                return InputError(
                    "unsupported_shared",
                    'A top-level "shared" object is not supported: the file is split into several batches; '
                    "put the context on each event instead.",
                )
        elif key == "requests":
            return self._syntax_error('"requests" appears twice')
        return InputError(
            "invalid_json_document",
            f"Unexpected top-level key {_shown(key)}: the document must be an array of requests or an object "
            'with a "requests" array.',
        )

    # the document

    def __iter__(self) -> Iterator[Row | Rejected]:
        first = self._peek()
        if first == "":
            raise InputError("empty_file", "The JSON document is empty.")
        if first == "[":
            self._pos += 1
            yield from self._elements()
        elif first == "{":
            self._pos += 1
            if self._peek() == "}":
                raise InputError("invalid_json_document", 'The JSON object has no "requests" array.')
            key = self._key()
            if key != "requests":
                raise self._bad_key(key)
            char = self._peek()
            if char == "":
                raise self._truncated()
            if char != "[":
                raise InputError("invalid_json_document", 'The "requests" value must be an array of request objects.')
            self._pos += 1
            yield from self._elements()
            char = self._peek()
            if char == ",":
                self._pos += 1
                raise self._bad_key(self._key())
            if char == "":
                raise self._truncated()
            if char != "}":
                raise self._syntax_error("expected '}' after the requests array")
            self._pos += 1
        else:
            raise InputError(
                "invalid_json_document",
                'The JSON document must be an array of request objects or an object with a "requests" array.',
            )
        if self._peek() != "":
            raise self._syntax_error("unexpected data after the end of the document")

    def _elements(self) -> Iterator[Row | Rejected]:
        validate = self._validate
        char = self._peek()
        if char == "]":
            self._pos += 1
            return
        while True:
            if char == "":
                raise self._truncated()
            line = self._line_at(self._pos)
            parsed = self._value()
            start = self._pos  # _value may have moved the buffer
            if parsed is _TOO_BIG:
                head = self._buf[start : start + MAX_REJECT_SOURCE_CHARS]
                self._skip_value()
                yield Rejected(line, "request_too_large", self._too_big(line), _text_source(head))
            else:
                obj, end = parsed  # type: ignore[misc]
                raw = self._buf[start : min(end, start + MAX_REJECT_SOURCE_CHARS)]
                self._pos = end
                if end - start > MAX_LINE_BYTES:
                    yield Rejected(line, "request_too_large", self._too_big(line), _text_source(raw))
                else:
                    yield _to_row(validate, line, obj, raw)
            char = self._peek()
            if char == ",":
                self._pos += 1
                char = self._peek()
                if char == "]":
                    raise self._syntax_error("trailing comma before ']'")
            elif char == "]":
                self._pos += 1
                return
            elif char == "":
                raise self._truncated()
            else:
                raise self._syntax_error("expected ',' or ']' after an array element")


# --- CSV ------------------------------------------------------------------------------------------


class _Dialect(csv.Dialect):
    delimiter = ","
    quotechar = '"'
    doublequote = True
    skipinitialspace = False
    lineterminator = "\n"
    quoting = csv.QUOTE_MINIMAL
    strict = True


class _CsvFeed:
    """Decoded lines for ``csv.reader``, one physical line at a time (csv reads no further ahead
    than the record it is parsing). Remembers the last undecodable and the last too-long line so
    the record that contains them can be rejected, and the current record's text (up to 1 KiB)."""

    __slots__ = ("_lines", "bad_line", "long_line", "pending", "pending_chars")

    def __init__(self, lines: Iterator[bytes | _TooLong]) -> None:
        self._lines = lines
        self.bad_line = 0
        self.long_line = 0
        self.pending: list[str] = []
        self.pending_chars = 0

    def start_record(self) -> None:
        self.pending.clear()
        self.pending_chars = 0

    def text(self) -> str:
        return _text_source("\n".join(self.pending))

    def __iter__(self) -> Iterator[str]:
        number = 0
        for line in self._lines:
            number += 1
            if line.__class__ is not bytes:
                self.long_line = number
                text = line.head.decode("utf-8", "replace")
                if self.pending_chars < MAX_REJECT_SOURCE_CHARS:
                    self.pending.append(text)
                    self.pending_chars += len(text)
                yield "\n"
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                text = line.decode("utf-8", "surrogateescape")
                self.bad_line = number
            if self.pending_chars < MAX_REJECT_SOURCE_CHARS:
                self.pending.append(text)
                self.pending_chars += len(text)
            yield text + "\n"


_FIELD, _JSON_FIELD, _JSON_PROPS, _PROP, _UNNAMED = range(5)
_CSV_COLUMNS: dict[str, dict[str, int]] = {
    "fullstory.users": {"uid": _FIELD, "display_name": _FIELD, "email": _FIELD, "properties": _JSON_PROPS},
    "fullstory.events": {
        "name": _FIELD,
        "timestamp": _FIELD,
        "user": _JSON_FIELD,
        "session": _JSON_FIELD,
        "context": _JSON_FIELD,
        "properties": _JSON_PROPS,
    },
}


def _csv_plan(header: list[str], job_type: str) -> list[tuple[int, int, str]]:
    known = _CSV_COLUMNS[job_type]
    plan: list[tuple[int, int, str]] = []
    seen: set[str] = set()
    for index, cell in enumerate(header):
        name = cell.strip()
        if not name:
            plan.append((index, _UNNAMED, ""))
            continue
        if name in seen:
            raise InputError("invalid_header", f"Column {_shown(name)} appears more than once in the CSV header.")
        seen.add(name)
        plan.append((index, known.get(name, _PROP), name))
    if job_type == "fullstory.events" and "name" not in seen:
        raise InputError("missing_column", "A CSV of events needs a 'name' column.")
    return plan


def _csv_request(plan: list[tuple[int, int, str]], header: list[str], record: list[str], line: int) -> dict | Rejected:
    request: dict[str, Any] = {}
    props: dict[str, Any] | None = None
    json_props: dict[str, Any] | None = None
    for index, kind, name in plan:
        cell = record[index]
        if not cell:
            continue
        if kind == _PROP:
            if props is None:
                props = {name: cell}
            else:
                props[name] = cell
        elif kind == _FIELD:
            request[name] = cell
        elif kind == _UNNAMED:
            return Rejected(
                line,
                "invalid_property_name",
                f"Column {index + 1} has no header name but its cell on line {line} is not empty.",
                dict(zip(header, record, strict=True)),
            )
        else:
            try:
                value = _decode(cell)
            except (ValueError, RecursionError) as exc:
                msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "not JSON"
                return Rejected(
                    line,
                    "invalid_json",
                    f"Column '{name}' is not valid JSON: {msg}.",
                    dict(zip(header, record, strict=True)),
                )
            if kind == _JSON_FIELD:
                request[name] = value
            elif value.__class__ is not dict:
                return Rejected(
                    line,
                    "invalid_type",
                    "Column 'properties' must hold a JSON object.",
                    dict(zip(header, record, strict=True)),
                )
            else:
                json_props = value
    if json_props is not None:
        if props:
            both = props.keys() & json_props.keys()
            if both:
                return Rejected(
                    line,
                    "duplicate_property",
                    f"Property {_shown(min(both))} is given both as a column and in the 'properties' column.",
                    dict(zip(header, record, strict=True)),
                )
            json_props.update(props)
        props = json_props
    if props is not None:
        request["properties"] = props
    return request


def _read_csv(
    read: Callable[[int], bytes], validate: Callable[[dict, int], None], job_type: str
) -> Iterator[Row | Rejected]:
    feed = _CsvFeed(_iter_lines(read))
    reader = csv.reader(feed, _Dialect)
    before = 0
    while True:  # header: the first record that is not a blank line
        try:
            header = next(reader)
        except StopIteration:
            raise InputError("empty_file", "The CSV file is empty; a header row is required.") from None
        except csv.Error as exc:
            raise InputError("csv_malformed", f"The CSV header at line {before + 1} is malformed: {exc}.") from None
        if feed.long_line > before:
            raise InputError("line_too_long", f"The CSV header is longer than {MAX_LINE_BYTES} bytes.")
        if feed.bad_line > before:
            raise InputError("invalid_utf8", "The CSV header is not valid UTF-8.")
        if header:
            break
        before = reader.line_num
    if not any(cell.strip() for cell in header):
        raise InputError("missing_header", f"The CSV header at line {before + 1} names no columns.")
    header = [cell.strip() for cell in header]
    plan = _csv_plan(header, job_type)
    columns = len(header)
    while True:
        start = reader.line_num + 1
        feed.start_record()
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Rejected(
                start,
                "csv_malformed",
                f"The CSV record starting at line {start} is malformed: {exc}.",
                feed.text(),
            )
            continue
        if feed.long_line >= start:
            yield Rejected(
                start,
                "line_too_long",
                f"Line {feed.long_line} is longer than {MAX_LINE_BYTES} bytes.",
                feed.text(),
            )
            continue
        if feed.bad_line >= start:
            yield Rejected(start, "invalid_utf8", f"Line {feed.bad_line} is not valid UTF-8.", feed.text())
            continue
        if not record or not any(record):
            continue  # blank line, or a row of empty cells
        if len(record) != columns:
            yield Rejected(
                start,
                "csv_column_count",
                f"The CSV record starting at line {start} has {len(record)} cells; the header has {columns} columns.",
                record,
            )
            continue
        request = _csv_request(plan, header, record, start)
        if request.__class__ is Rejected:
            yield request  # type: ignore[misc]
        else:
            yield _to_row(validate, start, request, None)


# --- entry point ----------------------------------------------------------------------------------


def read_requests(
    stream: BinaryIO,
    fmt: InputFormat,
    job_type: JobType,
    *,
    max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES,
) -> Iterator[Row | Rejected]:
    """Stream ``Row``/``Rejected`` items from ``stream`` (read in bounded chunks, never whole).

    ``line`` is the 1-based physical line where the row starts (for a pretty-printed JSON array,
    where the element starts; for CSV, where the record starts). Blank lines are skipped and not
    counted as rows. Raises ``InputError`` (during iteration) when the file as a whole is unreadable:
    corrupt/truncated gzip, gzip over ``max_uncompressed_bytes``, a JSON document that is not an
    array / ``{"requests": [...]}`` or is truncated, a CSV without a usable header. Raises
    ValueError at once for an unknown ``job_type``.
    """
    validate = _validator(job_type)
    read = _byte_reader(stream, fmt, max_uncompressed_bytes)
    if fmt.kind == "ndjson":
        return _read_ndjson(read, validate)
    if fmt.kind == "json":
        return iter(_JsonDocument(read, validate, job_type))
    if fmt.kind == "csv":
        return _read_csv(read, validate, job_type)
    raise ValueError(f"unknown input format {fmt.kind!r}")
