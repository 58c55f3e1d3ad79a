"""The one place a job's execution is started (intake's first run, a retry): its name, its input, its ARN.

An execution is named after its job (`<job id>`, or `<job id>-retry-<n>` for a retry), so Step Functions
itself refuses to run the same one twice, and the EventBridge backstop finds the job from the name.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pydantic import BaseModel, ConfigDict

from tracker.config import Settings

RETRY_SEPARATOR = "-retry-"


class ManifestRef(BaseModel):
    bucket: str
    key: str


class ExecutionInput(BaseModel):
    """What an execution starts with; the ASL's ItemSelector hands jobId, type and deadline to every batch."""

    model_config = ConfigDict(extra="ignore")
    jobId: str
    type: str  # the provider-side task type (`track` runs under the tracked provider's type)
    deadline: int  # epoch seconds; every step checks it
    inFlightBudget: int  # the Map's MaxConcurrency
    manifest: ManifestRef  # the batches this execution runs (the Map's ItemReader)


def execution_name(job_id: str, retry: int = 0) -> str:
    return f"{job_id}{RETRY_SEPARATOR}{retry}" if retry else job_id


def job_id_of_execution(name: str) -> str:
    return name.split(RETRY_SEPARATOR, 1)[0]


def execution_arn(settings: Settings, name: str) -> str:
    """The ARN the execution named `name` gets (known before it starts: the job records it as its runId)."""
    return settings.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"


def task_type(job: dict[str, Any]) -> str:
    """The type the job's batches run under: a tracked job follows a provider job of another type."""
    return str(job.get("taskType") or job["type"])


def start_execution(
    settings: Settings, sfn: Any, job: dict[str, Any], *, name: str, manifest_key: str, deadline: int
) -> None:
    """Start the execution `name` over the batches in `manifest_key`. Starting one that already exists is
    a no-op (Step Functions refuses a second execution of a name: the first one runs the job)."""
    execution_input = ExecutionInput(
        jobId=job["id"],
        type=task_type(job),
        deadline=deadline,
        inFlightBudget=settings.in_flight_budget,
        manifest=ManifestRef(bucket=settings.results_bucket, key=manifest_key),
    )
    with contextlib.suppress(sfn.exceptions.ExecutionAlreadyExists):
        sfn.start_execution(
            stateMachineArn=settings.state_machine_arn, name=name, input=execution_input.model_dump_json()
        )
