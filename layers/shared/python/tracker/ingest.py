"""Turn an input file stream into validated provider requests and rejected rows.

Core reading, for every provider: pure domain code for the Lambda layer, standard library only (the
Lambda runtime has no ijson). It knows no provider: what one request must be arrives as a
:class:`RowRules` (a provider's rules, handed over by tracker.catalogue). Everything streams: input
is read in bounded chunks, one row (or JSON-array element) at a time, so memory stays flat whatever
the file size.

Formats (see ``detect_format``): NDJSON (``.ndjson``/``.jsonl``), a JSON document (``.json``) and
CSV (``.csv``), each optionally gzip-compressed (``.gz``).

Files as people export them: what a file really is, is found once, from its first bytes, before the
first row (``read_requests`` answers it as ``Reading.layout``; nothing of it runs per row):

* gzip content is decompressed whether or not the name ends in ``.gz``;
* a file that is not text at all (an Excel workbook, a zip, Parquet, PDF, ...) is refused
  (``unsupported_format``) with its name and what to do (``describe_binary``);
* text is UTF-8 (a BOM is dropped), or UTF-16 / UTF-32 with a byte-order mark (Excel's "Unicode
  text" is UTF-16LE with a BOM, tab-separated) or UTF-16 without one (told by its zero bytes): those
  are decoded on the fly, chunk by chunk, into UTF-8 for the readers;
* classic Mac line ends (a lone CR, Excel's "CSV (Macintosh)") are read as line ends;
* CSV: the delimiter (``,`` ``;`` tab ``|``) is told from the header line (see ``_detect_delimiter``).

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
  not valid UTF-8 is rejected (``invalid_utf8``; ``invalid_utf16`` for a lone surrogate in UTF-16
  input), the rest of the file is read. Only an undecodable header is a job-level ``InputError``,
  whose message says which encoding the file seems to be in.
* CSV columns the rules require (``RowRules.csv_required``: the column that identifies a row, e.g.
  FullStory users' ``uid``) missing from the header end the file (``missing_column``), naming the
  column, the columns found and the delimiter read; nothing of the file is sent.
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
import itertools
import json
import re
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, BinaryIO, Literal, TypeAlias

from tracker.limits import DEFAULT_MAX_UNCOMPRESSED_BYTES, MAX_LINE_BYTES, MAX_REJECT_SOURCE_CHARS

__all__ = [
    "CsvColumn",
    "InputError",
    "InputFormat",
    "InputLayout",
    "Reading",
    "Rejected",
    "Row",
    "RowInvalid",
    "RowRules",
    "describe_binary",
    "detect_format",
    "encode_compact",
    "make_row",
    "read_requests",
    "shown_name",
    "unsupported_upload",
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
class InputLayout:
    """What a file turned out to be, found once from its first bytes (CSV: and its header line)."""

    kind: FormatKind
    gzip: bool  # gzip-compressed (by its name, or by its content under a plain name)
    encoding: str  # the codec the text was in: utf-8, utf-16-le, utf-16-be, utf-32-le, utf-32-be
    bom: bool  # it started with a byte-order mark
    cr_newlines: bool = False  # lines ended by a lone CR (classic Mac), read as line ends
    delimiter: str | None = None  # CSV: the delimiter told from the header line

    def as_dict(self) -> dict[str, Any]:
        """For the job record and manifest.json."""
        return {
            "format": self.kind,
            "gzip": self.gzip,
            "encoding": self.encoding,
            "bom": self.bom,
            "newlines": "CR" if self.cr_newlines else "LF or CRLF",
            "delimiter": self.delimiter,
        }


class Reading:
    """The rows of one file (iterate it once) and its ``layout``. Iterating gives the reader's own
    generator, so nothing sits between the caller and the rows."""

    __slots__ = ("_rows", "layout")

    def __init__(self, rows: Iterator[Row | Rejected], layout: InputLayout) -> None:
        self._rows = rows
        self.layout = layout

    def __iter__(self) -> Iterator[Row | Rejected]:
        return self._rows

    def __next__(self) -> Row | Rejected:
        return next(self._rows)


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
    # Columns a CSV header must have, typically the one that identifies a row (a header without it was
    # misread or is the wrong file: the job fails ``missing_column`` instead of rejecting every row).
    csv_required: tuple[str, ...] = ()
    # Top-level keys of a JSON document besides "requests" that the provider refuses: key -> (code, message).
    refused_document_keys: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    # The field naming the record a request upserts (users: "uid"): rows sharing it are applied in file order.
    identity: str | None = None


# --- format detection ---------------------------------------------------------------------------

# .tsv and .txt are delimited text read as CSV (Excel's "Unicode Text" is a tab-separated .txt).
_KINDS: dict[str, FormatKind] = {
    "csv": "csv",
    "tsv": "csv",
    "txt": "csv",
    "ndjson": "ndjson",
    "jsonl": "ndjson",
    "json": "json",
}


def detect_format(key: str) -> InputFormat:
    """Format from the object key's suffix (case-insensitive): .csv (.tsv, .txt: delimited text too),
    .ndjson, .jsonl, .json, each optionally followed by .gz."""
    name = key.rsplit("/", 1)[-1].lower()
    compressed = name.endswith(".gz")
    if compressed:
        name = name[:-3]
    _, dot, ext = name.rpartition(".")
    kind = _KINDS.get(ext) if dot else None
    if kind is None:
        raise InputError(
            "unsupported_format",
            f"Cannot tell the format of {key!r}: the name must end in .csv (or .tsv, .txt), .ndjson, .jsonl or .json, "
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


# --- byte source: what the file is, told once from its first bytes ----------------------------------

_CHUNK = 256 * 1024
_SNIFF_BYTES = 64 * 1024  # looked at once per file, before the first row
_ZIP_SNIFF_BYTES = 1024 * 1024  # a zip's entry names (xl/...) may sit behind a first entry's data
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_KIND_NAMES = {"csv": "CSV", "ndjson": "NDJSON", "json": "JSON"}

# Byte-order marks, UTF-32LE's before UTF-16LE's (it starts with it): (BOM, codec, name for people).
_BOMS = (
    (codecs.BOM_UTF8, "utf-8", "UTF-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16"),
)
_ENCODING_NAMES = {codec: name for _, codec, name in _BOMS}

_SPREADSHEET_ADVICE = 'save it as "CSV UTF-8 (Comma delimited)" and upload the .csv'
_EXPORT_ADVICE = "export the rows as CSV, NDJSON or JSON (optionally gzip-compressed) and upload that"
_ARCHIVE_ADVICE = "unpack it and upload the CSV, NDJSON or JSON file inside (gzip-compressed is fine: .csv.gz)"
# Magic numbers of files people upload by mistake: (prefix, what it is, what to do).
_MAGIC = (
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook (.xls) or another legacy Office file",
     _SPREADSHEET_ADVICE),
    (b"PAR1", "a Parquet file", _EXPORT_ADVICE),
    (b"%PDF-", "a PDF document", _EXPORT_ADVICE),
    (b"SQLite format 3\x00", "an SQLite database", _EXPORT_ADVICE),
    (b"Obj\x01", "an Avro file", _EXPORT_ADVICE),
    (b"ARROW1", "an Arrow file", _EXPORT_ADVICE),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive", _ARCHIVE_ADVICE),
    (b"Rar!\x1a\x07", "a RAR archive", _ARCHIVE_ADVICE),
    (b"\xfd7zXZ\x00", "an xz-compressed file", "compress it with gzip instead (.csv.gz), or not at all"),
    (b"\x28\xb5\x2f\xfd", "a Zstandard-compressed file", "compress it with gzip instead (.csv.gz), or not at all"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image", _EXPORT_ADVICE),
    (b"\xff\xd8\xff", "a JPEG image", _EXPORT_ADVICE),
)  # fmt: skip
_BZIP2 = re.compile(rb"BZh[1-9]1AY&SY")


def describe_binary(head: bytes) -> tuple[str, str] | None:
    """(what the file is, what to do) when its first bytes say it is not text; None for text.

    Zip-based formats are told apart by their entry names, which a zip stores uncompressed in front of
    each entry: an Excel workbook (.xlsx) has ``xl/workbook.xml`` and ``xl/worksheets/``, an
    OpenDocument spreadsheet starts with its ``mimetype`` entry.
    """
    if head.startswith(_ZIP_MAGICS):
        if b"xl/workbook.xml" in head or b"xl/worksheets/" in head:
            return "an Excel workbook (.xlsx)", _SPREADSHEET_ADVICE
        if b"application/vnd.oasis.opendocument.spreadsheet" in head[:200]:
            return "an OpenDocument spreadsheet (.ods)", _SPREADSHEET_ADVICE
        return "a ZIP archive", _ARCHIVE_ADVICE
    for magic, what, advice in _MAGIC:
        if head.startswith(magic):
            return what, advice
    if _BZIP2.match(head):
        return "a bzip2-compressed file", "compress it with gzip instead (.csv.gz), or not at all"
    return None


def unsupported_upload(key: str, error: InputError, stream: BinaryIO) -> InputError:
    """The error for an upload whose name gives no format (``error`` from ``detect_format``): when its
    first bytes tell what it is (an Excel workbook...), the message names that and what to do."""
    found = describe_binary(_take(stream.read, _ZIP_SNIFF_BYTES))
    if found is None:
        return error
    what, advice = found
    return InputError("unsupported_format", f"{key!r} is {what}: {advice}.")


def _take(read: Callable[[int], bytes], size: int) -> bytes:
    """Up to ``size`` bytes (fewer only at the end of the input)."""
    parts: list[bytes] = []
    got = 0
    while got < size:
        data = read(size - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


class _Replay:
    """A read-only stream that first gives back the bytes already taken from ``read`` to look at them."""

    __slots__ = ("_head", "_read")

    def __init__(self, head: bytes, read: Callable[[int], bytes]) -> None:
        self._head = head
        self._read = read

    def read(self, n: int = -1) -> bytes:
        head = self._head
        if not head:
            return self._read(n)
        if n < 0:
            self._head = b""
            return head + self._read(n)
        self._head = head[n:]
        return head[:n]


def _gunzip(stream: Any, max_uncompressed_bytes: int) -> Callable[[int], bytes]:
    """A ``read(n)`` over the decompressed input that turns gzip failures into InputError."""
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


def _text_encoding(head: bytes) -> tuple[str, bytes]:
    """(codec, BOM) of text starting with ``head``. Without a BOM: UTF-16 when every other byte is zero
    (ASCII-range characters in UTF-16 have a zero high byte), else UTF-8."""
    for bom, codec, _ in _BOMS:
        if head.startswith(bom):
            return codec, bom
    sample = head[:4096]
    half = len(sample) // 2
    if half >= 2:
        even, odd = sample[0 : half * 2 : 2].count(0), sample[1 : half * 2 : 2].count(0)
        if odd >= 0.9 * half and even <= 0.1 * half:
            return "utf-16-le", b""
        if even >= 0.9 * half and odd <= 0.1 * half:
            return "utf-16-be", b""
    return "utf-8", b""


def _transcoded(read: Callable[[int], bytes], codec: str) -> Callable[[int], bytes]:
    """``read(n)`` of UTF-8 bytes from input in ``codec``, decoded chunk by chunk (never the whole file).
    A lone surrogate passes through as bytes that are not UTF-8, so the readers reject the row holding it
    like any other undecodable line; input that ends inside a character fails the file."""
    decoder = codecs.getincrementaldecoder(codec)("surrogatepass")
    name = _ENCODING_NAMES[codec]
    total = 0

    def read_utf8(n: int) -> bytes:
        nonlocal total
        while True:
            data = read(n)
            try:
                text = decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                raise InputError(
                    _invalid_text_code(name),
                    f"The file is {name} text but is not valid {name} after {total + exc.start} bytes "
                    f"({exc.reason}): it is truncated or not {name}.",
                ) from None
            total += len(data)
            if text or not data:
                return text.encode("utf-8", "surrogatepass")

    return read_utf8


def _invalid_text_code(name: str) -> str:
    return "invalid_" + name.lower().replace("-", "")  # invalid_utf8, invalid_utf16, invalid_utf32


def _open(
    stream: BinaryIO, fmt: InputFormat, max_uncompressed_bytes: int
) -> tuple[Callable[[int], bytes], InputLayout]:
    """``read(n)`` of the input as UTF-8 bytes with "\\n" line ends, and what the input turned out to be.
    Looks at the first bytes once; raises InputError for content that is not text."""
    compressed = fmt.gzip
    read = _gunzip(stream, max_uncompressed_bytes) if compressed else stream.read
    head = _take(read, _SNIFF_BYTES)
    if not compressed and head.startswith(_GZIP_MAGIC):
        compressed = True  # gzip content under a plain name (e.g. a tool that compresses on upload)
        read = _gunzip(_Replay(head, read), max_uncompressed_bytes)
        head = _take(read, _SNIFF_BYTES)
    if head.startswith(_ZIP_MAGICS):
        head += _take(read, _ZIP_SNIFF_BYTES - len(head))
    kind = _KIND_NAMES[fmt.kind]
    found = describe_binary(head)
    if found is not None:
        raise InputError("unsupported_format", f"The file is {found[0]}, not {kind} text: {found[1]}.")
    codec, bom = _text_encoding(head)
    head = head[len(bom) :]
    nuls = head.count(0) if codec == "utf-8" else 0
    if nuls >= 16 and nuls * 100 > len(head):  # a stray NUL or two is the readers' business (one row)
        raise InputError(
            "unsupported_format",
            f"The file is binary data (its first bytes hold many NUL bytes), not {kind} text: {_EXPORT_ADVICE}.",
        )
    text = head.decode(codec, "ignore")
    cr_newlines = "\r" in text and "\n" not in text
    read = _Replay(head, read).read
    if codec != "utf-8":
        read = _transcoded(read, codec)
    if cr_newlines:
        lines_read = read

        def read(n: int) -> bytes:  # UTF-8 never has a 0x0D byte inside a character
            return lines_read(n).replace(b"\r", b"\n")

    return read, InputLayout(fmt.kind, compressed, codec, bool(bom), cr_newlines)


class _TooLong:
    """Marker yielded by ``_iter_lines`` for a line over MAX_LINE_BYTES; keeps its first bytes."""

    __slots__ = ("head",)

    def __init__(self, head: bytes) -> None:
        self.head = head


def _iter_lines(read: Callable[[int], bytes], max_line: int = MAX_LINE_BYTES) -> Iterator[bytes | _TooLong]:
    """Physical lines without their b"\\n" (a CR of CRLF stays).

    Reads fixed-size chunks; a line longer than ``max_line`` is never held in full: once the
    pending part exceeds the limit, the rest is discarded up to the next newline.
    """
    chunk = read(_CHUNK)
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


def _read_ndjson(
    read: Callable[[int], bytes], validate: Callable[[dict, int], None], encoding: str = "utf-8"
) -> Iterator[Row | Rejected]:
    name = _ENCODING_NAMES[encoding]
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
                _invalid_text_code(name),
                f"Line {number} is not valid {name} (byte {exc.start + 1})."
                if name == "UTF-8"
                else f"Line {number} is not valid {name} (an unpaired surrogate).",
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
        self._utf8 = codecs.getincrementaldecoder("utf-8")("surrogateescape")  # _open dropped any BOM
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


# Delimiters people's tools write, in the order preferred when the header reads equally well with several.
_DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_NAMES = {",": "comma (,)", ";": "semicolon (;)", "\t": "tab", "|": "pipe (|)"}


def _detect_delimiter(header: str, rules: RowRules) -> str:
    """The delimiter of a CSV file, from its header line (once per file).

    Each candidate parses the line as the csv module would (so quoted names may hold other delimiters,
    and a quote misplaced for a candidate rules it out); the best reading names the most columns the
    rules know (request fields, required columns, the properties column), then has the most columns;
    a tie goes to the earlier of ``_DELIMITERS``. A header of one column reads the same with every
    candidate: comma.
    """
    known = {*rules.csv_columns, *rules.csv_required, rules.csv_properties}
    best, choice = (-1, -1), ","
    for delimiter in _DELIMITERS:
        try:
            cells = next(csv.reader([header], _Dialect, delimiter=delimiter))
        except (csv.Error, StopIteration):
            continue
        if len(cells) < 2:
            continue
        score = (sum(cell.strip() in known for cell in cells), len(cells))
        if score > best:
            best, choice = score, delimiter
    return choice


def _csv_lines(read: Callable[[int], bytes], rules: RowRules) -> tuple[Iterator[bytes | _TooLong], str]:
    """The file's lines (all of them, the header line included) and its delimiter, told from the first
    line that is not blank."""
    lines = _iter_lines(read)
    taken: list[bytes | _TooLong] = []
    for line in lines:
        taken.append(line)
        if line.__class__ is not bytes or line.strip():  # type: ignore[union-attr]
            break
    first = taken[-1] if taken else b""
    delimiter = ","
    if first.__class__ is bytes:
        delimiter = _detect_delimiter(first.decode("utf-8", "replace").rstrip("\r"), rules)  # type: ignore[union-attr]
    return itertools.chain(taken, lines), delimiter


# csv.Error texts in plain words (they are Python's, e.g. "new-line character seen in unquoted field - do
# you need to open the file in universal-newline mode?").
_CSV_PROBLEMS = (
    (
        "new-line character seen in unquoted field",
        "a carriage return (CR) inside a cell that is not quoted; quote the cell, or save the file with "
        "Windows (CRLF) or Unix (LF) line ends",
    ),
    (
        "expected after",
        "a quoted cell is followed by other characters before the delimiter "
        '(a quote inside a quoted cell is written "")',
    ),
    ("line contains NUL", "it holds a NUL byte, which CSV text never has"),
    ("unexpected end of data", "a quoted cell is not closed before the end of the file"),
    ("field larger than field limit", f"a cell is longer than {csv.field_size_limit()} characters"),
)


def _csv_problem(exc: csv.Error) -> str:
    text = str(exc)
    return next((plain for fragment, plain in _CSV_PROBLEMS if fragment in text), text)


def _first_bad_byte(text: str) -> str:
    """Where a line decoded with surrogateescape first held a byte that is not UTF-8: " (byte 0xE9 at character
    4)", or "" when the text at hand does not show it."""
    where = next((i for i, char in enumerate(text) if "\udc80" <= char <= "\udcff"), None)
    if where is None:
        return ""
    return f" (byte 0x{ord(text[where]) - 0xDC00:02X} at character {where + 1})"


