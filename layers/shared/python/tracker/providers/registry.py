"""Which provider module serves which job type, and its credentials."""

from __future__ import annotations

import json

from tracker.config import Settings
from tracker.errors import ProviderAuthError
from tracker.providers.base import BatchProvider
from tracker.providers.fullstory import ENDPOINTS, FullStoryBatchProvider

SECRET_MAX_AGE_SECONDS = 300


def fullstory_api_key(settings: Settings) -> str:
    """The key from Secrets Manager (plain string or {"apiKey": ...}), cached by Powertools Parameters."""
    from aws_lambda_powertools.utilities import parameters

    if not settings.fullstory_secret_arn:
        raise ProviderAuthError("no FullStory API key secret is configured (FULLSTORY_SECRET_ARN)")
    try:
        raw = parameters.get_secret(settings.fullstory_secret_arn, max_age=SECRET_MAX_AGE_SECONDS)
    except parameters.exceptions.GetParameterError as exc:
        raise ProviderAuthError("the FullStory API key secret cannot be read", code="secret_unavailable") from exc
    key = str(raw or "").strip()
    if key.startswith("{"):
        try:
            key = str(json.loads(key).get("apiKey", "")).strip()
        except (ValueError, AttributeError):
            key = ""
    if not key:
        raise ProviderAuthError("the FullStory API key secret is empty; put the key into it", code="secret_empty")
    return key


def provider_for(job_type: str, settings: Settings) -> BatchProvider:
    if job_type in ENDPOINTS:
        return FullStoryBatchProvider(
            job_type=job_type,
            api_key=fullstory_api_key(settings),
            base_url=settings.fullstory_base_url,
            timeout_seconds=settings.provider_timeout_seconds,
        )
    raise ValueError(f"no provider serves job type {job_type!r}")
