"""Keboola Storage API simulator (table export jobs), served over real HTTP.

Why it exists: the Keboola provider, the offline stack and the tests need a Storage API that
behaves like a Keboola stack -- ``X-StorageApi-Token``, ``export-async`` answering 202 with a storage
job, ``GET /v2/storage/jobs/{id}`` moving ``waiting`` -> ``processing`` -> ``success``/``error``,
``results`` null until the job is done, the exported file behind a short-lived signed URL, 503 +
``Retry-After`` during maintenance -- without a network, a project or real waiting. A job advances
by the number of status polls (deterministic, no sleeps in tests) or, for demos, by wall-clock time
read from ``config.clock`` (a test can pass its own clock).

Shapes follow the seed JobResponse schema (``../shared/seeds/003_*.txt``) and what a stack really
sends (the official ``kbcstorage`` client's fixtures): integer job and file ids, ``creatorToken.id``
a string, ``results`` ``{"file": {"id": <int>}}`` for a finished table export (TableExportJobResponse),
``error`` ``{code, message, exceptionId}`` for a failed one, and API errors as
``{"error", "code", "status": "error", "exceptionId"}``. Timestamps are RFC 3339 with a ``+00:00``
offset (a stack writes ``+0100`` without the colon, which the seed's ``format: date-time`` rejects).

Routes:
  POST /v2/storage/tables/{tableId}/export-async   form or JSON body: columns, limit, format, gzip,
                                                   whereColumn/whereValues/whereOperator
  GET  /v2/storage/tables/{tableId}                table detail: name, columns, rowsCount (what
                                                   kbcstorage and the PHP TableExporter read for the header)
  GET  /v2/storage/jobs/{id}                       one poll of a storage job
  GET  /v2/storage/files/{id}[?federationToken=1]  file detail with a freshly signed ``url`` and, asked
                                                   with federationToken, credentials for its file storage
  GET  /v2/storage/tokens/verify                   the token's identity
  GET  /download/{fileId}?expires=..&signature=..  the file itself, or the manifest of a sliced file (no
                                                   token: the URL is the credential); 403 once expired, as
                                                   an expired S3 presigned URL
  GET  /{account}/{container}/{blob}?{SAS}         Azure Blob Storage (keboola_storage.py)
  GET  [/download]/storage/v1/b/{b}/o/{o}?alt=media  GCS media download (keboola_storage.py)
  and, on ``s3_port``, an S3-compatible GetObject/HeadObject endpoint (keboola_storage.py).

Exports are as Keboola's Snowflake and Redshift backends make them (kbcstorage ``Tables.export_to_file``:
"the file containing table export is always without headers (it is always sliced on Snowflake and
Redshift)"): **headerless** and **sliced** -- a manifest ``{"entries": [{"url": ...}]}`` listing slices,
each a gzip member of its own when gzip is asked for (Snowflake ``COPY INTO <location>`` unloads in
parallel into files named ``data_0_0_0.csv.gz``, ...). ``sliced=False`` (``--unsliced``) writes one
headerless file instead. Where the file lies follows ``backend`` (``--backend aws|azure|gcp``): the
file detail's ``provider``, ``s3Path``/``absPath``/``gcsPath`` and credentials (../shared/DESIGN.md
"Keboola Storage facts"; kbcstorage ``Files.download``; the PHP client's ``Downloader/*``).

The demo table ``in.c-main.users`` (id,name,email; 50 rows: three slices) exists at start; exports of
``in.c-main.broken`` (and of every table with ``fail_exports=True``) end in ``error``.

Faults use the shared grammar (:mod:`jobtracker.simulators.faults`); targets map as ``submit`` =
export-async, ``status`` = job GET, ``pages`` = file detail and download. :func:`parse_keboola_fault` also
knows ``maintenance`` (503 + Retry-After), e.g. ``maintenance@status:2x``. Serving and ``--tls`` are shared
with the other simulators (:mod:`jobtracker.simulators.server`); this module is Keboola's API only.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import hmac
import io
import json
import secrets
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from jobtracker.simulators.faults import FAULT_TARGETS, JOB_FAULTS, REQUEST_FAULTS, Fault, parse_fault
from jobtracker.simulators.keboola_storage import (
    ABS_ACCOUNT,
    GCS_BUCKET,
    S3_BUCKET,
    S3_REGION,
    FileStorage,
    S3Endpoint,
)
from jobtracker.simulators.server import Answer, ApiError, Simulator, run_until_interrupted

__all__ = [
    "BACKENDS",
    "BROKEN_TABLE",
    "DEMO_TABLE",
    "Fault",
    "KeboolaSimulator",
    "KeboolaSimulatorConfig",
    "parse_fault",
    "parse_keboola_fault",
    "serve",
]

DEMO_TABLE = "in.c-main.users"
BROKEN_TABLE = "in.c-main.broken"  # exists, but every export of it ends in status "error"
EXPORT_FORMATS = ("rfc", "escaped", "raw")
BACKENDS = ("aws", "azure", "gcp")  # the file storage of a stack: S3, Azure Blob Storage, GCS
TERMINAL = ("success", "error")
FILE_MAX_AGE_DAYS = 15
# Fault kinds: the shared ones, plus `maintenance`, a stack's 503 + Retry-After (../shared/DESIGN.md
# "Keboola Storage facts"); no `repeat-token`: nothing is paged.
FAULT_KINDS = (*REQUEST_FAULTS, "maintenance", *(kind for kind in JOB_FAULTS if kind != "repeat-token"))
_FIRST_JOB_ID = 900_000_001
_FIRST_FILE_ID = 1_200_000_001


@dataclass
class KeboolaSimulatorConfig:
    """Knobs for the simulator; defaults give a fast, deterministic Keboola stack for tests."""

    token: str | None = None  # None: accept any non-empty X-StorageApi-Token; else only this one
    token_description: str = "jobtracker@example.com"  # creatorToken.description
    project_id: int = 4242
    polls_to_start: int = 1  # the N-th GET of a job is the first to see "processing"
    polls_to_complete: int | None = 2  # the N-th GET is the first to see success/error; None: wall clock
    waiting_seconds: float = 0.0  # wall-clock mode: time in "waiting"
    processing_seconds: float = 0.0  # wall-clock mode: then time in "processing"
    download_ttl_seconds: float = 5.0  # lifetime of a file's signed URL; 0: expired when handed out
    expire_first_urls: int = 0  # test hook: the first N signed URLs handed out are already expired
    fail_exports: bool = False  # every export job ends in "error"
    maintenance: bool = False  # every Storage API call answers 503 + Retry-After (downloads still work)
    maintenance_retry_after_seconds: int = 30
    retry_after_seconds: int = 1  # Retry-After on injected 429s
    faults: tuple[Fault, ...] = ()  # injected failures, see parse_keboola_fault
    fault_seed: int | None = None  # seed of the fault dice, for repeatable runs
    clock: Callable[[], float] = time.time  # seconds since the epoch: timestamps, URL expiry, wall-clock mode
    backend: str = "aws"  # where files lie: aws (S3), azure (Blob Storage) or gcp (GCS)
    sliced: bool = True  # table exports are sliced, as on Snowflake and Redshift; False: one file
    slice_rows: int = 25_000  # rows per slice (Snowflake unloads files of a size cap)...
    min_slices: int = 3  # ...and at least this many (one per unloading thread), some maybe empty
    credentials_ttl_seconds: float = 3600.0  # lifetime of the file storage credentials of a file detail
    credentials_uses: int | None = None  # test hook: credentials stop working after this many object reads
    drop_slices: tuple[int, ...] = ()  # test hook: these slices (0-based) of the next files are never stored
    manifest_body: bytes | None = None  # test hook: the next sliced files get this manifest instead
    # Where S3 objects go: None keeps them here, served on s3_port; a function giving a boto3 S3 client puts
    # them into that S3 (the offline stack's moto, where the tracker's own buckets are: one S3, as in AWS).
    s3_client: Callable[[], Any] | None = None


def parse_keboola_fault(spec: str) -> Fault:
    """:func:`parse_fault` plus ``maintenance[@TARGET][:RATE|:Nx]`` (503 + Retry-After on matching calls).
    ``repeat-token`` is refused: the Storage API has no paging for it to break."""
    if spec.strip().split(":", 1)[0].partition("@")[0] == "repeat-token":
        raise ValueError("fault repeat-token does not apply to the Keboola simulator (nothing is paged)")
    return parse_fault(spec, FAULT_KINDS, FAULT_TARGETS)


@dataclass
class _Table:
    columns: list[str]
    rows: list[list[str]]
    created: float


@dataclass
class _Identity:
    """Who created a job or file: Keboola shows the token's id and description, never the token."""

    token_id: str
    description: str


