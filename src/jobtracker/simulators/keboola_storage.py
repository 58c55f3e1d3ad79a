"""Keboola's file storage, as the Keboola simulator serves it: S3, Azure Blob Storage or GCS, with the
short-lived credentials a file detail hands out (``GET /v2/storage/files/{id}?federationToken=1``).

Each backend is reached the way its real service is, so official clients work unchanged:

* **S3** on its own port (``jobtracker simulate keboola --s3-port M``): GetObject and HeadObject,
  path-style (``/bucket/key``), ``Range`` included, for any S3 client pointed at it with the standard
  ``AWS_ENDPOINT_URL_S3=http://127.0.0.1:M``. Requests must be SigV4-signed with temporary credentials
  this simulator issued (``AccessKeyId`` + ``SecretAccessKey`` + ``X-Amz-Security-Token``), as Keboola's
  federation token credentials are (STS GetFederationToken). Refusals answer as S3 does (XML
  ``<Error><Code>``): ``ExpiredToken`` (400) once they expired, ``InvalidAccessKeyId`` /
  ``SignatureDoesNotMatch`` / ``InvalidToken`` (403) otherwise, ``NoSuchKey`` / ``NoSuchBucket`` (404).
  Sources: the S3 API reference (GetObject, Error responses) and the SigV4 signing process.
* **Azure Blob Storage** on the simulator's port, laid out as Azurite lays out an account
  (``/{account}/{container}/{blob}``), so ``BlobEndpoint={base}/{account}`` in a SAS connection string
  works for Azure's SDK. A container SAS (``sv, sr=c, sp=rl, se, sig``) is required; past ``se`` the blob
  service answers 403 ``AuthenticationFailed``, a blob that is not there 404 ``BlobNotFound``. Sources:
  Azure "Create a service SAS", "Get Blob", "Blob service error codes".
* **GCS** on the simulator's port: the JSON API media download ``GET /storage/v1/b/{bucket}/o/{object}?
  alt=media`` (and ``/download/storage/v1/...``, the media path Google's Python client uses against
  ``STORAGE_EMULATOR_HOST``) with ``Authorization: Bearer <access_token>``; an unknown or expired token is
  401 ``Invalid Credentials``, an object that is not there 404 ``No such object``. Source: the Cloud
  Storage JSON API reference (objects.get, HTTP status codes).

Why not moto for S3: moto accepts any credentials and never expires them, and credentials that expire
mid-download are exactly what the tracker must survive (issue 11). Where the offline stack runs the
tracker in this process against moto, S3 objects can go into that moto instead (``s3_client``): there
the tracker's buckets and Keboola's file bucket are in one S3, as they are in AWS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import string
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from jobtracker.simulators.faults import Fault
from jobtracker.simulators.server import Answer, ApiError, Simulator

S3_BUCKET = "kbc-sapi-files"  # Keboola's file bucket on the AWS stacks (developers.keboola.com, S3 staging)
S3_REGION = "us-east-1"
GCS_BUCKET = "kbc-sapi-files-gcp"
ABS_ACCOUNT = "kbcsimfiles"  # an Azure storage account name: 3-24 lowercase letters and digits
ABS_VERSION = "2021-08-06"  # the signed version (sv) of the SAS the simulator hands out


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Grant:
    """One set of credentials handed out with a file detail."""

    backend: str  # aws | azure | gcp
    key: str  # aws: AccessKeyId; azure: the SAS signature; gcp: the access token
    expires: float
    uses_left: int | None  # test hook: stops working after this many object reads (None: until it expires)
    secret: str = ""  # aws: SecretAccessKey
    token: str = ""  # aws: SessionToken


class FileStorage:
    """The objects of every backend and the credentials that open them; thread-safe."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        uses_per_grant: Callable[[], int | None] = lambda: None,
        s3_client: Callable[[], Any] | None = None,
    ) -> None:
        self._clock = clock
        self._uses_per_grant = uses_per_grant
        self._s3_client = s3_client
        self._s3_bucket_made = False
        self._lock = threading.RLock()
        self._objects: dict[tuple[str, str, str], bytes] = {}
        self._grants: dict[str, Grant] = {}
        self._abs_key = secrets.token_bytes(32)  # the storage account key SAS signatures are made with
        self.stats = {"object_gets": 0, "refused": 0, "missing": 0}

    # -- objects ------------------------------------------------------------------------------------------
    def put(self, backend: str, bucket: str, key: str, data: bytes) -> None:
        if backend == "aws" and self._s3_client is not None:
            client = self._s3_client()
            if not self._s3_bucket_made:
                existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
                if bucket not in existing:
                    client.create_bucket(Bucket=bucket)
                self._s3_bucket_made = True
            client.put_object(Bucket=bucket, Key=key, Body=data)
            return
        with self._lock:
            self._objects[(backend, bucket, key)] = data

    def get(self, backend: str, bucket: str, key: str) -> bytes | None:
        if backend == "aws" and self._s3_client is not None:
            try:
                return self._s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
            except Exception:
                return None
        with self._lock:
            return self._objects.get((backend, bucket, key))

    def delete(self, backend: str, bucket: str, key: str) -> None:
        if backend == "aws" and self._s3_client is not None:
            self._s3_client().delete_object(Bucket=bucket, Key=key)
            return
        with self._lock:
            self._objects.pop((backend, bucket, key), None)

    # -- credentials ----------------------------------------------------------------------------------------
    def grant(
        self, backend: str, ttl_seconds: float, *, container: str = "", blob_endpoint: str = ""
    ) -> dict[str, Any]:
        """Fresh credentials for one file detail, shaped as Keboola's answer carries them (azure: a SAS for
        ``container`` in a connection string naming ``blob_endpoint``)."""
        now = self._clock()
        expires = now + ttl_seconds
        with self._lock:
            if backend == "aws":
                access_key = "ASIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))
                grant = Grant("aws", access_key, expires, self._uses_per_grant(), secrets.token_urlsafe(30))
                grant.token = "FwoGZXIvYXdzE" + secrets.token_urlsafe(120)
                self._grants[access_key] = grant
                return {
                    "AccessKeyId": access_key,
                    "SecretAccessKey": grant.secret,
                    "SessionToken": grant.token,
                    "Expiration": iso(expires),
                }
            if backend == "azure":
                fields = {"sv": ABS_VERSION, "sr": "c", "sp": "rl", "se": iso(expires), "spr": "https,http"}
                signature = self._abs_signature(container, fields)
                self._grants[signature] = Grant("azure", signature, expires, self._uses_per_grant())
                sas = "&".join(f"{k}={quote(v, safe='')}" for k, v in {**fields, "sig": signature}.items())
                return {
                    "SASConnectionString": f"BlobEndpoint={blob_endpoint};SharedAccessSignature={sas}",
                    "expiration": iso(expires),
                }
            token = "ya29.sim-" + secrets.token_urlsafe(48)
            self._grants[token] = Grant("gcp", token, expires, self._uses_per_grant())
            return {
                "access_token": token,
                "expires_in": int(ttl_seconds),
                "token_type": "Bearer",
                "projectId": "kbc-sim-files",
            }

    def _abs_signature(self, container: str, fields: dict[str, str]) -> str:
        """A service SAS signature: HMAC-SHA256 with the account key over the string-to-sign of Azure's
        "Create a service SAS" (permissions, start, expiry, canonicalized resource, ..., version, resource)."""
        to_sign = "\n".join(
            [
                fields["sp"],
                "",
                fields["se"],
                f"/blob/{ABS_ACCOUNT}/{container}",
                "",
                "",
                fields["spr"],
                fields["sv"],
                fields["sr"],
                "",
                "",
                "",
                "",
                "",
                "",
                "",
            ]
        )
        return base64.b64encode(hmac.new(self._abs_key, to_sign.encode(), hashlib.sha256).digest()).decode()

    def _use(self, grant: Grant) -> bool:
        """Whether the grant still opens objects now; counts one use."""
        with self._lock:
            if self._clock() >= grant.expires:
                return False
            if grant.uses_left is not None:
                if grant.uses_left <= 0:
                    return False
                grant.uses_left -= 1
            return True

    def _refused(self) -> None:
        with self._lock:
            self.stats["refused"] += 1

    def _served(self, backend: str, bucket: str, key: str, headers: Any) -> Answer | None:
        data = self.get(backend, bucket, key)
        if data is None:
            with self._lock:
                self.stats["missing"] += 1
            return None
        with self._lock:
            self.stats["object_gets"] += 1
        answer_headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"',
            "Last-Modified": formatdate(self._clock(), usegmt=True),
            "Accept-Ranges": "bytes",
        }
        status, body = 200, data
        wanted = _byte_range(headers.get("Range") or headers.get("x-ms-range"), len(data))
        if wanted is not None:
            start, end = wanted
            status, body = 206, data[start : end + 1]
            answer_headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return status, body, answer_headers  # for HEAD, Werkzeug sends the headers of this body without it

    # -- S3 ----------------------------------------------------------------------------------------------
    def s3_answer(self, method: str, raw_path: str, headers: Any) -> Answer:
        if method not in ("GET", "HEAD"):
            return _s3_error(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")
        parts = urlsplit(raw_path)
        bucket, _, key = unquote(parts.path.lstrip("/")).partition("/")
        refusal = self._s3_refusal(method, raw_path, headers)
        if refusal is not None:
            self._refused()
            return refusal
        if bucket != S3_BUCKET:
            return _s3_error(404, "NoSuchBucket", "The specified bucket does not exist")
        answer = self._served("aws", bucket, key, headers)
        return answer or _s3_error(404, "NoSuchKey", "The specified key does not exist.")

    def _s3_refusal(self, method: str, raw_path: str, headers: Any) -> Answer | None:
        """SigV4 as S3 checks it: a credential this simulator issued, its session token, the signature over
        the request as received, and the expiry."""
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        authorization = headers.get("Authorization") or ""
        if not authorization.startswith("AWS4-HMAC-SHA256 "):
            return _s3_error(403, "AccessDenied", "Access Denied")
        fields = dict(
            part.strip().split("=", 1) for part in authorization[len("AWS4-HMAC-SHA256 ") :].split(",") if "=" in part
        )
        access_key, _, scope = fields.get("Credential", "").partition("/")
        with self._lock:
            grant = self._grants.get(access_key)
        if grant is None or grant.backend != "aws":
            return _s3_error(
                403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."
            )
        if not hmac.compare_digest(headers.get("X-Amz-Security-Token") or "", grant.token):
            return _s3_error(403, "InvalidToken", "The provided token is malformed or otherwise invalid.")
        scope_parts = scope.split("/")  # DATE/REGION/s3/aws4_request
        signed = [h for h in fields.get("SignedHeaders", "").split(";") if h]
        host = headers.get("Host") or ""
        request = AWSRequest(
            method=method, url=f"http://{host}{raw_path}", headers={h: headers.get(h) or "" for h in signed}
        )
        request.context["timestamp"] = headers.get("X-Amz-Date") or ""
        auth = S3SigV4Auth(
            Credentials(access_key, grant.secret, grant.token),
            "s3",
            scope_parts[1] if len(scope_parts) > 1 else S3_REGION,
        )
        expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
        if len(scope_parts) != 4 or not hmac.compare_digest(expected, fields.get("Signature", "")):
            return _s3_error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        if not self._use(grant):
            return _s3_error(400, "ExpiredToken", "The provided token has expired.")
        return None

    # -- Azure Blob Storage ----------------------------------------------------------------------------------
    def blob_answer(self, method: str, raw_path: str, headers: Any) -> Answer:
        """``/{account}/{container}/{blob}?{SAS}``."""
        if method not in ("GET", "HEAD"):
            return _abs_error(405, "UnsupportedHttpVerb", "The resource doesn't support specified Http Verb.")
        parts = urlsplit(raw_path)
        _, container, blob = (unquote(p) for p in ([*parts.path.lstrip("/").split("/", 2), "", ""])[:3])
        args = {k: v[0] for k, v in parse_qs(parts.query).items()}
        signature = args.get("sig", "")
        with self._lock:
            grant = self._grants.get(signature)
        fields = {k: args.get(k, "") for k in ("sv", "sr", "sp", "se", "spr")}
        valid = (
            grant is not None
            and grant.backend == "azure"
            and hmac.compare_digest(self._abs_signature(container, fields), signature)
            and "r" in fields["sp"]
        )
        if not valid:
            self._refused()
            return _abs_error(
                403,
                "AuthenticationFailed",
                "Server failed to authenticate the request. Make sure the value of Authorization header is formed "
                "correctly including the signature.",
            )
        assert grant is not None
        if not self._use(grant):
            self._refused()
            return _abs_error(
                403,
                "AuthenticationFailed",
                f"Signature not valid in the specified time frame: Expiry [{fields['se']}] - Current "
                f"[{iso(self._clock())}]",
            )
        answer = self._served("azure", container, blob, headers)
        return answer or _abs_error(404, "BlobNotFound", "The specified blob does not exist.")

    # -- GCS ---------------------------------------------------------------------------------------------
    def gcs_answer(self, method: str, raw_path: str, headers: Any) -> Answer:
        """``/storage/v1/b/{bucket}/o/{object}?alt=media`` (or under ``/download``)."""
        parts = urlsplit(raw_path)
        path = parts.path[len("/download") :] if parts.path.startswith("/download/") else parts.path
        segments = path.split("/")  # "", storage, v1, b, BUCKET, o, OBJECT
        if method != "GET" or len(segments) != 7 or segments[5] != "o":
            return _gcs_error(404, "Not Found")
        if parse_qs(parts.query).get("alt", [""])[0] != "media":
            return _gcs_error(400, "The tracker's simulator serves media downloads only (alt=media)")
        bucket, name = unquote(segments[4]), unquote(segments[6])
        authorization = headers.get("Authorization") or ""
        token = authorization[len("Bearer ") :] if authorization.startswith("Bearer ") else ""
        with self._lock:
            grant = self._grants.get(token)
        if grant is None or grant.backend != "gcp" or not self._use(grant):
            self._refused()
            return _gcs_error(401, "Invalid Credentials", reason="authError")
        answer = self._served("gcp", bucket, name, headers)
        return answer or _gcs_error(404, f"No such object: {bucket}/{name}", reason="notFound")


class S3Endpoint(Simulator[Any]):
    """The S3-compatible endpoint in front of :class:`FileStorage` (its own port: S3 owns the root path)."""

    title = "Keboola file storage (S3)"
    server_name = "AmazonS3"
    injected_errors = {
        "500": ("InternalError", "We encountered an internal error. Please try again."),
        "429": ("SlowDown", "Please reduce your request rate."),
    }
    internal_error = ("InternalError", "We encountered an internal error")
    malformed_answer = (200, b"\x1f\x8b\x08\x00", {"Content-Type": "application/octet-stream"})

    def __init__(self, config: Any, storage: FileStorage, host: str = "127.0.0.1", port: int = 0, **tls: Any) -> None:
        super().__init__(config, host, port, **tls)
        self.storage = storage

    def fault_targets(self, method: str, path: str) -> tuple[str, ...]:
        return ("pages", "download")  # the file's bytes, as the API server's /download

    def fault_applies(self, fault: Fault, targets: Any) -> bool:
        return fault.kind != "maintenance"  # S3 has no Keboola maintenance window

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes, fault: Fault | None) -> Answer:
        return self.storage.s3_answer(method, raw_path, headers)

    def error_answer(self, err: ApiError) -> Answer:
        return _s3_error(err.status, err.code, err.message)


