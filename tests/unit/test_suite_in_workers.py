"""`make test` runs the suite in two pytest-xdist workers, each with its own IAM recorder: what each worker
found must reach the controller, which prints one table, writes one file, and fails the run when any
worker's calls were refused (even a refusal found only at the worker's end, after its last test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The suite's own end-of-run hooks (tests/conftest.py), with the coverage file moved out of the repository;
# not its pytest_configure: the test below records by hand, without the botocore hooks.
CONFTEST = """
import tests.conftest as suite
from tests.conftest import pytest_sessionfinish, pytest_terminal_summary, pytest_testnodedown

suite.COVERAGE_FILE = suite.Path({coverage!r})
"""
# Run by each worker (--dist each): what a stack in that worker would have recorded; gw1's call is refused,
# recorded without failing a test, as the calls checked after the last test's teardown are.
TEST = """
import os

from tests.conftest import RECORDER


def test_a_worker_records():
    worker = os.environ["PYTEST_XDIST_WORKER"]
    action, allowed = ("s3:GetObject", True) if worker == "gw0" else ("s3:DeleteObject", False)
    verdict = dict(role="Fn-" + worker, action=action, resource="arn:aws:s3:::b/*", origin="call", why="",
                   allowed=allowed, calls=1, unmapped=False)
    RECORDER.merge(dict(calls=1, verdicts=[verdict], grants=[], used=[], external_calls=[]))
"""


def test_a_refusal_found_in_one_worker_fails_the_run_and_both_workers_fill_one_table(tmp_path: Path) -> None:
    coverage = tmp_path / "iam-coverage.json"
    (tmp_path / "conftest.py").write_text(CONFTEST.format(coverage=str(coverage)))
    (tmp_path / "test_records.py").write_text(TEST)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "JOBTRACKER_"))}
    env["PYTHONPATH"] = str(REPO)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "each", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "2 passed" in run.stdout and "failed" not in run.stdout, run.stdout
    assert "IAM: 2 AWS calls checked against their roles" in run.stdout
    assert "| Fn-gw0 | 1 | 0 | 0 |" in run.stdout and "| Fn-gw1 | 1 | 1 | 0 |" in run.stdout
    assert "REFUSED Fn-gw1: s3:DeleteObject on arn:aws:s3:::b/* is not allowed by its role" in run.stdout
    written = json.loads(coverage.read_text())
    assert written["calls"] == 2
    assert {role: row["refused"] != [] for role, row in written["roles"].items()} == {"Fn-gw0": False, "Fn-gw1": True}
