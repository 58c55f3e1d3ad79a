"""template.yaml as CloudFormation receives it (the SAM translator's output): what AWS does with it that
moto never shows - the API's stages.

Sources: the SAM translator itself (an AWS::Serverless::Api without OpenApiVersion gets a Deployment
with StageName "Stage", i.e. a second stage).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from jobtracker.local.sam import render
from jobtracker.local.template import load_template

TEMPLATE = load_template(Path(__file__).resolve().parents[2] / "template.yaml")


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    return render(TEMPLATE)


def _of_type(rendered: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in rendered["Resources"].items() if res["Type"] == kind}


def stage_names(rendered: dict[str, Any]) -> list[str]:
    """Every stage the template creates: Stage resources, and Deployments that name a stage (which
    create that stage themselves)."""
    names = [res["Properties"]["StageName"] for res in _of_type(rendered, "AWS::ApiGateway::Stage").values()]
    names += [
        res["Properties"]["StageName"]
        for res in _of_type(rendered, "AWS::ApiGateway::Deployment").values()
        if "StageName" in res["Properties"]
    ]
    return sorted(names)


def test_the_rest_api_has_exactly_one_stage(rendered: dict[str, Any]) -> None:
    assert stage_names(rendered) == ["v1"]


def test_stage_count_sees_the_stage_sam_adds_without_openapi_version() -> None:
    without = copy.deepcopy(TEMPLATE)
    for api in without["Resources"].values():
        if api["Type"] == "AWS::Serverless::Api":
            api["Properties"].pop("OpenApiVersion", None)
    without.get("Globals", {}).get("Api", {}).pop("OpenApiVersion", None)
    assert stage_names(render(without)) == ["Stage", "v1"]
