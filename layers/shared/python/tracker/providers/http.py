"""The one HTTP layer every provider talks through: a pooled urllib3 call, the mapping of statuses and
transport failures to the named errors of tracker.errors, Retry-After, JSON answers, and signed-URL
downloads that ask for a fresh URL when one has expired.

Plain urllib3 (shipped with botocore in the Lambda runtime) with its own retries switched off: the
state machine owns retrying and waiting, so every failure surfaces here as one named error, exactly
once. What differs between providers is passed in: the credential headers, the statuses that mean
"wait and try again" (Keboola's maintenance window answers 503 + Retry-After) and how an error body
reads (:class:`ErrorBody`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import urllib3

from tracker.errors import ProviderAuthError, ProviderRejectedError, ProviderTransientError
from tracker.providers.base import Throttled

#: Shared by every provider client of a process (one Lambda container): connections are kept alive
#: between the calls of one task and across warm invocations.
POOL = urllib3.PoolManager(maxsize=10, retries=False, timeout=urllib3.Timeout(connect=5.0, read=30.0))

#: What storage answers for an expired or revoked signed URL (S3 403/400, GCS 400, Azure 403/404, 410).
EXPIRED_URL_STATUSES = (400, 403, 404, 410)
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
#: An answer read into memory with ``max_bytes`` unset but streaming asked for: the error body of a download.
DEFAULT_MAX_ANSWER_BYTES = 1024 * 1024
_URL_ENCODED_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})  # fields go into the query string
GZIP_MAGIC = b"\x1f\x8b"


class ObjectRefused(ProviderAuthError):
    """Object storage refused the credential of a GET (401/403: expired, revoked or wrong). Raised before
    any byte of the object, so the caller may come back with fresh credentials and ask again."""

    code = "credentials_refused"


class ObjectMissing(ProviderRejectedError):
    """Object storage has no such object (404)."""

    code = "not_found"


def retry_after_seconds(headers: Any) -> float | None:
    """A Retry-After header in seconds (the HTTP-date form is not used by these providers); None if absent."""
    value = headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """What a provider's error answer says, read by the provider's own ``read_error``.

    ``code`` becomes the ProviderRejectedError's code (empty: ``provider_rejected``); ``summary`` goes
    into the messages of auth and server errors, ``detail`` into a refused request's message."""

    code: str = ""
    summary: str = ""
    detail: str = ""


def json_body(response: Any) -> Any:
    """The response body as JSON, else ``None`` (for reading error bodies, which may be anything)."""
    try:
        return json.loads(response.data)
    except (ValueError, UnicodeDecodeError):
        return None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