def _undecodable_header(name: str, text: str) -> InputError:
    """The header is not text in the file's encoding: say which encoding it was read as and what it seems to be."""
    if name != "UTF-8":
        return InputError(_invalid_text_code(name), f"The CSV header is not valid {name} (an unpaired surrogate).")
    return InputError(
        "invalid_utf8",
        f"The CSV header is not valid UTF-8{_first_bad_byte(text)}: the file is in another encoding, probably "
        'Windows-1252 or ISO-8859-1 ("ANSI"). Save it as "CSV UTF-8 (Comma delimited)" (or as "Unicode Text", '
        "UTF-16) and upload it again.",
    )


def _undecodable_line(name: str, number: int, text: str) -> str:
    if name != "UTF-8":
        return f"Line {number} is not valid {name} (an unpaired surrogate)."
    return (
        f"Line {number} is not valid UTF-8{_first_bad_byte(text)}: the file may be in Windows-1252 or "
        "ISO-8859-1; save it as UTF-8."
    )


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


def _missing_column(name: str, header: list[str], rules: RowRules, delimiter: str) -> InputError:
    shown = ", ".join(shown_name(cell) for cell in header[:12]) + (", ..." if len(header) > 12 else "")
    message = (
        f"A CSV of {rules.rows} needs a {name!r} column; the header, read with a {_DELIMITER_NAMES[delimiter]} "
        f"as the delimiter, has {len(header)} column{'s' if len(header) != 1 else ''}: {shown}."
    )
    near = next((cell for cell in header if cell.strip().lower() == name.lower()), None)
    if near is not None:
        message += f" Column {shown_name(near)} differs only in case: rename it {name!r}."
    return InputError("missing_column", message)


