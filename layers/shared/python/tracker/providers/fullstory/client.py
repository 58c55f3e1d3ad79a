"""FullStory's flavour of the provider HTTP layer: ``Authorization: Basic <key>`` (the key as-is, as
FullStory documents it) and error bodies ``{"code", "message"}``."""

from __future__ import annotations

from typing import Any

import urllib3

from tracker.providers.http import POOL, ErrorBody, ProviderHttp, json_body


def read_error(response: Any) -> ErrorBody:
    body = json_body(response)
    body = body if isinstance(body, dict) else {}
    code = str(body.get("code") or "")
    message = str(body.get("message", ""))[:300]
    return ErrorBody(code=code, summary=code, detail=f"{code}: {message}")


def authorization(api_key: str) -> str:
    """The Authorization header as FullStory's official Node SDK builds it: ``Basic `` is added only when
    the configured key has no space, so a secret stored as ``Basic <key>`` (or with another scheme) is sent
    as it is instead of as ``Basic Basic <key>``, which FullStory refuses with a 401 (../shared/DESIGN.md
    "FullStory facts", issue 10). Surrounding whitespace of a pasted secret is not part of the key."""
    key = api_key.strip()
    return key if " " in key else f"Basic {key}"


def fullstory_http(api_key: str, timeout_seconds: float = 30.0, pool: urllib3.PoolManager = POOL) -> ProviderHttp:
    return ProviderHttp(
        "FullStory",
        headers={"Authorization": authorization(api_key)},
        credential="the API key",
        read_error=read_error,
        timeout_seconds=timeout_seconds,
        pool=pool,
    )
