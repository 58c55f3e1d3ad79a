"""The simulators' shared HTTP plumbing (jobtracker.simulators.server), met the way standard clients meet a
provider's front end: HTTP/1.1 with chunked request bodies (RFC 9112 section 7.1; what http.client,
requests and curl send for a streamed body), keep-alive and pipelining on one connection (RFC 9112
section 9), ``Expect: 100-continue`` (RFC 9110 section 10.1.1; curl sends it for larger bodies), and
HTTPS verified against the certificate ``--tls`` writes.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from jobtracker.simulators.fullstory import FullStorySimulator, SimulatorConfig
from jobtracker.simulators.keboola import DEMO_TABLE, KeboolaSimulator, KeboolaSimulatorConfig
from jobtracker.simulators.server import Simulator

FULLSTORY_AUTH = {"Authorization": "Basic test-key", "Content-Type": "application/json"}
KEBOOLA_AUTH = {"X-StorageApi-Token": "sim-token", "Content-Type": "application/x-www-form-urlencoded"}
USERS_BODY = json.dumps({"requests": [{"uid": "u1", "display_name": "Ada"}, {"uid": "u2"}]}).encode()


@pytest.fixture
def fullstory() -> Iterator[FullStorySimulator]:
    with FullStorySimulator(SimulatorConfig(polls_to_complete=1)) as sim:
        yield sim


@pytest.fixture
def keboola() -> Iterator[KeboolaSimulator]:
    with KeboolaSimulator(KeboolaSimulatorConfig(polls_to_complete=1)) as sim:
        yield sim


def _connection(sim: Simulator[Any]) -> http.client.HTTPConnection:
    host, port = sim.base_url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=10)


def _chunks(data: bytes, size: int = 7) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


class _SharedStream:
    """A socket's read stream that outlives each HTTPResponse reading from it (they close what they read)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def close(self) -> None:
        pass


def _answer(conn: http.client.HTTPConnection) -> tuple[int, Any]:
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, json.loads(data) if data else None


# --------------------------------------------------------------------------- chunked request bodies


def test_fullstory_batch_post_with_a_chunked_body_creates_the_job(fullstory: FullStorySimulator) -> None:
    """A streamed body (no Content-Length, Transfer-Encoding: chunked) is read whole, as FullStory's front end
    reads it: the batch is created with both rows."""
    conn = _connection(fullstory)
    conn.request("POST", "/v2/users/batch", body=_chunks(USERS_BODY), headers=FULLSTORY_AUTH, encode_chunked=True)
    status, body = _answer(conn)
    assert status == 200, body
    job_id = body["job"]["id"]
    conn.request("GET", f"/v2/users/batch/{job_id}", headers=FULLSTORY_AUTH)
    status, done = _answer(conn)
    assert (status, done["job"]["status"], done["imports"]) == (200, "COMPLETED", 2)
    assert fullstory.stats["batch_posts"] == 1


def test_keboola_export_with_a_chunked_form_body_reads_every_field(keboola: KeboolaSimulator) -> None:
    conn = _connection(keboola)
    form = b"limit=3&columns=id,email&format=raw"
    path = f"/v2/storage/tables/{DEMO_TABLE}/export-async"
    conn.request("POST", path, body=_chunks(form, 5), headers=KEBOOLA_AUTH, encode_chunked=True)
    status, job = _answer(conn)
    assert status == 202, job
    assert job["operationParams"]["export"] == {
        "columns": ["id", "email"],
        "limit": 3,
        "format": "raw",
        "gzip": True,
    }


def test_expect_100_continue_gets_its_interim_answer_before_the_body(fullstory: FullStorySimulator) -> None:
    host, port = fullstory.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = (
            "POST /v2/users/batch HTTP/1.1\r\nHost: sim\r\nAuthorization: Basic k\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(USERS_BODY)}\r\nExpect: 100-continue\r\n\r\n"
        )
        sock.sendall(head.encode())
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(USERS_BODY)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        assert resp.status == 200
        assert json.loads(resp.read())["job"]["status"] == "PROCESSING"


# --------------------------------------------------------------------------- keep-alive


# simulator fixture, a POST that creates a job, and the GET that polls it
_CREATE_AND_POLL = {
    "fullstory": ("/v2/users/batch", USERS_BODY, FULLSTORY_AUTH, lambda body: f"/v2/users/batch/{body['job']['id']}"),
    "keboola": (
        f"/v2/storage/tables/{DEMO_TABLE}/export-async",
        b"limit=2",
        KEBOOLA_AUTH,
        lambda body: f"/v2/storage/jobs/{body['id']}",
    ),
}


