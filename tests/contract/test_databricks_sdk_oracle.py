"""The official Databricks Python SDK (databricks-sdk, pinned) against the simulator on 127.0.0.1.

The SDK parses every answer into typed objects; an enum value it does not know becomes None
(databricks/sdk/service/_internal.py `_enum`), so asserting the parsed enums are set checks that the
simulator only sends states the real API defines. The SDK accepts a plain http:// host.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import ResourceDoesNotExist
from databricks.sdk.service import jobs

from jobtracker.simulators.databricks import DEFAULT_JOBS, DatabricksConfig, DatabricksSimulator
from jobtracker.simulators.faults import parse_fault

TOKEN = "dapi-oracle-test"


@pytest.fixture(scope="module")
def server() -> Iterator[DatabricksSimulator]:
    with DatabricksSimulator(DatabricksConfig(token=TOKEN, terminating_polls=1)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: DatabricksSimulator) -> WorkspaceClient:
    logging.getLogger("databricks.sdk").setLevel(logging.ERROR)
    return WorkspaceClient(host=server.base_url, token=TOKEN)


@pytest.mark.parametrize("job", DEFAULT_JOBS, ids=lambda j: j.outcome)
def test_sdk_follows_a_run_to_its_terminal_state(client: WorkspaceClient, job: object) -> None:
    started = client.jobs.run_now(job_id=job.job_id, job_parameters={"day": "2026-12-01"})  # type: ignore[attr-defined]
    assert started.run_id and started.response.number_in_job == started.run_id
    lifecycles = []
    for _ in range(5):
        run = client.jobs.get_run(started.run_id)
        assert run.state is not None and run.state.life_cycle_state is not None, "a state the SDK does not know"
        assert run.status is not None and run.status.state is not None
        assert run.job_id == job.job_id and run.run_type == jobs.RunType.JOB_RUN  # type: ignore[attr-defined]
        assert run.trigger == jobs.TriggerType.ONE_TIME and run.tasks and run.tasks[0].task_key == "main"
        assert [(p.name, p.value) for p in run.job_parameters] == [("day", "2026-12-01")]
        lifecycles.append(run.state.life_cycle_state)
    outcome = job.outcome  # type: ignore[attr-defined]
    terminal = (
        jobs.RunLifeCycleState(outcome)
        if outcome in ("SKIPPED", "INTERNAL_ERROR")
        else jobs.RunLifeCycleState.TERMINATED
    )
    assert lifecycles == [
        jobs.RunLifeCycleState.PENDING,
        jobs.RunLifeCycleState.RUNNING,
        jobs.RunLifeCycleState.TERMINATING,
        terminal,
        terminal,
    ]
    if terminal == jobs.RunLifeCycleState.TERMINATED:
        assert run.state.result_state == jobs.RunResultState(outcome)
    else:
        assert run.state.result_state is None
    details = run.status.termination_details
    assert details is not None and details.code is not None and details.type is not None
    assert run.end_time and run.end_time >= run.start_time


def test_sdk_lists_every_job_across_pages(client: WorkspaceClient) -> None:
    listed = list(client.jobs.list(limit=3))
    assert [(j.job_id, j.settings.name if j.settings else None) for j in listed] == [
        (j.job_id, j.name) for j in DEFAULT_JOBS
    ]


def test_sdk_reads_an_unknown_run_as_resource_does_not_exist(client: WorkspaceClient) -> None:
    with pytest.raises(ResourceDoesNotExist, match="Run 123 does not exist"):
        client.jobs.get_run(123)


def test_sdk_idempotency_token_gets_the_same_run(client: WorkspaceClient) -> None:
    first = client.jobs.run_now(job_id=101, idempotency_token="job-oracle")
    again = client.jobs.run_now(job_id=101, idempotency_token="job-oracle")
    assert first.run_id == again.run_id


def test_sdk_waits_out_a_429_with_retry_after_zero(server: DatabricksSimulator) -> None:
    fast = WorkspaceClient(host=server.base_url, token=TOKEN)
    server.config.retry_after_seconds = 0  # the SDK sleeps Retry-After seconds before retrying
    server.config.faults = (parse_fault("429@pages:1x"),)
    try:
        assert [j.job_id for j in fast.jobs.list(limit=100)] == [j.job_id for j in DEFAULT_JOBS]
    finally:
        server.config.retry_after_seconds = 1
        server.config.faults = ()
    assert server.stats["throttled"] == 1
    assert server.requests[-1:] == [("GET", "/api/2.2/jobs/list")]
