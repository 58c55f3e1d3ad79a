"""Turn an input file stream into validated provider requests and rejected rows.

Core reading, for every provider: pure domain code for the Lambda layer, standard library only (the
Lambda runtime has no ijson). It knows no provider: what one request must be arrives as a
:class:`RowRules` (a provider's rules, handed over by tracker.catalogue). Everything streams: input
is read in bounded chunks, one row (or JSON-array element) at a time, so memory stays flat whatever
the file size.

Formats (see ``detect_format``): NDJSON (``.ndjson``/``.jsonl``), a JSON document (``.json``) and
CSV (``.csv``), each optionally gzip-compressed (``.gz``). Input is UTF-8, with or without a BOM.

``read_requests`` yields, in input order, a ``Row`` for every request that passed validation (with
its compact JSON encoding, computed once and reused by ``batching.BatchSplitter``) and a
``Rejected`` for every row that did not. Problems that make the whole file unreadable raise
``InputError``; rows yielded before such an error stay yielded, the caller decides what to do.
``validate_request`` (and ``make_row``, which also returns the encoded ``Row``) apply the same
per-request checks to requests that did not come from a file, e.g. inline rows of ``POST /jobs``.

Decisions (documented here because other code relies on them):

* CSV: the rules name the columns that are request fields (text or JSON); every other named column
  is a string property collected into the rules' ``csv_properties`` object, and a column of that
  name holds a JSON object merged with them.
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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, BinaryIO, Literal, TypeAlias

from tracker.limits import DEFAULT_MAX_UNCOMPRESSED_BYTES, MAX_LINE_BYTES, MAX_REJECT_SOURCE_CHARS

__all__ = [
    "CsvColumn",
    "InputError",
    "InputFormat",
    "Rejected",
    "Row",
    "RowInvalid",
    "RowRules",
    "detect_format",
    "encode_compact",
    "make_row",
    "read_requests",
    "shown_name",
    "validate_request",
]

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


class RowInvalid(Exception):
    """Raised by a provider's validator: the request is refused with ``code`` (short snake_case) and
    ``reason`` (one sentence naming the field and the limit, never quoting a value)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(code, reason)
        self.problem = (code, reason)


class CsvColumn(Enum):
    TEXT = "text"  # the cell is the field's string value
    JSON = "json"  # the cell holds the field's value as JSON


@dataclass(frozen=True, slots=True)
class RowRules:
    """What one request of a provider's batch import must be: the readers apply it to every row.

    ``validate(request, size)`` raises :class:`RowInvalid` for a request the provider would refuse;
    ``size`` is the byte length of the request's compact JSON (so a validator can skip per-value
    size checks when the whole request is small). It runs once per row: keep it fast."""

    rows: str  # what the rows are, for messages: "users", "events"
    validate: Callable[[dict, int], None]
    csv_columns: Mapping[str, CsvColumn] = field(default_factory=dict)  # the columns that are request fields
    csv_properties: str = "properties"  # the object field every other named column goes into
    csv_required: tuple[str, ...] = ()  # columns a CSV header must have
    # Top-level keys of a JSON document besides "requests" that the provider refuses: key -> (code, message).
    refused_document_keys: Mapping[str, tuple[str, str]] = field(default_factory=dict)


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
encode_compact = _encode  # compact UTF-8-ready JSON text, as rows are encoded (for providers' validators)


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


# --- rows ---------------------------------------------------------------------------------------


def shown_name(name: str, limit: int = 64) -> str:
    """A field/property name for a reason sentence (names are not personal data; long ones cut)."""
    return repr(name if len(name) <= limit else name[:limit] + "...")


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
    except RowInvalid as problem:
        return Rejected(line, problem.problem[0], problem.problem[1], obj)
    return Row(line, obj, encoded)


def make_row(rules: RowRules, request: Any, line: int = 0) -> Row | Rejected:
    """Validate and encode one request (e.g. an inline request of ``POST /jobs``), as the readers do."""
    if not isinstance(request, dict):
        return Rejected(line, "invalid_type", "A request must be a JSON object.", _text_source(None, request))
    return _to_row(rules.validate, line, request, None)


