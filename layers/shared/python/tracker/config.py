"""Runtime settings, read once from the environment that template.yaml gives every function.

template.yaml owns every default (its Parameters); this module keeps no second copy. A variable the
template sets is required here, so a function deployed without it fails at once with its name instead of
running on a default nobody chose. Code outside Lambda (tests, the bench) builds settings from the
template's defaults with `jobtracker.local.settings.template_settings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from tracker.providers.spec import shipped

# The largest PollMaxSeconds a deployment may choose (template.yaml's MaxValue; a contract test keeps the
# two equal). The in-flight budget's lease is derived from it (tracker.budget), so a lease never lapses
# between two healthy polls of its holder.
MAX_POLL_SECONDS = 600


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
    keboola_secret_arn: str
    keboola_stacks: tuple[str, ...]
    in_flight_budget: int
    org_in_flight_budget: int
    org_operations_budget: int
    export_in_flight_budget: int
    keboola_in_flight_budget: int
    poll_min_seconds: float
    poll_max_seconds: float
    max_job_seconds: int
    max_batch_bytes: int
    max_batch_requests: int
    provider_timeout_seconds: float
    max_uncompressed_bytes: int
    admin_principals: tuple[str, ...]
    retention_days: int
    http_job_hosts: tuple[str, ...]  # where jobs of spec types may send requests (tracker.providers.spec.hosts)
    http_job_max_result_bytes: int
    http_job_plain_http_loopback: bool  # false in a deployed stack (template.yaml); the offline stack's is true
    # The template parameters the shipped specs name (a base URL, a secret ARN), each given to the functions
    # as an environment variable of the same name.
    spec_parameters: Mapping[str, str] = field(hash=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        reader = _Reader(env)
        settings = cls(
            jobs_table=reader.name("JOBS_TABLE"),
            inbox_bucket=reader.name("INBOX_BUCKET"),
            results_bucket=reader.name("RESULTS_BUCKET"),
            topic_arn=reader.name("TOPIC_ARN"),
            intake_queue_url=reader.name("INTAKE_QUEUE_URL"),
            state_machine_arn=reader.name("STATE_MACHINE_ARN"),
            fullstory_secret_arn=reader.name("FULLSTORY_SECRET_ARN"),
            fullstory_base_url=reader.name("FULLSTORY_BASE_URL").rstrip("/"),
            keboola_secret_arn=reader.name("KEBOOLA_SECRET_ARN"),
            keboola_stacks=reader.items("KEBOOLA_STACKS"),
            in_flight_budget=reader.integer("IN_FLIGHT_BUDGET"),
            org_in_flight_budget=reader.integer("ORG_IN_FLIGHT_BUDGET"),
            org_operations_budget=reader.integer("ORG_OPERATIONS_BUDGET"),
            export_in_flight_budget=reader.integer("FULLSTORY_EXPORT_IN_FLIGHT_BUDGET"),
            keboola_in_flight_budget=reader.integer("KEBOOLA_IN_FLIGHT_BUDGET"),
            poll_min_seconds=reader.number("POLL_MIN_SECONDS"),
            poll_max_seconds=reader.number("POLL_MAX_SECONDS"),
            max_job_seconds=int(reader.number("MAX_JOB_HOURS") * 3600),
            max_batch_bytes=reader.integer("MAX_BATCH_BYTES"),
            max_batch_requests=reader.integer("MAX_BATCH_REQUESTS"),
            provider_timeout_seconds=reader.number("PROVIDER_TIMEOUT_SECONDS"),
            max_uncompressed_bytes=reader.integer("MAX_UNCOMPRESSED_BYTES"),
            admin_principals=reader.items("ADMIN_PRINCIPALS"),
            retention_days=reader.integer("RETENTION_DAYS"),
            http_job_hosts=reader.items("HTTP_JOB_HOSTS"),
            http_job_max_result_bytes=reader.integer("HTTP_JOB_MAX_RESULT_BYTES"),
            http_job_plain_http_loopback=reader.flag("HTTP_JOB_PLAIN_HTTP_LOOPBACK"),
            spec_parameters={name: reader.text(name) for name in shipped.template_parameters()},
        )
        if settings.poll_max_seconds > MAX_POLL_SECONDS:
            # CloudFormation refuses such a value (MaxValue); an environment edited by hand gets the same answer.
            raise RuntimeError(
                f"POLL_MAX_SECONDS is {settings.poll_max_seconds:g}, above {MAX_POLL_SECONDS}: the in-flight "
                "budget's lease would lapse between two polls (template.yaml PollMaxSeconds)"
            )
        return settings


class _Reader:
    """Reads the variables template.yaml sets; each one must be present (an empty string is a value)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def _raw(self, name: str) -> str:
        if name not in self._env:
            raise RuntimeError(f"environment variable {name} is not set (template.yaml sets it)")
        return self._env[name].strip()

    def name(self, name: str) -> str:
        """A resource name, ARN or URL: the template always gives one."""
        value = self._raw(name)
        if not value:
            raise RuntimeError(f"environment variable {name} is empty (template.yaml sets it)")
        return value

    def text(self, name: str) -> str:
        """A value the template always sets but that may be empty (an optional base URL or secret ARN)."""
        return self._raw(name)

    def flag(self, name: str) -> bool:
        value = self._raw(name).lower()
        if value not in ("true", "false"):
            raise RuntimeError(f"environment variable {name} is {value!r}, not true or false")
        return value == "true"

    def items(self, name: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in self._raw(name).split(",") if part.strip())

    def number(self, name: str) -> float:
        value = self._raw(name)
        try:
            return float(value)
        except ValueError:
            raise RuntimeError(f"environment variable {name} is {value!r}, not a number") from None

    def integer(self, name: str) -> int:
        number = self.number(name)
        if number != int(number):
            raise RuntimeError(f"environment variable {name} is {number:g}, not a whole number")
        return int(number)


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.from_env()
