"""Settings as a stack deployed with template.yaml's defaults has them, for code that runs outside Lambda.

Tests and the bench build their settings here, so no default lives anywhere but in template.yaml's
Parameters: the variables come from the template's Globals exactly as SAM gives them to a function,
parameters from their defaults (or the overrides passed), resources as placeholders named after their
logical ids (nothing is created).

    settings = template_settings(jobs_table="jobs")            # a tracker Settings for a unit test
    env = template_environment({"PollMaxSeconds": 300})        # the variables every function gets
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from tracker.config import Settings

from jobtracker.local.stack import ACCOUNT, REGION, REPO_ROOT
from jobtracker.local.template import Resolver, function_environment, load_template

STACK_NAME = "jobtracker-template"


@lru_cache(maxsize=4)
def _template(path: Path) -> dict[str, Any]:
    return load_template(path)


def _placeholder(logical_id: str, attribute: str | None) -> str:
    """A stand-in for a resource that is not created here, recognisably named after it."""
    if attribute is None:
        return f"{STACK_NAME}-{logical_id}"
    return f"arn:aws:placeholder:{REGION}:{ACCOUNT}:{STACK_NAME}-{logical_id}-{attribute}"


def template_environment(
    parameters: Mapping[str, object] | None = None, *, function: str | None = None, root: Path = REPO_ROOT
) -> dict[str, str]:
    """The environment variables template.yaml gives a function (Globals only when `function` is None)."""
    template = _template(root / "template.yaml")
    resolver = Resolver(
        template,
        {name: str(value) for name, value in (parameters or {}).items()},
        {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::StackName": STACK_NAME,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        },
        _placeholder,
    )
    return function_environment(template, resolver, function)


def template_settings(
    parameters: Mapping[str, object] | None = None, *, root: Path = REPO_ROOT, **fields: Any
) -> Settings:
    """tracker.config.Settings read from `template_environment(parameters)`, then `fields` replaced
    (e.g. `jobs_table="jobs"` for a table a test created)."""
    return dataclasses.replace(Settings.from_env(template_environment(parameters, root=root)), **fields)
