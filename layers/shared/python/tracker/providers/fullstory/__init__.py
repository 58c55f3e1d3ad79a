"""FullStory (https://developer.fullstory.com): batch imports of users and events (batch.py), segment
exports and any FullStory operation (exports.py), the request rules of a batch import (rules.py, with
the documented limits in limits.py), all over FullStory's HTTP client (client.py).

This module is what tracker.catalogue needs of FullStory: the row rules, the params of an export and
how to build each provider from the settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, StrictStr

from tracker.providers.fullstory.rules import EVENTS as EVENT_RULES
from tracker.providers.fullstory.rules import USERS as USER_RULES
from tracker.providers.secrets import read_secret

if TYPE_CHECKING:
    from tracker.config import Settings
    from tracker.providers.fullstory.batch import FullStoryBatchProvider
    from tracker.providers.fullstory.exports import FullStorySegmentExportProvider

__all__ = ["EVENT_RULES", "USER_RULES", "SegmentExportParams", "events_import", "segment_export", "users_import"]


class SegmentExportParams(BaseModel):
    """A segment export's params: ``segmentId``, and the other documented Create Export fields as given
    (exports.EXPORT_FIELDS; ``type`` and ``format`` also in their short spellings)."""

    model_config = ConfigDict(extra="allow")
    segmentId: StrictStr  # FullStory's field name


def api_key(settings: Settings) -> str:
    return read_secret(settings.fullstory_secret_arn, "FullStory API key", "apiKey")


def _batch_import(path: str, settings: Settings) -> FullStoryBatchProvider:
    from tracker.providers.fullstory.batch import FullStoryBatchProvider

    return FullStoryBatchProvider(
        path=path,
        api_key=api_key(settings),
        base_url=settings.fullstory_base_url,
        timeout_seconds=settings.provider_timeout_seconds,
    )


def users_import(settings: Settings, params: dict[str, Any] | None = None) -> FullStoryBatchProvider:
    from tracker.providers.fullstory.batch import USERS_PATH

    return _batch_import(USERS_PATH, settings)


def events_import(settings: Settings, params: dict[str, Any] | None = None) -> FullStoryBatchProvider:
    from tracker.providers.fullstory.batch import EVENTS_PATH

    return _batch_import(EVENTS_PATH, settings)


def segment_export(settings: Settings, params: dict[str, Any] | None = None) -> FullStorySegmentExportProvider:
    from tracker.providers.fullstory.exports import FullStorySegmentExportProvider

    return FullStorySegmentExportProvider(
        api_key(settings), settings.fullstory_base_url, settings.provider_timeout_seconds
    )
