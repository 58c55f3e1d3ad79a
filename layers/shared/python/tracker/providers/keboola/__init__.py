"""Keboola Storage (https://keboola.docs.apiary.io): table exports and any storage job (storage.py), their
files on S3, Azure Blob Storage or GCS, sliced or not (files.py).

This module is what tracker.catalogue needs of Keboola: the params of a table export, the stack a job
talks to (fixed when the job is created) and how to build the provider from the settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, StrictStr, StringConstraints

from tracker.errors import ProviderRejectedError
from tracker.providers.secrets import read_secret

if TYPE_CHECKING:
    from tracker.config import Settings
    from tracker.providers.keboola.storage import KeboolaStorageProvider

__all__ = ["TableExportParams", "bind_stack", "stack_for", "table_export"]


class TableExportParams(BaseModel):
    """A table export's params: ``tableId``; optional ``columns``, ``limit``, ``format`` (storage.py) and
    ``stack`` (one of the tracker's KeboolaStacks; the first when absent)."""

    model_config = ConfigDict(extra="allow")
    tableId: Annotated[StrictStr, StringConstraints(pattern=r"\S")]  # Keboola's field name


def stack_for(params: dict[str, Any] | None, settings: Settings) -> str:
    """The Keboola stack a job talks to: params.stack, else the first allowed one. Only stacks listed in
    KeboolaStacks are allowed, so a caller cannot make the tracker send its token to another host."""
    from tracker.providers.keboola.storage import stack_root

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


def bind_stack(params: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Fixed when the job is created, so every later task talks to the same stack."""
    return {"stack": stack_for(params, settings)}


def table_export(settings: Settings, params: dict[str, Any] | None = None) -> KeboolaStorageProvider:
    from tracker.providers.keboola.storage import KeboolaStorageProvider

    return KeboolaStorageProvider(
        stack_for(params, settings),
        read_secret(settings.keboola_secret_arn, "Keboola Storage API token", "token"),
        settings.provider_timeout_seconds,
        columns=(params or {}).get("columns"),  # the header of the exported file
    )
