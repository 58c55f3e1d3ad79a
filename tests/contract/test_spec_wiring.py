"""Every shipped spec is wired into template.yaml: each template parameter it names is declared and reaches
the functions under its own name; its secret is granted to the functions that call the provider; a deployed
stack is HTTPS only and its default allowlist covers the shipped specs' default hosts.

As in test_parameters.py, the check is a function returning problems, and a test feeds it broken copies of
the template, so a check that stopped checking would fail.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from tracker.providers.spec.model import ProviderSpec
from tracker.providers.spec.provider import base_url

from jobtracker.local.template import load_template
from jobtracker.specs import shipped_specs

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "template.yaml"
# The functions that build a provider: submit (start), status (poll), collect (results).
PROVIDER_FUNCTIONS = ("SubmitFunction", "StatusFunction", "CollectFunction")


def _secret_arn_expression(template: dict[str, Any], parameter: str) -> Any:
    """What a secret parameter resolves to: the stack's own secret when the parameter is empty."""
    return template["Globals"]["Function"]["Environment"]["Variables"].get(parameter)


def _granted_secrets(template: dict[str, Any], function: str) -> list[Any]:
    policies = template["Resources"][function]["Properties"].get("Policies", [])
    return [p["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"] for p in policies if isinstance(p, dict) and (
        "AWSSecretsManagerGetSecretValuePolicy" in p
    )]


def _pattern(template: dict[str, Any], name: str) -> re.Pattern[str]:
    return re.compile(template["Parameters"][name]["AllowedPattern"])


def wiring_problems(template: dict[str, Any], specs: list[ProviderSpec]) -> list[str]:
    problems = []
    parameters = template["Parameters"]
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    for spec in specs:
        for name in spec.template_parameters:
            if name not in parameters:
                problems.append(f"{spec.job_type}: template parameter {name} is not declared")
            elif name not in variables:
                problems.append(f"{spec.job_type}: parameter {name} does not reach the functions (Globals)")
        secret = spec.auth.secret
        if secret.parameter is not None and secret.parameter in variables:
            arn = _secret_arn_expression(template, secret.parameter)
            refs = str(arn)
            if secret.parameter not in refs:
                problems.append(f"{spec.job_type}: {secret.parameter} in Globals does not come from the parameter")
            for function in PROVIDER_FUNCTIONS:
                if arn not in _granted_secrets(template, function):
                    problems.append(f"{spec.job_type}: {function} may not read the secret of {secret.parameter}")
        if secret.arn is not None:
            for function in PROVIDER_FUNCTIONS:
                if secret.arn not in _granted_secrets(template, function):
                    problems.append(f"{spec.job_type}: {function} may not read its secret {secret.arn}")
    # A deployed stack is HTTPS only: the functions are told so, and the allowlist takes no scheme.
    if variables.get("HTTP_JOB_PLAIN_HTTP_LOOPBACK") != "false":
        problems.append("HTTP_JOB_PLAIN_HTTP_LOOPBACK is not fixed to false in Globals")
    hosts = _pattern(template, "HttpJobHosts")
    for value in ("http://127.0.0.1:8902", "https://cloud.getdbt.com", "a.com/path"):
        if hosts.match(value):
            problems.append(f"HttpJobHosts' AllowedPattern accepts {value!r}, which is not a host")
    default_hosts = str(parameters["HttpJobHosts"]["Default"])
    if not hosts.match(default_hosts):
        problems.append("HttpJobHosts' Default does not fit its AllowedPattern")
    allowed = default_hosts.split(",")
    for spec in specs:
        defaults = {name: str(parameters.get(name, {}).get("Default", "")) for name in spec.template_parameters}
        try:
            url = base_url(spec, defaults)
        except Exception:  # no default base URL: the deployer gives one, and its host
            continue
        host = urlsplit(url).hostname or ""
        if not any(host == entry or (entry.startswith("*.") and host.endswith(entry[1:])) for entry in allowed):
            problems.append(f"{spec.job_type}: its default host {host} is not in HttpJobHosts' Default")
    return problems


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


def test_every_shipped_spec_is_wired_into_the_template(template: dict[str, Any]) -> None:
    assert wiring_problems(template, shipped_specs()) == []


def _drop_parameter(template: dict[str, Any]) -> None:
    del template["Parameters"]["DbtCloudUrl"]


def _drop_variable(template: dict[str, Any]) -> None:
    del template["Globals"]["Function"]["Environment"]["Variables"]["DatabricksHost"]


def _drop_grant(template: dict[str, Any]) -> None:
    policies = template["Resources"]["StatusFunction"]["Properties"]["Policies"]
    policies[:] = [p for p in policies if "DatabricksTokenSecret" not in str(p)]


def _plain_http(template: dict[str, Any]) -> None:
    template["Globals"]["Function"]["Environment"]["Variables"]["HTTP_JOB_PLAIN_HTTP_LOOPBACK"] = "true"


def _url_allowlist(template: dict[str, Any]) -> None:
    template["Parameters"]["HttpJobHosts"]["AllowedPattern"] = "^.*$"


def _default_host_missing(template: dict[str, Any]) -> None:
    template["Parameters"]["HttpJobHosts"]["Default"] = "api.fullstory.com"


SEEDED_DEFECTS = [
    ("parameter-undeclared", _drop_parameter, "DbtCloudUrl is not declared"),
    ("parameter-not-passed", _drop_variable, "DatabricksHost does not reach the functions"),
    ("secret-not-granted", _drop_grant, "StatusFunction may not read the secret of DatabricksTokenSecretArn"),
    ("plain-http-deployed", _plain_http, "HTTP_JOB_PLAIN_HTTP_LOOPBACK"),
    ("allowlist-takes-urls", _url_allowlist, "which is not a host"),
    ("default-host-not-allowed", _default_host_missing, "default host cloud.getdbt.com is not in"),
]


@pytest.mark.parametrize(("mutate", "expected"), [d[1:] for d in SEEDED_DEFECTS], ids=[d[0] for d in SEEDED_DEFECTS])
def test_the_check_detects_a_seeded_defect(template: dict[str, Any], mutate: Any, expected: str) -> None:
    broken = copy.deepcopy(template)
    mutate(broken)
    found = wiring_problems(broken, shipped_specs())
    assert any(expected in problem for problem in found), found
