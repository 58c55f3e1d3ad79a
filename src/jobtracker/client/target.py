"""A stack to talk to: its API (SigV4-signed when deployed), its buckets, and S3 access.

--stack NAME reads the CloudFormation outputs ApiUrl, InboxBucketName and ResultsBucketName with the
caller's credentials (boto3's standard chain, --profile, --region). --local targets `jobtracker local up`:
its REST API and its emulated AWS endpoint (any credentials).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import botocore.exceptions
from botocore.config import Config

from jobtracker.client.api import ApiClient, SigV4Signer
from jobtracker.client.config import Settings
from jobtracker.client.errors import EXIT_UNREACHABLE, EXIT_USAGE, CliError

OUTPUTS = {"api_url": "ApiUrl", "inbox_bucket": "InboxBucketName", "results_bucket": "ResultsBucketName"}
LOCAL_REGION = "us-east-1"
LOCAL_ACCESS_KEY = "local"
EXECUTE_API_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


@dataclass
class Target:
    settings: Settings
    api: ApiClient
    session: Any  # boto3.session.Session
    inbox_bucket: str | None
    results_bucket: str | None

    @property
    def local(self) -> bool:
        return self.settings.mode == "local"

    @property
    def label(self) -> str:
        if self.local:
            return f"local stack at {self.api.base_url}"
        return f"stack {self.settings.stack}" if self.settings.stack else f"API {self.api.base_url}"

    def s3(self) -> Any:
        if self.local:
            quick = Config(connect_timeout=5, retries={"max_attempts": 2, "mode": "standard"})
            return self.session.client("s3", endpoint_url=self.settings.aws_endpoint, config=quick)
        return self.session.client("s3", config=Config(retries={"mode": "standard"}))

    def require_inbox(self) -> str:
        if not self.inbox_bucket:
            raise CliError("the inbox bucket is unknown: pass --stack NAME or --inbox-bucket", EXIT_USAGE)
        return self.inbox_bucket

    def download_url(self, url: str, dest: Any) -> int:
        """Save a presigned result URL to dest (a Path); returns its size. Offline, presigned URLs name
        s3.amazonaws.com, so the object is read through the emulated AWS endpoint instead."""
        if self.local:
            bucket, key = bucket_and_key(url)
            self.s3().download_file(bucket, key, str(dest))
            return dest.stat().st_size
        import urllib3

        http = urllib3.PoolManager(retries=urllib3.Retry(total=3, backoff_factor=0.5))
        with http.request("GET", url, preload_content=False, timeout=urllib3.Timeout(connect=10, read=120)) as resp:
            if resp.status != 200:
                raise CliError(f"download of {dest.name} failed ({resp.status})", EXIT_UNREACHABLE)
            with open(dest, "wb") as out:
                for chunk in resp.stream(1024 * 1024):
                    out.write(chunk)
        return dest.stat().st_size


def bucket_and_key(url: str) -> tuple[str, str]:
    """(bucket, key) of a virtual-hosted or path-style S3 URL."""
    parts = urlsplit(url)
    host, path = parts.hostname or "", unquote(parts.path.lstrip("/"))
    match = re.match(r"^(.+?)\.s3[.-]", host)
    if match:
        return match.group(1), path
    bucket, _, key = path.partition("/")
    return bucket, key


def connect(settings: Settings, *, timeout: float = 30.0) -> Target:
    if settings.mode == "local":
        # The offline API, like API Gateway, wants SigV4; it takes the access key as the caller's name
        # (arn:aws:iam::123456789012:user/local), and offline every principal of the account is an admin.
        region = settings.region or LOCAL_REGION
        session = boto3.session.Session(
            aws_access_key_id=LOCAL_ACCESS_KEY, aws_secret_access_key="local", region_name=region
        )
        api = ApiClient(
            str(settings.api_url),
            signer=SigV4Signer(session, region),
            timeout=timeout,
            hint="is `jobtracker local up` running? see --api-url",
        )
        return Target(settings, api, session, settings.inbox_bucket, settings.results_bucket)

    try:
        session = boto3.session.Session(profile_name=settings.profile, region_name=settings.region)
    except botocore.exceptions.ProfileNotFound as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    values = {key: getattr(settings, key) for key in OUTPUTS}
    if settings.stack and not all(values.values()):
        outputs = stack_outputs(session, settings.stack)
        for key, output in OUTPUTS.items():
            values[key] = values[key] or outputs.get(output)
        if not values["api_url"]:
            raise CliError(f"stack {settings.stack} has no ApiUrl output; is it a jobtracker stack?", EXIT_USAGE)
    api_url = str(values["api_url"]).rstrip("/")
    host_region = EXECUTE_API_HOST.search(urlsplit(api_url).hostname or "")
    region = host_region.group(1) if host_region else session.region_name
    if not region:
        raise CliError("no AWS region to sign requests for", EXIT_USAGE, hint="pass --region or set AWS_REGION")
    api = ApiClient(api_url, signer=SigV4Signer(session, region), timeout=timeout)
    return Target(settings, api, session, values["inbox_bucket"], values["results_bucket"])


def stack_outputs(session: Any, stack: str) -> dict[str, str]:
    try:
        cloudformation = session.client("cloudformation")
        found = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except botocore.exceptions.NoRegionError as exc:
        raise CliError("no AWS region", EXIT_USAGE, hint="pass --region or set AWS_REGION / JOBTRACKER_REGION") from exc
    except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError) as exc:
        raise CliError(
            "no AWS credentials found", EXIT_UNREACHABLE, hint="configure the AWS CLI or pass --profile"
        ) from exc
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        message = error.get("Message") or str(exc)
        if "does not exist" in message:
            raise CliError(
                f"stack {stack} not found in {session.region_name}", EXIT_UNREACHABLE, hint="check --stack and --region"
            ) from exc
        raise CliError(f"cannot read stack {stack}: {message}", EXIT_UNREACHABLE) from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise CliError(f"cannot read stack {stack}: {exc}", EXIT_UNREACHABLE) from exc
    if not found:
        raise CliError(f"stack {stack} not found in {session.region_name}", EXIT_UNREACHABLE)
    return {o["OutputKey"]: o["OutputValue"] for o in found[0].get("Outputs", [])}
