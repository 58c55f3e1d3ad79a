"""The deployable artefacts - template.yaml and the ASL files behind DefinitionUri - are valid and safe.

Why: nothing here is exercised by unit tests, and `sam validate --lint` / cfn-lint never read an ASL
file behind ``DefinitionUri``. These checks run offline (no AWS account, no network):

* cfn-lint on template.yaml (errors and warnings), the SAM translator's own transform and what it
  generates (state machine, Lambda runtime/architecture, SQS event source, IAM-authorized REST API,
  no broad IAM);
* each ASL definition: substituted, wrapped in a raw ``AWS::StepFunctions::StateMachine`` and linted,
  accepted by moto's ASL parser, and checked structurally (targets, reachability, timeouts, retries,
  catches, waits from the state, the distributed Map);
* the wiring between them: placeholders vs DefinitionSubstitutions, handler files and attributes,
  Ref/GetAtt/Sub/DependsOn/Condition targets.

Every check is written as a function returning a list of problems, and the ``*_detects_*`` tests
feed each one a deliberately broken input (a small sample ASL, a SAM snippet, a copy of the transform
or template), so a check that silently stopped checking would fail.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from cfnlint.api import lint

from jobtracker.local.sam import render
from jobtracker.local.template import load_template, substitute_definition

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
REGION = "us-east-1"
ACCOUNT = "123456789012"
LINT_REGIONS = ["us-east-1", "eu-west-1"]
JOB_MACHINE = "JobStateMachine"

PSEUDO_PARAMETERS = {
    "AWS::AccountId",
    "AWS::NotificationARNs",
    "AWS::NoValue",
    "AWS::Partition",
    "AWS::Region",
    "AWS::StackId",
    "AWS::StackName",
    "AWS::URLSuffix",
}
# Design: retry Lambda service errors (Lambda.Unknown covers function timeouts) with capped, jittered backoff.
LAMBDA_SERVICE_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.Unknown",
)
NAMED_PROVIDER_ERRORS = ("ProviderTransientError", "ProviderThrottledError")
# Task invocations that talk to the provider: (DefinitionSubstitutions placeholder, Payload action or None).
PROVIDER_CALLS = {("SubmitFunctionArn", None), ("StatusFunctionArn", None), ("CollectFunctionArn", "collect")}
PROVIDER_FUNCTIONS = sorted({function for function, _ in PROVIDER_CALLS})
# Routes fixed by the API contract in DESIGN.md.
CONTRACT_ROUTES = {("/jobs", "post"), ("/jobs", "get"), ("/jobs/{id}", "get")}
READ_ONLY_VERBS = (
    "Get",
    "List",
    "Describe",
    "Head",
    "BatchGet",
    "Query",
    "Scan",
    "Lookup",
    "Search",
    "Select",
)
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")
STANDARD_MAX_EXECUTION_SECONDS = 365 * 24 * 3600


# ------------------------------------------------------------------------------------------ helpers


def _template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


def _resources_of(template: dict[str, Any], *types: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template.get("Resources", {}).items() if res.get("Type") in types}


def _function_property(template: dict[str, Any], resource: dict[str, Any], key: str) -> Any:
    """A Serverless::Function property, falling back to Globals.Function as SAM does."""
    own = resource.get("Properties", {})
    if key in own:
        return own[key]
    return template.get("Globals", {}).get("Function", {}).get(key)


def _state_machines_with_uri() -> list[str]:
    machines = _resources_of(_template(), "AWS::Serverless::StateMachine")
    return sorted(name for name, res in machines.items() if "DefinitionUri" in res.get("Properties", {}))


def _function_names() -> list[str]:
    return sorted(_resources_of(_template(), "AWS::Serverless::Function"))


def _asl_text(template: dict[str, Any], machine: str) -> str:
    uri = template["Resources"][machine]["Properties"]["DefinitionUri"]
    assert isinstance(uri, str), f"{machine}.DefinitionUri should be a local path, got {uri!r}"
    return (ROOT / uri).read_text(encoding="utf-8")


def _plausible(value: Any, template: dict[str, Any]) -> str:
    """A plausible deployed value for a DefinitionSubstitutions entry (an ARN for GetAtt/Ref)."""
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        logical = arg[0] if key == "Fn::GetAtt" else arg if key == "Ref" else None
        if isinstance(logical, str):
            kind = template["Resources"].get(logical, {}).get("Type", "")
            if kind in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
                return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:jobtracker-{logical}"
            if kind == "AWS::SNS::Topic":
                return f"arn:aws:sns:{REGION}:{ACCOUNT}:jobtracker-{logical}"
            if kind == "AWS::SQS::Queue":
                return f"arn:aws:sqs:{REGION}:{ACCOUNT}:jobtracker-{logical}"
            if kind == "AWS::DynamoDB::Table":
                return f"jobtracker-{logical}" if key == "Ref" else f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/x"
            if kind == "AWS::S3::Bucket":
                return f"jobtracker-{logical.lower()}"
        return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:jobtracker-placeholder"
    return str(value)


def _substituted(template: dict[str, Any], machine: str) -> dict[str, Any]:
    props = template["Resources"][machine]["Properties"]
    subs = {name: _plausible(value, template) for name, value in props.get("DefinitionSubstitutions", {}).items()}
    return json.loads(substitute_definition(_asl_text(template, machine), subs))


def _raw_state_machine_template(definition: dict[str, Any]) -> str:
    return json.dumps(
        {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Resources": {
                "StateMachine": {
                    "Type": "AWS::StepFunctions::StateMachine",
                    "Properties": {
                        "StateMachineType": "STANDARD",
                        "Definition": definition,
                        "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/jobtracker-state-machine",
                    },
                }
            },
        },
        indent=1,
    )


def _lint_findings(text: str) -> list[str]:
    """cfn-lint errors and warnings (informational findings are not counted)."""
    return [
        f"{m.rule.id} {m.rule.severity} line {m.linenumber}: {m.message}"
        for m in lint(text, regions=LINT_REGIONS)
        if m.rule.id[:1] in ("E", "W")
    ]


def _transform(template: dict[str, Any]) -> dict[str, Any]:
    return render(template)


def _assert_no_problems(problems: list[str], what: str) -> None:
    assert problems == [], f"{len(problems)} problem(s) in {what}:\n" + "\n".join(problems)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ------------------------------------------------------------------------------------------ ASL model


def _scopes(definition: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state-list scope: the top level, each Map's ItemProcessor/Iterator, each Parallel branch."""
    yield path or "<root>", definition
    for name, state in definition.get("States", {}).items():
        if state.get("Type") == "Map":
            inner = state.get("ItemProcessor") or state.get("Iterator") or {}
            yield from _scopes(inner, f"{path}{name}.ItemProcessor/")
        elif state.get("Type") == "Parallel":
            for index, branch in enumerate(state.get("Branches", [])):
                yield from _scopes(branch, f"{path}{name}.Branches[{index}]/")


