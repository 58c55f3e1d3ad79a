"""`jobtracker local up --fullstory-url URL --fullstory-key-file F --keboola-url URL --keboola-token-file F`
points the offline stack at another FullStory- or Keboola-compatible endpoint (a staging proxy, a recorded
replay, the real API from a laptop) instead of its own simulators.

Proven against simulators started separately, on other ports, accepting only another key / token: their
request logs must show the stack's calls answered 200 (a wrong key would be a 401 there), and the stack's
own simulators are not started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
import urllib3

from jobtracker.local.session import OfflineSession
from jobtracker.simulators.fullstory import FullStorySimulator, SimulatorConfig
from jobtracker.simulators.keboola import KeboolaSimulator, KeboolaSimulatorConfig
from tests.integration.helpers import ndjson, upload_and_wait, users

FAST = {"PollMinSeconds": 0, "PollMaxSeconds": 0}
HTTP = urllib3.PoolManager(retries=False, timeout=10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _until(check: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    """Poll state until ``check`` answers something truthy (the wait comes from the state, not a clock)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _calls(log: list[dict[str, Any]], method: str, path_start: str) -> list[int | None]:
    return [r["status"] for r in log if r["method"] == method and r["path"].startswith(path_start)]


def test_the_stack_sends_its_key_to_the_fullstory_endpoint_it_is_given():
    """In process: a job runs against the other endpoint with the key given; with another key it fails
    `unauthorized`, and that endpoint's log shows the 401 — the key really is what the stack sends."""
    with FullStorySimulator(SimulatorConfig(api_key="staging-key", polls_to_complete=1)) as elsewhere:
        with OfflineSession(
            parameters=FAST, fullstory_url=elsewhere.base_url, stack_api_key="staging-key", retry_time_scale=0.0
        ) as session:
            assert session.simulator is None  # the stack's own simulator is not started
            job = upload_and_wait(session, "inbox/users/elsewhere.ndjson", ndjson(users(3)))
        assert (job["state"], job["imported"]) == ("COMPLETED", 3), job.get("error")
        assert _calls(elsewhere.request_log, "POST", "/v2/users/batch") == [200]
        assert set(_calls(elsewhere.request_log, "GET", "/v2/users/batch/")) == {200}

        with OfflineSession(
            parameters=FAST, fullstory_url=elsewhere.base_url, stack_api_key="not-the-key", retry_time_scale=0.0
        ) as session:
            job = upload_and_wait(session, "inbox/users/wrong-key.ndjson", ndjson(users(2)))
        assert (job["state"], job["error"]["code"]) == ("FAILED", "unauthorized")
        assert _calls(elsewhere.request_log, "POST", "/v2/users/batch")[1:] == [401]


def test_a_url_the_template_refuses_is_refused_offline_too():
    with pytest.raises(ValueError, match="FullStoryBaseUrl"):
        OfflineSession(parameters=FAST, fullstory_url="https://proxy.example.com/fullstory").__enter__()


def test_local_up_points_the_stack_at_other_endpoints(tmp_path: Path):
    """The command line end to end: `jobtracker local up` with both URLs and key files, an upload through its
    AWS endpoint and a Keboola export through its API both complete, against the separately started simulators."""
    (tmp_path / "fullstory.key").write_text("staging-key\n")
    (tmp_path / "keboola.token").write_text("staging-token\n")
    api_port, aws_port = _free_port(), _free_port()
    with (
        FullStorySimulator(SimulatorConfig(api_key="staging-key", polls_to_complete=1)) as fullstory,
        # Its files on Azure Blob storage, which the SAS connection string names (plain HTTP to the
        # simulator). A stack whose files are on S3 is read with boto3, which the offline stack's moto
        # answers in process: README "Offline stack" says so.
        KeboolaSimulator(
            KeboolaSimulatorConfig(token="staging-token", polls_to_complete=1, backend="azure")
        ) as keboola,
    ):
        command = [
            str(Path(sys.executable).with_name("jobtracker")), "local", "up",
            "--api-port", str(api_port), "--aws-port", str(aws_port), "--poll-seconds", "0", "--allow-unsigned",
            "--fullstory-url", fullstory.base_url, "--fullstory-key-file", str(tmp_path / "fullstory.key"),
            "--keboola-url", keboola.base_url, "--keboola-token-file", str(tmp_path / "keboola.token"),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JOBTRACKER_"))}
        up = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        try:
            printed = _until(_Output(up).banner, "local up to print where it serves")
            assert f"FullStory       {fullstory.base_url}   (not the simulator)" in printed
            assert f"Keboola         {keboola.base_url}   (not the simulator)" in printed
            assert "FullStory sim" not in printed and "Keboola sim" not in printed

            api = f"http://127.0.0.1:{api_port}"
            s3 = boto3.session.Session(
                aws_access_key_id="any", aws_secret_access_key="any", region_name="us-east-1"
            ).client("s3", endpoint_url=f"http://127.0.0.1:{aws_port}")
            s3.put_object(Bucket=_bucket(printed), Key="inbox/users/through-cli.ndjson", Body=ndjson(users(4)))
            created = HTTP.request(
                "POST",
                api + "/jobs",
                body=json.dumps({"type": "keboola.table_export", "params": {"tableId": "in.c-main.users"}}).encode(),
            )
            assert created.status == 202, created.data

            def finished() -> list[dict[str, Any]] | None:
                jobs = json.loads(HTTP.request("GET", api + "/jobs").data)["jobs"]
                done = [j for j in jobs if j["state"] in ("COMPLETED", "FAILED")]
                return done if len(done) == 2 else None

            jobs = {j["type"]: j for j in _until(finished, "both jobs to finish")}
            assert {t: j["state"] for t, j in jobs.items()} == {
                "fullstory.users": "COMPLETED",
                "keboola.table_export": "COMPLETED",
            }, jobs
        finally:
            up.send_signal(signal.SIGINT)
            up.wait(timeout=30)
        assert _calls(fullstory.request_log, "POST", "/v2/users/batch") == [200]
        assert _calls(keboola.request_log, "POST", "/v2/storage/tables/in.c-main.users/export-async") == [202]
        assert 401 not in _calls(keboola.request_log, "GET", "/")  # every poll carried the token


class _Output:
    """Lines a process prints, read on a thread (a test never blocks on a pipe)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._process = process
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self.lines.append(line)

    def banner(self) -> str | None:
        """What `local up` printed, once it printed the line that ends its banner (None until then)."""
        text = "".join(self.lines)
        if self._process.poll() is not None and "Ctrl-C stops" not in text:
            raise AssertionError(f"local up exited {self._process.returncode}:\n{text}")
        return text if "Ctrl-C stops" in text else None


def _bucket(printed: str) -> str:
    return next(line.split()[-1] for line in printed.splitlines() if line.startswith("inbox bucket"))
