"""Provider credentials from Secrets Manager, for every provider package."""

from __future__ import annotations

import json

from tracker.errors import ProviderAuthError

SECRET_MAX_AGE_SECONDS = 300


def read_secret_string(arn: str, what: str) -> str:
    """A secret's whole value from Secrets Manager (stripped, not empty), cached by Powertools Parameters.
    Messages name the secret's purpose, never its value."""
    from aws_lambda_powertools.utilities import parameters

    if not arn:
        raise ProviderAuthError(f"no {what} secret is configured")
    try:
        raw = parameters.get_secret(arn, max_age=SECRET_MAX_AGE_SECONDS)
    except parameters.exceptions.GetParameterError as exc:
        raise ProviderAuthError(f"the {what} secret cannot be read", code="secret_unavailable") from exc
    value = str(raw or "").strip()
    if not value:
        raise ProviderAuthError(f"the {what} secret is empty; put the credential into it", code="secret_empty")
    return value


def read_secret(arn: str, what: str, json_key: str) -> str:
    """A credential from Secrets Manager (plain string or {json_key: ...}), cached by Powertools Parameters."""
    value = read_secret_string(arn, what)
    if value.startswith("{"):
        try:
            value = str(json.loads(value).get(json_key, "")).strip()
        except (ValueError, AttributeError):
            value = ""
    if not value:
        raise ProviderAuthError(f"the {what} secret is empty; put the credential into it", code="secret_empty")
    return value