def _all_states(definition: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for scope, body in _scopes(definition):
        for name, state in body.get("States", {}).items():
            yield scope, name, state


def _targets(state: dict[str, Any]) -> list[tuple[str, Any]]:
    found = []
    if "Next" in state:
        found.append(("Next", state["Next"]))
    if "Default" in state:
        found.append(("Default", state["Default"]))
    for index, rule in enumerate(state.get("Choices", [])):
        found.append((f"Choices[{index}].Next", rule.get("Next")))
    for index, catcher in enumerate(state.get("Catch", [])):
        found.append((f"Catch[{index}].Next", catcher.get("Next")))
    return found


def _graph_problems(definition: dict[str, Any]) -> list[str]:
    problems = []
    for scope, body in _scopes(definition):
        states = body.get("States", {})
        if body.get("StartAt") not in states:
            problems.append(f"{scope}: StartAt {body.get('StartAt')!r} names no state in this scope")
        for name, state in states.items():
            for where, target in _targets(state):
                if target not in states:
                    problems.append(f"{scope}{name}.{where} -> {target!r} names no state in this scope")
            terminal = state.get("Type") in ("Choice", "Succeed", "Fail") or state.get("End") is True
            if not terminal and "Next" not in state:
                problems.append(f"{scope}{name} has neither Next nor End")
        reached, todo = set(), [body.get("StartAt")]
        while todo:
            current = todo.pop()
            if current in reached or current not in states:
                continue
            reached.add(current)
            todo.extend(target for _, target in _targets(states[current]))
        for name in sorted(set(states) - reached):
            problems.append(f"{scope}{name} is unreachable from StartAt")
    return problems


def _covering(retriers: list[dict[str, Any]], error: str) -> dict[str, Any] | None:
    """The retrier that handles `error` (first match, as Step Functions evaluates them)."""
    for retrier in retriers:
        names = retrier.get("ErrorEquals", [])
        if error in names or "States.ALL" in names:
            return retrier
    return None


def _backoff_problems(where: str, retrier: dict[str, Any]) -> list[str]:
    problems = []
    if "MaxDelaySeconds" not in retrier:
        problems.append(f"{where}: retrier {retrier.get('ErrorEquals')} has no MaxDelaySeconds")
    if retrier.get("JitterStrategy") != "FULL":
        problems.append(f"{where}: retrier {retrier.get('ErrorEquals')} has no JitterStrategy FULL")
    return problems


def _task_problems(definition: dict[str, Any]) -> list[str]:
    problems = []
    for scope, name, state in _all_states(definition):
        if state.get("Type") != "Task":
            continue
        where = f"{scope}{name}"
        if "TimeoutSeconds" not in state and "TimeoutSecondsPath" not in state:
            problems.append(f"{where}: Task has no TimeoutSeconds")
        retriers = state.get("Retry", [])
        if "lambda" in str(state.get("Resource", "")):
            for error in LAMBDA_SERVICE_ERRORS:
                retrier = _covering(retriers, error)
                if retrier is None:
                    problems.append(f"{where}: {error} is not retried")
                else:
                    problems.extend(_backoff_problems(where, retrier))
        if not any("States.ALL" in c.get("ErrorEquals", []) for c in state.get("Catch", [])):
            problems.append(f"{where}: Task has no Catch on States.ALL")
        for kind in ("Retry", "Catch"):
            entries = state.get(kind, [])
            for index, entry in enumerate(entries):
                names = entry.get("ErrorEquals", [])
                if "States.ALL" in names and (len(names) != 1 or index != len(entries) - 1):
                    problems.append(f"{where}: States.ALL must be alone and in the last {kind} entry")
    return problems


def _invocation(state: dict[str, Any]) -> tuple[str | None, str | None]:
    """(placeholder of the invoked function, Payload action) of a lambda:invoke Task in the raw ASL."""
    params = state.get("Parameters", {})
    match = PLACEHOLDER.fullmatch(str(params.get("FunctionName", "")))
    payload = params.get("Payload")
    action = payload.get("action") if isinstance(payload, dict) else None
    return (match.group(1) if match else None), action


def _provider_retry_problems(raw_definition: dict[str, Any]) -> list[str]:
    problems, provider_tasks = [], 0
    for scope, name, state in _all_states(raw_definition):
        if state.get("Type") != "Task" or _invocation(state) not in PROVIDER_CALLS:
            continue
        provider_tasks += 1
        for error in NAMED_PROVIDER_ERRORS:
            named = [r for r in state.get("Retry", []) if error in r.get("ErrorEquals", [])]
            if not named:
                problems.append(f"{scope}{name}: {error} is not retried by name")
            for retrier in named:
                problems.extend(_backoff_problems(f"{scope}{name}", retrier))
    if not provider_tasks:
        problems.append("no Task invokes a provider-calling function (submit, status, collect)")
    return problems


def _wait_problems(definition: dict[str, Any]) -> list[str]:
    return [
        f"{scope}{name}: Wait does not take its duration from the state (SecondsPath)"
        for scope, name, state in _all_states(definition)
        if state.get("Type") == "Wait" and "SecondsPath" not in state
    ]


def _map_problems(definition: dict[str, Any]) -> list[str]:
    problems = []
    for scope, name, state in _all_states(definition):
        if state.get("Type") != "Map":
            continue
        where = f"{scope}{name}"
        processor = state.get("ItemProcessor", {})
        if processor.get("ProcessorConfig", {}).get("Mode") != "DISTRIBUTED":
            problems.append(f"{where}: Map is not DISTRIBUTED")
        if not str(state.get("ItemReader", {}).get("Resource", "")).startswith("arn:aws:states:::s3:"):
            problems.append(f"{where}: Map has no S3 ItemReader")
        if "MaxConcurrency" not in state and "MaxConcurrencyPath" not in state:
            problems.append(f"{where}: Map has no MaxConcurrency/MaxConcurrencyPath")
    return problems


def _execution_timeout_problems(definition: dict[str, Any], template: dict[str, Any]) -> list[str]:
    timeout = definition.get("TimeoutSeconds")
    if not isinstance(timeout, int) or timeout <= 0:
        return ["the execution has no top-level TimeoutSeconds"]
    problems = []
    if timeout > STANDARD_MAX_EXECUTION_SECONDS:
        problems.append(f"TimeoutSeconds {timeout} exceeds the one-year Standard workflow limit")
    # The in-state deadline (MaxJobHours) is the working bound; the execution timeout is the backstop.
    max_hours = template.get("Parameters", {}).get("MaxJobHours", {}).get("MaxValue")
    if max_hours is not None and timeout <= int(max_hours) * 3600:
        problems.append(f"TimeoutSeconds {timeout} does not exceed MaxJobHours' MaxValue ({max_hours} h)")
    return problems


def _asl_problems(raw: dict[str, Any], substituted: dict[str, Any], template: dict[str, Any]) -> list[str]:
    return (
        _graph_problems(substituted)
        + _task_problems(substituted)
        + _provider_retry_problems(raw)
        + _wait_problems(substituted)
        + _map_problems(substituted)
        + _execution_timeout_problems(substituted, template)
    )


# ------------------------------------------------------------------------------------------ template model


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _reference_problems(template: dict[str, Any], extra_resources: set[str] = frozenset()) -> list[str]:
    """Every Ref/GetAtt/Sub variable/DependsOn/Condition names something the template declares."""
    resources = set(template.get("Resources", {})) | set(extra_resources)
    refable = resources | set(template.get("Parameters", {})) | PSEUDO_PARAMETERS
    conditions = set(template.get("Conditions", {}))
    problems = []

    def check_ref(name: Any, where: str) -> None:
        if name not in refable:
            problems.append(f"{where} {name!r} is not a resource, parameter or pseudo parameter")

    def check_getatt(logical: Any, where: str) -> None:
        if logical not in resources:
            problems.append(f"{where} {logical!r} is not a declared resource")

    for node in _walk(template):
        if not isinstance(node, dict):
            continue
        if "Ref" in node and len(node) == 1:
            check_ref(node["Ref"], "Ref")
        if "Fn::GetAtt" in node and len(node) == 1:
            arg = node["Fn::GetAtt"]
            check_getatt(arg[0] if isinstance(arg, list) else str(arg).split(".", 1)[0], "GetAtt")
        if "Fn::Sub" in node and len(node) == 1:
            arg = node["Fn::Sub"]
            text, local = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            for variable in SUB_VARIABLE.findall(text):
                if variable in local:
                    continue
                if "." in variable:
                    check_getatt(variable.split(".", 1)[0], f"Sub {text!r}: ${{{variable}}} ->")
                else:
                    check_ref(variable, f"Sub {text!r}: ${{{variable}}} ->")
        if "Fn::If" in node and len(node) == 1 and node["Fn::If"][0] not in conditions:
            problems.append(f"Fn::If names undeclared condition {node['Fn::If'][0]!r}")
    for name, res in template.get("Resources", {}).items():
        for dependency in _as_list(res.get("DependsOn", [])):
            if dependency not in resources:
                problems.append(f"{name}.DependsOn {dependency!r} is not a declared resource")
        if "Condition" in res and res["Condition"] not in conditions:
            problems.append(f"{name}.Condition {res['Condition']!r} is not a declared condition")
    return problems


def _policy_documents(transformed: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, res in transformed.get("Resources", {}).items():
        props = res.get("Properties", {})
        if res.get("Type") == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                yield f"{name}/{policy.get('PolicyName')}", policy.get("PolicyDocument", {})
        elif res.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
            yield name, props.get("PolicyDocument", {})


def _broad_iam(transformed: dict[str, Any]) -> list[str]:
    """FullAccess managed policies, wildcard actions, and write actions on Resource "*"."""
    problems = []
    for name, res in transformed.get("Resources", {}).items():
        if res.get("Type") == "AWS::IAM::Role":
            for arn in res.get("Properties", {}).get("ManagedPolicyArns", []):
                if "FullAccess" in json.dumps(arn):
                    problems.append(f"{name}: managed policy {arn} grants FullAccess")
    for where, document in _policy_documents(transformed):
        for statement in _as_list(document.get("Statement", [])):
            if statement.get("Effect") != "Allow":
                continue
            if "NotAction" in statement or "NotResource" in statement:
                problems.append(f"{where}: Allow with NotAction/NotResource")
            actions = [str(a) for a in _as_list(statement.get("Action", []))]
            resources = _as_list(statement.get("Resource", []))
            for action in actions:
                if action == "*" or action.endswith(":*"):
                    problems.append(f"{where}: wildcard action {action!r}")
            if "*" in resources:
                writes = [a for a in actions if not a.split(":", 1)[-1].startswith(READ_ONLY_VERBS)]
                if writes:
                    problems.append(f"{where}: write actions {writes} on Resource '*'")
    return problems


def _api_auth_problems(transformed: dict[str, Any], expected_routes: set[tuple[str, str]]) -> list[str]:
    problems, seen = [], set()
    for name, res in transformed.get("Resources", {}).items():
        method_auth = res.get("Properties", {}).get("AuthorizationType")
        if res.get("Type") == "AWS::ApiGateway::Method" and method_auth != "AWS_IAM":
            problems.append(f"{name}: method without AWS_IAM authorization")
        if res.get("Type") != "AWS::ApiGateway::RestApi":
            continue
        body = res.get("Properties", {}).get("Body", {})
        iam_schemes = {
            scheme
            # Swagger 2.0 keeps them in securityDefinitions, OpenAPI 3 (OpenApiVersion) in components.
            for scheme, spec in {
                **body.get("securityDefinitions", {}),
                **body.get("components", {}).get("securitySchemes", {}),
            }.items()
            if spec.get("x-amazon-apigateway-authtype") == "awsSigv4"
        }
        for path, methods in body.get("paths", {}).items():
            for method, operation in methods.items():
                seen.add((path, method.lower()))
                schemes = {key for entry in operation.get("security", []) for key in entry}
                if not schemes or not schemes <= iam_schemes:
                    problems.append(f"{name} {method.upper()} {path}: not AWS_IAM (security={schemes or None})")
    for path, method in sorted(expected_routes - seen):
        problems.append(f"route {method.upper()} {path} is missing from the REST API")
    return problems


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return _template()


@pytest.fixture(scope="module")
def transformed(template: dict[str, Any]) -> dict[str, Any]:
    return _transform(template)


@pytest.fixture(scope="module")
def job_raw(template: dict[str, Any]) -> dict[str, Any]:
    return json.loads(_asl_text(template, JOB_MACHINE))


@pytest.fixture(scope="module")
def job_substituted(template: dict[str, Any]) -> dict[str, Any]:
    return _substituted(template, JOB_MACHINE)


# ------------------------------------------------------------------------------------------ 1. cfn-lint


def test_template_cfn_lint_reports_no_errors_or_warnings() -> None:
    findings = _lint_findings(TEMPLATE_PATH.read_text(encoding="utf-8"))
    assert findings == [], "cfn-lint findings on template.yaml:\n" + "\n".join(findings)


SEEDED_SAM_TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Resources:
  Topic:
    Type: AWS::SNS::Topic
  Subscription:
    Type: AWS::SNS::Subscription
    DependsOn: Topic
    Properties: {TopicArn: !Ref Topic, Protocol: email, Endpoint: ops@example.com}
  Function:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: functions/api/, Handler: app.lambda_handler, Runtime: python3.6}
"""


def test_cfn_lint_helper_detects_seeded_error_and_warning() -> None:
    ids = {finding.split()[0] for finding in _lint_findings(SEEDED_SAM_TEMPLATE)}
    assert "E2533" in ids, ids  # deprecated runtime
    assert "W3005" in ids, ids  # DependsOn already implied by a Ref


# ------------------------------------------------------------------------------------------ 2. SAM transform


def test_sam_transform_succeeds_and_replaces_every_serverless_resource(transformed: dict[str, Any]) -> None:
    kinds = {res["Type"] for res in transformed["Resources"].values()}
    assert not {kind for kind in kinds if kind.startswith("AWS::Serverless::")}
    assert "Transform" not in transformed


def test_sam_transform_state_machine_has_definition_and_substitutions(
    template: dict[str, Any], transformed: dict[str, Any]
) -> None:
    machines = _resources_of(transformed, "AWS::StepFunctions::StateMachine")
    assert JOB_MACHINE in machines, f"no AWS::StepFunctions::StateMachine {JOB_MACHINE}"
    props = machines[JOB_MACHINE]["Properties"]
    assert "DefinitionS3Location" in props or "DefinitionString" in props
    assert props.get("StateMachineType") == "STANDARD"
    assert "RoleArn" in props
    declared = template["Resources"][JOB_MACHINE]["Properties"]["DefinitionSubstitutions"]
    assert props.get("DefinitionSubstitutions") == declared


def test_sam_transform_lambda_functions_run_python313_on_arm64(transformed: dict[str, Any]) -> None:
    functions = _resources_of(transformed, "AWS::Lambda::Function")
    assert functions, "no AWS::Lambda::Function generated"
    wrong = {
        name: (res["Properties"].get("Runtime"), res["Properties"].get("Architectures"))
        for name, res in functions.items()
        if res["Properties"].get("Runtime") != "python3.13" or res["Properties"].get("Architectures") != ["arm64"]
    }
    assert wrong == {}


def test_sam_transform_intake_queue_feeds_an_event_source_mapping(
    template: dict[str, Any], transformed: dict[str, Any]
) -> None:
    # The intake queue is the one the inbox bucket notifies.
    queues = {
        json.dumps(config["Queue"], sort_keys=True)
        for bucket in _resources_of(template, "AWS::S3::Bucket").values()
        for config in bucket.get("Properties", {}).get("NotificationConfiguration", {}).get("QueueConfigurations", [])
    }
    assert queues, "no bucket notifies an intake queue"
    mappings = _resources_of(transformed, "AWS::Lambda::EventSourceMapping").values()
    sources = {json.dumps(m["Properties"].get("EventSourceArn"), sort_keys=True) for m in mappings}
    assert queues <= sources, f"intake queue(s) {queues} have no event source mapping (mappings: {sources})"


def test_sam_transform_rest_api_requires_aws_iam_on_every_route(
    template: dict[str, Any], transformed: dict[str, Any]
) -> None:
    declared = {
        (event["Properties"]["Path"], event["Properties"]["Method"].lower())
        for res in _resources_of(template, "AWS::Serverless::Function").values()
        for event in res.get("Properties", {}).get("Events", {}).values()
        if event.get("Type") == "Api"
    }
    problems = _api_auth_problems(transformed, declared | CONTRACT_ROUTES)
    _assert_no_problems(problems, "the REST API")
    assert _resources_of(transformed, "AWS::ApiGateway::RestApi")


def test_api_auth_check_detects_unauthenticated_route(transformed: dict[str, Any]) -> None:
    broken = copy.deepcopy(transformed)
    api = next(iter(_resources_of(broken, "AWS::ApiGateway::RestApi").values()))
    api["Properties"]["Body"]["paths"]["/jobs"]["get"].pop("security")
    problems = _api_auth_problems(broken, CONTRACT_ROUTES | {("/jobs", "delete")})
    assert any("GET /jobs" in p for p in problems)
    assert any("DELETE /jobs is missing" in p for p in problems)


def test_sam_transform_iam_has_no_full_access_or_wildcard_writes(transformed: dict[str, Any]) -> None:
    assert list(_policy_documents(transformed)), "no inline IAM policy found to inspect"
    _assert_no_problems(_broad_iam(transformed), "the generated IAM")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda s: s.update(Action="*"), "wildcard action"),
        (lambda s: s.update(Action=["dynamodb:*"]), "wildcard action"),
        (lambda s: s.update(Resource="*"), "on Resource '*'"),
    ],
    ids=["action-star", "service-star", "write-on-resource-star"],
)
def test_iam_check_detects_broad_statement(
    transformed: dict[str, Any], mutate: Callable[[dict[str, Any]], None], expected: str
) -> None:
    broken = copy.deepcopy(transformed)
    role = broken["Resources"]["ApiFunctionRole"]["Properties"]
    statement = {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": "arn:aws:s3:::b/*"}
    mutate(statement)
    role["Policies"].append({"PolicyName": "Seeded", "PolicyDocument": {"Statement": [statement]}})
    role["ManagedPolicyArns"].append("arn:aws:iam::aws:policy/AmazonS3FullAccess")
    problems = _broad_iam(broken)
    assert any(expected in p for p in problems), problems
    assert any("FullAccess" in p for p in problems)


# ------------------------------------------------------------------------------------------ 3. the ASL


@pytest.mark.parametrize("machine", _state_machines_with_uri())
def test_asl_wrapped_in_raw_state_machine_passes_cfn_lint(template: dict[str, Any], machine: str) -> None:
    findings = _lint_findings(_raw_state_machine_template(_substituted(template, machine)))
    assert findings == [], f"cfn-lint findings on {machine}'s definition:\n" + "\n".join(findings)


def test_asl_cfn_lint_wrapper_detects_invalid_definition() -> None:
    functions = [*PROVIDER_FUNCTIONS, "FinalizeFunctionArn"]
    arns = {name: f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}" for name in functions}
    broken = json.loads(substitute_definition(json.dumps(_sample_asl()), arns))
    broken["States"]["Completed"]["Unexpected"] = True
    ids = {finding.split()[0] for finding in _lint_findings(_raw_state_machine_template(broken))}
    assert "E3601" in ids


@pytest.mark.parametrize("machine", _state_machines_with_uri())
def test_asl_targets_exist_and_every_state_is_reachable(template: dict[str, Any], machine: str) -> None:
    _assert_no_problems(_graph_problems(_substituted(template, machine)), machine)


@pytest.mark.parametrize("machine", _state_machines_with_uri())
def test_asl_tasks_have_timeout_lambda_retries_with_jitter_and_catch_all(
    template: dict[str, Any], machine: str
) -> None:
    _assert_no_problems(_task_problems(_substituted(template, machine)), machine)


@pytest.mark.parametrize("machine", _state_machines_with_uri())
def test_asl_waits_take_seconds_from_state(template: dict[str, Any], machine: str) -> None:
    _assert_no_problems(_wait_problems(_substituted(template, machine)), machine)


@pytest.mark.parametrize("machine", _state_machines_with_uri())
def test_asl_execution_has_bounded_timeout(template: dict[str, Any], machine: str) -> None:
    _assert_no_problems(_execution_timeout_problems(_substituted(template, machine), template), machine)


def test_job_asl_map_is_distributed_with_s3_reader_and_concurrency(job_substituted: dict[str, Any]) -> None:
    maps = [name for _, name, state in _all_states(job_substituted) if state.get("Type") == "Map"]
    assert maps, "the job state machine has no Map over the batch manifest"
    _assert_no_problems(_map_problems(job_substituted), JOB_MACHINE)


def test_job_asl_provider_tasks_retry_named_handler_errors(job_raw: dict[str, Any]) -> None:
    _assert_no_problems(_provider_retry_problems(job_raw), JOB_MACHINE)


_RETRY = {
    "IntervalSeconds": 2,
    "BackoffRate": 2.0,
    "MaxAttempts": 6,
    "MaxDelaySeconds": 60,
    "JitterStrategy": "FULL",
}


def _sample_task(function: str, next_state: str, action: str | None = None) -> dict[str, Any]:
    payload: Any = {"action": action, "task.$": "$"} if action else "$"
    params = {"FunctionName": f"${{{function}}}", ("Payload" if action else "Payload.$"): payload}
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": params,
        "TimeoutSeconds": 120,
        "Retry": [
            {"ErrorEquals": ["ProviderTransientError"], **_RETRY},
            {"ErrorEquals": ["ProviderThrottledError"], **_RETRY},
            {"ErrorEquals": [*LAMBDA_SERVICE_ERRORS, "States.Timeout"], **_RETRY},
        ],
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Ended"}],
        "Next": next_state,
    }


def _sample_asl() -> dict[str, Any]:
    """A small definition shaped like the job machine, valid for every check: the seeds break it."""
    return {
        "TimeoutSeconds": 400 * 3600,
        "StartAt": "Batches",
        "States": {
            "Batches": {
                "Type": "Map",
                "ItemReader": {
                    "Resource": "arn:aws:states:::s3:getObject",
                    "ReaderConfig": {"InputType": "JSON"},
                    "Parameters": {"Bucket.$": "$.bucket", "Key.$": "$.key"},
                },
                "MaxConcurrencyPath": "$.inFlightBudget",
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "Submit",
                    "States": {
                        "Submit": _sample_task("SubmitFunctionArn", "Poll"),
                        "Poll": {"Type": "Wait", "SecondsPath": "$.nextPollSeconds", "Next": "Check"},
                        "Check": _sample_task("StatusFunctionArn", "Phase"),
                        "Phase": {
                            "Type": "Choice",
                            "Choices": [{"Variable": "$.phase", "StringEquals": "done", "Next": "Collect"}],
                            "Default": "Poll",
                        },
                        "Collect": _sample_task("CollectFunctionArn", "Ended", action="collect"),
                        "Ended": {"Type": "Pass", "End": True},
                    },
                },
                "ResultPath": None,
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Finalize"}],
                "Next": "Finalize",
            },
            "Finalize": {
                **_sample_task("FinalizeFunctionArn", "Outcome", action="finalize"),
                "Retry": [{"ErrorEquals": [*LAMBDA_SERVICE_ERRORS], **_RETRY}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Failed"}],
            },
            "Outcome": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.state", "StringEquals": "COMPLETED", "Next": "Completed"}],
                "Default": "Failed",
            },
            "Completed": {"Type": "Succeed"},
            "Failed": {"Type": "Fail", "Error": "JobFailed"},
        },
    }


def _inner(d: dict[str, Any]) -> dict[str, Any]:
    return d["States"]["Batches"]["ItemProcessor"]["States"]


def _drop_lambda_error(d: dict[str, Any]) -> None:
    for retrier in _inner(d)["Check"]["Retry"]:
        retrier["ErrorEquals"] = [e for e in retrier["ErrorEquals"] if e != "Lambda.TooManyRequestsException"]


def _fixed_wait(d: dict[str, Any]) -> None:
    wait = _inner(d)["Poll"]
    wait.pop("SecondsPath")
    wait["Seconds"] = 5


def _catch_all_not_last(d: dict[str, Any]) -> None:
    _inner(d)["Submit"]["Retry"].insert(0, {"ErrorEquals": ["States.ALL"], **_RETRY})


ASL_MUTATIONS: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("dangling-next", lambda d: _inner(d)["Poll"].update(Next="Nowhere"), "names no state"),
    ("catch-into-parent-scope", lambda d: _inner(d)["Check"]["Catch"][0].update(Next="Finalize"), "no state"),
    ("dangling-choice", lambda d: _inner(d)["Phase"]["Choices"][0].update(Next="Gone"), "names no state"),
    ("dangling-default", lambda d: d["States"]["Outcome"].update(Default="Gone"), "names no state"),
    ("bad-start-at", lambda d: d["States"]["Batches"]["ItemProcessor"].update(StartAt="Gone"), "StartAt"),
    ("unreachable", lambda d: d["States"].update(Orphan={"Type": "Succeed"}), "unreachable"),
    ("no-next-no-end", lambda d: _inner(d)["Ended"].pop("End"), "neither Next nor End"),
    ("task-timeout", lambda d: _inner(d)["Submit"].pop("TimeoutSeconds"), "no TimeoutSeconds"),
    ("lambda-error", _drop_lambda_error, "Lambda.TooManyRequestsException is not retried"),
    ("jitter", lambda d: _inner(d)["Submit"]["Retry"][2].pop("JitterStrategy"), "JitterStrategy FULL"),
    ("max-delay", lambda d: d["States"]["Finalize"]["Retry"][0].pop("MaxDelaySeconds"), "MaxDelaySeconds"),
    ("catch-all", lambda d: d["States"]["Finalize"].pop("Catch"), "no Catch on States.ALL"),
    ("states-all-first", _catch_all_not_last, "States.ALL must be alone"),
    ("named-error", lambda d: _inner(d)["Check"]["Retry"].pop(1), "ProviderThrottledError is not retried"),
    ("named-error-collect", lambda d: _inner(d)["Collect"]["Retry"].pop(0), "ProviderTransientError"),
    ("wait-seconds", _fixed_wait, "SecondsPath"),
    (
        "map-inline",
        lambda d: d["States"]["Batches"]["ItemProcessor"]["ProcessorConfig"].update(Mode="INLINE"),
        "not DISTRIBUTED",
    ),
    ("map-reader", lambda d: d["States"]["Batches"].pop("ItemReader"), "no S3 ItemReader"),
    ("map-concurrency", lambda d: d["States"]["Batches"].pop("MaxConcurrencyPath"), "MaxConcurrency"),
    ("execution-timeout", lambda d: d.pop("TimeoutSeconds"), "no top-level TimeoutSeconds"),
    ("execution-timeout-short", lambda d: d.update(TimeoutSeconds=3600), "does not exceed MaxJobHours"),
]


def test_asl_checks_accept_sample_definition(template: dict[str, Any]) -> None:
    sample = _sample_asl()
    _assert_no_problems(_asl_problems(sample, sample, template), "the sample ASL")


@pytest.mark.parametrize(("mutate", "expected"), [m[1:] for m in ASL_MUTATIONS], ids=[m[0] for m in ASL_MUTATIONS])
def test_asl_checks_detect_seeded_defect(
    template: dict[str, Any], mutate: Callable[[dict[str, Any]], Any], expected: str
) -> None:
    broken = _sample_asl()
    mutate(broken)
    problems = _asl_problems(broken, broken, template)
    assert any(expected in p for p in problems), f"expected a problem containing {expected!r}, got {problems}"


# ------------------------------------------------------------------------------------------ 4. wiring


@pytest.mark.parametrize("machine", _state_machines_with_uri())
def test_asl_placeholders_match_definition_substitutions(template: dict[str, Any], machine: str) -> None:
    placeholders = set(PLACEHOLDER.findall(_asl_text(template, machine)))
    declared = set(template["Resources"][machine]["Properties"].get("DefinitionSubstitutions", {}))
    assert placeholders - declared == set(), "ASL placeholders without a DefinitionSubstitutions entry"
    assert declared - placeholders == set(), "DefinitionSubstitutions entries the ASL never uses"


@pytest.mark.parametrize("function", _function_names())
def test_function_code_uri_has_importable_handler(
    template: dict[str, Any], function: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lambda sets the function's environment before the handler module is imported; do the same, with
    # parameter defaults and placeholder names for resources, for every variable template.yaml declares.
    from tracker.config import settings

    from jobtracker.local.settings import template_environment

    for name, value in template_environment(function=function).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("AWS_REGION", "us-east-1")  # Lambda's own variable
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    settings.cache_clear()
    resource = template["Resources"][function]
    code_uri = _function_property(template, resource, "CodeUri")
    handler = _function_property(template, resource, "Handler")
    assert isinstance(code_uri, str) and isinstance(handler, str), (code_uri, handler)
    module_name, _, attribute = handler.rpartition(".")
    assert module_name == "app", f"{function}: handler module is {module_name!r}, expected app"
    path = ROOT / code_uri / f"{module_name.replace('.', '/')}.py"
    assert path.is_file(), f"{function}: {path} does not exist"
    spec = importlib.util.spec_from_file_location(f"contract_{function}_{module_name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(getattr(module, attribute, None)), f"{function}: {path} has no callable {attribute!r}"
    settings.cache_clear()


def test_layer_content_uri_holds_python_package(template: dict[str, Any]) -> None:
    layers = _resources_of(template, "AWS::Serverless::LayerVersion")
    assert layers
    for name, res in layers.items():
        content = ROOT / res["Properties"]["ContentUri"] / "python"
        assert content.is_dir(), f"{name}: {content} missing (Python layers ship code under python/)"


def test_template_references_name_declared_targets(template: dict[str, Any], transformed: dict[str, Any]) -> None:
    # Resources SAM generates (e.g. <Function>Role) may be referenced too.
    _assert_no_problems(_reference_problems(template, set(transformed["Resources"])), "template.yaml")


def test_reference_check_detects_unknown_targets(template: dict[str, Any]) -> None:
    broken = copy.deepcopy(template)
    env = broken["Globals"]["Function"]["Environment"]["Variables"]
    env["A"] = {"Ref": "NoSuchThing"}
    env["B"] = {"Fn::GetAtt": ["NoSuchQueue", "Arn"]}
    env["C"] = {"Fn::Sub": "${NoSuchBucket.Arn}/${AWS::Region}/${!Literal}"}
    env["D"] = {"Fn::GetAtt": ["FullStoryBaseUrl", "Arn"]}  # a parameter has no attributes
    broken["Resources"]["JobsTopic"]["DependsOn"] = "Missing"
    problems = "\n".join(_reference_problems(broken))
    for name in ("NoSuchThing", "NoSuchQueue", "NoSuchBucket", "FullStoryBaseUrl", "Missing"):
        assert name in problems
    assert "${Literal} ->" not in problems and "${!Literal} ->" not in problems
    assert "${AWS::Region} ->" not in problems


# ------------------------------------------------------------------------------------------ 5. moto


@pytest.mark.parametrize("machine", _state_machines_with_uri())
def test_moto_accepts_substituted_definition(template: dict[str, Any], machine: str) -> None:
    from moto import mock_aws

    definition = json.dumps(_substituted(template, machine))
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        client = boto3.client("stepfunctions", region_name=REGION)
        role = f"arn:aws:iam::{ACCOUNT}:role/jobtracker-state-machine"
        created = client.create_state_machine(name=machine, definition=definition, roleArn=role, type="STANDARD")
        assert created["stateMachineArn"].endswith(f":stateMachine:{machine}")
        # moto's ASL parser is active: a malformed definition is rejected, so the call above really validated.
        with pytest.raises(ClientError, match="ASLParserException"):
            client.create_state_machine(name=f"{machine}-broken", definition=definition[:-2], roleArn=role)
