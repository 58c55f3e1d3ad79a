"""Bad arguments and unreachable stacks: one line on stderr, a documented exit code, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import clean_env, free_port, one_line_error


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["submit", "missing.csv", "--type", "fullstory.users", "--local"],
            "File 'missing.csv' does not exist",
        ),
        (["submit", "--type", "fullstory.users", "--local"], "fullstory.users jobs need a FILE of rows"),
        (["submit", "{file}", "--type", "http:databricks", "--local"], "http:databricks jobs start from --param"),
        (["submit", "--type", "http:databricks", "--param", "job_id", "--local"], "'job_id' is not NAME=VALUE"),
        (["track", "--provider", "http:nope", "--provider-job-id", "1", "--local"], "Invalid value for '--provider'"),
        (["submit", "{file}", "--local"], "Missing option '--type'"),
        (["submit", "{file}", "--type", "fullstory.nope", "--local"], "Invalid value for '--type'"),
        (["jobs", "--limit", "0", "--local"], "Invalid value for '--limit'"),
        (["jobs", "--state", "DONE", "--local"], "Invalid value for '--state'"),
        (["show", "--local"], "Missing argument 'ID'"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["jobs", "--local", "--stack", "prod"], "--stack and --local name two targets; choose one"),
        (["jobs"], "no stack chosen: pass --stack NAME (a deployed stack) or --local"),
        (["jobs", "--local", "--api-url", "localhost:8000"], "api-url must be an http(s) URL"),
    ],
)
def test_bad_arguments_are_one_line_with_exit_2(cli, tmp_path, args, fragment):
    file = tmp_path / "x.csv"
    file.write_text("uid\na\n")
    result = cli(*[a.replace("{file}", str(file)) for a in args])
    assert result.exit_code == 2, result.output
    assert fragment in one_line_error(result)
    assert result.stdout == ""


def test_an_unreachable_local_stack_is_one_line_with_exit_3(cli, tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"
    for args in (
        ["jobs", "--local", "--api-url", closed],
        ["show", "job-1", "--local", "--api-url", closed],
        ["submit", str(tmp_path / "a.csv"), "--type", "fullstory.users", "--local", "--api-url", closed],
        ["results", "job-1", "--local", "--api-url", closed],
    ):
        (tmp_path / "a.csv").write_text("uid\na\n")
        result = cli(*args)
        assert result.exit_code == 3, result.output
        assert one_line_error(result) == (
            f"error: cannot reach the jobtracker API at {closed}: connection refused "
            "(is `jobtracker local up` running? see --api-url)"
        )


def test_debug_shows_the_traceback_before_the_error_line(cli):
    closed = f"http://127.0.0.1:{free_port()}"
    result = cli("jobs", "--local", "--api-url", closed, "--debug")
    assert result.exit_code == 3
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: cannot reach the jobtracker API")


def test_the_installed_command_reports_an_unreachable_stack_in_one_line(tmp_path):
    """The real console script in a separate process, as a user runs it."""
    script = Path(sys.executable).with_name("jobtracker")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "jobtracker.cli"]
    env = {k: v for k, v in os.environ.items() if v is not None}
    env.update({k: v for k, v in clean_env(tmp_path).items() if v is not None})
    for key in [k for k in env if k.startswith("JOBTRACKER_")]:
        del env[key]
    env["JOBTRACKER_LOCAL"] = "1"
    env["JOBTRACKER_API_URL"] = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run([*command, "jobs"], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 3
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: cannot reach the jobtracker API at http://127.0.0.1:")


def test_results_of_an_unknown_job_is_exit_4(cli, local):
    result = cli("results", "job-000000000000000000000000", *local)
    assert result.exit_code == 4
    assert "404 not_found" in one_line_error(result)


def test_a_local_stack_without_its_aws_endpoint_fails_the_upload_in_one_line(cli, session, tmp_path):
    (tmp_path / "a.csv").write_text("uid\na\n")
    closed = f"http://127.0.0.1:{free_port()}"
    result = cli(
        "submit",
        str(tmp_path / "a.csv"),
        "--type",
        "fullstory.users",
        "--local",
        "--api-url",
        session.api.base_url,
        "--aws-endpoint",
        closed,
    )
    assert result.exit_code == 3, result.output
    assert one_line_error(result) == (
        f"error: cannot reach the AWS endpoint {closed} "
        "(with --local: is `jobtracker local up` running? see --aws-endpoint)"
    )
