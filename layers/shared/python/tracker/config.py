"""Runtime settings, read once from the environment that template.yaml gives every function."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from tracker import limits


@dataclass(frozen=True, slots=True)
class Settings:
    jobs_table: str
    inbox_bucket: str
    results_bucket: str
    topic_arn: str
    intake_queue_url: str
    state_machine_arn: str
    fullstory_secret_arn: str
    fullstory_base_url: str
    in_flight_budget: int
    poll_min_seconds: float
    poll_max_seconds: float
    max_job_seconds: int
    max_batch_bytes: int
    max_batch_requests: int
    retention_days: int
    provider_timeout_seconds: float = 30.0
    max_uncompressed_bytes: int = limits.DEFAULT_MAX_UNCOMPRESSED_BYTES
    admin_principals: tuple[str, ...] = ()
    org_in_flight_budget: int = 90
    export_in_flight_budget: int = 10
    keboola_in_flight_budget: int = 20
    keboola_secret_arn: str = ""
    keboola_stacks: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ[str] = os.environ) -> Settings:
        def required(name: str) -> str:
            value = env.get(name, "")
            if not value:
                raise RuntimeError(f"environment variable {name} is not set (template.yaml sets it)")
            return value

        return cls(
            jobs_table=required("JOBS_TABLE"),
            inbox_bucket=required("INBOX_BUCKET"),
            results_bucket=required("RESULTS_BUCKET"),
            topic_arn=required("TOPIC_ARN"),
            intake_queue_url=env.get("INTAKE_QUEUE_URL", ""),
            state_machine_arn=env.get("STATE_MACHINE_ARN", ""),
            fullstory_secret_arn=env.get("FULLSTORY_SECRET_ARN", ""),
            fullstory_base_url=env.get("FULLSTORY_BASE_URL", "https://api.fullstory.com").rstrip("/"),
            in_flight_budget=int(env.get("IN_FLIGHT_BUDGET", "10")),
            poll_min_seconds=float(env.get("POLL_MIN_SECONDS", "5")),
            poll_max_seconds=float(env.get("POLL_MAX_SECONDS", "300")),
            max_job_seconds=int(float(env.get("MAX_JOB_HOURS", "24")) * 3600),
            max_batch_bytes=int(env.get("MAX_BATCH_BYTES", str(limits.DEFAULT_MAX_BATCH_BYTES))),
            max_batch_requests=int(env.get("MAX_BATCH_REQUESTS", str(limits.MAX_REQUESTS_PER_BATCH))),
            retention_days=int(env.get("RETENTION_DAYS", "30")),
            provider_timeout_seconds=float(env.get("PROVIDER_TIMEOUT_SECONDS", "30")),
            org_in_flight_budget=int(env.get("ORG_IN_FLIGHT_BUDGET", "90")),
            export_in_flight_budget=int(env.get("FULLSTORY_EXPORT_IN_FLIGHT_BUDGET", "10")),
            keboola_in_flight_budget=int(env.get("KEBOOLA_IN_FLIGHT_BUDGET", "20")),
            keboola_secret_arn=env.get("KEBOOLA_SECRET_ARN", ""),
            keboola_stacks=tuple(p.strip() for p in env.get("KEBOOLA_STACKS", "").split(",") if p.strip()),
            admin_principals=tuple(p.strip() for p in env.get("ADMIN_PRINCIPALS", "").split(",") if p.strip()),
            max_uncompressed_bytes=int(env.get("MAX_UNCOMPRESSED_BYTES", str(limits.DEFAULT_MAX_UNCOMPRESSED_BYTES))),
        )


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.from_env()