def validate_request(rules: RowRules, request: Any) -> tuple[str, str] | None:
    """Check one request against the provider's rules: None when valid, else ``(code, reason)``. Also
    refuses requests that cannot be encoded as UTF-8 JSON or whose encoding exceeds ``MAX_LINE_BYTES``."""
    result = make_row(rules, request)
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

    def __init__(self, read: Callable[[int], bytes], rules: RowRules) -> None:
        self._read = read
        self._validate = rules.validate
        self._refused_keys = rules.refused_document_keys
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
        if key in self._refused_keys:
            return InputError(*self._refused_keys[key])
        if key == "requests":
            return self._syntax_error('"requests" appears twice')
        return InputError(
            "invalid_json_document",
            f"Unexpected top-level key {shown_name(key)}: the document must be an array of requests or an object "
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


_FIELD, _JSON_FIELD, _JSON_PROPS, _PROP, _UNNAMED = range(5)  # ints: compared once per cell
_COLUMN_KINDS = {CsvColumn.TEXT: _FIELD, CsvColumn.JSON: _JSON_FIELD}


def _csv_plan(header: list[str], rules: RowRules) -> list[tuple[int, int, str]]:
    plan: list[tuple[int, int, str]] = []
    seen: set[str] = set()
    for index, cell in enumerate(header):
        name = cell.strip()
        if not name:
            plan.append((index, _UNNAMED, ""))
            continue
        if name in seen:
            raise InputError("invalid_header", f"Column {shown_name(name)} appears more than once in the CSV header.")
        seen.add(name)
        if name == rules.csv_properties:
            plan.append((index, _JSON_PROPS, name))
        elif name in rules.csv_columns:
            plan.append((index, _COLUMN_KINDS[rules.csv_columns[name]], name))
        else:
            plan.append((index, _PROP, name))
    for name in rules.csv_required:
        if name not in seen:
            raise InputError("missing_column", f"A CSV of {rules.rows} needs a {name!r} column.")
    return plan


def _record_rejected(line: int, code: str, reason: str, header: list[str], record: list[str]) -> Rejected:
    """A CSV record refused before validation; its source is the record by column name."""
    return Rejected(line, code, reason, dict(zip(header, record, strict=True)))


def _csv_request(
    plan: list[tuple[int, int, str]], header: list[str], record: list[str], line: int, props_field: str
) -> dict | Rejected:
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
            return _record_rejected(
                line,
                "invalid_property_name",
                f"Column {index + 1} has no header name but its cell on line {line} is not empty.",
                header,
                record,
            )
        else:
            try:
                value = _decode(cell)
            except (ValueError, RecursionError) as exc:
                msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "not JSON"
                return _record_rejected(
                    line, "invalid_json", f"Column '{name}' is not valid JSON: {msg}.", header, record
                )
            if kind == _JSON_FIELD:
                request[name] = value
            elif value.__class__ is not dict:
                return _record_rejected(
                    line, "invalid_type", f"Column {props_field!r} must hold a JSON object.", header, record
                )
            else:
                json_props = value
    if json_props is not None:
        if props:
            both = props.keys() & json_props.keys()
            if both:
                return _record_rejected(
                    line,
                    "duplicate_property",
                    f"Property {shown_name(min(both))} is given both as a column and in the {props_field!r} column.",
                    header,
                    record,
                )
            json_props.update(props)
        props = json_props
    if props is not None:
        request[props_field] = props
    return request


def _read_csv(read: Callable[[int], bytes], rules: RowRules) -> Iterator[Row | Rejected]:
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
    plan = _csv_plan(header, rules)
    validate, props_field = rules.validate, rules.csv_properties
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
        request = _csv_request(plan, header, record, start, props_field)
        if request.__class__ is Rejected:
            yield request  # type: ignore[misc]
        else:
            yield _to_row(validate, start, request, None)


# --- entry point ----------------------------------------------------------------------------------


def read_requests(
    stream: BinaryIO,
    fmt: InputFormat,
    rules: RowRules,
    *,
    max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES,
) -> Iterator[Row | Rejected]:
    """Stream ``Row``/``Rejected`` items from ``stream`` (read in bounded chunks, never whole).

    ``line`` is the 1-based physical line where the row starts (for a pretty-printed JSON array,
    where the element starts; for CSV, where the record starts). Blank lines are skipped and not
    counted as rows. Raises ``InputError`` (during iteration) when the file as a whole is unreadable:
    corrupt/truncated gzip, gzip over ``max_uncompressed_bytes``, a JSON document that is not an
    array / ``{"requests": [...]}`` or is truncated, a CSV without a usable header. Every request
    is checked against ``rules`` (the provider's, from tracker.catalogue).
    """
    read = _byte_reader(stream, fmt, max_uncompressed_bytes)
    if fmt.kind == "ndjson":
        return _read_ndjson(read, rules.validate)
    if fmt.kind == "json":
        return iter(_JsonDocument(read, rules))
    if fmt.kind == "csv":
        return _read_csv(read, rules)
    raise ValueError(f"unknown input format {fmt.kind!r}")
