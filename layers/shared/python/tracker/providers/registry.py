"""Which provider module serves which job type, and its credentials and base URL.

Adding a provider: write its module behind one of the protocols in base.py (BatchProvider for batch
imports, OperationProvider for a provider job that produces a file), add its job types here, and its
secret and settings to template.yaml's Globals. The state machine and the handlers stay as they are.
"""

from __future__ import annotations

import json
from typing import Any

from tracker.config import Settings
from tracker.errors import ProviderAuthError, ProviderRejectedError
from tracker.providers.base import BatchProvider, OperationProvider
from tracker.providers.fullstory import ENDPOINTS, FullStoryBatchProvider

SECRET_MAX_AGE_SECONDS = 300

# Job types, and the provider-side type a task runs under (`track` follows a job of one of these).
BATCH_TYPES = ("fullstory.users", "fullstory.events")
OPERATION_TYPES = ("fullstory.segment_export", "keboola.table_export")
TRACKABLE = {
    "fullstory.users": "fullstory.users",
    "fullstory.events": "fullstory.events",
    "fullstory.operation": "fullstory.segment_export",
    "keboola.storage": "keboola.table_export",
}


def is_operation(task_type: str) -> bool:
    return task_type in OPERATION_TYPES


def _secret(arn: str, what: str, json_key: str) -> str:
    """A credential from Secrets Manager (plain string or {json_key: ...}), cached by Powertools Parameters."""
    from aws_lambda_powertools.utilities import parameters

    if not arn:
        raise ProviderAuthError(f"no {what} secret is configured")
    try:
        raw = parameters.get_secret(arn, max_age=SECRET_MAX_AGE_SECONDS)
    except parameters.exceptions.GetParameterError as exc:
        raise ProviderAuthError(f"the {what} secret cannot be read", code="secret_unavailable") from exc
    value = str(raw or "").strip()
    if value.startswith("{"):
        try:
            value = str(json.loads(value).get(json_key, "")).strip()
        except (ValueError, AttributeError):
            value = ""
    if not value:
        raise ProviderAuthError(f"the {what} secret is empty; put the credential into it", code="secret_empty")
    return value


def fullstory_api_key(settings: Settings) -> str:
    return _secret(settings.fullstory_secret_arn, "FullStory API key", "apiKey")


def keboola_stack(params: dict[str, Any] | None, settings: Settings) -> str:
    """The Keboola stack a job talks to: params.stack, else the first allowed one. Only stacks listed in
    KeboolaStacks are allowed, so a caller cannot make the tracker send its token to another host."""
    from tracker.providers.keboola import stack_root

    allowed = [stack_root(s) for s in settings.keboola_stacks]
    if not allowed:
        raise ProviderRejectedError("no Keboola stack is configured (KeboolaStacks)", code="stack_not_allowed")
    wanted = stack_root(str((params or {}).get("stack") or allowed[0]))
    if wanted not in allowed:
        raise ProviderRejectedError(
            f"Keboola stack {wanted} is not one of this tracker's stacks ({', '.join(allowed)})",
            code="stack_not_allowed",
        )
    return wanted


def provider_for(
    task_type: str, settings: Settings, params: dict[str, Any] | None = None
) -> BatchProvider | OperationProvider:
    if task_type in ENDPOINTS:
        return FullStoryBatchProvider(
            job_type=task_type,
            api_key=fullstory_api_key(settings),
            base_url=settings.fullstory_base_url,
            timeout_seconds=settings.provider_timeout_seconds,
        )
    if task_type == "fullstory.segment_export":
        from tracker.providers.fullstory_operations import FullStorySegmentExportProvider

        return FullStorySegmentExportProvider(
            fullstory_api_key(settings), settings.fullstory_base_url, settings.provider_timeout_seconds
        )
    if task_type == "keboola.table_export":
        from tracker.providers.keboola import KeboolaStorageProvider

        return KeboolaStorageProvider(
            keboola_stack(params, settings),
            _secret(settings.keboola_secret_arn, "Keboola Storage API token", "token"),
            settings.provider_timeout_seconds,
        )
    raise ValueError(f"no provider serves job type {task_type!r}")