def _csv_plan(header: list[str], rules: RowRules, delimiter: str = ",") -> list[tuple[int, int, str]]:
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
            raise _missing_column(name, header, rules, delimiter)
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


def _read_csv(
    lines: Iterator[bytes | _TooLong], rules: RowRules, delimiter: str = ",", encoding: str = "utf-8"
) -> Iterator[Row | Rejected]:
    name = _ENCODING_NAMES[encoding]
    feed = _CsvFeed(lines)
    reader = csv.reader(feed, _Dialect, delimiter=delimiter)
    before = 0
    while True:  # header: the first record that is not a blank line
        try:
            header = next(reader)
        except StopIteration:
            raise InputError("empty_file", "The CSV file is empty; a header row is required.") from None
        except csv.Error as exc:
            raise InputError(
                "csv_malformed", f"The CSV header at line {before + 1} is malformed: {_csv_problem(exc)}."
            ) from None
        if feed.long_line > before:
            raise InputError("line_too_long", f"The CSV header is longer than {MAX_LINE_BYTES} bytes.")
        if feed.bad_line > before:
            raise _undecodable_header(name, "".join(feed.pending))
        if header:
            break
        before = reader.line_num
    if not any(cell.strip() for cell in header):
        raise InputError("missing_header", f"The CSV header at line {before + 1} names no columns.")
    header = [cell.strip() for cell in header]
    plan = _csv_plan(header, rules, delimiter)
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
                f"The CSV record starting at line {start} is malformed: {_csv_problem(exc)}.",
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
            index = feed.bad_line - start  # pending holds the record's lines (its first 1 KiB)
            reason = _undecodable_line(name, feed.bad_line, feed.pending[index] if index < len(feed.pending) else "")
            yield Rejected(start, _invalid_text_code(name), reason, feed.text())
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
) -> Reading:
    """``Row``/``Rejected`` items from ``stream`` (read in bounded chunks, never whole), and the file's layout.

    Looks at the first bytes (and, for CSV, the header line) at once, so ``Reading.layout`` is known
    before the first row and a file that is not text raises ``InputError`` here. ``line`` is the
    1-based physical line where the row starts (for a pretty-printed JSON array, where the element
    starts; for CSV, where the record starts). Blank lines are skipped and not counted as rows. Raises
    ``InputError`` (here or during iteration) when the file as a whole is unreadable: not text (a
    workbook, an archive...), corrupt/truncated gzip, gzip over ``max_uncompressed_bytes``, a JSON
    document that is not an array / ``{"requests": [...]}`` or is truncated, a CSV without a usable
    header or without a column the rules require. Every request is checked against ``rules`` (the
    provider's, from tracker.catalogue).
    """
    if fmt.kind not in _KIND_NAMES:
        raise ValueError(f"unknown input format {fmt.kind!r}")
    read, layout = _open(stream, fmt, max_uncompressed_bytes)
    if fmt.kind == "ndjson":
        return Reading(_read_ndjson(read, rules.validate, layout.encoding), layout)
    if fmt.kind == "json":
        return Reading(iter(_JsonDocument(read, rules)), layout)
    lines, delimiter = _csv_lines(read, rules)
    return Reading(_read_csv(lines, rules, delimiter, layout.encoding), replace(layout, delimiter=delimiter))
