"""Builds the services once per process from the environment (handlers stay thin)."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from tracker import aws, catalogue
from tracker.batch_tasks import BatchTasks
from tracker.budget import Budgets
from tracker.config import settings
from tracker.finalize import Finalizer
from tracker.intake import Intake
from tracker.store import JobStore

if TYPE_CHECKING:  # imported where built: the batch functions, polled thousands of times, never need them
    from tracker.control import JobControl
    from tracker.jobs_api import JobsApi


@cache
def store() -> JobStore:
    return JobStore(settings().jobs_table)


@cache
def finalizer() -> Finalizer:
    return Finalizer(settings(), store(), aws.client("s3"), aws.client("sns"))


@cache
def intake() -> Intake:
    return Intake(settings(), store(), aws.client("s3"), aws.client("stepfunctions"), finalizer())


@cache
def budgets() -> Budgets:
    """Every provider's in-flight budget, one per budget family of the catalogue."""
    s = settings()
    return Budgets(aws.table(s.jobs_table), catalogue.budget_limits(s))


@cache
def batch_tasks() -> BatchTasks:
    return BatchTasks(settings(), store(), aws.client("s3"), catalogue.provider_for, budgets())


@cache
def control() -> JobControl:
    from tracker.control import JobControl

    return JobControl(settings(), store(), aws.client("stepfunctions"), aws.client("s3"), finalizer(), budgets())


@cache
def jobs_api() -> JobsApi:
    from tracker.jobs_api import JobsApi

    return JobsApi(settings(), store(), aws.client("s3"), aws.client("sqs"))


def reset() -> None:
    """Forget built services and settings (the offline runtime calls this when it starts a new stack)."""
    from tracker.config import settings as _settings

    built = (store, finalizer, intake, batch_tasks, control, jobs_api, budgets)
    for cached in (*built, _settings, aws.client, aws.table):
        cached.cache_clear()
