"""FullStory API simulator, served over real HTTP: v2 batch imports (users and events) and the
segment-export operations workflow.

Why it exists: the tracker's submit/status/results code, the offline stack and the integration
tests need a provider that behaves like FullStory -- async jobs, per-row errors revealed only at
the end, string ``total_records``, paging tokens, 202 while processing, Idempotency-Key replays
and 429 + ``Retry-After`` -- without a network, an account or real waiting. Job progress is
driven by the number of status polls (deterministic, no sleeps in tests) or, for demos, by wall
clock time.

Shapes follow FullStory's published Swagger specs (``specs/fullstory/*.swagger.json``): fields the
spec types as strings (``finished``, ``next_page_token``) are omitted rather than sent as ``null``
when they have no value, so every answer validates against the spec's response schemas.

Segment export (developer.fullstory.com "Create Export", "Get Operation", "Get Export Results"):
``POST /segments/v1/exports`` answers ``{"operationId"}``; ``GET /operations/v1/{id}`` answers the
Operation, ``PENDING`` (or ``RUNNING`` with ``seed_states``, as the seed schema has it) with a rising
``estimatePctComplete`` until ``COMPLETED`` (100, ``results``) or ``FAILED`` (``errorDetails``);
``GET /search/v1/exports/{searchExportId}/results`` answers ``{"location", "expires"}``, a short-lived
URL on this simulator (``GET /download/{token}``) serving the gzip file, 403 once expired -- like a
signed cloud-storage URL it takes no ``Authorization`` header (400 if one is sent). Same "omit rather
than null" rule: ``finishedAt`` and ``results`` are absent while the operation runs (the seed types
them as string/object, the docs' example sends null); ``errorDetails`` is ``""`` unless FAILED, as in
the docs' example. With ``results_shape="downloadUrl"`` a completed operation carries the seed's
``results.downloadUrl`` instead of the official ``results.searchExportId`` (a fresh URL on every GET).
Counters for this workflow are in :attr:`FullStorySimulator.operation_stats` (``stats`` keeps its keys).

Org caps, as FullStory documents them ("Special Batch Rate Limits" on developer.fullstory.com
/server/v2/users/create-batch-user-import-job and /server/v2/events/create-batch-events-import-job): "The
limit for in-progress batches per Fullstory org is 100. After 100 in-progress batches, future batch
requests will be accepted, but will not start until some complete. Once there are 200 in-progress
batches or 500,000 individual operations, the API will return 429 rate limit errors until some complete,
regardless of request frequency." So up to ``running_limit`` batches run; later ones are accepted and
queued (status PROCESSING, they do not advance) and start in arrival order as running ones finish; a new
batch gets 429 with ``Retry-After`` once ``in_progress_limit`` batches (queued + running) or
``operations_limit`` requests (the rows of those batches) are in progress. The simulator is one org:
the counts cover every key and client. "Once there are" is read literally: the check counts what is in
progress before the new batch, so one batch may take the operations past the cap.

Idempotency-Key (developer.fullstory.com "Idempotent Requests"): the first answer to a keyed batch POST is
saved -- a success, or a 500 (an injected ``500`` fault is the endpoint failing while it executed) -- and
replayed for 24 hours of the simulator's idempotency ``clock`` (settable); 429s are not saved; a same-key
request overlapping one still executing (``submit_execution_seconds``) saves nothing and answers 409; a
different body under a known key is a 400. Create Export documents no key: keyed export POSTs each start an
export unless ``export_idempotency`` is set. ``GET /operations/v1`` lists operations ("List Operation").
Counters: ``stats`` ``replayed_posts``, ``replayed_failures`` (saved 500s answered again), ``key_conflicts``.

The users import is an upsert (seed 002 "Asynchronous Workflows": 104 imports, 103 records listed): a
batch's requests sharing a ``uid`` fold into one listed record while the status counts every request.

Serving, faults (``--fault``, see :mod:`jobtracker.simulators.faults`) and ``--tls`` are shared with the other
simulators (:mod:`jobtracker.simulators.server`); this module is FullStory's API only.
"""

from __future__ import annotations

import base64
import binascii
import csv
import gzip
import hashlib
import hmac
import io
import json
import random
import re
import secrets
import string
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from jobtracker.simulators.faults import FAULT_KINDS, FAULT_TARGETS, Fault, parse_fault
from jobtracker.simulators.server import Answer, ApiError, Simulator, run_until_interrupted

__all__ = ["FAULT_KINDS", "FAULT_TARGETS", "Fault", "FullStorySimulator", "SimulatorConfig", "parse_fault", "serve"]

# Documented FullStory limits (developer.fullstory.com and the Swagger specs).
MAX_REQUESTS_PER_BATCH = 50_000
MAX_UID_LENGTH = 256
MAX_DISPLAY_NAME_LENGTH = 256
MAX_EMAIL_LENGTH = 128
MAX_PROPERTIES = 500
MAX_PROPERTY_NAME_LENGTH = 512
MAX_PROPERTY_VALUE_BYTES = 8192
IDEMPOTENCY_KEY_TTL_SECONDS = 24 * 3600

_PROPERTY_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_ROUTE = re.compile(
    r"^/(?P<version>v2|v2beta)/(?P<kind>users|events)/batch"
    r"(?:/(?P<job>[^/]+)(?:/(?P<listing>imports|errors))?)?$"
)
_EXPORTS_ROUTE = re.compile(r"^/segments/v1/exports$")
_OPERATIONS_ROUTE = re.compile(r"^/operations/v1/?$")
_OPERATION_ROUTE = re.compile(r"^/operations/v1/(?P<id>[^/]+)$")
_EXPORT_RESULTS_ROUTE = re.compile(r"^/search/v1/exports/(?P<id>[^/]+)/results$")
_DOWNLOAD_ROUTE = re.compile(r"^/download/(?P<id>[^/]+)$")
_BASE36 = string.digits + string.ascii_lowercase
_ERROR_ITEM_KEY = {"users": "user", "events": "event"}
_EXPORT_SCOPE = "segments/exports"  # idempotency keys of exports live apart from those of batch imports


