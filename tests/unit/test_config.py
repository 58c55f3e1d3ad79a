"""Settings once: template.yaml owns every default, tracker.config reads exactly what it sets."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest
from tracker.config import MAX_POLL_SECONDS, Settings

from jobtracker.local.settings import template_environment, template_settings
from jobtracker.local.stack import REPO_ROOT
from jobtracker.local.template import load_template

# Variables the template sets for Powertools itself, not for the tracker's settings.
POWERTOOLS_VARIABLES = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}


class _Recording(Mapping[str, str]):
    """An environment that remembers which variables were read."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self._values[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def test_config_reads_every_variable_the_template_sets_and_no_other():
    environment = _Recording(template_environment())
    Settings.from_env(environment)
    assert environment.read == set(template_environment()) - POWERTOOLS_VARIABLES


@pytest.mark.parametrize("name", sorted(set(template_environment()) - POWERTOOLS_VARIABLES))
def test_a_variable_the_template_sets_is_required_and_named_when_missing(name):
    environment = template_environment()
    del environment[name]
    with pytest.raises(RuntimeError, match=f"{name} is not set"):
        Settings.from_env(environment)


def test_settings_take_the_template_parameter_defaults():
    parameters = load_template(REPO_ROOT / "template.yaml")["Parameters"]
    settings = template_settings()

    def default(name: str) -> float:
        return float(parameters[name]["Default"])

    assert settings.poll_min_seconds == default("PollMinSeconds")
    assert settings.poll_max_seconds == default("PollMaxSeconds")
    assert settings.max_job_seconds == default("MaxJobHours") * 3600
    assert settings.in_flight_budget == default("InFlightBudget")
    assert settings.org_in_flight_budget == default("OrgInFlightBudget")
    assert settings.export_in_flight_budget == default("ExportInFlightBudget")
    assert settings.keboola_in_flight_budget == default("KeboolaInFlightBudget")
    assert settings.max_batch_bytes == default("MaxBatchBytes")
    assert settings.max_batch_requests == default("MaxBatchRequests")
    assert settings.max_uncompressed_bytes == default("MaxUncompressedBytes")
    assert settings.provider_timeout_seconds == default("ProviderTimeoutSeconds")
    assert settings.retention_days == default("RetentionDays")
    assert settings.fullstory_base_url == parameters["FullStoryBaseUrl"]["Default"]
    assert settings.keboola_stacks == tuple(parameters["KeboolaStacks"]["Default"].split(","))
    assert settings.admin_principals == ()


def test_overrides_reach_settings_as_a_deployment_parameter_would():
    settings = template_settings({"PollMaxSeconds": 300, "AdminPrincipals": "arn:a/, arn:b/"}, jobs_table="jobs")
    assert settings.poll_max_seconds == 300
    assert settings.admin_principals == ("arn:a/", "arn:b/")
    assert settings.jobs_table == "jobs"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("IN_FLIGHT_BUDGET", "ten", "IN_FLIGHT_BUDGET is 'ten', not a number"),
        ("MAX_BATCH_REQUESTS", "2.5", "MAX_BATCH_REQUESTS is 2.5, not a whole number"),
        ("JOBS_TABLE", "", "JOBS_TABLE is empty"),
        ("POLL_MAX_SECONDS", str(MAX_POLL_SECONDS + 1), "lease would lapse"),
    ],
)
def test_a_bad_value_is_refused_with_its_name(name, value, message):
    environment = {**template_environment(), name: value}
    with pytest.raises(RuntimeError, match=message):
        Settings.from_env(environment)
