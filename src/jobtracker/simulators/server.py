"""What every provider simulator shares: serving HTTP/1.1 (and HTTPS) on a local port, reading requests,
rolling the injected faults, and answering errors in the provider's own format. A simulator subclasses
:class:`Simulator` and keeps only its API: :meth:`Simulator.handle` answers one request, and
:meth:`Simulator.fault_targets` says which ``--fault`` targets a request belongs to.

Serving is cheroot (CherryPy's production WSGI server) with Werkzeug's request and response objects, so a
client meets what it meets at a real provider's front end: HTTP/1.1 keep-alive (several requests on one
connection, pooled clients reuse it), ``Transfer-Encoding: chunked`` request bodies, ``Expect:
100-continue``, and HTTPS. Werkzeug's own server is a development server that closes every connection
after one answer ("Always close the connection. This disables HTTP/1.1 keep-alive connections", in
werkzeug/serving.py), which is why it does not serve here.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter
from werkzeug.wrappers import Request, Response

from jobtracker.simulators.faults import Fault, FaultDice
from jobtracker.simulators.tls import LOCAL_NAMES, write_self_signed_certificate

__all__ = ["Answer", "ApiError", "Simulator", "SimulatorSettings", "run_until_interrupted"]

Answer = tuple[int, bytes, dict[str, str]]  # HTTP status, body, headers (Content-Type defaults to JSON)

_POLL_INTERVAL = 0.05  # how often the serving loop checks for stop(): keeps stop() fast in tests
# One worker per request being answered (an idle keep-alive connection holds none); enough that a few
# `slow` faults do not queue everyone else, as on a provider's front end.
_WORKER_THREADS = 32
# An idle keep-alive connection is closed after this long, as a front end does (nginx: 75 s).
_IDLE_SECONDS = 75
_LOSE_ANSWER = "jobtracker.simulator.lose_answer"  # environ key: close the connection without answering
_REQUEST_LOG_SIZE = 10_000  # requests kept in Simulator.request_log (the latest ones)

_log = logging.getLogger("jobtracker.simulators")


class ApiError(Exception):
    """Raised inside request handling; :meth:`Simulator.error_answer` renders it in the provider's format."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


class SimulatorSettings(Protocol):
    """What the shared plumbing reads from a simulator's config (read at every request: tests change it)."""

    faults: tuple[Fault, ...]
    fault_seed: int | None
    retry_after_seconds: int


ConfigT = TypeVar("ConfigT", bound=SimulatorSettings)


class _Gateway(wsgi.Gateway_10):
    """WSGI has no way to say "drop the connection without an answer" (fault `reset`: the provider acted,
    the answer is lost); this gateway gives the application one in its environ."""

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ[_LOSE_ANSWER] = self._lose_answer
        return environ

    def _lose_answer(self) -> None:
        self.req.sent_headers = True  # nothing is written for this request...
        self.req.close_connection = True  # ...and cheroot closes the connection: the client sees it drop


