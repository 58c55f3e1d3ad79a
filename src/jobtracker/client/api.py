"""A small client of the jobtracker REST API: JSON over HTTP, SigV4-signed for a deployed stack."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from jobtracker.client.errors import EXIT_API, EXIT_UNREACHABLE, CliError

log = logging.getLogger("jobtracker.client")
USER_AGENT = "jobtracker-cli/0.1"


class SigV4Signer:
    """Signs each request for API Gateway (service execute-api) with the session's current credentials."""

    def __init__(self, session: Any, region: str) -> None:
        self._session = session
        self.region = region

    def __call__(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> dict[str, str]:
        credentials = self._session.get_credentials()
        if credentials is None:
            raise CliError(
                "no AWS credentials found to sign API requests",
                EXIT_UNREACHABLE,
                hint="configure the AWS CLI, pass --profile, or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
            )
        request = AWSRequest(method=method, url=url, data=body or b"", headers=dict(headers))
        SigV4Auth(credentials.get_frozen_credentials(), "execute-api", self.region).add_auth(request)
        return dict(request.headers.items())


class ApiClient:
    def __init__(
        self,
        base_url: str,
        *,
        signer: Callable[[str, str, bytes | None, dict[str, str]], dict[str, str]] | None = None,
        timeout: float = 30.0,
        hint: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._signer = signer
        self._hint = hint  # added to "cannot reach" errors, e.g. "is `jobtracker local up` running?"
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(timeout, 5.0), read=timeout),
            retries=urllib3.Retry(
                total=3,
                connect=1,
                read=1,
                status=2,
                backoff_factor=0.5,
                status_forcelist=(429, 502, 503, 504),
                allowed_methods=None,  # POST too: every POST carries an Idempotency-Key
                respect_retry_after_header=True,
                raise_on_status=False,
            ),
        )

    # -- routes ------------------------------------------------------------------------------
    def create_job(self, body: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        return self.request("POST", "/jobs", body=body, headers={"Idempotency-Key": idempotency_key})

    def create_upload(self, *, job_type: str, filename: str, size: int) -> dict[str, Any]:
        """Presigned URLs for a file of `size` bytes in the caller's own prefix of the inbox (POST /uploads)."""
        return self.request("POST", "/uploads", body={"type": job_type, "filename": filename, "size": size})

    def list_jobs(self, *, state: str | None = None, limit: int = 50, next_token: str | None = None) -> dict[str, Any]:
        params = {"state": state, "limit": limit, "nextToken": next_token}
        return self.request("GET", "/jobs", params={k: v for k, v in params.items() if v is not None})

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/jobs/{_path_part(job_id)}")

    def get_results(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/jobs/{_path_part(job_id)}/results")

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return self.request("POST", f"/jobs/{_path_part(job_id)}/cancel", idempotent=False)

    def retry_job(self, job_id: str) -> dict[str, Any]:
        return self.request("POST", f"/jobs/{_path_part(job_id)}/retry", idempotent=False)

    # -- HTTP --------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        idempotent: bool = True,
    ) -> Any:
        """idempotent=False: resent only when the connection was never made (no second cancel or retry)."""
        url = self.base_url + path + (("?" + urlencode(params)) if params else "")
        raw = json.dumps(body).encode() if body is not None else None
        all_headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **(headers or {})}
        if raw is not None:
            all_headers["Content-Type"] = "application/json"
        if self._signer is not None:
            all_headers = self._signer(method, url, raw, all_headers)
        started = time.monotonic()
        try:
            once = None if idempotent else urllib3.Retry(total=1, connect=1, read=0, status=0, other=0)
            response = self._http.request(method, url, body=raw, headers=all_headers, retries=once)
        except urllib3.exceptions.HTTPError as exc:
            reason = _reason(exc)
            raise CliError(
                f"cannot reach the jobtracker API at {self.base_url}: {reason}", EXIT_UNREACHABLE, hint=self._hint
            ) from exc
        log.debug("%s %s -> %s in %.0f ms", method, url, response.status, 1000 * (time.monotonic() - started))
        try:
            data = json.loads(response.data) if response.data else None
        except ValueError:
            data = None
        if response.status >= 400:
            raise _api_error(response.status, data, response.data, method, path)
        if data is None and response.status != 204:
            raise CliError(
                f"{method} {path}: the API answered {response.status} without JSON "
                f"(is {self.base_url} a jobtracker API?)",
                EXIT_API,
            )
        return data


def _path_part(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _reason(exc: Exception) -> str:
    inner = getattr(exc, "reason", None) or exc
    text = str(inner)
    for known in ("Connection refused", "Name or service not known", "timed out", "No route to host"):
        if known.lower() in text.lower():
            return known.lower() if known != "timed out" else "timed out"
    return text.split(": ", 1)[-1] if ": " in text else text


def _api_error(status: int, data: Any, raw: bytes, method: str, path: str) -> CliError:
    if isinstance(data, dict) and ("code" in data or "message" in data):
        code, message = data.get("code"), data.get("message") or data.get("Message")
    elif isinstance(data, dict) and "message" in {k.lower() for k in data}:
        code, message = None, next(v for k, v in data.items() if k.lower() == "message")
    else:
        code, message = None, raw[:200].decode("utf-8", "replace").strip() or "no details"
    if status == 403 and not code:
        return CliError(
            f"the API refused the request (403): {message}",
            EXIT_UNREACHABLE,
            status=status,
            hint="are your AWS credentials allowed execute-api:Invoke on this API, in its region?",
        )
    return CliError(
        f"{message} ({method} {urlsplit(path).path}: {status}{' ' + code if code else ''})", EXIT_API, status=status
    )
