"""boto3 clients, built once per process on first use (kept off the import path for cold starts)."""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def client(service: str) -> Any:
    import boto3
    from botocore.config import Config

    # SigV4 everywhere: presigned S3 URLs otherwise default to the legacy SigV2 in some regions.
    return boto3.client(service, config=Config(signature_version="s3v4") if service == "s3" else None)


@cache
def table(name: str) -> Any:
    import boto3

    return boto3.resource("dynamodb").Table(name)