@pytest.mark.parametrize("name", sorted(_CREATE_AND_POLL))
def test_several_requests_share_one_connection(name: str, request: pytest.FixtureRequest) -> None:
    """HTTP/1.1 keeps the connection open: http.client reconnects silently when a server closes, so the
    test checks that the socket it holds is the same one after every answer, chunked POST included."""
    sim = request.getfixturevalue(name)
    conn = _connection(sim)
    path, payload, headers, follow = _CREATE_AND_POLL[name]
    conn.request("POST", path, body=_chunks(payload), headers=headers, encode_chunked=True)
    status, body = _answer(conn)
    assert status in (200, 202), body
    first_socket = conn.sock
    assert first_socket is not None
    for _ in range(3):
        conn.request("GET", follow(body), headers=headers)
        status, _ = _answer(conn)
        assert status == 200
        assert conn.sock is first_socket
    conn.request("GET", "/no/such/route", headers=headers)  # an error answer keeps the connection too
    assert _answer(conn)[0] == 404
    assert conn.sock is first_socket
    conn.close()


def test_pipelined_requests_are_answered_in_order_on_one_connection(fullstory: FullStorySimulator) -> None:
    host, port = fullstory.base_url.removeprefix("http://").split(":")
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in _chunks(USERS_BODY)) + b"0\r\n\r\n"
    requests = (
        b"POST /v2/users/batch HTTP/1.1\r\nHost: sim\r\nAuthorization: Basic k\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunked + b"GET /v2/users/batch/nope HTTP/1.1\r\nHost: sim\r\n"
        b"Authorization: Basic k\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(requests)  # both at once: the server must find where the chunked body ends
        stream = _SharedStream(sock.makefile("rb"))
        answers = []
        for _ in range(2):
            resp = http.client.HTTPResponse(sock)
            resp.fp = stream  # both answers come from one buffered stream
            resp.begin()
            answers.append((resp.status, json.loads(resp.read())))
    assert answers[0][0] == 200 and answers[0][1]["job"]["status"] == "PROCESSING"
    assert answers[1][0] == 404 and answers[1][1]["code"] == "resource_not_found"


def test_reset_fault_drops_only_its_own_connection() -> None:
    """Fault `reset` closes the connection without an answer; the next connection is served normally."""
    from jobtracker.simulators.fullstory import parse_fault

    config = SimulatorConfig(faults=(parse_fault("reset@status:1x"),))
    with FullStorySimulator(config) as sim:
        conn = _connection(sim)
        conn.request("POST", "/v2/users/batch", body=USERS_BODY, headers=FULLSTORY_AUTH)
        status, body = _answer(conn)
        assert status == 200
        conn.request("GET", f"/v2/users/batch/{body['job']['id']}", headers=FULLSTORY_AUTH)
        with pytest.raises(http.client.RemoteDisconnected):
            conn.getresponse()
        conn.close()
        conn = _connection(sim)
        conn.request("GET", f"/v2/users/batch/{body['job']['id']}", headers=FULLSTORY_AUTH)
        assert _answer(conn)[0] == 200
        assert sim.stats["status_gets"] == 2 and sim.stats["faults"] == 1


# --------------------------------------------------------------------------- TLS


def _verified_pool(cert: Path) -> urllib3.PoolManager:
    return urllib3.PoolManager(ca_certs=str(cert), cert_reqs="CERT_REQUIRED", retries=False, timeout=10)


@pytest.mark.parametrize("hostname", ["127.0.0.1", "localhost"])
def test_tls_answers_a_client_that_verifies_the_written_certificate(hostname: str, tmp_path: Path) -> None:
    with FullStorySimulator(SimulatorConfig(polls_to_complete=1), tls=True, tls_dir=tmp_path) as sim:
        assert sim.base_url.startswith("https://127.0.0.1:")
        assert sim.certificate_file == tmp_path / "cert.pem"
        url = sim.base_url.replace("127.0.0.1", hostname)
        http = _verified_pool(tmp_path / "cert.pem")
        resp = http.request("POST", url + "/v2/users/batch", body=USERS_BODY, headers=FULLSTORY_AUTH)
        assert resp.status == 200
        job_id = json.loads(resp.data)["job"]["id"]
        resp = http.request("GET", f"{url}/v2/users/batch/{job_id}", headers=FULLSTORY_AUTH)
        assert json.loads(resp.data)["job"]["status"] == "COMPLETED"
        resp = http.request("GET", f"{url}/v2/users/batch/{job_id}/imports", headers=FULLSTORY_AUTH)
        assert resp.status == 200 and len(json.loads(resp.data)["results"]) == 2
        with pytest.raises(urllib3.exceptions.SSLError):  # a client that trusts only the public CAs refuses it
            urllib3.PoolManager(retries=False, timeout=10).request("GET", url + "/v2/users/batch/x")
    assert (tmp_path / "cert.pem").exists()  # a directory the caller chose is the caller's to remove


def test_tls_over_the_standard_library_client_with_keep_alive(tmp_path: Path) -> None:
    with KeboolaSimulator(KeboolaSimulatorConfig(polls_to_complete=1), tls=True, tls_dir=tmp_path) as sim:
        host, port = sim.base_url.removeprefix("https://").split(":")
        context = ssl.create_default_context(cafile=str(sim.certificate_file))
        conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
        path = f"/v2/storage/tables/{DEMO_TABLE}/export-async"
        conn.request("POST", path, body=_chunks(b"limit=1"), headers=KEBOOLA_AUTH, encode_chunked=True)
        status, job = _answer(conn)
        assert status == 202
        assert job["url"].startswith(f"https://{host}:{port}/")  # URLs in answers keep the scheme
        first_socket = conn.sock
        conn.request("GET", f"/v2/storage/jobs/{job['id']}", headers=KEBOOLA_AUTH)
        status, done = _answer(conn)
        assert (status, done["status"]) == (200, "success")
        assert conn.sock is first_socket
        conn.request("GET", f"/v2/storage/files/{done['results']['file']['id']}", headers=KEBOOLA_AUTH)
        status, file = _answer(conn)
        assert status == 200 and file["url"].startswith("https://")
        resp = _verified_pool(tmp_path / "cert.pem").request("GET", file["url"])
        assert resp.status == 200 and json.loads(resp.data)["entries"]  # the sliced file's manifest, over https


def test_tls_export_download_locations_are_https_and_served(tmp_path: Path) -> None:
    config = SimulatorConfig(operation_polls_to_complete=1)
    with FullStorySimulator(config, tls=True, tls_dir=tmp_path) as sim:
        http = _verified_pool(tmp_path / "cert.pem")
        body = {"segmentId": "everyone", "type": "TYPE_EVENT", "format": "FORMAT_NDJSON", "timeRange": {}}
        resp = http.request("POST", sim.base_url + "/segments/v1/exports", json=body, headers=FULLSTORY_AUTH)
        op_id = json.loads(resp.data)["operationId"]
        op = json.loads(http.request("GET", f"{sim.base_url}/operations/v1/{op_id}", headers=FULLSTORY_AUTH).data)
        export_id = op["results"]["searchExportId"]
        results = http.request("GET", f"{sim.base_url}/search/v1/exports/{export_id}/results", headers=FULLSTORY_AUTH)
        location = json.loads(results.data)["location"]
        assert location.startswith(sim.base_url + "/download/")
        assert http.request("GET", location).status == 200


def test_tls_without_a_directory_uses_a_temporary_one_removed_on_stop() -> None:
    sim = FullStorySimulator(tls=True).start()
    cert = sim.certificate_file
    assert cert is not None and cert.is_file()
    assert (cert.parent / "key.pem").stat().st_mode & 0o077 == 0  # the key is readable by its owner only
    sim.stop()
    assert not cert.parent.exists()


def test_simulate_tls_prints_the_certificate_and_stops_cleanly_on_sigterm() -> None:
    """`jobtracker simulate fullstory --tls`: the printed path is what a client trusts; SIGTERM stops it
    and removes the temporary certificate."""
    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    code = "import sys; from jobtracker.cli import main; sys.argv[0] = 'jobtracker'; main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "simulate", "fullstory", "--tls", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        url_line, cert_line = proc.stdout.readline().strip(), proc.stdout.readline().strip()
        url = re.fullmatch(r"FullStory simulator on (https://127\.0\.0\.1:\d+)", url_line)
        cert = re.match(r"TLS certificate (\S+) ", cert_line)
        assert url and cert, (url_line, cert_line)
        http = _verified_pool(Path(cert[1]))
        resp = http.request("POST", url[1] + "/v2/users/batch", body=USERS_BODY, headers=FULLSTORY_AUTH)
        assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
        assert not Path(cert[1]).exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
