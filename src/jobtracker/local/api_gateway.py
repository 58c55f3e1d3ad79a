"""The REST API offline: an HTTP server on 127.0.0.1 that turns each request into the API Gateway
REST proxy event the deployed API sends, runs the real api handler, and answers what it returns.

Routes come from the api function's `Api` events in template.yaml, so an unknown path is a 404 here
exactly as in API Gateway. Like the deployed API (AWS_IAM auth), it refuses a request that is not
SigV4-signed: an `Authorization: AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/execute-api/...`
header and an `X-Amz-Date` within 15 minutes. Offline there is no IAM to hold secret keys, so the
signature itself is not recomputed; the access key becomes the caller's identity
(arn:aws:iam::123456789012:user/<key>). `allow_unsigned=True` (`jobtracker local up --allow-unsigned`)
is the explicit local-dev switch that lets plain curl in as `local-developer`.

It keeps the two size limits a request meets in AWS (tracker.limits cites them): a body over API Gateway's
10 MB is refused before anything else (413), and a request whose Lambda event is over the 6 MB a
synchronous invoke takes never reaches the function: API Gateway answers 500 "Internal server error"
(Lambda Developer Guide, "Handling Lambda errors with an API Gateway API"). The body travels in the event
as a string, as API Gateway passes it when the API declares no binary media types (ours declares none);
only a body that is not UTF-8 goes base64-encoded.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tracker.limits import API_GATEWAY_PAYLOAD_BYTES, LAMBDA_SYNC_PAYLOAD_BYTES

from jobtracker.local.lambdas import FunctionSpec, LambdaRuntime

MAX_BODY_BYTES = API_GATEWAY_PAYLOAD_BYTES
ACCOUNT = "123456789012"
MAX_CLOCK_SKEW_SECONDS = 15 * 60
_SIGV4 = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[A-Za-z0-9]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)"
    r"/execute-api/aws4_request,"
    r"\s*SignedHeaders=(?P<headers>[a-z0-9;-]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


class Route:
    def __init__(self, method: str, path: str, function: FunctionSpec) -> None:
        self.method = method.upper()
        self.resource = path
        self.function = function
        self.pattern = re.compile("^" + re.sub(r"\{([^}/]+)\}", r"(?P<\1>[^/]+)", path) + "/?$")


def routes_from_template(functions: dict[str, FunctionSpec]) -> list[Route]:
    return [
        Route(event["Properties"]["Method"], event["Properties"]["Path"], spec)
        for spec in functions.values()
        for event in spec.events.values()
        if event["Type"] == "Api"
    ]


class OfflineApiServer:
    def __init__(
        self,
        lambdas: LambdaRuntime,
        routes: list[Route],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_unsigned: bool = False,
    ) -> None:
        self.lambdas = lambdas
        self.routes = routes
        self.allow_unsigned = allow_unsigned
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _serve(self) -> None:
                status, headers, body = server.handle(self.command, self.path, dict(self.headers.items()), self._body())
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, MAX_BODY_BYTES + 1)) if length else b""
                if length > len(body) and len(body) > MAX_BODY_BYTES:
                    self._discard(length - len(body))
                return body

            def _discard(self, remaining: int) -> None:
                """Read and drop the rest of a body over the limit, then close: closing a socket with unread
                data makes the kernel reset it, and the caller, still sending, may then never read its 413."""
                self.close_connection = True
                while remaining > 0:
                    chunk = self.rfile.read(min(remaining, 1 << 20))
                    if not chunk:
                        return
                    remaining -= len(chunk)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> OfflineApiServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if len(body) > MAX_BODY_BYTES:
            return _json(413, {"code": "payload_too_large", "message": "request body over 10 MB"})
        parts = urlsplit(raw_path)
        path = parts.path
        matched = [(r, m) for r in self.routes if (m := r.pattern.match(path))]
        if not matched:
            return _json(404, {"code": "not_found", "message": f"no route for {path}"})
        route_match = next(((r, m) for r, m in matched if r.method == method), None)
        if route_match is None:
            return _json(405, {"code": "method_not_allowed", "message": f"{method} is not allowed on {path}"})
        route, match = route_match
        identity = _identity(headers, allow_unsigned=self.allow_unsigned)
        if identity is None:
            return _json(
                403,
                {
                    "code": "missing_authentication",
                    "message": "the API needs SigV4-signed requests (service execute-api)",
                },
            )
        query = parse_qs(parts.query, keep_blank_values=True)
        host, port = self._httpd.server_address[:2]
        event = {
            "resource": route.resource,
            "path": path,
            "httpMethod": method,
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
            "multiValueQueryStringParameters": query or None,
            "pathParameters": match.groupdict() or None,
            "stageVariables": None,
            "requestContext": {
                "resourcePath": route.resource,
                "httpMethod": method,
                "path": path,
                "stage": "local",
                "domainName": f"{host}:{port}",
                "requestId": str(uuid.uuid4()),
                "accountId": "123456789012",
                "apiId": "offline",
                "identity": identity,
            },
            **_event_body(body),
        }
        if len(json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()) > LAMBDA_SYNC_PAYLOAD_BYTES:
            return _json(
                500,
                {
                    "code": "invoke_payload_too_large",
                    "message": "Internal server error (the request's Lambda event is over the 6 MB an invoke takes)",
                },
            )
        try:
            response = self.lambdas.invoke(route.function.logical_id, event)
        except Exception:
            return _json(502, {"code": "internal_error", "message": "the api function failed"})
        out_headers = dict(response.get("headers") or {})
        for key, values in (response.get("multiValueHeaders") or {}).items():
            out_headers[key] = ", ".join(values)
        raw = response.get("body") or ""
        data = base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()
        return int(response.get("statusCode", 200)), out_headers, data


def _event_body(body: bytes) -> dict[str, Any]:
    if not body:
        return {"body": None, "isBase64Encoded": False}
    try:
        return {"body": body.decode("utf-8"), "isBase64Encoded": False}
    except UnicodeDecodeError:
        return {"body": base64.b64encode(body).decode(), "isBase64Encoded": True}


def _identity(headers: dict[str, str], *, allow_unsigned: bool) -> dict[str, Any] | None:
    """API Gateway's requestContext.identity for a signed request; None when it must be refused."""
    lowered = {k.lower(): v for k, v in headers.items()}
    match = _SIGV4.match(lowered.get("authorization", "").strip())
    if match and _fresh(lowered.get("x-amz-date", "")):
        user = match["key"]
    elif allow_unsigned and "authorization" not in lowered:
        user = "local-developer"
    else:
        return None
    return {
        "accessKey": match["key"] if match else None,
        "caller": user,
        "user": user,
        "userArn": f"arn:aws:iam::{ACCOUNT}:user/{user}",
        "sourceIp": "127.0.0.1",
    }


def _fresh(amz_date: str) -> bool:
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return False
    return abs((datetime.now(UTC) - signed_at).total_seconds()) <= MAX_CLOCK_SKEW_SECONDS


def _json(status: int, payload: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()
