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


def fullstory_http(api_key: str, timeout_seconds: float = 30.0, pool: urllib3.PoolManager = POOL) -> ProviderHttp:
    return ProviderHttp(
        "FullStory",
        headers={"Authorization": f"Basic {api_key}"},
        credential="the API key",
        read_error=read_error,
        timeout_seconds=timeout_seconds,
        pool=pool,
    )
