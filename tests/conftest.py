"""IAM, proven across the whole suite: every AWS call the offline stack's functions and state machine make
in any test is checked against their roles as the SAM translator renders template.yaml
(jobtracker.local.iam). A call a role does not allow fails the test that made it; at the end the
coverage table (calls checked per role, refusals, grants no test needed) is printed and written to
.artifacts/iam-coverage.json. JOBTRACKER_IAM_CHECK=0 turns the recording off (to measure its cost).

Under pytest-xdist (`make test` runs `-n 2`) each worker records in its own process: at its end a worker
hands what it found to the controller (xdist's `workeroutput`), which merges every worker's into one
table and one file, and fails the run if any worker's calls were refused. The fault matrix printed at the
end is gathered the same way.
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
ARTIFACTS = Path(__file__).resolve().parents[1] / ".artifacts"
COVERAGE_FILE = ARTIFACTS / "iam-coverage.json"
# The keys under which an xdist worker hands its findings to the controller.
IAM_OUTPUT, FAULT_MATRIX_OUTPUT = "jobtracker_iam", "jobtracker_fault_matrix"


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workeroutput")


def _fault_matrix() -> list[dict[str, Any]]:
    from tests.integration.test_fault_matrix import MATRIX_RESULTS

    return MATRIX_RESULTS


def pytest_configure(config: pytest.Config) -> None:
    _powertools_environment()
    if ENABLED:
        RECORDER.install()


def _powertools_environment() -> None:
    """The Powertools settings every function gets from template.yaml's Globals, set before any test imports
    tracker.observability: its Metrics reads the namespace once, when first imported, and the offline
    Lambdas of every test in this process share that module. Without this, a unit test that imports it first
    leaves the namespace unset, and a later handler's metrics fail "Must contain a metric namespace"."""
    from jobtracker.local.stack import REPO_ROOT
    from jobtracker.local.template import load_template

    template = load_template(REPO_ROOT / "template.yaml")
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    for name, value in variables.items():
        if name.startswith("POWERTOOLS_") and isinstance(value, str):
            os.environ.setdefault(name, value)


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
    if _is_xdist_worker(session.config):
        session.config.workeroutput[FAULT_MATRIX_OUTPUT] = json.dumps(_fault_matrix())
    if not ENABLED:
        return
    RECORDER.check()  # calls made after the last test's teardown (executions winding down)
    if _is_xdist_worker(session.config):
        session.config.workeroutput[IAM_OUTPUT] = json.dumps(RECORDER.export())
        return
    if RECORDER.refused() and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if RECORDER.verdicts:
        COVERAGE_FILE.parent.mkdir(exist_ok=True)
        COVERAGE_FILE.write_text(json.dumps(RECORDER.coverage(), indent=1) + "\n")


@pytest.hookimpl(optionalhook=True)  # an xdist hook: unknown when xdist is off (`-p no:xdist`)
def pytest_testnodedown(node: Any, error: object | None) -> None:
    """In the xdist controller, as each worker finishes: fold in what it found (nothing if it crashed)."""
    output = getattr(node, "workeroutput", {})
    if IAM_OUTPUT in output:
        RECORDER.merge(json.loads(output[IAM_OUTPUT]))
    if FAULT_MATRIX_OUTPUT in output:
        _fault_matrix().extend(json.loads(output[FAULT_MATRIX_OUTPUT]))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _is_xdist_worker(terminalreporter.config):
        return  # the controller prints the whole suite's tables
    _print_fault_matrix(terminalreporter)
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


def _print_fault_matrix(terminalreporter: Any) -> None:
    """Print the fault matrix (and keep it under .artifacts/ for the closing note)."""
    rows = _fault_matrix()
    if not rows:
        return
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    terminalreporter.write_sep("=", "fault matrix")
    for line in lines:
        terminalreporter.write_line(line)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "fault-matrix.md").write_text("\n".join(lines) + "\n")
