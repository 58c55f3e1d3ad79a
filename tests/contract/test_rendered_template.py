"""template.yaml as CloudFormation receives it (the SAM translator's output): what AWS does with it that
moto never shows - the API's stages, and whether a fresh account can create the stage with access logs.

Sources: the SAM translator itself (an AWS::Serverless::Api without OpenApiVersion gets a Deployment
with StageName "Stage", i.e. a second stage); API Gateway Developer Guide, "Set up CloudWatch logging
for REST APIs" (stage logging needs the account's CloudWatch role ARN in API Gateway's account
settings, AWS::ApiGateway::Account, one per account and region).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobtracker.local.sam import render
from jobtracker.local.template import NO_VALUE, Resolver, load_template

TEMPLATE = load_template(Path(__file__).resolve().parents[2] / "template.yaml")
PSEUDO = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "contract",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}


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


# ------------------------------------------------------------------------------------------ access logs


def _resolver(rendered: dict[str, Any], parameters: dict[str, str]) -> Resolver:
    return Resolver(rendered, parameters, PSEUDO, lambda logical, attribute: f"{logical}.{attribute or 'Ref'}")


def _exists(rendered: dict[str, Any], resolver: Resolver, name: str) -> bool:
    condition = rendered["Resources"][name].get("Condition")
    return condition is None or resolver.condition(condition)


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if set(node) == {"Ref"}:
            yield node["Ref"]
        elif set(node) == {"Fn::GetAtt"}:
            arg = node["Fn::GetAtt"]
            yield arg[0] if isinstance(arg, list) else arg.split(".", 1)[0]
        elif set(node) == {"Fn::Sub"}:
            arg = node["Fn::Sub"]
            text = arg if isinstance(arg, str) else arg[0]
            for part in text.split("${")[1:]:
                yield part.split("}", 1)[0].split(".", 1)[0]
            if not isinstance(arg, str):
                yield from _references(arg[1])
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _references(value)


def _created_after(rendered: dict[str, Any], resolver: Resolver, name: str) -> set[str]:
    """Every resource CloudFormation creates before `name` (DependsOn, Ref, GetAtt, Sub), with the
    conditions of this parameter set applied (an Fn::If only depends on the branch it takes)."""
    resources = rendered["Resources"]
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        resource = resources[current]
        depends = resource.get("DependsOn", [])
        found = [depends] if isinstance(depends, str) else list(depends)
        found += _references(_taken_branches(resource, resolver))
        for other in found:
            if other in resources and other not in seen and _exists(rendered, resolver, other):
                seen.add(other)
                todo.append(other)
    return seen


def _taken_branches(node: Any, resolver: Resolver) -> Any:
    if isinstance(node, dict):
        if set(node) == {"Fn::If"}:
            condition, when_true, when_false = node["Fn::If"]
            return _taken_branches(when_true if resolver.condition(condition) else when_false, resolver)
        return {key: _taken_branches(value, resolver) for key, value in node.items()}
    if isinstance(node, list):
        return [_taken_branches(value, resolver) for value in node]
    return node


def _logging_stages(rendered: dict[str, Any], resolver: Resolver) -> dict[str, Any]:
    stages = {}
    for name, stage in _of_type(rendered, "AWS::ApiGateway::Stage").items():
        setting = resolver.resolve(_taken_branches(stage["Properties"].get("AccessLogSetting", NO_VALUE), resolver))
        stages[name] = setting if setting is not NO_VALUE else None
    return stages


def _account_role_set_first(rendered: dict[str, Any], resolver: Resolver, stage: str) -> bool:
    before = _created_after(rendered, resolver, stage)
    for name in before:
        resource = rendered["Resources"][name]
        if resource["Type"] == "AWS::ApiGateway::Account" and resource["Properties"].get("CloudWatchRoleArn"):
            return True
    return False


ROLE_CHOICES = TEMPLATE["Parameters"]["ApiGatewayAccountRole"]["AllowedValues"]


@pytest.mark.parametrize("choice", ROLE_CHOICES)
def test_every_stage_logs_and_waits_for_the_account_role_unless_the_account_has_one(
    rendered: dict[str, Any], choice: str
) -> None:
    resolver = _resolver(rendered, {"ApiGatewayAccountRole": choice})
    stages = _logging_stages(rendered, resolver)
    assert stages, "no API stage"
    for stage, setting in stages.items():
        assert setting, f"{stage} has no access logs"
        if choice != "Existing":
            assert _account_role_set_first(rendered, resolver, stage), (
                f"{stage} logs but nothing sets the account's API Gateway CloudWatch role before it: "
                "stage creation fails in an account without one"
            )


def test_the_default_deploys_into_a_fresh_account(rendered: dict[str, Any]) -> None:
    assert TEMPLATE["Parameters"]["ApiGatewayAccountRole"]["Default"] == "Create"
    resolver = _resolver(rendered, {})
    for stage, setting in _logging_stages(rendered, resolver).items():
        assert setting and _account_role_set_first(rendered, resolver, stage), stage


def test_ordering_check_sees_a_stage_that_does_not_wait_for_the_account(rendered: dict[str, Any]) -> None:
    broken = copy.deepcopy(rendered)
    for resource in _of_type(broken, "AWS::ApiGateway::RestApi").values():
        resource.get("Metadata", {}).pop("AccountSettings")
    resolver = _resolver(broken, {"ApiGatewayAccountRole": "Create"})
    stage = next(iter(_of_type(broken, "AWS::ApiGateway::Stage")))
    assert not _account_role_set_first(broken, resolver, stage)


def test_the_account_role_outlives_the_stack(rendered: dict[str, Any]) -> None:
    # The account setting is not undone when the stack goes: the role it names must stay, or every
    # API of the account and region loses its logs.
    resolver = _resolver(rendered, {"ApiGatewayAccountRole": "Create"})
    for name, account in _of_type(rendered, "AWS::ApiGateway::Account").items():
        role = account["Properties"]["CloudWatchRoleArn"]
        (role_name,) = set(_references(_taken_branches(role, resolver)))
        assert rendered["Resources"][role_name].get("DeletionPolicy") == "Retain", (name, role_name)
        assert json.dumps(rendered["Resources"][role_name]["Properties"]).count("apigateway.amazonaws.com") == 1


# ------------------------------------------------------------------------------------------ roles

# What SAM's convenience policy templates brought and no code path needs (S3CrudPolicy: lifecycle, ACLs,
# deletes; DynamoDBCrudPolicy: Scan). The offline IAM check (tests/conftest.py) reports every granted
# right no test used; these are the ones that must never come back.
NEVER_NEEDED = {"s3:PutLifecycleConfiguration", "s3:PutObjectAcl", "s3:DeleteObject", "dynamodb:Scan"}


def _role_statements(rendered: dict[str, Any], function: str) -> list[dict[str, Any]]:
    role = rendered["Resources"][function]["Properties"]["Role"]["Fn::GetAtt"][0]
    return [
        statement
        for policy in rendered["Resources"][role]["Properties"].get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
    ]


def test_no_role_grants_rights_no_code_needs(rendered: dict[str, Any]) -> None:
    granted = {
        (function, action)
        for function in _of_type(rendered, "AWS::Lambda::Function")
        for statement in _role_statements(rendered, function)
        for action in (statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
    }
    assert {(f, a) for f, a in granted if a in NEVER_NEEDED} == set()


def test_the_api_role_cannot_read_the_inbox(rendered: dict[str, Any]) -> None:
    api_functions = [
        name
        for name, res in TEMPLATE["Resources"].items()
        if any(e["Type"] == "Api" for e in res.get("Properties", {}).get("Events", {}).values())
    ]
    assert api_functions
    for function in api_functions:
        for statement in _role_statements(rendered, function):
            if "InboxBucket" not in json.dumps(statement["Resource"]):
                continue
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            # It signs upload URLs into callers' own prefixes (PutObject, AbortMultipartUpload): it writes
            # there on their behalf, and reads nothing of the inbox.
            assert all(a in ("s3:PutObject", "s3:AbortMultipartUpload") for a in actions), (function, actions)
            assert json.dumps(statement["Resource"]).count("/uploads/*") == 1, (function, statement["Resource"])
