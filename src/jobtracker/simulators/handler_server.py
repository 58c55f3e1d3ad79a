"""A standard-library HTTP server around an API object with ``handle(method, path, headers, body)``.

Used by the Databricks and dbt Cloud simulators until they move onto the shared Werkzeug server of
issue 9: their API logic lives in ``handle`` and needs no server, so the move replaces only this file.
HTTP/1.1 with keep-alive (official clients reuse connections) and chunked request bodies are read as a
production server reads them.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

Answer = tuple[int, dict[str, str], bytes]
_POLL_INTERVAL = 0.05  # how often serve_forever checks for shutdown: keeps stop() fast in tests
MAX_BODY_BYTES = 10 * 1024 * 1024


class HandlesRequests(Protocol):
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer: ...


class HandlerServer:
    """``start()`` serves ``api`` on 127.0.0.1 (a free port by default) until ``stop()``."""

    def __init__(self, api: HandlesRequests, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.api = api
        self._address = (host, port)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HandlerServer:
        server = ThreadingHTTPServer(self._address, _handler_for(self.api))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": _POLL_INTERVAL}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def serve_forever(self) -> None:
        """Foreground serving for the command line; Ctrl-C stops."""
        self.start()
        try:
            threading.Event().wait()
        finally:
            self.stop()

    def __enter__(self) -> HandlerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler_for(api: HandlesRequests) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def _serve(self) -> None:
            try:
                body = self._body()
            except ValueError as exc:
                self._answer(400, {"Content-Type": "text/plain"}, str(exc).encode())
                return
            headers = {name.lower(): value for name, value in self.headers.items()}
            status, answer_headers, payload = api.handle(self.command, self.path, headers, body)
            self._answer(status, answer_headers, payload)

        def _body(self) -> bytes:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                chunks = []
                total = 0
                while True:
                    size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
                    size = int(size_line or b"0", 16)
                    if size == 0:
                        while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(chunks)
                    total += size
                    if total > MAX_BODY_BYTES:
                        raise ValueError("request body too large")
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline(1024)
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                raise ValueError("request body too large")
            return self.rfile.read(length) if length else b""

        def _answer(self, status: int, headers: dict[str, str], payload: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    return Handler