class ProviderHttp:
    """One provider's HTTP client: its name for messages, its credential headers, its error bodies."""

    def __init__(
        self,
        name: str,
        *,
        headers: dict[str, str],
        credential: str,
        read_error: Callable[[Any], ErrorBody],
        throttle_statuses: tuple[int, ...] = (429,),
        timeout_seconds: float = 30.0,
        pool: urllib3.PoolManager = POOL,
    ) -> None:
        self.name = name
        self.pool = pool
        self.timeout = urllib3.Timeout(connect=min(5.0, timeout_seconds), read=timeout_seconds)
        self._headers = headers
        self._credential = credential  # "the API key": how an auth refusal names what was refused
        self._read_error = read_error
        self._throttle_statuses = throttle_statuses

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        max_bytes: int | None = None,
        stream: bool = False,
        redirects: int = 0,
        passthrough: tuple[int, ...] = (),
    ) -> urllib3.BaseHTTPResponse | Throttled:
        """A 2xx/3xx answer (or one of ``passthrough``'s statuses), or Throttled for a throttling status;
        every other outcome raises its named error.

        ``fields`` go into the query string of a GET and form-urlencoded into the body of a POST (as the
        official clients send forms); ``body`` is sent as JSON. ``max_bytes`` caps the answer read into
        memory (a longer one is refused, code ``answer_too_large``); with ``stream`` a 2xx answer comes back
        unread, for :meth:`stream`. ``redirects``: follow at most this many redirects, each only to the
        same scheme, host and port (the credentials go along); any other redirect is refused."""
        sent = {**self._headers, "Accept": "application/json"}
        if body is not None:
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        extra: dict[str, Any] = {}
        if fields is not None and method.upper() not in _URL_ENCODED_METHODS:
            extra["encode_multipart"] = False
        capped = max_bytes is not None or stream
        for hop in range(redirects + 1):
            try:
                response = self.pool.request(
                    method,
                    url,
                    body=body,
                    fields=fields,
                    headers=sent,
                    retries=False,
                    redirect=False,
                    timeout=self.timeout,
                    preload_content=not capped,
                    **extra,
                )
            except urllib3.exceptions.HTTPError as exc:  # reset, refused, timeouts, protocol errors
                raise ProviderTransientError(f"{self.name} unreachable: {type(exc).__name__}") from exc
            if response.status in REDIRECT_STATUSES and (redirects or hop):
                url = self._redirect_target(response, url, hops_left=redirects - hop)
                continue
            break
        status = response.status
        if capped and not (stream and 200 <= status < 300):
            response = self._read_capped(response, max_bytes)
        if status in self._throttle_statuses:
            return Throttled(retry_after_seconds(response.headers))
        if status < 400 or status in passthrough:
            return response
        error = self._read_error(response)
        if status in (401, 403):
            raise ProviderAuthError(
                f"{self.name} refused {self._credential} ({status} {error.summary})",
                code="unauthorized" if status == 401 else "forbidden",
            ).answered(status, error.code)
        if status >= 500:
            raise ProviderTransientError(f"{self.name} answered {status} {error.summary}").answered(status, error.code)
        raise ProviderRejectedError(
            f"{self.name} answered {status} {error.detail}", code=error.code or None
        ).answered(status, error.code)

    def _redirect_target(self, response: urllib3.BaseHTTPResponse, url: str, *, hops_left: int) -> str:
        """The Location of a redirect that stays on the same origin; refused otherwise (and past the limit)."""
        location = response.headers.get("Location") or ""
        response.drain_conn()
        response.release_conn()
        target = urljoin(url, location)
        if not location or _origin(target) != _origin(url):
            raise ProviderRejectedError(
                f"{self.name} redirected to another host ({_origin(target)}); only same-host redirects are followed",
                code="redirect_refused",
            )
        if hops_left <= 0:
            raise ProviderRejectedError(f"{self.name} redirected too many times", code="redirect_refused")
        return target

    def _read_capped(self, response: urllib3.BaseHTTPResponse, max_bytes: int | None) -> urllib3.BaseHTTPResponse:
        """The answer read into memory, at most ``max_bytes`` (the connection is dropped past it), as a
        response whose ``data`` is that body."""
        limit = max_bytes if max_bytes is not None else DEFAULT_MAX_ANSWER_BYTES
        data = bytearray()
        try:
            for chunk in response.stream(64 * 1024):
                data += chunk
                if len(data) > limit:
                    response.close()
                    raise ProviderRejectedError(
                        f"{self.name} answered more than {limit:,} bytes ({response.status}); refused",
                        code="answer_too_large",
                    )
        except urllib3.exceptions.HTTPError as exc:
            response.close()
            raise ProviderTransientError(f"{self.name} answer broke off: {type(exc).__name__}") from exc
        finally:
            response.release_conn()
        return urllib3.HTTPResponse(
            body=bytes(data), headers=response.headers, status=response.status, preload_content=False
        )

    def json(self, response: urllib3.BaseHTTPResponse) -> Any:
        """The answer's JSON; a body that is not JSON is a transient error (a proxy's HTML page, a cut body)."""
        try:
            return json.loads(response.data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProviderTransientError(f"{self.name} answered malformed JSON ({response.status})") from exc

    # -- signed-URL downloads ------------------------------------------------------------------
    def open_signed(self, next_url: Callable[[], str], *, what: str, attempts: int) -> urllib3.BaseHTTPResponse:
        """GET the file behind a short-lived signed URL; when storage refuses it as expired, ask
        ``next_url`` for a fresh one, at most ``attempts`` URLs in all. The URL is the credential and may
        be on another host, so none of the provider's headers go with it; the body is kept as stored
        (``Accept-Encoding: gzip`` and no decoding: a ``.gz`` file stays the gzip it is)."""
        status = 0
        for _ in range(max(1, attempts)):
            response = self._get_stored(next_url(), {"Accept-Encoding": "gzip"}, what=what)
            if response.status == 200:
                return response
            response.drain_conn()
            response.release_conn()
            status = response.status
            if status not in EXPIRED_URL_STATUSES:
                raise ProviderTransientError(f"{what} answered {status}")
        raise ProviderTransientError(
            f"{what} refused {max(1, attempts)} signed URLs in a row (last answer {status}): they keep expiring",
            code="download_url_expired",
        )

    @staticmethod
    def stream(
        response: urllib3.BaseHTTPResponse,
        *,
        what: str,
        chunk_bytes: int,
        gzip: bool = False,
        max_bytes: int | None = None,
    ) -> Iterator[bytes]:
        """The body in chunks, as stored. With ``gzip`` a body that does not start with the gzip magic
        number is refused; a body that breaks off is a transient error; one longer than ``max_bytes`` is
        refused (code ``result_too_large``). A download abandoned or broken mid-way closes its connection
        instead of handing a half-read one back to the pool."""
        head: bytes | None = b"" if gzip else None  # held back until the gzip magic number is seen
        complete = False
        received = 0
        try:
            for chunk in response.stream(chunk_bytes, decode_content=False):
                received += len(chunk)
                if max_bytes is not None and received > max_bytes:
                    raise ProviderRejectedError(
                        f"{what} is larger than {max_bytes:,} bytes; refused", code="result_too_large"
                    )
                if head is not None:
                    head += chunk
                    if len(head) < len(GZIP_MAGIC):
                        continue
                    if not head.startswith(GZIP_MAGIC):
                        raise ProviderTransientError(f"{what} is not a gzip file")
                    chunk, head = head, None
                if chunk:
                    yield chunk
            if head is not None:  # ended before two bytes
                raise ProviderTransientError(f"{what} is empty or truncated")
            complete = True
        except urllib3.exceptions.HTTPError as exc:  # reset mid-body, short read, read timeout
            raise ProviderTransientError(f"{what} broke off: {type(exc).__name__}") from exc
        finally:
            if not complete:
                response.close()
            response.release_conn()

    # -- object storage GETs with a credential (Azure Blob SAS, GCS bearer token) --------------------------
    def open_object(
        self, url: str, headers: dict[str, str], *, what: str, byte_range: str | None = None
    ) -> urllib3.BaseHTTPResponse:
        """GET an object from object storage with the given credential headers (never the provider's own):
        the open response (stream it with :meth:`stream`), or ObjectRefused (401/403), ObjectMissing (404),
        a transient error for anything else. Stored bytes are kept as stored (no decoding)."""
        sent = {**headers, "Accept-Encoding": "identity"}
        if byte_range:
            sent["Range"] = f"bytes={byte_range}"
        response = self._get_stored(url, sent, what=what)
        if response.status in (200, 206):
            return response
        detail = _storage_error(response)
        response.release_conn()
        summary = f"{what} answered {response.status}{' ' + detail if detail else ''}"
        if response.status in (401, 403):
            raise ObjectRefused(summary)
        if response.status == 404:
            raise ObjectMissing(summary)
        raise ProviderTransientError(summary)

    def _get_stored(self, url: str, headers: dict[str, str], *, what: str) -> urllib3.BaseHTTPResponse:
        """An unread GET answer of file storage: no redirects, no retries, the body kept as stored."""
        try:
            return self.pool.request(
                "GET",
                url,
                headers=headers,
                retries=False,
                redirect=False,
                timeout=self.timeout,
                preload_content=False,
                decode_content=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise ProviderTransientError(f"{what} unreachable: {type(exc).__name__}") from exc

    def object_head(self, url: str, headers: dict[str, str], *, what: str) -> bytes:
        """The object's first two bytes (a ranged GET; a store that ignores Range is cut off after them)."""
        response = self.open_object(url, headers, what=what, byte_range="0-1")
        try:
            return response.read(2, decode_content=False)
        except urllib3.exceptions.HTTPError as exc:
            raise ProviderTransientError(f"{what} broke off: {type(exc).__name__}") from exc
        finally:
            response.close()
            response.release_conn()


def _storage_error(response: urllib3.BaseHTTPResponse) -> str:
    """The error code of an object store's answer: Azure's and S3's XML ``<Code>``, GCS's JSON
    ``error.message``; empty when there is none."""
    body = response.data[:4096]
    match = re.search(rb"<Code>([^<]{1,100})</Code>", body)
    if match:
        return match.group(1).decode(errors="replace")
    parsed = json_body(response)
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        return str(parsed["error"].get("message") or "")[:200]
    return ""