@dataclass
class SimulatorConfig:
    """Knobs for the simulator; defaults give a fast, deterministic FullStory for tests."""

    api_key: str | None = None  # None: accept any non-empty key; else only this key
    polls_to_complete: int | None = 2  # the N-th status GET is the first to see the terminal state
    processing_seconds: float = 0.0  # used when polls_to_complete is None: wall-clock time to terminal
    page_size: int = 1000  # results per /imports or /errors page
    # Org caps (module docstring): batches processed at once; more are accepted and queued, still PROCESSING.
    running_limit: int = 100
    in_progress_limit: int = 200  # once this many batches are in progress (queued + running), batch POSTs get 429
    operations_limit: int = 500_000  # once in-progress batches hold this many requests, batch POSTs get 429
    retry_after_seconds: int = 1  # Retry-After header value on 429
    # Keys of the org that lack the permission these calls need: 403 forbidden (documented on every route).
    forbidden_keys: tuple[str, ...] = ()
    throttle_first_submits: int = 0  # answer 429 to the first N batch POSTs (test hook)
    # How long a batch POST executes before it is answered: a same-key request arriving meanwhile overlaps it
    # and is refused with 409, saving nothing ("Idempotent Requests"; see _create_batch).
    submit_execution_seconds: float = 0.0
    # Create Export documents no Idempotency-Key: by default a keyed export POST starts a new export every
    # time, the worst case a client must survive. True: keys are honoured as on the batch endpoints.
    export_idempotency: bool = False
    faults: tuple[Fault, ...] = ()  # injected failures, see Fault and parse_fault
    fault_seed: int | None = None  # seed of the fault dice, for repeatable runs
    # -- segment export / operations --
    operation_polls_to_complete: int | None = 4  # the N-th GET /operations/v1/{id} sees the terminal state
    operation_seconds: float | None = None  # wall clock to terminal when the above is None (None: processing_seconds)
    seed_states: bool = False  # in-progress operations say RUNNING once they have progress (seed enum), else PENDING
    results_shape: str = "searchExportId"  # "searchExportId" (official) or "downloadUrl" (the seed's results)
    download_ttl_seconds: float = 300.0  # life of a download URL; 0: expired at once
    expire_first_locations: int = 0  # the first N download URLs handed out are dead on arrival (test hook)
    segments: tuple[str, ...] | None = ("everyone", "rageClicks", "errorClicks", "deadClicks", "broken")  # None: any
    failing_segments: tuple[str, ...] = ("broken",)  # exports of these end FAILED with errorDetails
    fail_exports: bool = False  # every export ends FAILED
    export_rows: int = 36  # rows in each export file


@dataclass
class _Job:
    """One provider job. Holds only the per-row outcomes, never a copy of the request body."""

    id: str
    kind: str
    created: datetime
    created_mono: float
    imports: list[dict[str, Any]]  # the import records listed: one per user of a users import (an upsert)
    errors: list[dict[str, Any]]
    status: str = "PROCESSING"
    finished: datetime | None = None
    polls: int = 0  # status GETs since it started running (a queued job's polls do not move it on)
    rows: int = 0  # requests in the batch: the org's operations in progress while it is
    started: datetime | None = None  # None while queued behind the org's running batches
    started_mono: float = 0.0
    imported_rows: int = 0  # requests imported: what the status's `imports` counts


@dataclass
class _IdempotencyRecord:
    """The first answer to a keyed POST (a success or a 500), replayed with its status for repeats."""

    body_hash: str
    response: bytes
    stored_at: float  # the simulator's idempotency clock
    status: int = 200


@dataclass
class _Operation:
    """One segment-export operation; its file is built when it completes."""

    id: str
    segment_id: str
    export_type: str  # TYPE_EVENT | TYPE_INDIVIDUAL
    export_format: str  # FORMAT_CSV | FORMAT_JSON | FORMAT_NDJSON
    fields: tuple[str, ...] | None
    created: datetime
    created_mono: float
    state: str = "PENDING"  # internal: PENDING (no progress yet), RUNNING, COMPLETED, FAILED
    pct: float = 0.0
    polls: int = 0
    finished: datetime | None = None
    error_details: str = ""
    search_export_id: str | None = None
    export_expires: datetime | None = None
    content: bytes = b""
    filename: str = ""
    rows: int = 0


@dataclass
class _DownloadUrl:
    """A short-lived URL handed out for an export file (like a signed cloud-storage URL)."""

    operation_id: str
    expires_mono: float


