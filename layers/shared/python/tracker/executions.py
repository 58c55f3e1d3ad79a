"""The one place a job's execution is started (intake's first run, a retry): its name, its input, its ARN.

Every run of a job gets a name of its own, `<job id>-r<attempt>-<nonce>`: Step Functions refuses a name
used by any execution of the machine in the last 90 days, closed ones included, while a job record
expires after RetentionDays (at least 5) and its id can then come back (the same Idempotency-Key, the
same upload identity). A fresh nonce per run means a job the tracker believes new is never refused.
The name is recorded as the job's runId before the execution starts, so a crashed intake that runs
again starts that same name (and Step Functions itself keeps it to one execution), and the EventBridge
backstop finds the job from the name.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from pydantic import BaseModel, ConfigDict

from tracker.config import Settings

RUN_MARK = "-r"  # job ids are `job-<hex>`: "-r" never occurs in one
NAME_TAKEN = "execution_name_taken"  # the job's error code when its execution's name belongs to someone else


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


class ExecutionNameTaken(Exception):
    """An execution of that name exists and is not this job's: Step Functions will never run it under it."""


def _nonce() -> str:
    return secrets.token_hex(4)


def new_execution_name(job_id: str, attempt: int) -> str:
    """A name no earlier run of this job id (nor any other job) has used: <job id>-r<attempt>-<nonce>."""
    return f"{job_id}{RUN_MARK}{attempt}-{_nonce()}"


def job_id_of_execution(name: str) -> str:
    """The job an execution runs, from its name; also reads the names of earlier releases (`<job id>`,
    `<job id>-retry-<n>`), so a late event about one of those still finds its job."""
    return name.split(RUN_MARK, 1)[0]


def execution_arn(settings: Settings, name: str) -> str:
    """The ARN the execution named `name` gets (known before it starts: the job records it as its runId)."""
    return settings.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"


def execution_name_of(arn: str) -> str:
    return arn.rsplit(":", 1)[1]


def task_type(job: dict[str, Any]) -> str:
    """The type the job's batches run under: a tracked job follows a provider job of another type."""
    return str(job.get("taskType") or job["type"])


def start_execution(
    settings: Settings, sfn: Any, job: dict[str, Any], *, name: str, manifest_key: str, deadline: int
) -> None:
    """Start the execution `name` over the batches in `manifest_key`.

    Starting again a name this job already started (a redelivered intake message after a crash) is a
    no-op: that execution runs the job. An execution of that name that runs another job raises
    ExecutionNameTaken; it is never taken for this job's own (the job would wait RUNNING for nothing)."""
    execution_input = ExecutionInput(
        jobId=job["id"],
        type=task_type(job),
        deadline=deadline,
        inFlightBudget=settings.in_flight_budget,
        manifest=ManifestRef(bucket=settings.results_bucket, key=manifest_key),
    )
    try:
        sfn.start_execution(
            stateMachineArn=settings.state_machine_arn, name=name, input=execution_input.model_dump_json()
        )
    except sfn.exceptions.ExecutionAlreadyExists as exc:
        existing = sfn.describe_execution(executionArn=execution_arn(settings, name))
        started = json.loads(existing.get("input") or "{}")
        # This run's own execution has this job, this run's deadline and manifest; anything else is not it.
        if [started.get(k) for k in ("jobId", "deadline", "manifest")] != [
            execution_input.jobId,
            execution_input.deadline,
            execution_input.manifest.model_dump(),
        ]:
            raise ExecutionNameTaken(
                f"an execution named {name} already exists ({existing.get('status')}) and does not run this "
                "run of the job; Step Functions keeps an execution's name for 90 days"
            ) from exc


def stop_execution(sfn: Any, run_id: str, *, cause: str) -> bool:
    """Stop an execution; False when there is none of that ARN (yet)."""
    try:
        sfn.stop_execution(executionArn=run_id, error="cancelled", cause=cause)
    except sfn.exceptions.ExecutionDoesNotExist:
        return False
    return True
