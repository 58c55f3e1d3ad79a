"""The `jobtracker` command line against the offline stack, through its real entry point.

One offline stack (REST API + emulated AWS endpoint, both on free ports) serves every test of this
package; the CLI is pointed at it with --local overrides, and the environment is cleaned of any
JOBTRACKER_* setting or config file of the machine running the tests.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from jobtracker.cli import main
from jobtracker.local.session import OfflineSession
from jobtracker.simulators.fullstory import SimulatorConfig

FAST = {"PollMinSeconds": 0, "PollMaxSeconds": 0, "MaxBatchRequests": 4}
JOB_ID = re.compile(r"job-[0-9a-f]{24}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def clean_env(config_home: Path) -> dict[str, str | None]:
    env: dict[str, str | None] = {key: None for key in os.environ if key.startswith("JOBTRACKER_")}
    env["XDG_CONFIG_HOME"] = str(config_home)
    env["COLUMNS"] = "120"
    return env


@pytest.fixture(scope="package")
def session() -> Iterator[OfflineSession]:
    with OfflineSession(
        parameters=FAST,
        simulator_config=SimulatorConfig(polls_to_complete=2),
        api_port=0,
        aws_port=0,
    ) as offline:
        yield offline


@pytest.fixture(scope="package")
def done_job(session: OfflineSession, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One job submitted through the CLI and watched to the end; shared by the read-command tests."""
    assert session.api is not None and session.aws_endpoint
    tmp = tmp_path_factory.mktemp("done")
    flags = ["--local", "--api-url", session.api.base_url, "--aws-endpoint", session.aws_endpoint]
    result = CliRunner().invoke(
        main,
        ["submit", str(users_csv(tmp / "people.csv")), "--type", "fullstory.users", *flags],
        env=clean_env(tmp / "config"),
    )
    assert result.exit_code == 0, result.output
    return job_id_in(result.output)


@pytest.fixture
def local(session: OfflineSession) -> list[str]:
    """The flags that point the CLI at the test stack."""
    assert session.api is not None and session.aws_endpoint
    return ["--local", "--api-url", session.api.base_url, "--aws-endpoint", session.aws_endpoint]


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., Result]:
    """cli(*args, env={...}) runs `jobtracker ARGS` in process (click's runner), never raising."""

    def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
        return CliRunner().invoke(main, list(args), env={**clean_env(tmp_path / "config"), **(env or {})})

    return run


def users_csv(path: Path, *, good: int = 9) -> Path:
    """`good` users, one refused by the provider (e-mail without @), one rejected locally (uid too long)."""
    lines = ["uid,display_name,email,plan"]
    lines += [f"user-{i},User {i},user{i}@example.com,pro" for i in range(1, good + 1)]
    lines.append("bad-mail,Bad Mail,no-at-sign.example.com,free")
    lines.append("u" * 300 + ",Too Long,long@example.com,free")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def job_id_in(text: str) -> str:
    match = JOB_ID.search(text)
    assert match, text
    return match.group(0)


def one_line_error(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def finished(session: OfflineSession, job_id: str) -> dict[str, Any]:
    return session.stack.wait_for_job(job_id)
