"""The provider of every spec type (``http:<name>``): an OperationProvider driven by a ProviderSpec.

``start`` sends the spec's start request and reads the new job's id; ``status`` sends its status request
and reads the state (tracker.providers.spec.evaluate); ``result`` streams the COMPLETED job's output (the
answer to a request, or a signed download URL, asked for again when it has expired) into the job's results.

Everything goes through the one provider HTTP layer (tracker.providers.http): pooled connections, the
named errors the state machine retries or catches, Retry-After on 429 as a Throttled wait. On top, for a
provider the tracker knows only from data:

- every URL (API and download) must be in the HttpJobHosts allowlist (tracker.providers.spec.hosts);
- redirects are followed only to the same scheme, host and port;
- an API answer is read into memory only up to MAX_ANSWER_BYTES, a result file only up to the setting
  HttpJobMaxResultBytes;
- the credential (a Secrets Manager secret) goes only to the spec's base URL, never to a download URL,
  and is never logged nor stored in a job record: job records hold the params, never headers.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import urllib3

from tracker.errors import (
    ProviderAuthError,
    ProviderRejectedError,
    ProviderThrottledError,
    TrackerError,
)
from tracker.providers.base import OperationStatus, ResultFile, ResultsNotReady, Submitted, Throttled
from tracker.providers.http import POOL, ErrorBody, ProviderHttp, json_body
from tracker.providers.spec.evaluate import (
    RenderedRequest,
    ResultSource,
    SpecParamsError,
    StatusReading,
    auth_headers,
    decode_answer,
    download_url,
    evaluate_status,
    read_job_id,
    render_result,
    render_start,
    render_status,
    result_file_name,
    vanished_reading,
)
from tracker.providers.spec.hosts import HostAllowlist
from tracker.providers.spec.model import BaseUrlRef, ProviderSpec

if TYPE_CHECKING:
    from tracker.config import Settings

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 1024 * 1024  # a start or status answer; Databricks' largest run record is far below
MAX_REDIRECTS = 3
DOWNLOAD_ATTEMPTS = 3  # signed URLs asked for before giving up (each may have expired)
CHUNK_BYTES = 1024 * 1024
_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def read_error(response: Any) -> ErrorBody:
    """What an unknown API's error body says, from the fields APIs commonly use: ``error_code``/``code`` and
    ``message``/``error``/``detail`` (Databricks ``{error_code, message}``, dbt Cloud ``{status:
    {user_message}}``, FullStory ``{code, message}``); the code is kept only when it looks like one."""
    body = json_body(response)
    code, message = "", ""
    if isinstance(body, dict):
        nested = body.get("status") if isinstance(body.get("status"), dict) else {}
        for key in ("error_code", "code"):
            value = body.get(key)
            if isinstance(value, str) and _CODE.match(value):
                code = value
                break
        for value in (body.get("message"), body.get("error"), body.get("detail"), nested.get("user_message")):
            if isinstance(value, str) and value.strip():
                message = value.strip()[:300]
                break
    summary = ": ".join(part for part in (code, message) if part)
    return ErrorBody(code=code, summary=summary, detail=summary)


class SpecProvider:
    """:class:`~tracker.providers.base.OperationProvider` for one spec and one job's params."""

    def __init__(
        self,
        spec: ProviderSpec,
        *,
        base_url: str,
        credentials: dict[str, str],
        allowlist: HostAllowlist,
        params: Mapping[str, Any] | None = None,
        timeout_seconds: float = 30.0,
        max_result_bytes: int,
        pool: urllib3.PoolManager = POOL,
        download_attempts: int = DOWNLOAD_ATTEMPTS,
    ) -> None:
        self.spec = spec
        self._base = base_url.rstrip("/")
        self._allow = allowlist
        self._params = dict(params or {})
        self._max_result_bytes = max_result_bytes
        self._download_attempts = max(1, download_attempts)
        self._http = ProviderHttp(
            spec.title,
            headers=credentials,
            credential="the credential of its secret",
            read_error=read_error,
            timeout_seconds=timeout_seconds,
            pool=pool,
        )
        # Downloads carry no credentials: a signed URL is its own, and it may point at another host.
        self._download_http = ProviderHttp(
            f"{spec.title} download",
            headers={},
            credential="the download URL",
            read_error=read_error,
            timeout_seconds=timeout_seconds,
            pool=pool,
        )

    # -- protocol ---------------------------------------------------------------------------------
    def start(self, params: dict[str, Any], idempotency_key: str) -> Submitted | Throttled:
        request = _rendered(lambda: render_start(self.spec, params, idempotency_key=idempotency_key))
        response = self._send(request, what="start")
        if isinstance(response, Throttled):
            return response
        answer = decode_answer(response.data, what=f"{self.spec.job_type} start")
        return Submitted(provider_job_id=read_job_id(self.spec, answer), provider_status="STARTED")

    def status(self, provider_job_id: str, unknown_streak: int = 0) -> OperationStatus | Throttled:
        reading = self._read_status(provider_job_id, unknown_streak)
        if isinstance(reading, Throttled):
            return reading
        return OperationStatus(
            provider_status=reading.provider_status,
            state=reading.state,
            progress_pct=reading.progress_pct,
            error=reading.error,
            unknown_streak=reading.unknown_streak,
        )

    def result(self, provider_job_id: str) -> ResultFile:
        """The COMPLETED job's output. The first download is opened here (its Content-Disposition may name
        the file); the first ``chunks()`` streams it, every later call starts a fresh one."""
        answer = self._final_answer(provider_job_id)
        source = render_result(self.spec, self._params, answer, provider_job_id=provider_job_id)
        if source is None:  # no `result` in the spec: the last status answer is the job's result
            body = json.dumps(answer, indent=1, sort_keys=True).encode()
            name = result_file_name(self.spec, self._params, provider_job_id=provider_job_id)
            return ResultFile(name=name, content_type="application/json", chunks=lambda: iter([body]))
        first = self._open(source, provider_job_id)
        name = result_file_name(
            self.spec,
            self._params,
            provider_job_id=provider_job_id,
            disposition=first.headers.get("Content-Disposition"),
        )
        pending = [first]
        what = f"{self.spec.job_type} result"

        def chunks() -> Iterator[bytes]:
            response = pending.pop() if pending else self._open(source, provider_job_id)
            yield from ProviderHttp.stream(
                response, what=what, chunk_bytes=CHUNK_BYTES, max_bytes=self._max_result_bytes
            )

        return ResultFile(name=name, content_type=source.content_type, chunks=chunks)

    # -- status ------------------------------------------------------------------------------------
    def _read_status(self, provider_job_id: str, unknown_streak: int) -> StatusReading | Throttled:
        return self._status_and_answer(provider_job_id, unknown_streak)[0]

    def _status_and_answer(
        self, provider_job_id: str, unknown_streak: int = 0
    ) -> tuple[StatusReading | Throttled, Any]:
        request = _rendered(lambda: render_status(self.spec, self._params, provider_job_id=provider_job_id))
        response = self._send(request, what="status", passthrough=tuple(self.spec.status.vanished_on))
        if isinstance(response, Throttled):
            return response, None
        if response.status in self.spec.status.vanished_on:
            return vanished_reading(self.spec, response.status, provider_job_id), None
        answer = decode_answer(response.data, what=f"{self.spec.job_type} status")
        reading = evaluate_status(self.spec, answer, unknown_streak=unknown_streak)
        for warning in reading.warnings:  # what the spec could not read; never a credential
            log.warning("%s job %s: %s", self.spec.job_type, provider_job_id, warning)
        return reading, answer

    def _final_answer(self, provider_job_id: str) -> Any:
        """The last status answer of a job that has COMPLETED (else not ready, or refused)."""
        reading, answer = self._status_and_answer(provider_job_id)
        if isinstance(reading, Throttled):
            raise ProviderThrottledError(
                f"{self.spec.title} throttled the status request", retry_after=reading.retry_after
            )
        if reading.state in ("PENDING", "RUNNING"):
            raise ResultsNotReady(f"{self.spec.job_type} job {provider_job_id} is {reading.provider_status}")
        if reading.state != "COMPLETED":
            raise ProviderRejectedError(
                f"{self.spec.job_type} job {provider_job_id} ended {reading.provider_status}: no result",
                code="job_failed",
            )
        return answer

    # -- results -----------------------------------------------------------------------------------
    def _open(self, source: ResultSource, provider_job_id: str) -> urllib3.BaseHTTPResponse:
        what = f"{self.spec.job_type} result download"
        if source.request is not None and source.url_selector is None:
            response = self._send(source.request, what="result", stream=True)
            if isinstance(response, Throttled):
                raise ProviderThrottledError(
                    f"{self.spec.title} throttled the result request", retry_after=response.retry_after
                )
            return response
        urls = _Urls(self, source, provider_job_id)
        return self._download_http.open_signed(urls, what=what, attempts=self._download_attempts)

    def _fresh_url(self, source: ResultSource, provider_job_id: str) -> str:
        """A download URL: from the answer to the result request, else from a fresh status answer."""
        if source.request is not None:
            response = self._send(source.request, what="result")
            if isinstance(response, Throttled):
                raise ProviderThrottledError(
                    f"{self.spec.title} throttled the result request", retry_after=response.retry_after
                )
            answer = decode_answer(response.data, what=f"{self.spec.job_type} result")
            return download_url(self.spec, answer, "the answer to result.request")
        return download_url(self.spec, self._final_answer(provider_job_id), "the last status answer")

    # -- HTTP --------------------------------------------------------------------------------------
    def _send(
        self, request: RenderedRequest, *, what: str, stream: bool = False, passthrough: tuple[int, ...] = ()
    ) -> urllib3.BaseHTTPResponse | Throttled:
        url = self._base + request.path + ("?" + urlencode(request.query) if request.query else "")
        self._allow.check(url, what=f"{self.spec.job_type} {what}")
        body = json.dumps(request.body).encode() if request.body is not None else None
        return self._http.request(
            request.method,
            url,
            body=body,
            headers=request.headers,
            max_bytes=None if stream else MAX_ANSWER_BYTES,
            stream=stream,
            redirects=MAX_REDIRECTS,
            passthrough=passthrough,
        )


