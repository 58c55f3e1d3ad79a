"""IAM, proven across the whole suite: every AWS call the offline stack's functions and state machine make
in any test is checked against their roles as the SAM translator renders template.yaml
(jobtracker.local.iam). A call a role does not allow fails the test that made it; at the end the
coverage table (calls checked per role, refusals, grants no test needed) is printed and written to
.artifacts/iam-coverage.json. JOBTRACKER_IAM_CHECK=0 turns the recording off (to measure its cost).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobtracker.local.iam import CallRecorder

RECORDER = CallRecorder()
ENABLED = os.environ.get("JOBTRACKER_IAM_CHECK", "1") != "0"
COVERAGE_FILE = Path(__file__).resolve().parents[1] / ".artifacts" / "iam-coverage.json"


def pytest_configure(config: pytest.Config) -> None:
    if ENABLED:
        RECORDER.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    RECORDER.uninstall()


@pytest.fixture(autouse=True)
def _calls_allowed_by_their_roles() -> Iterator[None]:
    yield
    refused = RECORDER.check()
    if refused:
        pytest.fail(
            "AWS calls their role does not allow (template.yaml Policies):\n"
            + "\n".join(v.describe() for v in refused),
            pytrace=False,
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not ENABLED:
        return
    RECORDER.check()  # calls made after the last test's teardown (executions winding down)
    if RECORDER.refused() and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if RECORDER.verdicts:
        COVERAGE_FILE.parent.mkdir(exist_ok=True)
        COVERAGE_FILE.write_text(json.dumps(RECORDER.coverage(), indent=1) + "\n")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not (ENABLED and RECORDER.verdicts):
        return
    coverage = RECORDER.coverage()
    write = terminalreporter.write_line
    terminalreporter.write_sep("=", f"IAM: {coverage['calls']} AWS calls checked against their roles")
    write("| role | action/resource patterns checked | refused | granted, unused (own policies) |")
    write("|---|---|---|---|")
    for role, row in coverage["roles"].items():
        own = [u for u in row["unused"] if not u["managed"]]
        write(f"| {role} | {len(row['checked'])} | {len(row['refused'])} | {len(own)} |")
    for role, row in coverage["roles"].items():
        for line in row["refused"]:
            write(f"REFUSED {line}")
        own = [u for u in row["unused"] if not u["managed"]]
        if own:
            write(f"unused in {role}: " + "; ".join(f"{u['action']} on {u['resource']}" for u in own))
    write(f"details (and the AWS managed policies' grants, used by Lambda and X-Ray themselves): {COVERAGE_FILE}")