def _iso(ts: datetime) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``, the format FullStory uses for job times."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _iso_micro(ts: datetime) -> str:
    """RFC 3339 UTC with microseconds and ``Z``, as the operations API's examples show."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_type(value: Any) -> str | None:
    """JSON type name used for FullStory's per-org property typing (None for null: untyped)."""
    if value is None:
        return None
    if isinstance(value, bool):  # before int: bool is an int subclass in Python
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def _flatten_properties(props: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Dotted names for every property including nested ones, as FullStory names nested vars."""
    out: list[tuple[str, Any]] = []
    for name, value in props.items():
        dotted = f"{prefix}{name}"
        out.append((dotted, value))
        if isinstance(value, dict):
            out.extend(_flatten_properties(value, dotted + "."))
    return out


def _properties_problem(props: Any) -> str | None:
    """Check the documented property limits; the server rejects rows that break them."""
    if not isinstance(props, dict):
        return "properties must be an object"
    if len(props) > MAX_PROPERTIES:
        return f"at most {MAX_PROPERTIES} properties are allowed, got {len(props)}"
    for dotted, value in _flatten_properties(props):
        leaf = dotted.rsplit(".", 1)[-1]
        if not _PROPERTY_NAME.match(leaf):
            return f"property name {dotted!r} must be alphanumeric or '_' and start with a letter"
        if len(dotted) > MAX_PROPERTY_NAME_LENGTH:
            return f"property name {dotted[:40]!r}... is longer than {MAX_PROPERTY_NAME_LENGTH} characters"
        if not isinstance(value, dict):
            size = len(json.dumps(value, ensure_ascii=False).encode())
            if size > MAX_PROPERTY_VALUE_BYTES:
                return f"property {dotted!r} value is {size} bytes, over {MAX_PROPERTY_VALUE_BYTES}"
    return None


def _string_field_problem(row: dict[str, Any], name: str, max_len: int) -> str | None:
    """A present string field must be a string within its documented length."""
    value = row.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        return f"{name} must be a string"
    if len(value) > max_len:
        return f"{name} is longer than {max_len} characters"
    return None


def _valid_email(value: Any) -> bool:
    """Exactly one '@' with something on both sides: what the server insists on beyond length."""
    if not isinstance(value, str) or value.count("@") != 1:
        return False
    local, domain = value.split("@")
    return bool(local.strip()) and bool(domain.strip())


def _valid_timestamp(value: Any) -> bool:
    """ISO-8601 parseable (Python 3.11's fromisoformat accepts the ISO forms incl. ``Z``)."""
    if not isinstance(value, str) or not value.strip():
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


class FullStorySimulator(Simulator[SimulatorConfig]):
    """In-memory FullStory batch-import and segment-export API on a real local HTTP port.

    Every job's per-row outcome is decided at submit time (see ``_decide_user`` and
    ``_decide_event``) and revealed only once the job is terminal, as the real API does.
    Export operations advance by GETs of the operation (or wall clock) like batch jobs do.
    """

    title = "FullStory simulator"
    server_name = "FullStorySimulator/1.0"
    # FullStory's errors are {"message", "code"} (specs/fullstory/users.swagger.json
    # fullstory.v2.apierror.ErrorResponse), codes such as too_many_requests and server_error
    # (../shared/DESIGN.md "FullStory facts").
    injected_errors = {
        "500": ("server_error", "Injected fault: server error"),
        "429": ("too_many_requests", "Injected fault: throttled"),
    }
    internal_error = ("server_error", "Server error was encountered")
    malformed_answer = (200, b'{"job": {"id": "truncated', {})

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: bool = False,
        tls_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__(config or SimulatorConfig(), host, port, tls=tls, tls_dir=tls_dir)
        # The clock idempotency keys age by (seconds): a test sets its own to see a key expire after 24 hours.
        self.clock = clock
        self._jobs: dict[str, _Job] = {}
        self._processing: set[str] = set()  # in progress: queued or running
        self._running: set[str] = set()
        self._queued: deque[str] = deque()  # accepted beyond running_limit, oldest first
        self._operations_in_progress = 0
        self._idempotency: dict[tuple[str, str], _IdempotencyRecord] = {}
        self._executing: set[tuple[str, str]] = set()  # keyed POSTs being executed now
        self._property_types: dict[str, str] = {}  # org-wide user property name -> JSON type
        self._user_ids: dict[str, str] = {}  # uid -> FullStory user id (upsert by uid)
        self._stats.update(
            batch_posts=0,
            replayed_posts=0,
            replayed_failures=0,
            key_conflicts=0,
            status_gets=0,
            page_gets=0,
            max_in_progress=0,
            max_running=0,
            max_queued=0,
            max_operations_in_progress=0,
        )
        self._submits_seen = 0
        self._operations: dict[str, _Operation] = {}
        self._search_exports: dict[str, str] = {}  # searchExportId -> operation id
        self._download_urls: dict[str, _DownloadUrl] = {}  # token -> URL record
        self._locations_issued = 0
        self._op_stats: dict[str, int] = {
            "operations_created": 0,
            "replayed_exports": 0,
            "operation_lists": 0,
            "operation_gets": 0,
            "result_location_gets": 0,
            "downloads": 0,
            "expired_downloads": 0,
        }

    # ------------------------------------------------------------------ introspection

    def jobs(self) -> list[dict[str, Any]]:
        """Snapshot of every job in creation order.

        ``imports``/``errors`` are the outcomes decided at submit time (the API itself reports
        them only once the job is terminal); ``status``/``finished`` are as a client would see now.
        """
        with self._lock:
            out = []
            for job in self._jobs.values():
                self._maybe_finish_by_time(job)
                out.append(
                    {
                        "id": job.id,
                        "kind": job.kind,
                        "status": job.status,
                        "queued": job.status == "PROCESSING" and job.started is None,
                        "rows": job.rows,
                        "imports": job.imported_rows,
                        "errors": len(job.errors),
                        "created": _iso(job.created),
                        "started": _iso(job.started) if job.started else None,
                        "finished": _iso(job.finished) if job.finished else None,
                    }
                )
            return out

    @property
    def operation_stats(self) -> dict[str, int]:
        """Snapshot of the segment-export counters (kept apart so ``stats`` keeps its keys):
        operations_created, replayed_exports (Idempotency-Key replays, with ``export_idempotency``),
        operation_lists (GET /operations/v1), operation_gets,
        result_location_gets (GET /search/v1/exports/{id}/results), downloads (files served) and
        expired_downloads (403s on an expired URL). Injected faults count in ``stats["faults"]``."""
        with self._lock:
            return dict(self._op_stats)

    def operations(self) -> list[dict[str, Any]]:
        """Snapshot of every export operation in creation order, as the simulator sees it now
        (``state`` is RUNNING once progress is reported, whatever ``seed_states`` says)."""
        with self._lock:
            out = []
            for op in self._operations.values():
                self._maybe_finish_operation_by_time(op)
                out.append(
                    {
                        "id": op.id,
                        "segmentId": op.segment_id,
                        "type": op.export_type,
                        "format": op.export_format,
                        "state": op.state,
                        "estimatePctComplete": op.pct,
                        "polls": op.polls,
                        "searchExportId": op.search_export_id,
                        "rows": op.rows,
                        "created": _iso_micro(op.created),
                        "finished": _iso_micro(op.finished) if op.finished else None,
                    }
                )
            return out

    # ------------------------------------------------------------------ request handling

    def fault_targets(self, method: str, path: str) -> Collection[str]:
        route = _ROUTE.match(path)
        if route is not None:
            return ("submit" if method == "POST" else ("status" if route["listing"] is None else "pages"),)
        for regex, target in (
            (_EXPORTS_ROUTE, "export"),
            (_OPERATIONS_ROUTE, "operation"),
            (_OPERATION_ROUTE, "operation"),
            (_EXPORT_RESULTS_ROUTE, "results"),
            (_DOWNLOAD_ROUTE, "download"),
        ):
            if regex.match(path):
                return (target,)
        return ()

    def error_answer(self, err: ApiError) -> Answer:
        return err.status, _dumps({"code": err.code, "message": err.message}), err.headers

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes, fault: Fault | None = None) -> Answer:
        parts = urlsplit(raw_path)
        answer = self._dispatch_operations(method, parts.path, headers, body, parts.query)
        if answer is not None:
            return answer
        match = _ROUTE.match(parts.path)
        if not match:  # v2beta serves users and events alike (both Swagger specs list /v2beta/.../batch)
            raise ApiError(404, "resource_not_found", f"No such resource: {parts.path}")
        allowed = "POST" if match["job"] is None else "GET"
        if method != allowed:
            raise ApiError(405, "method_not_allowed", f"{method} is not allowed on {parts.path}", {"Allow": allowed})
        self._authenticate(headers.get("Authorization"))
        self._authorize(headers.get("Authorization"))
        kind = match["kind"]
        if match["job"] is None:
            return self._create_batch(kind, headers.get("Idempotency-Key"), body)
        query = parse_qs(parts.query, keep_blank_values=True)
        if match["listing"] is None:
            return self._get_status(kind, match["job"])
        if match["listing"] == "imports":
            _query_bool(query, "include_schema")
        return self._get_page(kind, match["job"], match["listing"], query.get("page_token", [""])[-1])

    def _authenticate(self, header: str | None) -> None:
        """``Authorization: Basic <key>`` with the key as-is (FullStory does not base64 it)."""
        scheme, _, key = (header or "").strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "basic" or not key:
            raise ApiError(
                401, "unauthorized", "Missing or malformed Authorization header; expected 'Basic <API key>'"
            )
        expected = self.config.api_key
        if expected is not None and not hmac.compare_digest(key.encode(), expected.encode()):
            raise ApiError(401, "unauthorized", "access is unauthorized: invalid API key")

    def _authorize(self, header: str | None) -> None:
        """After authentication: a key in ``forbidden_keys`` lacks the permission (the specs' 403 example)."""
        key = (header or "").strip().split(" ", 1)[-1].strip()
        if key in self.config.forbidden_keys:
            raise ApiError(403, "forbidden", "insufficient permissions")

    def _throttle(self, reason: str) -> ApiError:
        self._stats["throttled"] += 1
        return ApiError(429, "too_many_requests", reason, {"Retry-After": str(self.config.retry_after_seconds)})

    def _create_batch(self, kind: str, idem_key: str | None, body: bytes) -> Answer:
        """POST /v2/{kind}/batch: throttle, parse, replay or create a job with decided row outcomes.

        Idempotency-Key as developer.fullstory.com "Idempotent Requests" describes it: the first answer to a
        key is saved and replayed for 24 hours (``_replay``); a request overlapping one "that was executing
        concurrently" under the same key saves nothing and errors (409, ``_replay``); 429s are not saved.
        The batch executes for ``submit_execution_seconds`` before it is answered, outside the lock, so
        requests really overlap."""
        with self._lock:
            self._submits_seen += 1
            if self._submits_seen <= self.config.throttle_first_submits:
                raise self._throttle("Rate limit exceeded, retry after the Retry-After interval")
        payload = _parse_batch_body(kind, body)
        body_hash = _body_hash(payload)
        scope = (kind, idem_key) if idem_key else None
        with self._lock:
            if scope is not None and (replayed := self._replay(scope, body_hash)) is not None:
                return replayed
            self._check_org_caps()
            if scope is not None:
                self._executing.add(scope)
        try:
            if self.config.submit_execution_seconds > 0:
                time.sleep(self.config.submit_execution_seconds)
            with self._lock:
                job = self._new_job(kind, payload)
                response = _dumps({"job": {"id": job.id, "status": "PROCESSING", "created": _iso(job.created)}})
                if scope is not None:
                    self._idempotency[scope] = _IdempotencyRecord(body_hash, response, self.clock())
                self._stats["batch_posts"] += 1
                return 200, response, {}
        finally:
            if scope is not None:
                with self._lock:
                    self._executing.discard(scope)

    def _replay(self, scope: tuple[str, str], body_hash: str) -> Answer | None:
        """The saved answer to a repeated key (call with the lock held), or None for a key not seen within
        IDEMPOTENCY_KEY_TTL_SECONDS of the idempotency clock. A request overlapping one still executing under
        the key saves nothing and errors: the page names no status, 409 is what a grpc-gateway API (FullStory's
        v2: specs/fullstory are its Swagger output) answers for a concurrency conflict (gRPC ABORTED). A
        different body under a known key is refused, as the page says."""
        key = scope[1]
        if scope in self._executing:
            self._stats["key_conflicts"] += 1
            raise ApiError(
                409, "conflict", f"A request with Idempotency-Key {key!r} is still executing; nothing was saved"
            )
        record = self._idempotency.get(scope)
        if record is None or self.clock() - record.stored_at >= IDEMPOTENCY_KEY_TTL_SECONDS:
            return None
        if record.body_hash != body_hash:
            raise ApiError(
                400, "invalid_argument", f"Idempotency-Key {key!r} was already used with a different request body"
            )
        if record.status >= 500:
            self._stats["replayed_failures"] += 1
        elif scope[0] == _EXPORT_SCOPE:
            self._op_stats["replayed_exports"] += 1
        else:
            self._stats["replayed_posts"] += 1
        return record.status, record.response, {}

    def respond(self, method: str, raw_path: str, headers: Any, body: bytes, fault: Fault | None = None) -> Answer:
        """As every simulator answers, except that an injected 500 on a keyed POST is the endpoint failing
        while it executed: FullStory saves that answer under the key, "including 500 errors", and replays it
        to every repeat for 24 hours ("Idempotent Requests"). A key that already has a saved answer gets that
        answer back: the endpoint does not run again, so it cannot fail again."""
        scope = self._keyed_scope(method, raw_path, headers) if fault is not None and fault.kind == "500" else None
        if scope is None:
            return super().respond(method, raw_path, headers, body, fault)
        try:
            self._authenticate(headers.get("Authorization"))
            body_hash = _body_hash(json.loads(body.decode("utf-8")))
            with self._lock:
                replayed = self._replay(scope, body_hash)
                if replayed is None:
                    code, message = self.injected_errors["500"]
                    answer = self.error_answer(ApiError(500, code, message))
                    self._idempotency[scope] = _IdempotencyRecord(body_hash, answer[1], self.clock(), status=500)
                    return answer
                return replayed
        except ApiError as err:
            return self.error_answer(err)
        except (UnicodeDecodeError, ValueError):  # not JSON: refused before any endpoint runs, nothing saved
            return super().respond(method, raw_path, headers, body, fault)

    def _keyed_scope(self, method: str, raw_path: str, headers: Any) -> tuple[str, str] | None:
        """(endpoint, key) of a POST that carries an Idempotency-Key the simulator honours, else None."""
        key = headers.get("Idempotency-Key")
        if method != "POST" or not key:
            return None
        path = urlsplit(raw_path).path
        match = _ROUTE.match(path)
        if match is not None and match["job"] is None:
            return match["kind"], key
        if _EXPORTS_ROUTE.match(path) and self.config.export_idempotency:
            return _EXPORT_SCOPE, key
        return None

    def _check_org_caps(self) -> None:
        """429 once the org has ``in_progress_limit`` batches or ``operations_limit`` operations in progress
        (module docstring: FullStory's "Special Batch Rate Limits"), whichever key or client sent them."""
        self._sweep_finished()
        if len(self._processing) >= self.config.in_progress_limit:
            raise self._throttle(
                f"Too many batch jobs in progress ({len(self._processing)}); limit is {self.config.in_progress_limit}"
            )
        if self._operations_in_progress >= self.config.operations_limit:
            raise self._throttle(
                f"Too many operations in progress ({self._operations_in_progress}); "
                f"limit is {self.config.operations_limit}"
            )

    def _new_job(self, kind: str, payload: dict[str, Any]) -> _Job:
        """Decide every row now, in request order. The users import is an upsert: requests sharing a ``uid``
        fold into one user (the later request's fields win, properties merge; ../shared/DESIGN.md), so the
        status counts the imported requests while the imports listing holds one record per user -- FullStory's
        own example (seed 002 "Asynchronous Workflows") answers 104 imports and lists 103 records."""
        imports: list[dict[str, Any]] = []
        users: dict[Any, dict[str, Any]] = {}  # uid (or a fresh key for an anonymous user) -> its record
        errors: list[dict[str, Any]] = []
        imported_rows = 0
        shared = payload.get("shared")
        for row in payload["requests"]:
            problem = self._decide_user(row) if kind == "users" else _decide_event(row, shared)
            if problem is None:
                imported_rows += 1
                if kind == "events":
                    imports.append(self._event_import(row, shared))
                    continue
                uid = row.get("uid")
                user = users.setdefault(uid if isinstance(uid, str) else object(), {})
                _upsert(user, self._user_import(row))
                continue
            code, message = problem
            error = {"message": message, "code": code, _ERROR_ITEM_KEY[kind]: row}
            if kind == "events" and shared is not None:
                error["shared"] = shared
            errors.append(error)
        job_id = self._unique_id()
        now, now_mono = datetime.now(UTC), time.monotonic()
        if kind == "users":
            imports = list(users.values())
        job = _Job(
            job_id, kind, now, now_mono, imports, errors, rows=len(payload["requests"]), imported_rows=imported_rows
        )
        self._jobs[job_id] = job
        self._processing.add(job_id)
        self._operations_in_progress += job.rows
        self._queued.append(job_id)
        self._start_queued(now, now_mono)
        stats = self._stats
        stats["max_in_progress"] = max(stats["max_in_progress"], len(self._processing))
        stats["max_queued"] = max(stats["max_queued"], len(self._queued))
        stats["max_operations_in_progress"] = max(stats["max_operations_in_progress"], self._operations_in_progress)
        return job

    def _start_queued(self, when: datetime, when_mono: float) -> None:
        """Start queued batches, oldest first, while the org runs fewer than ``running_limit``."""
        while self._queued and len(self._running) < max(1, self.config.running_limit):
            job = self._jobs[self._queued.popleft()]
            job.started, job.started_mono = when, when_mono
            self._running.add(job.id)
            self._stats["max_running"] = max(self._stats["max_running"], len(self._running))
            if self.config.polls_to_complete is not None and self.config.polls_to_complete <= 0:
                self._finish(job, when, when_mono)

    def _decide_user(self, row: dict[str, Any]) -> tuple[str, str] | None:
        """Outcome of one user row: None when imported, else (code, message).

        Beyond the documented limits, the server rejects a bad email and a property whose JSON
        type differs from the type the org first saw for that (dotted) name. Types are
        registered only by rows that are imported: a rejected row leaves no trace in the org.
        """
        if row.get("uid") == "":
            return "invalid_parameter", "The provided uid parameter can not be empty"
        for name, limit in (("uid", MAX_UID_LENGTH), ("display_name", MAX_DISPLAY_NAME_LENGTH)):
            problem = _string_field_problem(row, name, limit)
            if problem:
                return "invalid_parameter", problem
        email = row.get("email")
        if email is not None:
            if not _valid_email(email):
                return "invalid_email", f"The provided email {email!r} is not a valid email address"
            if len(email) > MAX_EMAIL_LENGTH:
                return "invalid_parameter", f"email is longer than {MAX_EMAIL_LENGTH} characters"
        props = row.get("properties")
        if props is None:
            return None
        problem = _properties_problem(props)
        if problem:
            return "invalid_parameter", problem
        seen = [(name, _json_type(value)) for name, value in _flatten_properties(props)]
        for name, kind in seen:
            known = self._property_types.get(name)
            if kind is not None and known is not None and known != kind:
                return (
                    "invalid_property_type",
                    f"Property {name!r} has type {kind} but this organization already stores it as {known}",
                )
        for name, kind in seen:
            if kind is not None:
                self._property_types.setdefault(name, kind)
        return None

    def _user_import(self, row: dict[str, Any]) -> dict[str, Any]:
        """Import item as in FullStory's docs: the user's FullStory id plus the fields sent."""
        uid = row.get("uid")
        if isinstance(uid, str):
            user_id = self._user_ids.setdefault(uid, str(secrets.randbits(62)))
        else:
            user_id = str(secrets.randbits(62))
        item: dict[str, Any] = {"id": user_id}
        for name in ("uid", "display_name", "email", "properties"):
            if row.get(name) is not None:
                item[name] = row[name]
        return item

    def _event_import(self, row: dict[str, Any], shared: dict[str, Any] | None) -> dict[str, Any]:
        """The event as stored: what was sent, the shared context applied, and a generated id."""
        item = dict(row)
        if shared and shared.get("context") is not None and row.get("context") is None:
            item["context"] = shared["context"]
        item["id"] = str(secrets.randbits(62))
        return item

    def _unique_id(self) -> str:
        while True:
            job_id = "".join(secrets.choice(_BASE36) for _ in range(12))
            if job_id not in self._jobs:
                return job_id

    def _get_status(self, kind: str, job_id: str) -> Answer:
        """GET /v2/{kind}/batch/{id}: each call is one poll and may move the job to terminal."""
        with self._lock:
            self._stats["status_gets"] += 1
            job = self._job(kind, job_id)
            self._maybe_finish_by_time(job)
            if job.started is not None:  # a queued batch does not move on: it waits for a running slot
                job.polls += 1
            limit = self.config.polls_to_complete
            running = job.status == "PROCESSING" and job.started is not None and not self.has_fault("stuck")
            if running and limit is not None and job.polls >= limit:
                self._finish(job, datetime.now(UTC))
            done = job.status != "PROCESSING"
            meta: dict[str, Any] = {"id": job.id, "status": job.status, "created": _iso(job.created)}
            if job.finished is not None:
                meta["finished"] = _iso(job.finished)
            body = {
                "imports": job.imported_rows if done else 0,
                "errors": len(job.errors) if done else 0,
                "job": meta,
            }
            return 200, _dumps(body), {}

    def _get_page(self, kind: str, job_id: str, listing: str, token: str) -> Answer:
        """GET .../imports|errors: 202 while processing, else one page with a chaining token."""
        with self._lock:
            self._stats["page_gets"] += 1
            job = self._job(kind, job_id)
            self._maybe_finish_by_time(job)
            if job.status == "PROCESSING":
                return 202, _dumps({}), {}
            items = job.imports if listing == "imports" else job.errors
            size = max(1, self.config.page_size)
            start = _decode_page_token(token, job.id, listing, len(items)) if token else 0
            end = start + size
            body: dict[str, Any] = {"results": items[start:end], "total_records": str(len(items))}
            if end < len(items):
                body["next_page_token"] = _encode_page_token(job.id, listing, end)
            if self.has_fault("repeat-token") and size < len(items):
                # Paging stuck on the second page: every page answers that page's token, forever. A client
                # that follows it loops; one that stops keeps the first two pages and misses the rest.
                body["next_page_token"] = _encode_page_token(job.id, listing, size)
            return 200, _dumps(body), {}

    def _job(self, kind: str, job_id: str) -> _Job:
        job = self._jobs.get(job_id)
        if job is None or job.kind != kind:
            raise ApiError(404, "resource_not_found", f"Batch {kind} import job {job_id!r} does not exist")
        return job

    def _finish(self, job: _Job, when: datetime, when_mono: float | None = None) -> None:
        """The batch is done: its slot and operations are free, and the oldest queued batch starts then."""
        job.status = "FAILED" if job.errors else "COMPLETED"
        job.finished = when
        self._processing.discard(job.id)
        self._running.discard(job.id)
        self._operations_in_progress -= job.rows
        self._start_queued(when, time.monotonic() if when_mono is None else when_mono)

    def _maybe_finish_by_time(self, job: _Job) -> None:
        """Wall-clock mode: a batch is terminal ``processing_seconds`` after it started running."""
        if job.status == "PROCESSING":
            self._sweep_finished()

    def _sweep_finished(self) -> None:
        """Wall-clock mode: finish every running batch whose time is up, earliest first, each freeing its slot
        for the next queued batch at the moment it finished (which may be due by now too)."""
        if self.config.polls_to_complete is not None or self.has_fault("stuck"):
            return
        seconds, now = self.config.processing_seconds, time.monotonic()
        while True:
            due = [job for job in map(self._jobs.__getitem__, self._running) if job.started_mono + seconds <= now]
            if not due:
                return
            job = min(due, key=lambda j: j.started_mono)
            assert job.started is not None
            self._finish(job, job.started + timedelta(seconds=seconds), job.started_mono + seconds)

    # ------------------------------------------------------------------ segment export / operations

    def _dispatch_operations(self, method: str, path: str, headers: Any, body: bytes, query: str = "") -> Answer | None:
        """The segment-export routes; None when ``path`` is none of them (batch routes follow)."""
        for route, allowed in (
            (_EXPORTS_ROUTE, ("POST",)),
            (_OPERATIONS_ROUTE, ("GET",)),
            (_OPERATION_ROUTE, ("GET",)),
            (_EXPORT_RESULTS_ROUTE, ("GET",)),
            (_DOWNLOAD_ROUTE, ("GET", "HEAD")),
        ):
            match = route.match(path)
            if match is None:
                continue
            if method not in allowed:
                allow = ", ".join(allowed)
                raise ApiError(405, "method_not_allowed", f"{method} is not allowed on {path}", {"Allow": allow})
            if route is _DOWNLOAD_ROUTE:  # a signed URL: no API key, see _download
                return self._download(unquote(match["id"]), headers)
            self._authenticate(headers.get("Authorization"))
            self._authorize(headers.get("Authorization"))
            if route is _EXPORTS_ROUTE:
                return self._create_export(headers.get("Idempotency-Key"), body)
            base = self.public_base(headers)
            if route is _OPERATIONS_ROUTE:
                return self._list_operations(parse_qs(query, keep_blank_values=True), base)
            if route is _OPERATION_ROUTE:
                return self._get_operation(unquote(match["id"]), base)
            return self._get_export_results(unquote(match["id"]), base)
        return None

    def _create_export(self, idem_key: str | None, body: bytes) -> Answer:
        """POST /segments/v1/exports: validate, replay a keyed repeat (export_idempotency), else schedule an
        operation."""
        payload = _parse_export_body(body)
        segment_id = payload["segmentId"]
        known = self.config.segments
        if known is not None and segment_id not in known:
            raise ApiError(404, "resource_not_found", f"Segment {segment_id!r} not found")
        body_hash = _body_hash(payload)
        # Create Export documents no Idempotency-Key: honoured only when the config says so (SimulatorConfig).
        scope = (_EXPORT_SCOPE, idem_key) if idem_key and self.config.export_idempotency else None
        with self._lock:
            if scope is not None and (replayed := self._replay(scope, body_hash)) is not None:
                return replayed
            op = self._new_operation(payload)
            response = _dumps({"operationId": op.id})
            if scope is not None:
                self._idempotency[scope] = _IdempotencyRecord(body_hash, response, self.clock())
            self._op_stats["operations_created"] += 1
            return 200, response, {}

    def _new_operation(self, payload: dict[str, Any]) -> _Operation:
        while True:  # ids look like the docs' (base64 of "<kind>:<number>"), padding and all
            op_id = base64.urlsafe_b64encode(f"searchexport:{secrets.randbits(62)}".encode()).decode()
            if op_id not in self._operations:
                break
        fields = payload.get("fields")
        op = _Operation(
            id=op_id,
            segment_id=payload["segmentId"],
            export_type=payload["type"],
            export_format=payload["format"],
            fields=tuple(fields) if fields else None,
            created=datetime.now(UTC),
            created_mono=time.monotonic(),
        )
        self._operations[op_id] = op
        limit = self.config.operation_polls_to_complete
        if limit is not None and limit <= 0:
            self._finish_operation(op, op.created)
        return op

    def _operation(self, op_id: str) -> _Operation:
        op = self._operations.get(op_id)
        if op is None:
            raise ApiError(404, "resource_not_found", f"Operation {op_id!r} does not exist")
        return op

    def _get_operation(self, op_id: str, base: str) -> Answer:
        """GET /operations/v1/{id}: each call is one poll and may move the operation on."""
        with self._lock:
            self._op_stats["operation_gets"] += 1
            op = self._operation(op_id)
            op.polls += 1
            self._advance_operation(op)
            return 200, _dumps(self._operation_body(op, base)), {}

    def _list_operations(self, query: dict[str, list[str]], base: str) -> Answer:
        """GET /operations/v1 (developer.fullstory.com "List Operation"): every operation, ongoing and done,
        newest first (the page does not say in which order), filtered by ``type`` and ``state``, at most
        ``limit`` (default and maximum 100) per page, the next page behind ``nextPaginationToken``. The only
        type this simulator runs is SEARCH_EXPORT; an in-progress operation's state is PENDING (or RUNNING
        with ``seed_states``), as GET /operations/v1/{id} answers it."""
        wanted_type = query.get("type", [""])[-1]
        wanted_state = query.get("state", [""])[-1]
        if wanted_type and wanted_type not in OPERATION_TYPES:
            raise ApiError(400, "invalid_argument", f"type must be one of {', '.join(OPERATION_TYPES)}")
        if wanted_state and wanted_state not in ("PENDING", "COMPLETED", "FAILED"):
            raise ApiError(400, "invalid_argument", "state must be one of PENDING, COMPLETED, FAILED")
        try:
            limit = int(query.get("limit", ["100"])[-1] or 100)
            offset = int(query.get("paginationToken", ["0"])[-1] or 0)
        except ValueError:
            raise ApiError(400, "invalid_argument", "limit and paginationToken must be the numbers given") from None
        if not 1 <= limit <= 100 or offset < 0:
            raise ApiError(400, "invalid_argument", "limit must be between 1 and 100")
        with self._lock:
            self._op_stats["operation_lists"] += 1
            listed = []
            for op in reversed(self._operations.values()):
                self._maybe_finish_operation_by_time(op)
                body = self._operation_body(op, base)
                if wanted_type not in ("", body["type"]) or wanted_state not in ("", _listed_state(body["state"])):
                    continue
                listed.append(body)
        page: dict[str, Any] = {"operations": listed[offset : offset + limit]}
        if offset + limit < len(listed):
            page["nextPaginationToken"] = str(offset + limit)
        return 200, _dumps(page), {}

    def _operation_seconds(self) -> float:
        seconds = self.config.operation_seconds
        return float(self.config.processing_seconds if seconds is None else seconds)

    def _advance_operation(self, op: _Operation) -> None:
        """Progress by poll count (``operation_polls_to_complete``) or by wall clock. The first poll
        sees 0% (queued); then the estimate rises with some noise but never falls and stays below
        100 until the operation completes."""
        if op.state in ("COMPLETED", "FAILED"):
            return
        stuck = self.has_fault("stuck")
        limit = self.config.operation_polls_to_complete
        if limit is not None:
            if op.polls >= limit and not stuck:
                self._finish_operation(op, datetime.now(UTC))
                return
            fraction = (op.polls - 1) / max(1, limit - 1)
        else:
            total = self._operation_seconds()
            elapsed = time.monotonic() - op.created_mono
            if elapsed >= total and not stuck:
                self._finish_operation(op, op.created + timedelta(seconds=total))
                return
            fraction = elapsed / total if total > 0 else 1.0
            if fraction < 0.05:
                fraction = 0.0
        if fraction <= 0:
            return
        noise = random.Random(f"{op.id}:{op.polls}").uniform(-4.0, 4.0)
        op.pct = round(min(99.0, max(op.pct, 0.5, fraction * 100.0 + noise)), 1)
        op.state = "RUNNING"

    def _maybe_finish_operation_by_time(self, op: _Operation) -> None:
        if self.config.operation_polls_to_complete is None:
            self._advance_operation(op)

    def _finish_operation(self, op: _Operation, when: datetime) -> None:
        op.finished = when
        if self.config.fail_exports or op.segment_id in self.config.failing_segments:
            op.state = "FAILED"
            op.error_details = (
                f"Export of segment {op.segment_id!r} failed: the search exceeded its time limit (simulated failure)"
            )
            return
        op.state = "COMPLETED"
        op.pct = 100.0
        op.search_export_id = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        op.export_expires = when + timedelta(days=7)
        op.content, op.rows = _render_export(op, max(0, self.config.export_rows))
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", op.segment_id) or "segment"
        op.filename = f"{stem}-{when:%Y-%m-%d}.{_FORMAT_EXTENSIONS[op.export_format]}.gz"
        self._search_exports[op.search_export_id] = op.id

    def _operation_body(self, op: _Operation, base: str) -> dict[str, Any]:
        """The Operation as FullStory answers it (see the module docstring for absent fields)."""
        state = op.state
        if state in ("PENDING", "RUNNING"):
            state = "RUNNING" if self.config.seed_states and state == "RUNNING" else "PENDING"
        body: dict[str, Any] = {
            "id": op.id,
            "type": "SEARCH_EXPORT",
            "state": state,
            "errorDetails": op.error_details,
            "createdAt": _iso_micro(op.created),
        }
        if op.finished is not None:
            body["finishedAt"] = _iso_micro(op.finished)
        body["estimatePctComplete"] = int(op.pct) if float(op.pct).is_integer() else op.pct
        if op.state == "COMPLETED":
            if self.config.results_shape == "downloadUrl":
                body["results"] = {"downloadUrl": self._issue_location(op, base)[0]}
            else:
                assert op.search_export_id is not None and op.export_expires is not None
                body["results"] = {"searchExportId": op.search_export_id, "expires": _iso_micro(op.export_expires)}
        return body

    def _get_export_results(self, export_id: str, base: str) -> Answer:
        """GET /search/v1/exports/{id}/results: a fresh short-lived location on every call."""
        with self._lock:
            self._op_stats["result_location_gets"] += 1
            op_id = self._search_exports.get(export_id)
            if op_id is None:
                raise ApiError(404, "resource_not_found", f"Search export {export_id!r} does not exist")
            url, expires = self._issue_location(self._operations[op_id], base)
            return 200, _dumps({"location": url, "expires": _iso_micro(expires)}), {}

    def _issue_location(self, op: _Operation, base: str) -> tuple[str, datetime]:
        """A download URL valid ``download_ttl_seconds`` (the first ``expire_first_locations`` are dead
        on arrival, although their ``expires`` says otherwise: a revoked or clock-skewed URL)."""
        now_mono = time.monotonic()
        for token, record in list(self._download_urls.items()):  # forget long-dead URLs
            if record.expires_mono < now_mono - 3600:
                del self._download_urls[token]
        self._locations_issued += 1
        ttl = max(0.0, float(self.config.download_ttl_seconds))
        dead = self._locations_issued <= self.config.expire_first_locations
        token = secrets.token_urlsafe(24)
        self._download_urls[token] = _DownloadUrl(op.id, now_mono if dead else now_mono + ttl)
        return f"{base}/download/{token}", datetime.now(UTC) + timedelta(seconds=ttl)

    def _download(self, token: str, headers: Any) -> Answer:
        """GET /download/{token}: the gzip file while the URL lives, then 403 (cloud-storage style
        XML errors). Like a signed URL, it refuses a request that also carries an Authorization
        header, so a client that would leak its API key to the storage host finds out here."""
        if headers.get("Authorization"):
            return _storage_error(400, "InvalidArgument", "Only one auth mechanism allowed: the URL is already signed")
        with self._lock:
            record = self._download_urls.get(token)
            if record is None:
                return _storage_error(404, "NoSuchKey", "The specified key does not exist.")
            if time.monotonic() >= record.expires_mono:
                self._op_stats["expired_downloads"] += 1
                return _storage_error(403, "AccessDenied", "Request has expired")
            op = self._operations[record.operation_id]
            self._op_stats["downloads"] += 1
            return (
                200,
                op.content,
                {"Content-Type": "application/gzip", "Content-Disposition": f'attachment; filename="{op.filename}"'},
            )


OPERATION_TYPES = ("DELETE_USER", "SEARCH_EXPORT", "DELETE_SESSION", "DELETE_SEGMENT_SESSIONS", "DELETE_SEGMENT_USERS")
EXPORT_TYPES = ("TYPE_EVENT", "TYPE_INDIVIDUAL")
EXPORT_SCOPES = ("SCOPE_EVENT", "SCOPE_PAGES", "SCOPE_SESSIONS", "SCOPE_INDIVIDUAL")
_FORMAT_EXTENSIONS = {"FORMAT_CSV": "csv", "FORMAT_JSON": "json", "FORMAT_NDJSON": "ndjson"}
EXPORT_FORMATS = tuple(_FORMAT_EXTENSIONS)


def _rfc3339(name: str, value: Any) -> datetime | None:
    """An RFC 3339 timestamp with an offset, or "" (no bound, as the docs allow); else a 400."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ApiError(400, "invalid_argument", f"{name} must be an RFC 3339 timestamp string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(400, "invalid_argument", f"{name} {value!r} is not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise ApiError(400, "invalid_argument", f"{name} {value!r} has no UTC offset (RFC 3339 needs one)")
    return parsed


def _parse_export_body(body: bytes) -> dict[str, Any]:
    """Validate a Create Export request the way the docs describe it; anything wrong is a 400."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "invalid_argument", f"Request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_argument", "Request body must be a JSON object")
    segment_id = payload.get("segmentId")
    if not isinstance(segment_id, str) or not segment_id.strip():
        raise ApiError(400, "invalid_argument", "segmentId is required")
    if payload.get("type") not in EXPORT_TYPES:
        raise ApiError(400, "invalid_argument", f"type must be one of {', '.join(EXPORT_TYPES)}")
    if payload.get("format") not in EXPORT_FORMATS:
        raise ApiError(400, "invalid_argument", f"format must be one of {', '.join(EXPORT_FORMATS)}")
    scope = payload.get("scope")
    if scope is not None and scope not in EXPORT_SCOPES:
        raise ApiError(400, "invalid_argument", f"scope must be one of {', '.join(EXPORT_SCOPES)}")
    for name in ("timeRange", "segmentTimeRange"):
        span = payload.get(name)
        if span is None:
            if name == "timeRange":
                raise ApiError(400, "invalid_argument", "timeRange is required (empty start and end export all data)")
            continue
        if not isinstance(span, dict):
            raise ApiError(400, "invalid_argument", f"{name} must be an object with start and end")
        start = _rfc3339(f"{name}.start", span.get("start"))
        end = _rfc3339(f"{name}.end", span.get("end"))
        if start is not None and end is not None and start > end:
            raise ApiError(400, "invalid_argument", f"{name}.start is after {name}.end")
    timezone = payload.get("timezone")
    if timezone is not None and (not isinstance(timezone, str) or not timezone.strip()):
        raise ApiError(400, "invalid_argument", "timezone must be an IANA time zone name")
    fields = payload.get("fields")
    if fields is not None and (
        not isinstance(fields, list) or not all(isinstance(f, str) and f.strip() for f in fields)
    ):
        raise ApiError(400, "invalid_argument", "fields must be an array of field names")
    return payload


_EVENT_TYPES = ("click", "navigate", "change", "load", "custom")
_BROWSERS = ("Chrome", "Firefox", "Safari", "Edge")
_DEVICES = ("Desktop", "Mobile", "Tablet")


def _export_row(op: _Operation, index: int, rng: random.Random) -> dict[str, Any]:
    """One row with a subset of the documented export fields (plausible values, deterministic per operation)."""
    person = index % 12
    indv_id = 5_000_000_000_000_000 + person
    row: dict[str, Any] = {
        "IndvId": indv_id,
        "UserId": indv_id + 1_000,
        "UserAppKey": f"user-{person:03d}",
        "UserDisplayName": f"Demo User {person}",
        "UserEmail": f"user{person}@example.com",
    }
    if op.export_type == "TYPE_INDIVIDUAL":
        row["UserCreated"] = _iso(op.created - timedelta(days=30 + person))
        row["IndvSessionCount"] = rng.randint(1, 40)
        return row
    start = op.created - timedelta(hours=24) + timedelta(minutes=index * 7, seconds=rng.randint(0, 59))
    kind = rng.choice(_EVENT_TYPES)
    row.update(
        {
            "SessionId": 7_000_000_000 + person * 10 + index % 3,
            "PageId": 9_000_000_000 + index,
            "EventStart": _iso(start),
            "EventType": kind,
            "EventCustomName": "Checkout Completed" if kind == "custom" else None,
            "EventTargetText": rng.choice(("Add to cart", "Sign in", "Next", "")),
            "PageUrl": f"https://shop.example.com/{rng.choice(('', 'cart', 'checkout', 'p/42'))}",
            "PageBrowser": rng.choice(_BROWSERS),
            "PageDevice": rng.choice(_DEVICES),
        }
    )
    return row


def _render_export(op: _Operation, count: int) -> tuple[bytes, int]:
    """The export file, gzip-compressed: CSV (header + rows), NDJSON, or one JSON array.
    ``fields`` restricts and orders the columns; an unknown field is an empty column."""
    rng = random.Random(op.id)
    rows = [_export_row(op, i, rng) for i in range(count)]
    if op.fields is not None:
        rows = [{name: row.get(name) for name in op.fields} for row in rows]
    if op.export_format == "FORMAT_CSV":
        columns = list(op.fields) if op.fields is not None else list(_export_row(op, 0, random.Random(0)))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        data = text.getvalue().encode()
    elif op.export_format == "FORMAT_NDJSON":
        data = b"".join(_dumps(row) + b"\n" for row in rows)
    else:
        data = _dumps(rows)
    return gzip.compress(data, mtime=0), len(rows)


def _storage_error(status: int, code: str, message: str) -> Answer:
    """A cloud-storage style XML error for the download URLs (they are not FullStory API answers)."""
    body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return status, body.encode(), {"Content-Type": "application/xml"}


def _decide_event(row: dict[str, Any], shared: dict[str, Any] | None) -> tuple[str, str] | None:
    """Outcome of one event row: None when imported, else (code, message).

    The server requires a non-empty ``name``, a parseable ISO-8601 ``timestamp`` when one is
    given, no per-event ``context`` when the batch carries ``shared`` context (per the spec),
    and the documented property and uid limits.
    """
    name = row.get("name")
    if not isinstance(name, str) or not name.strip():
        return "required_field", "The event name is required and can not be empty"
    timestamp = row.get("timestamp")
    if timestamp is not None and not _valid_timestamp(timestamp):
        return "invalid_timestamp", f"The event timestamp {timestamp!r} is not a valid ISO-8601 time"
    if shared and shared.get("context") is not None and row.get("context") is not None:
        return "invalid_argument", "An event can not carry its own context when the batch has shared context"
    user = row.get("user")
    if user is not None:
        if not isinstance(user, dict):
            return "invalid_parameter", "user must be an object"
        problem = _string_field_problem(user, "uid", MAX_UID_LENGTH)
        if problem:
            return "invalid_parameter", f"user.{problem}"
    session = row.get("session")
    if isinstance(session, dict):
        # events.swagger.json, UserIdRequest: "If `session.id` is provided, the `session.id` is enough to identify
        # a session ... and `user` will not be accepted." SessionIdRequest.use_most_recent: "If set to `true`, a
        # `user` is required."
        if session.get("id") and user is not None:
            return "invalid_parameter", "user is not accepted with session.id: the session identifies the user"
        if session.get("use_most_recent") is True and user is None:
            return "invalid_parameter", "session.use_most_recent needs a user"
    props = row.get("properties")
    if props is not None:
        problem = _properties_problem(props)
        if problem:
            return "invalid_parameter", problem
    return None


def _parse_batch_body(kind: str, body: bytes) -> dict[str, Any]:
    """Whole-request validation: anything that fails here is a 400 and creates no job."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "invalid_argument", f"Request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_argument", "Request body must be a JSON object")
    requests = payload.get("requests")
    if requests is None:
        raise ApiError(400, "invalid_argument", "requests is required")
    if not isinstance(requests, list):
        raise ApiError(400, "invalid_argument", "requests must be an array")
    if len(requests) > MAX_REQUESTS_PER_BATCH:
        raise ApiError(
            400,
            "invalid_argument",
            f"A batch may contain at most {MAX_REQUESTS_PER_BATCH} requests, got {len(requests)}",
        )
    for index, row in enumerate(requests):
        if not isinstance(row, dict):
            raise ApiError(400, "invalid_argument", f"requests[{index}] must be an object")
    shared = payload.get("shared")
    if kind == "events" and shared is not None and not isinstance(shared, dict):
        raise ApiError(400, "invalid_argument", "shared must be an object")
    return payload


# Go's strconv.ParseBool, which parses bool query parameters behind FullStory's protobuf-generated API (the
# specs are generated from protobuf: google.protobuf.NullValue, fullstory.v2.* message names).
_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True}
_BOOLS.update({"0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False})


def _query_bool(query: dict[str, list[str]], name: str) -> bool | None:
    """A documented boolean query parameter (e.g. ``include_schema``): absent, a bool, or a 400."""
    values = query.get(name)
    if not values:
        return None
    if values[-1] not in _BOOLS:
        raise ApiError(400, "invalid_argument", f"{name} must be true or false, got {values[-1]!r}")
    return _BOOLS[values[-1]]


def _encode_page_token(job_id: str, listing: str, offset: int) -> str:
    raw = f"{listing}:{offset}:{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_page_token(token: str, job_id: str, listing: str, total: int) -> int:
    """Opaque tokens are bound to one job and listing, so a token reused elsewhere is a 400."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        tok_listing, offset_text, tok_job = raw.split(":", 2)
        offset = int(offset_text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError(400, "invalid_argument", f"Invalid page_token {token!r}") from None
    if tok_listing != listing or tok_job != job_id or not 0 < offset < total:
        raise ApiError(400, "invalid_argument", f"page_token {token!r} does not belong to this {listing} listing")
    return offset


def _listed_state(state: str) -> str:
    """The List Operation filter knows PENDING, COMPLETED and FAILED: a running operation is PENDING there."""
    return "PENDING" if state == "RUNNING" else state


def _upsert(user: dict[str, Any], update: dict[str, Any]) -> None:
    """A later request for the same user: its fields replace, its properties merge into the earlier ones."""
    properties = {**user.get("properties", {}), **update.get("properties", {})}
    user.update(update)
    if properties:
        user["properties"] = properties


def _body_hash(payload: Any) -> str:
    """What "the same request body" means for a repeated key: the same JSON, whatever its formatting."""
    return hashlib.sha256(_dumps(payload, canonical=True)).hexdigest()


def _dumps(value: Any, canonical: bool = False) -> bytes:
    if canonical:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return json.dumps(value, ensure_ascii=False).encode()


def serve(
    config: SimulatorConfig,
    host: str = "127.0.0.1",
    port: int = 8900,
    *,
    tls: bool = False,
    tls_dir: Path | None = None,
) -> None:
    """Blocking entry point for ``jobtracker simulate fullstory --port N [--tls]``; Ctrl-C stops it."""
    run_until_interrupted(FullStorySimulator(config, host=host, port=port, tls=tls, tls_dir=tls_dir))