class _Server(wsgi.Server):
    expiration_interval = _POLL_INTERVAL

    def __init__(self, host: str, port: int, app: Callable[..., Iterable[bytes]], name: str) -> None:
        super().__init__((host, port), app, numthreads=_WORKER_THREADS, server_name=name, timeout=_IDLE_SECONDS)
        self.gateway = _Gateway

    def error_log(self, msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
        """Into logging, not stderr: a client hanging up or failing its TLS handshake is its own business."""
        _log.log(level if level >= logging.ERROR else logging.DEBUG, "%s", msg, exc_info=traceback)


class Simulator(Generic[ConfigT]):
    """A provider simulator on a real local port: ``start()``/``stop()`` (or ``with``), ``serve_forever()``,
    ``base_url``, ``stats``. All state sits behind one lock, so handler threads and test introspection are
    safe. With ``tls=True`` it serves HTTPS with a fresh self-signed certificate (``certificate_file``)
    written to ``tls_dir`` (default: a temporary directory removed by ``stop()``).
    """

    title: ClassVar[str]  # "FullStory simulator": the line `serve` prints
    server_name: ClassVar[str]  # the Server header
    injected_errors: ClassVar[Mapping[str, tuple[str, str]]]  # fault kind "500"/"429" -> (code, message)
    internal_error: ClassVar[tuple[str, str]]  # (code, message prefix) when the simulator itself breaks
    malformed_answer: ClassVar[Answer]  # fault `malformed`: a 200 whose body is cut short

    def __init__(
        self,
        config: ConfigT,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: bool = False,
        tls_dir: Path | None = None,
    ) -> None:
        self.config = config
        self._host = host
        self._port = port
        self._tls = tls
        self._tls_dir = tls_dir
        self._lock = threading.RLock()
        self._stats: dict[str, int] = {"throttled": 0, "faults": 0}
        self._requests: deque[dict[str, Any]] = deque(maxlen=_REQUEST_LOG_SIZE)
        self._faults = FaultDice(lambda: self.config.faults, self.config.fault_seed, self._lock)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._certificate: Path | None = None
        self._temporary_tls_dir: Path | None = None

    # ------------------------------------------------------------------ what a simulator provides

    def fault_targets(self, method: str, path: str) -> Collection[str]:
        """The fault targets a request answers to; empty: no fault applies."""
        raise NotImplementedError

    def fault_applies(self, fault: Fault, targets: Collection[str]) -> bool:
        """A simulator may exempt some requests from some fault kinds."""
        return True

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes, fault: Fault | None) -> Answer:
        """Answer one request; raise :class:`ApiError` for an error answer. ``fault`` is the request's fault
        (if any) for the kinds the simulator handles itself."""
        raise NotImplementedError

    def error_answer(self, err: ApiError) -> Answer:
        """An :class:`ApiError` in the provider's error format."""
        raise NotImplementedError

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Bind and serve in a daemon thread; port 0 picks a free port (see ``base_url``)."""
        if self._server is not None:
            return self
        server = self._bind()
        self._thread = threading.Thread(target=server.serve, name=self.server_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is not None:
            server.stop()
        if thread is not None:
            thread.join(timeout=5)
        if self._temporary_tls_dir is not None:
            shutil.rmtree(self._temporary_tls_dir, ignore_errors=True)
            self._temporary_tls_dir = self._certificate = None

    def serve_forever(self) -> None:
        """Serve on the calling thread until interrupted (used by :func:`run_until_interrupted`)."""
        server = self._server or self._bind()
        try:
            server.serve()
        finally:
            self.stop()

    def _bind(self) -> _Server:
        server = _Server(self._host, self._port, self._wsgi, self.server_name)
        if self._tls:
            cert, key = self._write_certificate()
            server.ssl_adapter = BuiltinSSLAdapter(str(cert), str(key))
        server.prepare()
        self._server = server
        return server

    def _write_certificate(self) -> tuple[Path, Path]:
        directory = self._tls_dir
        if directory is None:
            directory = self._temporary_tls_dir = Path(tempfile.mkdtemp(prefix="jobtracker-simulator-tls-"))
        hosts = LOCAL_NAMES if self._host in ("", "0.0.0.0", "::") else (self._host, *LOCAL_NAMES)
        cert, key = write_self_signed_certificate(directory, hosts)
        self._certificate = cert
        return cert, key

    @property
    def scheme(self) -> str:
        return "https" if self._tls else "http"

    @property
    def base_url(self) -> str:
        """Root URL clients use in place of the provider's."""
        if self._server is None:
            raise RuntimeError("simulator is not running; call start() first")
        host, port = self._server.bind_addr[:2]
        return f"{self.scheme}://{host}:{port}"

    @property
    def certificate_file(self) -> Path | None:
        """With ``tls=True``, while running: the PEM certificate clients trust (``--cacert``)."""
        return self._certificate

    def public_base(self, headers: Any) -> str:
        """scheme://host[:port] for URLs put in answers: the Host the client called, as a provider does,
        so the URLs work from where the client stands."""
        host = (headers.get("Host") or "").strip()
        return f"{self.scheme}://{host}" if host else self.base_url

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ counters and faults

    @property
    def stats(self) -> dict[str, int]:
        """Snapshot of the counters, so tests can assert on polling, throttling and injected faults."""
        with self._lock:
            return dict(self._stats)

    @property
    def request_log(self) -> list[dict[str, Any]]:
        """The latest requests answered, oldest first: method, path (with its query) and status (None: the
        answer was lost on purpose, fault ``reset``). No headers or bodies: they hold credentials and data."""
        with self._lock:
            return list(self._requests)

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._stats[name] += amount

    def has_fault(self, kind: str) -> bool:
        """Whether a job-level fault (`stuck`, `repeat-token`) is configured."""
        return self._faults.has(kind)

    def roll_fault(self, method: str, raw_path: str) -> Fault | None:
        """Which per-request fault (if any) hits this request; counted in stats["faults"]."""
        targets = self.fault_targets(method, raw_path.split("?", 1)[0])
        fault = self._faults.roll(targets, lambda f: self.fault_applies(f, targets))
        if fault is not None:
            self._count("faults")
        return fault

    # ------------------------------------------------------------------ answering

    def respond(self, method: str, raw_path: str, headers: Any, body: bytes, fault: Fault | None = None) -> Answer:
        """The answer to one request, injected 500/429 first. Never raises: a simulator bug is a 500."""
        try:
            if fault is not None and fault.kind == "500":
                raise ApiError(500, *self.injected_errors["500"])
            if fault is not None and fault.kind in ("429", "429-bare"):
                self._count("throttled")
                retry = {"Retry-After": str(self.config.retry_after_seconds)} if fault.kind == "429" else {}
                raise ApiError(429, *self.injected_errors["429"], retry)
            return self.handle(method, raw_path, headers, body, fault)
        except ApiError as err:
            return self.error_answer(err)
        except Exception as exc:  # a simulator bug must not take the server down
            code, message = self.internal_error
            return self.error_answer(ApiError(500, code, f"{message}: {exc!r}"))

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        body = request.get_data()  # the whole body, sent with Content-Length or chunked
        raw_path = environ.get("REQUEST_URI") or request.full_path  # undecoded, as the client sent it
        fault = self.roll_fault(request.method, raw_path)
        status, payload, headers = self.respond(request.method, raw_path, request.headers, body, fault)
        lost = fault is not None and fault.kind == "reset"
        with self._lock:
            self._requests.append({"method": request.method, "path": raw_path, "status": None if lost else status})
        if lost:  # processed, but the answer is lost with the connection
            environ[_LOSE_ANSWER]()
            return []
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.seconds)
        if fault is not None and fault.kind == "malformed":
            status, payload, headers = self.malformed_answer
        headers = {"Content-Type": "application/json", **headers}
        return Response(payload, status=_status_line(status), headers=headers)(environ, start_response)


def _status_line(status: int) -> str:
    """``404 Not Found`` as servers write it (Werkzeug would write ``404 NOT FOUND``)."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def run_until_interrupted(simulator: Simulator[Any]) -> None:
    """Blocking entry point behind ``jobtracker simulate NAME``: print where it serves (and the certificate
    to trust with --tls), serve until Ctrl-C or SIGTERM, then remove a temporary certificate."""
    simulator._bind()
    print(f"{simulator.title} on {simulator.base_url}", flush=True)
    if simulator.certificate_file is not None:
        cert = simulator.certificate_file
        print(
            f"TLS certificate {cert} (self-signed; trust it: curl --cacert {cert}, REQUESTS_CA_BUNDLE={cert})",
            flush=True,
        )
    if threading.current_thread() is threading.main_thread():  # `kill` stops it as cleanly as Ctrl-C
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        simulator.serve_forever()