def _byte_range(value: str | None, size: int) -> tuple[int, int] | None:
    """``bytes=START-END`` / ``bytes=START-`` / ``bytes=-SUFFIX`` within the object; None: the whole object."""
    if not value or not value.startswith("bytes=") or size == 0:
        return None
    start_text, _, end_text = value[len("bytes=") :].partition("-")
    try:
        if not start_text:
            start, end = max(0, size - int(end_text)), size - 1
        else:
            start, end = int(start_text), min(size - 1, int(end_text) if end_text else size - 1)
    except ValueError:
        return None
    return (start, end) if start <= end else None


def _xml(status: int, code: str, message: str, content_type: str = "application/xml") -> Answer:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>{secrets.token_hex(8).upper()}</RequestId></Error>"
    ).encode()
    return status, body, {"Content-Type": content_type}


def _s3_error(status: int, code: str, message: str) -> Answer:
    return _xml(status, code, message)


def _abs_error(status: int, code: str, message: str) -> Answer:
    status, body, headers = _xml(status, code, message)
    return status, body, {**headers, "x-ms-error-code": code}


def _gcs_error(status: int, message: str, *, reason: str = "invalid") -> Answer:
    body = {"error": {"code": status, "message": message, "errors": [{"message": message, "reason": reason}]}}
    return status, json.dumps(body).encode(), {"Content-Type": "application/json; charset=UTF-8"}