@dataclass
class _Job:
    id: int
    table_id: str
    params: dict[str, Any]  # operationParams as answered
    created: float
    run_id: str
    creator: _Identity
    fails: bool  # decided at submit time: the job ends in "error"
    gzip: bool
    polls: int = 0
    status: str = "waiting"
    started: float | None = None
    ended: float | None = None
    file_id: int | None = None
    error: dict[str, str] | None = None
    out_bytes: int = 0
    out_bytes_uncompressed: int = 0


@dataclass
class _File:
    id: int
    name: str
    created: float
    run_id: str
    creator: _Identity
    table_id: str
    content_type: str
    backend: str
    bucket: str  # S3/GCS bucket, Azure container
    key: str  # the file's key; a sliced file's manifest is key + "manifest"
    size: int
    sliced: bool
    slice_keys: list[str]
    manifest: bytes = b""


def _iso(ts: float) -> str:
    """RFC 3339, seconds precision, UTC written as ``+00:00`` (a stack writes ``+0100``-style offsets)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _exception_id() -> str:
    return f"exception-{secrets.token_hex(16)}"


def _json(status: int, value: Any, headers: dict[str, str] | None = None) -> Answer:
    return (
        status,
        json.dumps(value, ensure_ascii=False).encode(),
        {"Content-Type": "application/json", **(headers or {})},
    )


def _error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": message, "code": code, "status": "error", "exceptionId": _exception_id()}


def _s3_error(status: int, code: str, message: str) -> Answer:
    """What S3 answers on a presigned URL it refuses (XML, as the real bucket does)."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>{secrets.token_hex(8).upper()}</RequestId></Error>"
    ).encode()
    return status, body, {"Content-Type": "application/xml"}


_FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Dennis"]
_LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton", "Ritchie"]


def _demo_rows(count: int = 50) -> list[list[str]]:
    """Deterministic users; one name carries a comma and a quote so CSV quoting is exercised."""
    rows = []
    for i in range(1, count + 1):
        first, last = _FIRST[(i - 1) % len(_FIRST)], _LAST[(i * 3) % len(_LAST)]
        name = f"{first} {last}" if i != 7 else f'{first} "{last}", Jr.'
        rows.append([str(i), name, f"{first}.{last}{i}@example.com".lower()])
    return rows


def _as_list(value: Any) -> list[str]:
    """``columns`` as a JSON list, a comma-separated string, or repeated form fields."""
    if value is None:
        return []
    if isinstance(value, list):
        out: list[str] = []
        for item in value:
            out.extend(_as_list(item))
        return out
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _as_bool(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _request_params(headers: Any, body: bytes, query: str) -> dict[str, Any]:
    """Merge query string and body (form-urlencoded or JSON) into one dict; ``x[]`` keys become ``x``."""
    params: dict[str, Any] = {}

    def merge_form(text: str) -> None:
        for key, values in parse_qs(text, keep_blank_values=True).items():
            name = key[:-2] if key.endswith("[]") else key
            params[name] = values if key.endswith("[]") or len(values) > 1 else values[0]

    merge_form(query)
    if not body.strip():
        return params
    content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type == "application/json" or (not content_type and body.lstrip()[:1] in (b"{", b"[")):
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ApiError(400, "storage.validation", f"Request body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise ApiError(400, "storage.validation", "Request body must be a JSON object")
        params.update({k[:-2] if k.endswith("[]") else k: v for k, v in payload.items()})
    else:
        try:
            merge_form(body.decode("utf-8"))
        except UnicodeDecodeError:
            raise ApiError(400, "storage.validation", "Request body is not UTF-8 form data") from None
    return params


class KeboolaSimulator(Simulator[KeboolaSimulatorConfig]):
    """In-memory Keboola Storage API (table exports) on a real local HTTP port."""

    title = "Keboola simulator"
    server_name = "KeboolaSimulator/1.0"
    # Storage API errors are {"error", "code", "status": "error", "exceptionId"}, as the official kbcstorage
    # client's fixtures show (see the module docstring).
    injected_errors = {
        "500": ("APPLICATION_ERROR", "Injected fault: internal server error"),
        "429": ("storage.tooManyRequests", "Injected fault: too many requests"),
    }
    internal_error = ("APPLICATION_ERROR", "Internal error")
    malformed_answer = (200, b'{"id": 9000, "status": "succ', {"Content-Type": "application/json"})

    def __init__(
        self,
        config: KeboolaSimulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: bool = False,
        tls_dir: Path | None = None,
        s3_port: int | None = None,
    ):
        super().__init__(config or KeboolaSimulatorConfig(), host, port, tls=tls, tls_dir=tls_dir)
        if self.config.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {self.config.backend!r}")
        self._secret = secrets.token_bytes(32)  # signs download URLs
        self.storage = FileStorage(
            lambda: self.config.clock(),
            uses_per_grant=lambda: self.config.credentials_uses,
            s3_client=self.config.s3_client,
        )
        # S3 owns the root path ("/bucket/key"), so it has its own port: the standard AWS_ENDPOINT_URL_S3.
        self.s3: S3Endpoint | None = (
            S3Endpoint(self.config, self.storage, host, s3_port, tls=tls, tls_dir=tls_dir)
            if s3_port is not None
            else None
        )
        now = self.config.clock()
        self._tables: dict[str, _Table] = {
            DEMO_TABLE: _Table(["id", "name", "email"], _demo_rows(), now),
            BROKEN_TABLE: _Table(["id", "value"], [["1", "a"], ["2", "b"]], now),
        }
        self._jobs: dict[int, _Job] = {}
        self._files: dict[int, _File] = {}
        self._next_job_id = _FIRST_JOB_ID
        self._next_file_id = _FIRST_FILE_ID
        self._next_run_id = 70_000_001
        self._urls_signed = 0
        self._stats.update(
            export_posts=0, status_gets=0, file_gets=0, downloads=0, expired_downloads=0, unauthorized=0, maintenance=0
        )

    # ------------------------------------------------------------------ introspection and set-up

    def jobs(self) -> list[dict[str, Any]]:
        """Snapshot of every storage job in creation order, as a client would see it now (no poll counted)."""
        with self._lock:
            out = []
            for job in self._jobs.values():
                self._advance(job, count_poll=False)
                out.append({"id": job.id, "tableId": job.table_id, "status": job.status, "polls": job.polls})
            return out

    # ------------------------------------------------------------------ lifecycle (with the S3 endpoint)

    def start(self) -> KeboolaSimulator:
        if self.s3 is not None:
            self.s3.start()
        super().start()
        return self

    def stop(self) -> None:
        super().stop()
        if self.s3 is not None:
            self.s3.stop()

    def serve_forever(self) -> None:
        if self.s3 is not None:
            self.s3.start()
        super().serve_forever()

    @property
    def s3_base_url(self) -> str:
        """The S3 endpoint (AWS_ENDPOINT_URL_S3) when started with ``s3_port``."""
        if self.s3 is None:
            raise RuntimeError("the simulator was started without s3_port")
        return self.s3.base_url

    @property
    def stats(self) -> dict[str, int]:
        with self._lock:
            return {**self._stats, **self.storage.stats}

    # ------------------------------------------------------------------ files, for tests of broken ones

    def file_objects(self, file_id: int) -> list[tuple[str, str]]:
        """(bucket, key) of every slice of a file (the file itself when unsliced), in manifest order."""
        with self._lock:
            file = self._files[int(file_id)]
            return [(file.bucket, key) for key in file.slice_keys]

    def remove_object(self, file_id: int, index: int) -> None:
        """Delete one slice of a file from its storage (a slice that went missing)."""
        with self._lock:
            file = self._files[int(file_id)]
        self.storage.delete(file.backend, file.bucket, file.slice_keys[index])

    def replace_manifest(self, file_id: int, data: bytes) -> None:
        """Overwrite a sliced file's manifest (a manifest that does not parse)."""
        with self._lock:
            file = self._files[int(file_id)]
            file.manifest = data
        self.storage.put(file.backend, file.bucket, file.key + "manifest", data)

    def add_table(self, table_id: str, columns: list[str], rows: list[list[Any]]) -> None:
        """Create or replace a table (e.g. a bigger one for a benchmark)."""
        if len(table_id.split(".")) != 3:
            raise ValueError(f"table id {table_id!r} is not STAGE.BUCKET.TABLE")
        with self._lock:
            self._tables[table_id] = _Table(list(columns), [[str(v) for v in row] for row in rows], self.config.clock())

    # ------------------------------------------------------------------ request handling

    def fault_targets(self, method: str, path: str) -> Collection[str]:
        """The parse_fault targets a request answers to: ``submit``/``export`` = export-async, ``status``/
        ``operation`` = job GET, ``pages`` = file detail and download (``results`` and ``download`` apart)."""
        if path.startswith(("/download/", "/storage/v1/", f"/{ABS_ACCOUNT}/")):
            return ("pages", "download")  # the file's bytes: the signed URL, Blob Storage, GCS
        if not path.startswith("/v2/storage/"):
            return ()
        if method == "POST" and path.rstrip("/").endswith("/export-async"):
            return ("submit", "export")
        if path.startswith("/v2/storage/jobs/"):
            return ("status", "operation")
        if path.startswith("/v2/storage/files/"):
            return ("pages", "results")
        return ("other",)  # only faults without a target hit these

    def fault_applies(self, fault: Fault, targets: Collection[str]) -> bool:
        return not (fault.kind == "maintenance" and "download" in targets)  # the file storage has no maintenance

    def error_answer(self, err: ApiError) -> Answer:
        return _json(err.status, _error_body(err.code, err.message), err.headers)

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes, fault: Fault | None = None) -> Answer:
        parts = urlsplit(raw_path)
        if parts.path.startswith(("/storage/v1/", "/download/storage/v1/")):
            return self.storage.gcs_answer(method, raw_path, headers)
        if parts.path.startswith(f"/{ABS_ACCOUNT}/"):
            return self.storage.blob_answer(method, raw_path, headers)
        if parts.path.startswith("/download/"):
            return self._download(method, parts.path, parts.query)
        if (fault is not None and fault.kind == "maintenance") or self.config.maintenance:
            return self._maintenance()
        return self._dispatch(method, parts.path, parts.query, headers, body)

    def _maintenance(self) -> Answer:
        with self._lock:
            self._stats["maintenance"] += 1
        retry_after = self.config.maintenance_retry_after_seconds
        body = {
            "status": "maintenance",
            "reason": "Storage API is under maintenance",
            "estimatedEndTime": _iso(self.config.clock() + retry_after),
        }
        return _json(503, body, {"Retry-After": str(retry_after)})

    def _dispatch(self, method: str, path: str, query: str, headers: Any, body: bytes) -> Answer:
        segments = path.rstrip("/").split("/")
        if segments[:3] != ["", "v2", "storage"] or len(segments) < 4:
            raise ApiError(404, "storage.routeNotFound", f"Route {path} not found")
        resource, rest = segments[3], [unquote(s) for s in segments[4:]]
        if resource == "tables" and len(rest) == 2 and rest[1] == "export-async":
            route, allowed = "export", "POST"
        elif resource == "tables" and len(rest) == 1:
            route, allowed = "table", "GET"
        elif resource == "jobs" and len(rest) == 1:
            route, allowed = "job", "GET"
        elif resource == "files" and len(rest) == 1:
            route, allowed = "file", "GET"
        elif resource == "tokens" and rest == ["verify"]:
            route, allowed = "verify", "GET"
        else:
            raise ApiError(404, "storage.routeNotFound", f"Route {path} not found")
        if method != allowed:
            raise ApiError(405, "storage.methodNotAllowed", f"{method} is not allowed on {path}", {"Allow": allowed})
        creator = self._authenticate(headers.get("X-StorageApi-Token"))
        base = self.public_base(headers)
        if route == "export":
            return self._export(rest[0], creator, headers, body, query, base)
        if route == "table":
            return self._table_detail(rest[0], base)
        if route == "job":
            return self._job_detail(rest[0], base)
        if route == "file":
            federation = _as_bool(_request_params(headers, b"", query).get("federationToken"), default=False)
            return self._file_detail(rest[0], base, federation=federation)
        return _json(200, {"id": creator.token_id, "description": creator.description, "owner": self._owner()})

    def _owner(self) -> dict[str, Any]:
        return {"id": self.config.project_id, "name": "Job tracker simulator"}

    def _authenticate(self, token: str | None) -> _Identity:
        token = (token or "").strip()
        expected = self.config.token
        if not token or (expected is not None and not hmac.compare_digest(token.encode(), expected.encode())):
            with self._lock:
                self._stats["unauthorized"] += 1
            message = "Access token must be set" if not token else "Invalid access token"
            raise ApiError(401, "storage.tokenInvalid", message)
        token_id = str(int(hashlib.sha256(token.encode()).hexdigest()[:8], 16) % 900_000 + 100_000)
        return _Identity(token_id, self.config.token_description)

    def _table(self, table_id: str) -> _Table:
        table = self._tables.get(table_id)
        if table is None:
            stage_bucket = table_id.rsplit(".", 1)[0] if "." in table_id else table_id
            raise ApiError(
                404,
                "storage.tables.notFound",
                f'The table "{table_id.rsplit(".", 1)[-1]}" was not found in the bucket "{stage_bucket}" '
                f'in the project "{self.config.project_id}"',
            )
        return table

    def _export(self, table_id: str, creator: _Identity, headers: Any, body: bytes, query: str, base: str) -> Answer:
        """POST .../export-async: validate synchronously, answer 202 with a waiting storage job."""
        params = _request_params(headers, body, query)
        with self._lock:
            table = self._table(table_id)
            columns = _as_list(params.get("columns"))
            unknown = [c for c in columns if c not in table.columns]
            if unknown:
                raise ApiError(
                    400,
                    "storage.tables.validation",
                    f"Columns {', '.join(unknown)} not found in table {table_id}; "
                    f"the table has: {', '.join(table.columns)}",
                )
            limit = params.get("limit")
            if limit in (None, ""):
                limit = None
            else:
                try:
                    limit = int(limit)
                except (TypeError, ValueError):
                    limit = -1
                if limit < 0:
                    raise ApiError(400, "storage.tables.validation", f"Invalid limit {params.get('limit')!r}")
            file_format = str(params.get("format") or "rfc")
            if file_format not in EXPORT_FORMATS:
                raise ApiError(
                    400,
                    "storage.tables.validation",
                    f"Invalid format {file_format!r}; one of {', '.join(EXPORT_FORMATS)}",
                )
            where_column = str(params.get("whereColumn") or "")
            raw_values = params.get("whereValues")
            if raw_values is None or raw_values == "":
                where_values = []
            elif isinstance(raw_values, list):
                where_values = [str(v) for v in raw_values]
            else:
                where_values = [str(raw_values)]
            where_operator = str(params.get("whereOperator") or "eq")
            if where_column and (where_column not in table.columns or where_operator not in ("eq", "ne", "neq")):
                raise ApiError(400, "storage.tables.validation", f"Invalid filter {where_column!r} {where_operator!r}")
            use_gzip = _as_bool(params.get("gzip"), default=True)
            export: dict[str, Any] = {"columns": columns, "limit": limit, "format": file_format, "gzip": use_gzip}
            if where_column:
                export.update(whereColumn=where_column, whereValues=where_values, whereOperator=where_operator)
            run_id = (headers.get("X-KBC-RunId") or "").strip()
            if not run_id:
                run_id = str(self._next_run_id)
                self._next_run_id += 1
            job = _Job(
                id=self._next_job_id,
                table_id=table_id,
                params={"queue": "main", "export": export},
                created=self.config.clock(),
                run_id=run_id,
                creator=creator,
                fails=self.config.fail_exports or table_id == BROKEN_TABLE,
                gzip=use_gzip,
            )
            self._next_job_id += 1
            self._jobs[job.id] = job
            self._stats["export_posts"] += 1
            return _json(202, self._job_json(job, base))

    def _table_detail(self, table_id: str, base: str) -> Answer:
        with self._lock:
            table = self._table(table_id)
            stage, bucket, name = table_id.split(".", 2)
            body = {
                "uri": f"{base}/v2/storage/tables/{quote(table_id)}",
                "id": table_id,
                "name": name,
                "primaryKey": [],
                "created": _iso(table.created),
                "lastImportDate": _iso(table.created),
                "lastChangeDate": _iso(table.created),
                "rowsCount": len(table.rows),
                "dataSizeBytes": sum(len(",".join(row)) + 1 for row in table.rows),
                "isAlias": False,
                "columns": list(table.columns),
                "bucket": {"id": f"{stage}.{bucket}", "name": bucket, "stage": stage},
            }
            return _json(200, body)

    def _job_detail(self, raw_id: str, base: str) -> Answer:
        """GET /v2/storage/jobs/{id}: each call is one poll and may move the job on."""
        with self._lock:
            self._stats["status_gets"] += 1
            job = self._jobs.get(int(raw_id)) if raw_id.isdigit() else None
            if job is None:
                raise ApiError(404, "storage.jobs.notFound", f"Job {raw_id} not found")
            self._advance(job, count_poll=True)
            return _json(200, self._job_json(job, base))

    def _advance(self, job: _Job, *, count_poll: bool) -> None:
        if count_poll:
            job.polls += 1
        if job.status in TERMINAL:
            return
        cfg = self.config
        now = cfg.clock()
        if cfg.polls_to_complete is not None:
            if job.polls >= cfg.polls_to_complete:
                target = "done"
            elif job.polls >= cfg.polls_to_start:
                target = "processing"
            else:
                target = "waiting"
            started_at, ended_at = now, now
        else:
            elapsed = now - job.created
            if elapsed >= cfg.waiting_seconds + cfg.processing_seconds:
                target = "done"
            elif elapsed >= cfg.waiting_seconds:
                target = "processing"
            else:
                target = "waiting"
            started_at = job.created + cfg.waiting_seconds
            ended_at = started_at + cfg.processing_seconds
        if target == "done" and self.has_fault("stuck"):
            target = "processing"  # a stuck job is picked up by a worker that never finishes
        if target in ("processing", "done") and job.started is None:
            job.started = started_at
            job.status = "processing"
        if target == "done":
            self._finish(job, max(ended_at, job.started or ended_at))

    def _finish(self, job: _Job, when: float) -> None:
        job.ended = when
        if job.fails:
            job.status = "error"
            job.error = {
                "code": "storage.tables.exportFailed",
                "message": f'Export of table "{job.table_id}" failed: the backend could not unload the table data',
                "exceptionId": _exception_id(),
            }
            return
        table = self._tables.get(job.table_id)
        rows = _export_rows(table, job.params["export"]) if table is not None else []
        self._files[self._next_file_id] = file = self._write_file(self._next_file_id, job, rows, when)
        self._next_file_id += 1
        job.file_id = file.id
        job.status = "success"

    def _write_file(self, file_id: int, job: _Job, rows: list[list[str]], when: float) -> _File:
        """Unload the rows into file storage, headerless: one object, or slices and their manifest."""
        cfg = self.config
        export = job.params["export"]
        stage, bucket_name, table = ([*job.table_id.split(".", 2), "", ""])[:3]
        suffix = ".csv.gz" if job.gzip else ".csv"
        name = f"{job.table_id}{suffix}"
        key = f"exp-15/{cfg.project_id}/table-exports/{stage}/{bucket_name}/{table}/{file_id}.{name}"
        container = {"aws": S3_BUCKET, "gcp": GCS_BUCKET, "azure": f"exp-15-files-{cfg.project_id}"}[cfg.backend]
        if cfg.sliced:
            count = max(cfg.min_slices, -(-len(rows) // max(1, cfg.slice_rows)))
            per = -(-len(rows) // count) if rows else 0
            parts = [rows[i * per : (i + 1) * per] for i in range(count)]
            slice_keys = [f"{key}_0_0_{i}{suffix}" for i in range(count)]  # Snowflake: data_0_0_0.csv.gz
        else:
            parts, slice_keys = [rows], [key]
        size = uncompressed = 0
        for part, slice_key in zip(parts, slice_keys, strict=True):
            data = _csv(part, export.get("format"))
            uncompressed += len(data)
            if job.gzip:
                data = gzip.compress(data, compresslevel=6, mtime=0)
            size += len(data)
            if slice_keys.index(slice_key) not in cfg.drop_slices:
                self.storage.put(cfg.backend, container, slice_key, data)
        file = _File(
            file_id,
            name,
            when,
            job.run_id,
            job.creator,
            job.table_id,
            "application/gzip" if job.gzip else "text/csv",
            cfg.backend,
            container,
            key,
            size,
            cfg.sliced,
            slice_keys,
        )
        if cfg.sliced:
            entries = {"entries": [{"url": self._entry_url(file, k)} for k in slice_keys]}
            file.manifest = cfg.manifest_body if cfg.manifest_body is not None else json.dumps(entries).encode()
            self.storage.put(cfg.backend, container, key + "manifest", file.manifest)
        job.out_bytes, job.out_bytes_uncompressed = size, uncompressed
        return file

    @staticmethod
    def _entry_url(file: _File, key: str) -> str:
        """A manifest entry as Keboola writes it per backend (DESIGN.md; the PHP client's AbsUrlParser)."""
        if file.backend == "azure":
            return f"azure://{ABS_ACCOUNT}.blob.core.windows.net/{file.bucket}/{key}"
        return f"{'s3' if file.backend == 'aws' else 'gs'}://{file.bucket}/{key}"

    def _job_json(self, job: _Job, base: str) -> dict[str, Any]:
        done = job.status == "success"
        return {
            "id": job.id,
            "status": job.status,
            "url": f"{base}/v2/storage/jobs/{job.id}",
            "tableId": job.table_id,
            "operationName": "tableExport",
            "operationParams": job.params,
            "createdTime": _iso(job.created),
            "startTime": _iso(job.started) if job.started is not None else None,
            "endTime": _iso(job.ended) if job.ended is not None else None,
            "runId": job.run_id,
            "results": {"file": {"id": job.file_id}} if done else None,
            "creatorToken": {"id": job.creator.token_id, "description": job.creator.description},
            "metrics": {
                "inCompressed": False,
                "inBytes": 0,
                "inBytesUncompressed": 0,
                "outCompressed": job.gzip,
                "outBytes": job.out_bytes if done else 0,
                "outBytesUncompressed": job.out_bytes_uncompressed if done else 0,
            },
            "error": dict(job.error) if job.error else None,
        }

    def _file_detail(self, raw_id: str, base: str, *, federation: bool) -> Answer:
        """GET /v2/storage/files/{id}: metadata, a freshly signed short-lived ``url`` (the file, or a sliced
        file's manifest) and, with ``federationToken``, fresh credentials for the file's storage."""
        with self._lock:
            self._stats["file_gets"] += 1
            file = self._files.get(int(raw_id)) if raw_id.isdigit() else None
            if file is None:
                raise ApiError(404, "storage.files.notFound", f"File {raw_id} not found")
            now = self.config.clock()
            self._urls_signed += 1
            if self._urls_signed <= self.config.expire_first_urls:
                expires = int(now) - 1
            else:
                expires = int(now + self.config.download_ttl_seconds)
            body: dict[str, Any] = {
                "id": file.id,
                "created": _iso(file.created),
                "isPublic": False,
                "isSliced": file.sliced,
                "isEncrypted": True,
                "name": file.name,
                "url": f"{base}/download/{file.id}?expires={expires}&signature={self._sign(file.id, expires)}",
                "provider": file.backend,
                "region": S3_REGION,
                "sizeBytes": file.size,
                "tags": ["table-export", f"tableId:{file.table_id}"],
                "maxAgeDays": FILE_MAX_AGE_DAYS,
                "runId": int(file.run_id) if file.run_id.isdigit() else None,
                "runIds": [int(p) for p in file.run_id.split(".") if p.isdigit()],
                "creatorToken": {"id": int(file.creator.token_id), "description": file.creator.description},
            }
        ttl = self.config.credentials_ttl_seconds
        if file.backend == "aws":
            body["s3Path"] = {"bucket": file.bucket, "key": file.key}
            if federation:
                body["credentials"] = self.storage.grant("aws", ttl)
        elif file.backend == "azure":
            body["absPath"] = {"account": ABS_ACCOUNT, "container": file.bucket, "name": file.key}
            if federation:
                body["absCredentials"] = self.storage.grant(
                    "azure", ttl, container=file.bucket, blob_endpoint=f"{base}/{ABS_ACCOUNT}"
                )
        else:
            body["gcsPath"] = {"bucket": file.bucket, "key": file.key}
            if federation:
                body["gcsCredentials"] = self.storage.grant("gcp", ttl)
        return _json(200, body)

    def _sign(self, file_id: int, expires: int) -> str:
        return hmac.new(self._secret, f"{file_id}:{expires}".encode(), hashlib.sha256).hexdigest()

    def _download(self, method: str, path: str, query: str) -> Answer:
        """GET /download/{fileId}: the signed URL is the credential (no token), valid until ``expires``."""
        if method not in ("GET", "HEAD"):
            return _s3_error(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")
        with self._lock:
            self._stats["downloads"] += 1
            raw_id = path[len("/download/") :].split("/", 1)[0]
            args = parse_qs(query)
            file = self._files.get(int(raw_id)) if raw_id.isdigit() else None
            if file is None:
                return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
            data = file.manifest if file.sliced else self.storage.get(file.backend, file.bucket, file.key)
            if data is None:
                return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
            try:
                expires = int(args["expires"][0])
                signature = args["signature"][0]
            except (KeyError, IndexError, ValueError):
                return _s3_error(403, "AccessDenied", "Query-string authentication requires the expires and signature")
            if not hmac.compare_digest(signature, self._sign(file.id, expires)):
                return _s3_error(
                    403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature"
                )
            if self.config.clock() >= expires:
                self._stats["expired_downloads"] += 1
                return _s3_error(403, "AccessDenied", "Request has expired")
            content_type = "application/json" if file.sliced else file.content_type
            headers = {
                "Content-Type": content_type,
                "Content-Disposition": f'attachment; filename="{file.name}{"manifest" if file.sliced else ""}"',
                "ETag": f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"',
            }
            return 200, data, headers


def _export_rows(table: _Table, export: dict[str, Any]) -> list[list[str]]:
    """The table's rows (the chosen columns, filtered and limited), without a header."""
    columns = export.get("columns") or table.columns
    index = [table.columns.index(c) for c in columns]
    rows = table.rows
    where_column = export.get("whereColumn")
    if where_column:
        pos = table.columns.index(where_column)
        wanted = set(export.get("whereValues") or [])
        keep = export.get("whereOperator", "eq") == "eq"
        rows = [row for row in rows if (row[pos] in wanted) == keep]
    if export.get("limit") is not None:
        rows = rows[: export["limit"]]
    return [[row[i] for i in index] for row in rows]


def _csv(rows: list[list[str]], file_format: str | None) -> bytes:
    """Rows as CSV in the export's format; no header (Keboola's exports have none)."""
    out = io.StringIO()
    if file_format == "raw":
        writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    elif file_format == "escaped":
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, doublequote=False, escapechar="\\", lineterminator="\n")
    else:  # rfc: RFC 4180, every value enclosed, quotes doubled
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def serve(
    config: KeboolaSimulatorConfig,
    host: str = "127.0.0.1",
    port: int = 8901,
    *,
    tls: bool = False,
    tls_dir: Path | None = None,
    s3_port: int | None = None,
) -> None:
    """Blocking entry point for ``jobtracker simulate keboola --port N [--s3-port M] [--tls]``; Ctrl-C stops it."""
    simulator = KeboolaSimulator(config, host=host, port=port, tls=tls, tls_dir=tls_dir, s3_port=s3_port)
    if simulator.s3 is not None:
        simulator.s3.start()
        print(
            f"Keboola file storage (S3) on {simulator.s3_base_url}: AWS_ENDPOINT_URL_S3={simulator.s3_base_url}",
            flush=True,
        )
    run_until_interrupted(simulator)
