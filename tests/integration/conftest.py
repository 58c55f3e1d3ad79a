"""Offline stack fixtures: the real ASL in moto's Step Functions interpreter, the real handlers in
process, the FullStory simulator on 127.0.0.1. Waits poll the stack's own state, never a clock."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from jobtracker.local.session import OfflineSession
from jobtracker.simulators.fullstory import SimulatorConfig

FAST = {"PollMinSeconds": 0, "PollMaxSeconds": 0}


@pytest.fixture
def offline() -> Callable[..., Any]:
    """offline(sim=SimulatorConfig(...), api=..., aws=..., **template_parameters) -> context manager of an
    OfflineSession (aws=True: with the emulated AWS endpoint, through which presigned URLs work)."""

    @contextmanager
    def start(
        sim: SimulatorConfig | None = None,
        api: bool = False,
        stack_api_key: str | None = None,
        allow_unsigned: bool = True,
        aws: bool = False,
        **parameters: Any,
    ) -> Iterator[OfflineSession]:
        config = sim or SimulatorConfig(polls_to_complete=2)
        with OfflineSession(
            parameters={**FAST, **parameters},
            simulator_config=config,
            api_port=0 if api else None,
            aws_port=_free_port() if aws else None,  # the emulated AWS endpoint of `jobtracker local up`
            stack_api_key=stack_api_key,
            retry_time_scale=0.0,  # the ASL's retries happen, without their real waits
            allow_unsigned=allow_unsigned,
        ) as session:
            yield session

    return start


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the fault matrix (and keep it under .artifacts/ for the closing note)."""
    from tests.integration.test_fault_matrix import MATRIX_RESULTS

    if not MATRIX_RESULTS:
        return
    columns = list(MATRIX_RESULTS[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in MATRIX_RESULTS]
    terminalreporter.write_sep("=", "fault matrix")
    for line in lines:
        terminalreporter.write_line(line)
    from pathlib import Path

    artifacts = Path(__file__).resolve().parents[2] / ".artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "fault-matrix.md").write_text("\n".join(lines) + "\n")