class _Urls:
    """Hands out download URLs for :meth:`ProviderHttp.open_signed`: the one already known first, then
    fresh ones; each must be in the allowlist."""

    def __init__(self, provider: SpecProvider, source: ResultSource, provider_job_id: str) -> None:
        self._provider = provider
        self._source = source
        self._provider_job_id = provider_job_id
        self._known = source.url

    def __call__(self) -> str:
        url, self._known = self._known, None
        if url is None:
            url = self._provider._fresh_url(self._source, self._provider_job_id)
        spec = self._provider.spec
        return self._provider._allow.check(url, what=f"{spec.job_type} result download")


def _rendered(render: Callable[[], RenderedRequest]) -> RenderedRequest:
    """A request from the job's params; params that no longer fit the spec end the job (they were checked
    when it was created, so this means the spec changed under a running job)."""
    try:
        return render()
    except SpecParamsError as exc:
        raise ProviderRejectedError(exc.message, code="invalid_params") from None


# -- building one from the settings --------------------------------------------------------------------
def spec_params(spec: ProviderSpec, stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """The spec params of a job from what its record holds: a started job's params are the spec's; a
    tracked one's (`provider`, `providerJobId`) keep them under `params`."""
    stored = dict(stored or {})
    if stored.get("provider") == spec.job_type and "providerJobId" in stored:
        return dict(stored.get("params") or {})
    return stored


def base_url(spec: ProviderSpec, parameters: Mapping[str, str]) -> str:
    if not isinstance(spec.base_url, BaseUrlRef):
        return spec.base_url
    value = (parameters.get(spec.base_url.parameter) or "").strip()
    if not value:
        raise ProviderRejectedError(
            f"{spec.job_type} has no base URL: set the template parameter {spec.base_url.parameter}",
            code="not_configured",
        )
    return value


def connect(spec: ProviderSpec, settings: Settings, params: Mapping[str, Any] | None = None) -> SpecProvider:
    """The provider one task of a spec type talks to: its base URL and secret from the template parameters
    the spec names, the allowlist and caps from the settings."""
    from tracker.providers.secrets import read_secret_string

    secret = spec.auth.secret
    arn = secret.arn or settings.spec_parameters.get(str(secret.parameter), "")
    raw = read_secret_string(arn, f"{spec.title} ({secret.parameter or 'arn'})")
    try:
        credentials = auth_headers(spec.auth, raw)
    except TrackerError as exc:  # the class the state machine ends the job on at once; the code says why
        raise ProviderAuthError(exc.message, code=exc.code) from None
    return SpecProvider(
        spec,
        base_url=base_url(spec, settings.spec_parameters),
        credentials=credentials,
        allowlist=HostAllowlist(settings.http_job_hosts, plain_http_loopback=settings.http_job_plain_http_loopback),
        params=spec_params(spec, params),
        timeout_seconds=settings.provider_timeout_seconds,
        max_result_bytes=settings.http_job_max_result_bytes,
    )
