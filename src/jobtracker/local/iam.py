"""IAM, proven offline: every AWS call a function or the state machine makes while the offline stack
runs is checked against that caller's role, as the SAM translator renders template.yaml.

moto lets every call through, so nothing offline ever said whether a role allows what its code does.
Here:

* A botocore `before-parameter-build` handler, added to botocore's BUILTIN_HANDLERS the way moto adds
  its own stub (so every session and client created afterwards has it: the default session, the ones
  Powertools builds, moto's interpreter clients), sees each call with its parameters, presigned URLs
  included (whoever holds one acts with the signer's rights).
* The caller comes from jobtracker.local.callers. It follows threads (a handler's prefetch thread,
  moto's thread per state) because, while recording, a thread start and an executor submit carry the
  starting thread's context. moto runs each execution in a thread of its own: that thread acts as the
  state machine.
* Each call becomes the IAM actions and resource ARNs the Service Authorization Reference lists for
  its operation (`requirements`), plus what AWS requires that moto never calls: kms on the key of an
  encrypted SNS topic, a Distributed Map run's child executions, s3:ListBucket for a missing key to
  answer 404 instead of 403.
* Each role is the rendered template's inline policies, resolved with the offline stack's own values
  (same names, same ARNs), plus the AWS managed policies it attaches (documents as moto ships them).
  Only identity policies are evaluated: nothing in this stack relies on a resource policy to grant
  its own roles access (the key policy delegates to IAM).
"""

from __future__ import annotations

import contextvars
import functools
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

from jobtracker.local.callers import Caller, acting_as, current_caller

CALL, PRESIGN, AWS_SIDE = "call", "presign", "required by AWS"


class UnmappedCall(Exception):
    """An operation this module does not know the IAM actions of: add it to `requirements`."""


@dataclass(frozen=True)
class Need:
    action: str
    resource: str
    origin: str = CALL  # CALL, PRESIGN or AWS_SIDE
    why: str = ""  # for AWS_SIDE: what requires it


@dataclass(frozen=True)
class Where:
    """What turns a call's parameters into ARNs: the stack's partition, region, account and names."""

    partition: str
    region: str
    account: str
    topic_key_arn: Callable[[str], str | None] = lambda _topic: None
    secret_arn: Callable[[str], str] = lambda secret: secret

    def arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        return (
            f"arn:{self.partition}:{service}:{self.region if region else ''}:{self.account if account else ''}:"
            f"{resource}"
        )


# ------------------------------------------------------------------------------------------ call -> IAM
# Source: the Service Authorization Reference, "Actions, resources, and condition keys for <service>",
# each service's table of API operations and the IAM actions they authorize
# (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html and siblings).

_S3_OBJECT = {
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "ListParts": "s3:ListMultipartUploadParts",
    "DeleteObject": "s3:DeleteObject",
    "GetObjectTagging": "s3:GetObjectTagging",
    "PutObjectTagging": "s3:PutObjectTagging",
}
# The same operations on a given version need the *Version actions.
_S3_OBJECT_VERSION = {
    "GetObject": "s3:GetObjectVersion",
    "HeadObject": "s3:GetObjectVersion",
    "DeleteObject": "s3:DeleteObjectVersion",
    "GetObjectTagging": "s3:GetObjectVersionTagging",
}
_S3_BUCKET = {
    "ListObjects": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "GetBucketLocation": "s3:GetBucketLocation",
    "GetBucketVersioning": "s3:GetBucketVersioning",
}
_DYNAMODB_TABLE = {
    "GetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "Query",
    "Scan",
    "DescribeTable",
    "DescribeTimeToLive",
}
_DYNAMODB_TRANSACT = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
_SQS_QUEUE = {
    "SendMessage": "sqs:SendMessage",
    "SendMessageBatch": "sqs:SendMessage",
    "ReceiveMessage": "sqs:ReceiveMessage",
    "DeleteMessage": "sqs:DeleteMessage",
    "DeleteMessageBatch": "sqs:DeleteMessage",
    "ChangeMessageVisibility": "sqs:ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "GetQueueAttributes": "sqs:GetQueueAttributes",
}
_STATES_ON_MACHINE = {"StartExecution", "StartSyncExecution", "ListExecutions", "DescribeStateMachine"}
_STATES_ON_EXECUTION = {"DescribeExecution", "StopExecution", "GetExecutionHistory", "DescribeStateMachineForExecution"}
_KMS_ON_KEY = {"Encrypt", "Decrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "DescribeKey"}
# Operations that need no permission at all.
_FREE = {("sts", "GetCallerIdentity")}


def requirements(prefix: str, operation: str, params: dict[str, Any], where: Where) -> list[Need]:
    """The IAM actions and resources one API call needs (`prefix`: the IAM service prefix)."""
    if (prefix, operation) in _FREE:
        return []
    handler = _BY_SERVICE.get(prefix)
    needs = handler(operation, params, where) if handler else None
    if needs is None:
        raise UnmappedCall(f"{prefix}:{operation}")
    return needs


def _s3(operation: str, params: dict[str, Any], where: Where) -> list[Need] | None:
    bucket = params.get("Bucket", "")
    bucket_arn = f"arn:{where.partition}:s3:::{bucket}"
    if operation in _S3_BUCKET:
        return [Need(_S3_BUCKET[operation], bucket_arn)]
    if operation == "DeleteObjects":
        return [
            Need(
                "s3:DeleteObjectVersion" if entry.get("VersionId") else "s3:DeleteObject",
                f"{bucket_arn}/{entry['Key']}",
            )
            for entry in params.get("Delete", {}).get("Objects", [])
        ]
    if operation == "CopyObject":
        source = params["CopySource"]
        if isinstance(source, str):
            path, _, query = unquote(source).lstrip("/").partition("?versionId=")
            source = {"Bucket": path.split("/", 1)[0], "Key": path.split("/", 1)[1], "VersionId": query or None}
        read = "s3:GetObjectVersion" if source.get("VersionId") else "s3:GetObject"
        return [
            Need("s3:PutObject", f"{bucket_arn}/{params['Key']}"),
            Need(read, f"arn:{where.partition}:s3:::{source['Bucket']}/{source['Key']}"),
        ]
    if operation not in _S3_OBJECT:
        return None
    object_arn = f"{bucket_arn}/{params.get('Key', '')}"
    action = _S3_OBJECT_VERSION.get(operation) if params.get("VersionId") else None
    needs = [Need(action or _S3_OBJECT[operation], object_arn)]
    if operation in ("PutObject", "CreateMultipartUpload"):
        if any(params.get(name) for name in ("ACL", "GrantFullControl", "GrantRead", "GrantReadACP", "GrantWriteACP")):
            needs.append(Need("s3:PutObjectAcl", object_arn))
        if params.get("Tagging"):
            needs.append(Need("s3:PutObjectTagging", object_arn))
    return needs


def _table_arn(where: Where, table: str) -> str:
    return table if table.startswith("arn:") else where.arn("dynamodb", f"table/{table}")


def _dynamodb(operation: str, params: dict[str, Any], where: Where) -> list[Need] | None:
    if operation in _DYNAMODB_TABLE:
        arn = _table_arn(where, params["TableName"])
        if params.get("IndexName"):
            arn += f"/index/{params['IndexName']}"
        return [Need(f"dynamodb:{operation}", arn)]
    if operation in ("BatchWriteItem", "BatchGetItem"):
        return [Need(f"dynamodb:{operation}", _table_arn(where, table)) for table in params.get("RequestItems", {})]
    if operation == "TransactWriteItems":
        return [
            Need(f"dynamodb:{_DYNAMODB_TRANSACT[kind]}", _table_arn(where, body["TableName"]))
            for item in params.get("TransactItems", [])
            for kind, body in item.items()
        ]
    if operation == "TransactGetItems":
        return [
            Need("dynamodb:GetItem", _table_arn(where, item["Get"]["TableName"]))
            for item in params.get("TransactItems", [])
        ]
    return None


def _queue_arn(where: Where, queue_url: str) -> str:
    # https://sqs.<region>.amazonaws.com/<account>/<name>
    parsed = urlparse(queue_url)
    account, _, name = parsed.path.strip("/").partition("/")
    host = parsed.hostname or ""
    region = host.split(".")[1] if host.startswith("sqs.") else where.region
    return f"arn:{where.partition}:sqs:{region}:{account}:{name}"


def _sqs(operation: str, params: dict[str, Any], where: Where) -> list[Need] | None:
    if operation in _SQS_QUEUE:
        return [Need(_SQS_QUEUE[operation], _queue_arn(where, params["QueueUrl"]))]
    if operation == "GetQueueUrl":
        account = params.get("QueueOwnerAWSAccountId") or where.account
        return [Need("sqs:GetQueueUrl", f"arn:{where.partition}:sqs:{where.region}:{account}:{params['QueueName']}")]
    return None


def _sns(operation: str, params: dict[str, Any], where: Where) -> list[Need] | None:
    if operation not in ("Publish", "PublishBatch"):
        return None
    topic = params.get("TopicArn") or params.get("TargetArn") or "*"
    needs = [Need("sns:Publish", topic)]
    key = where.topic_key_arn(topic)
    if key:
        # SNS encrypts with the topic's key on the publisher's behalf: the publisher needs both actions
        # on it (Amazon SNS Developer Guide, "Encryption at rest": key management, publisher permissions).
        why = "SNS publish to a topic encrypted with a customer managed key"
        needs += [Need("kms:GenerateDataKey", key, AWS_SIDE, why), Need("kms:Decrypt", key, AWS_SIDE, why)]
    return needs


def _secretsmanager(operation: str, params: dict[str, Any], where: Where) -> list[Need] | None:
    if operation not in ("GetSecretValue", "DescribeSecret"):
        return None
    return [Need(f"secretsmanager:{operation}", where.secret_arn(params["SecretId"]))]


def _states(operation: str, params: dict[str, Any], where: Where) -> list[Need] | None:
    if operation in _STATES_ON_MACHINE:
        return [Need(f"states:{operation}", params["stateMachineArn"])]
    if operation in _STATES_ON_EXECUTION:
        return [Need(f"states:{operation}", params["executionArn"])]
    return None


def _lambda(operation: str, params: dict[str, Any], where: Where) -> list[Need] | None:
    if operation not in ("Invoke", "InvokeAsync"):
        return None
    name = params["FunctionName"]
    arn = name if name.startswith("arn:") else where.arn("lambda", f"function:{name}")
    if params.get("Qualifier"):
        arn += f":{params['Qualifier']}"
    return [Need("lambda:InvokeFunction", arn)]


def _kms(operation: str, params: dict[str, Any], where: Where) -> list[Need] | None:
    if operation not in _KMS_ON_KEY:
        return None
    key = params["KeyId"]
    return [Need(f"kms:{operation}", key if key.startswith("arn:") else where.arn("kms", f"key/{key}"))]


_BY_SERVICE: dict[str, Callable[[str, dict[str, Any], Where], list[Need] | None]] = {
    "s3": _s3,
    "dynamodb": _dynamodb,
    "sqs": _sqs,
    "sns": _sns,
    "secretsmanager": _secretsmanager,
    "states": _states,
    "lambda": _lambda,
    "kms": _kms,
}


# ------------------------------------------------------------------------------------------ roles


@functools.lru_cache(maxsize=4096)
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """IAM's wildcards: `*` any run of characters, `?` one character, everything else literal."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.IGNORECASE if ignore_case else 0)


@functools.cache
def _statement_class() -> type:
    from moto.iam.access_control import IAMPolicyStatement

    class IamStatement(IAMPolicyStatement):
        """moto's statement evaluator with IAM's matching: moto turns a pattern into a regex unescaped (a
        `.` in a bucket name matches any character) and ignores `?`; IAM matches actions regardless of
        case. Deny, Allow and wildcards are otherwise moto's; conditions are refused at load (moto
        answers DENIED for an Allow whose condition does not hold, which IAM treats as no match)."""

        def _check_element_matches(self, statement_element: str, value: str) -> bool:
            patterns = self._statement[statement_element]
            ignore_case = statement_element in ("Action", "NotAction")
            return any(
                _glob(p, ignore_case).fullmatch(value) for p in (patterns if isinstance(patterns, list) else [patterns])
            )

    return IamStatement


@dataclass(frozen=True)
class Grant:
    """One action pattern on one resource pattern of one statement of a role's policy."""

    role: str  # the function or state machine, as template.yaml names it
    policy: str
    managed: bool  # an AWS managed policy SAM attaches (logs, X-Ray, the SQS poller)
    effect: str
    action: str
    resource: str
    key: tuple[Any, ...]  # the same grant in every stack: (role, policy, statement, action, resource index)
    statement: Any = field(default=None, compare=False, repr=False)  # moto's evaluator of this one grant


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@functools.lru_cache(maxsize=1)
def _managed_policies() -> dict[str, dict[str, Any]]:
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    return {name: spec["Document"] for name, spec in json.loads(aws_managed_policies_data).items()}


def role_grants(rendered: dict[str, Any], resolve: Callable[[Any], Any]) -> dict[str, list[Grant]]:
    """Every Lambda function's and state machine's grants, keyed by logical id.

    `rendered` is the SAM translator's output; `resolve` evaluates intrinsics with the stack's values.
    """
    resources = rendered["Resources"]
    statement_class = _statement_class()
    grants: dict[str, list[Grant]] = {}
    for logical_id, resource in resources.items():
        role_ref = {
            "AWS::Lambda::Function": "Role",
            "AWS::StepFunctions::StateMachine": "RoleArn",
        }.get(resource["Type"])
        if role_ref is None:
            continue
        ref = resource["Properties"][role_ref]
        if not (isinstance(ref, dict) and "Fn::GetAtt" in ref):
            raise NotImplementedError(f"{logical_id}: role {ref!r} is not one of this template's roles")
        role = resources[ref["Fn::GetAtt"][0]]["Properties"]
        documents = [(p["PolicyName"], p["PolicyDocument"], False) for p in role.get("Policies", [])]
        for arn in resolve(role.get("ManagedPolicyArns", [])):
            name = arn.rsplit("/", 1)[1]
            documents.append((name, _managed_policies()[name], True))
        own: list[Grant] = []
        for policy, document, managed in documents:
            for index, statement in enumerate(_as_list(resolve(document)["Statement"])):
                unsupported = {"Condition", "NotAction", "NotResource", "NotPrincipal"} & set(statement)
                if unsupported:
                    raise NotImplementedError(
                        f"{logical_id}/{policy}: {sorted(unsupported)} is not evaluated offline; extend iam.py"
                    )
                for action in _as_list(statement["Action"]):
                    for resource_index, pattern in enumerate(_as_list(statement["Resource"])):
                        own.append(
                            Grant(
                                logical_id,
                                policy,
                                managed,
                                statement["Effect"],
                                action,
                                pattern,
                                (logical_id, policy, index, action, resource_index),
                                statement_class({"Effect": statement["Effect"], "Action": action, "Resource": pattern}),
                            )
                        )
        grants[logical_id] = own
    return grants


def evaluate(grants: Iterable[Grant], action: str, resource: str) -> tuple[bool, list[Grant]]:
    """IAM's rule for one principal's identity policies: an explicit Deny wins, else any Allow allows.
    Returns (allowed, the Allow grants that matched)."""
    from moto.iam.access_control import PermissionResult

    allowing = []
    for grant in grants:
        result = grant.statement.is_action_permitted(action, resource)
        if result == PermissionResult.DENIED:
            return False, []
        if result == PermissionResult.PERMITTED:
            allowing.append(grant)
    return bool(allowing), allowing


# ------------------------------------------------------------------------------------------ stacks


@dataclass
class StackView:
    """What checking a stack's calls needs, kept after the stack stops (not the stack itself)."""

    scope: str
    template: dict[str, Any]
    parameters: dict[str, str]
    pseudo: dict[str, str]
    physical: dict[str, dict[str, Any]]
    _grants: dict[str, list[Grant]] | None = None

    @classmethod
    def of(cls, stack: Any) -> StackView:
        return cls(
            scope=stack.scope,
            template=stack.template,
            parameters=dict(stack.resolver.parameters),
            pseudo=dict(stack.resolver.pseudo),
            physical={k: dict(v) for k, v in stack.physical.items()},
        )

    @property
    def where(self) -> Where:
        return Where(
            partition=self.pseudo["AWS::Partition"],
            region=self.pseudo["AWS::Region"],
            account=self.pseudo["AWS::AccountId"],
            topic_key_arn=self._topic_key_arn,
            secret_arn=self._secret_arn,
        )

    def resolve(self, value: Any) -> Any:
        from jobtracker.local.template import Resolver

        def lookup(logical_id: str, attribute: str | None) -> Any:
            return self.physical[logical_id][attribute or "Ref"]

        return Resolver(self.template, self.parameters, self.pseudo, lookup).resolve(value)

    def grants(self) -> dict[str, list[Grant]]:
        if self._grants is None:
            self._grants = role_grants(_rendered(json.dumps(self.template, sort_keys=True)), self.resolve)
        return self._grants

    def state_machines(self) -> dict[str, str]:
        """ARN -> logical id of every state machine of the stack."""
        return {
            values["Ref"]: logical_id
            for logical_id, values in self.physical.items()
            if self.template["Resources"][logical_id]["Type"] == "AWS::Serverless::StateMachine" and values
        }

    def _topic_key_arn(self, topic_arn: str) -> str | None:
        for logical_id, values in self.physical.items():
            resource = self.template["Resources"][logical_id]
            if resource["Type"] == "AWS::SNS::Topic" and values.get("Ref") == topic_arn:
                key = resource.get("Properties", {}).get("KmsMasterKeyId")
                if key is None:
                    return None
                if isinstance(key, dict) and set(key) == {"Ref"}:
                    # Ref of an AWS::KMS::Key is its id; IAM names it by ARN.
                    return self.resolve({"Fn::GetAtt": [key["Ref"], "Arn"]})
                resolved = self.resolve(key)
                if str(resolved).startswith("arn:"):
                    return resolved
                raise NotImplementedError(f"{logical_id}: KmsMasterKeyId {resolved!r} (alias?) is not modelled")
        return None

    def _secret_arn(self, secret: str) -> str:
        if secret.startswith("arn:"):
            return secret
        for values in self.physical.values():
            arn = str(values.get("Ref", ""))
            if arn.startswith("arn:") and f":secret:{secret}-" in arn:
                return arn
        return self.where.arn("secretsmanager", f"secret:{secret}")


@functools.lru_cache(maxsize=4)
def _rendered(template_json: str) -> dict[str, Any]:
    from jobtracker.local.sam import render

    return render(json.loads(template_json))


# ------------------------------------------------------------------------------------------ recording


@dataclass(frozen=True)
class Check:
    caller: Caller
    need: Need


@dataclass
class Verdict:
    role: str
    action: str
    resource: str
    origin: str
    why: str
    allowed: bool
    calls: int = 0
    unmapped: bool = False

    def describe(self) -> str:
        if self.unmapped:
            return f"{self.role}: no IAM mapping for {self.action} (add it to jobtracker.local.iam.requirements)"
        extra = f" ({self.why})" if self.why else ""
        return f"{self.role}: {self.action} on {self.resource} is not allowed by its role{extra}"


_SECRET_SUFFIX = re.compile(r"(:secret:.+)-[A-Za-z0-9]{6}$")
_CHILD_EXECUTION = re.compile(r"(:execution:[^:/]+)/.*$")
_EXECUTION = re.compile(r"(:execution:[^:/]+):.*$")


def shape(resource: str) -> str:
    """A call's resource as a pattern: S3 keys up to their first folder, executions by their machine."""
    if resource.startswith("arn:") and ":s3:::" in resource and "/" in resource:
        bucket, _, key = resource.partition("/")
        folder, slash, _ = key.partition("/")
        return f"{bucket}/{folder}/*" if slash else f"{bucket}/*"
    resource = _SECRET_SUFFIX.sub(r"\1-*", resource)
    resource = _CHILD_EXECUTION.sub(r"\1/*", resource)
    return _EXECUTION.sub(r"\1:*", resource)


@dataclass
class CallRecorder:
    """Records who calls what (install() once per process), then checks it against the roles."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pending: Counter[tuple[str, Check]] = field(default_factory=Counter)
    _views: dict[str, StackView] = field(default_factory=dict)
    _machines: dict[str, Caller] = field(default_factory=dict)
    _unmapped: Counter[tuple[Caller, str]] = field(default_factory=Counter)
    # Calls signed with credentials handed to the code rather than the role's (not checked against it).
    external_calls: Counter[tuple[Caller, str]] = field(default_factory=Counter)
    verdicts: dict[tuple[str, str, str, str], Verdict] = field(default_factory=dict)
    used: set[tuple[Any, ...]] = field(default_factory=set)
    grants: dict[tuple[Any, ...], Grant] = field(default_factory=dict)
    calls: int = 0
    _undo: list[Callable[[], None]] = field(default_factory=list)

    @property
    def _context_key(self) -> str:
        """Where this recorder keeps a call between its two hooks (each recorder its own: tests add one)."""
        return f"jobtracker_iam_call_{id(self)}"

    # -- wiring -------------------------------------------------------------------------------
    def install(self) -> None:
        import botocore.handlers
        from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (
            map_run_record,
        )
        from moto.stepfunctions.parser.backend import execution_worker

        from jobtracker.local import stack

        entries = [
            ("before-parameter-build", self._before_parameter_build),
            ("before-call.s3", self._before_call),
            ("after-call.s3", self._after_s3_call),
        ]
        botocore.handlers.BUILTIN_HANDLERS.extend(entries)
        self._undo.append(lambda: [botocore.handlers.BUILTIN_HANDLERS.remove(e) for e in entries])
        stack.STARTED.append(self.watch)
        self._undo.append(lambda: stack.STARTED.remove(self.watch))
        self._patch(threading.Thread, "start", _start_in_context)
        self._patch(ThreadPoolExecutor, "submit", _submit_in_context)
        self._patch(execution_worker.ExecutionWorker, "_execution_logic", self._execution_as_machine)
        self._patch(map_run_record.MapRunRecord, "__init__", self._map_run_needs)

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    def _patch(self, owner: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
        original = owner.__dict__[name]
        setattr(owner, name, make(original))
        self._undo.append(lambda: setattr(owner, name, original))

    def watch(self, stack: Any) -> None:
        """Called when an OfflineStack has built its resources: its names are what its roles refer to."""
        view = StackView.of(stack)
        with self._lock:
            self._views[view.scope] = view
            for arn, logical_id in view.state_machines().items():
                self._machines[arn] = Caller(view.scope, logical_id)

    # -- hooks --------------------------------------------------------------------------------
    def _before_parameter_build(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        caller = current_caller()
        if caller is None:
            return
        prefix = model.service_model.signing_name
        if context.get("is_presign_request"):
            self._note(caller, prefix, model.name, params, PRESIGN)
            return
        if prefix != "s3":
            self._note(caller, prefix, model.name, params, CALL)
            return
        # S3 is where code signs with credentials it was handed (a provider's file storage); which
        # credentials sign the call is known only at before-call (below). Only S3: botocore calls the most
        # specific before-call handlers first, and the offline Lambda runtime answers lambda.Invoke there.
        context[self._context_key] = (caller, prefix, model.name, dict(params))

    def _before_call(self, model: Any, request_signer: Any, context: dict[str, Any], **_: Any) -> None:
        pending = context.pop(self._context_key, None)
        if pending is None:
            return
        caller, prefix, operation, params = pending
        credentials = getattr(request_signer, "_credentials", None)
        # A function's own clients take the role's credentials from the environment; explicit ones were
        # handed to it. (moto's interpreter makes the state machine's calls with explicit test credentials:
        # those are the machine's role.)
        handed = getattr(credentials, "method", None) == "explicit" and caller not in self._machines.values()
        if handed:
            # Signed with credentials the code was handed (e.g. Keboola's federation token for its file
            # storage), not with the function's role: AWS authorizes it against that principal, not ours.
            with self._lock:
                self.external_calls[(caller, f"{prefix}:{operation}")] += 1
            return
        if prefix == "s3" and operation in ("GetObject", "HeadObject"):
            context["jobtracker_iam"] = (caller, params.get("Bucket"))
        self._note(caller, prefix, operation, params, CALL)

    def _after_s3_call(
        self, http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        noted = context.get("jobtracker_iam")
        missing_key = parsed.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound")  # not NoSuchBucket
        if noted and missing_key and http_response is not None and http_response.status_code == 404:
            caller, bucket = noted
            view = self._views.get(caller.scope)
            if view is not None:
                # Without s3:ListBucket S3 answers 403 for a key that does not exist, not 404 NoSuchKey
                # (S3 API Reference, GetObject/HeadObject "Permissions").
                need = Need(
                    "s3:ListBucket",
                    f"arn:{view.where.partition}:s3:::{bucket}",
                    AWS_SIDE,
                    f"{model.name} of a missing key answers 404 (not 403) only with s3:ListBucket",
                )
                with self._lock:
                    self._pending[(caller.scope, Check(caller, need))] += 1

    def _note(self, caller: Caller, prefix: str, operation: str, params: dict[str, Any], origin: str) -> None:
        view = self._views.get(caller.scope)
        if view is None:
            return
        try:
            needs = requirements(prefix, operation, params, view.where)
        except UnmappedCall:
            with self._lock:
                self._unmapped[(caller, f"{prefix}:{operation}")] += 1
            return
        with self._lock:
            self.calls += 1
            for need in needs:
                if origin != CALL and need.origin == CALL:
                    need = Need(need.action, need.resource, origin, need.why)
                self._pending[(caller.scope, Check(caller, need))] += 1

    def _execution_as_machine(self, original: Callable[..., Any]) -> Callable[..., Any]:
        machines = self._machines

        def logic(worker: Any) -> Any:
            arn = worker._evaluation_details.state_machine_details.arn
            with acting_as(machines.get(arn)):
                return original(worker)

        return logic

    def _map_run_needs(self, original: Callable[..., Any]) -> Callable[..., Any]:
        recorder = self

        def init(record: Any, *args: Any, **kwargs: Any) -> None:
            original(record, *args, **kwargs)
            caller = current_caller()
            if caller is None:
                return
            # A Distributed Map runs its children as executions of the same machine, named
            # <machine>/<map label>:<id> (Step Functions Developer Guide, "IAM policies for using
            # Distributed Map states"); moto runs them in process without these calls.
            why = "Distributed Map run (child executions)"
            child = record.map_state_machine_arn.replace(":stateMachine:", ":execution:") + ":child"
            needs = [
                Need("states:StartExecution", record.map_state_machine_arn.rsplit("/", 1)[0], AWS_SIDE, why),
                Need("states:DescribeExecution", child, AWS_SIDE, why),
                Need("states:StopExecution", child, AWS_SIDE, why),
            ]
            with recorder._lock:
                for need in needs:
                    recorder._pending[(caller.scope, Check(caller, need))] += 1

        return init

    # -- checking -----------------------------------------------------------------------------
    def check(self) -> list[Verdict]:
        """Evaluate what was recorded since the last check; returns what of it the roles refuse."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
            unmapped, self._unmapped = self._unmapped, Counter()
        refused: dict[int, Verdict] = {}
        for (caller, operation), count in unmapped.items():
            verdict = self._verdict(caller.logical_id, operation, "?", CALL, "", False, unmapped=True)
            verdict.calls += count
            refused[id(verdict)] = verdict
        for (scope, check), count in pending.items():
            view = self._views[scope]
            role_grants = view.grants().get(check.caller.logical_id)
            if role_grants is None:
                raise KeyError(f"{check.caller.logical_id} has no role in the rendered template")
            for grant in role_grants:
                self.grants.setdefault(grant.key, grant)
            need = check.need
            allowed, allowing = evaluate(role_grants, need.action, need.resource)
            self.used.update(g.key for g in allowing)
            verdict = self._verdict(
                check.caller.logical_id, need.action, shape(need.resource), need.origin, need.why, allowed
            )
            verdict.calls += count
            if not allowed:
                refused[id(verdict)] = verdict
        return list(refused.values())

    def _verdict(
        self, role: str, action: str, resource: str, origin: str, why: str, allowed: bool, *, unmapped: bool = False
    ) -> Verdict:
        key = (role, action, resource, origin)
        verdict = self.verdicts.get(key)
        if verdict is None:
            verdict = self.verdicts[key] = Verdict(role, action, resource, origin, why, allowed, unmapped=unmapped)
        verdict.allowed = verdict.allowed and allowed
        return verdict

    def refused(self) -> list[Verdict]:
        return [v for v in self.verdicts.values() if not v.allowed]

    def unused(self) -> dict[str, list[dict[str, Any]]]:
        """What of each role's Allow statements no recorded call needed: an action none of the
        statement's resources was used for, or a resource none of its actions was used on."""
        statements: dict[tuple[Any, ...], list[Grant]] = {}
        for key, grant in self.grants.items():
            if grant.effect == "Allow":
                statements.setdefault(key[:3], []).append(grant)
        by_role: dict[str, list[dict[str, Any]]] = {}
        for (role, policy, _index), grants in sorted(statements.items(), key=lambda item: str(item[0])):
            used = [g for g in grants if g.key in self.used]
            unused = by_role.setdefault(role, [])
            for action in dict.fromkeys(g.action for g in grants):
                if not any(g.action == action for g in used):
                    resources = dict.fromkeys(shape(g.resource) for g in grants if g.action == action)
                    unused.append(
                        {
                            "policy": policy,
                            "managed": grants[0].managed,
                            "action": action,
                            "resource": ", ".join(resources),
                        }
                    )
            if used:
                for resource in dict.fromkeys(g.resource for g in grants):
                    if not any(g.resource == resource for g in used):
                        unused.append(
                            {
                                "policy": policy,
                                "managed": grants[0].managed,
                                "action": "(any)",
                                "resource": shape(resource),
                            }
                        )
        return {role: rows for role, rows in by_role.items() if rows}

    def coverage(self) -> dict[str, Any]:
        """The coverage table: per role, the calls checked, refused, and the grants nothing used."""
        roles = sorted({v.role for v in self.verdicts.values()} | {g.role for g in self.grants.values()})
        unused = self.unused()
        table: dict[str, Any] = {}
        for role in roles:
            verdicts = sorted(
                (v for v in self.verdicts.values() if v.role == role), key=lambda v: (v.action, v.resource, v.origin)
            )
            table[role] = {
                "checked": [
                    {
                        "action": v.action,
                        "resource": v.resource,
                        "origin": v.origin,
                        **({"why": v.why} if v.why else {}),
                        "calls": v.calls,
                        "allowed": v.allowed,
                    }
                    for v in verdicts
                ],
                "refused": [v.describe() for v in verdicts if not v.allowed],
                "unused": unused.get(role, []),
            }
        external: dict[str, dict[str, int]] = {}
        for (caller, operation), count in sorted(self.external_calls.items(), key=lambda item: str(item[0])):
            external.setdefault(caller.logical_id, {})[operation] = count
        return {"calls": self.calls, "roles": table, "signedWithHandedCredentials": external}


def _start_in_context(original: Callable[..., Any]) -> Callable[..., Any]:
    def start(thread: threading.Thread) -> None:
        context = contextvars.copy_context()
        run = thread.run
        thread.run = lambda: context.run(run)  # type: ignore[method-assign]
        original(thread)

    return start


def _submit_in_context(original: Callable[..., Any]) -> Callable[..., Any]:
    def submit(executor: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return original(executor, contextvars.copy_context().run, fn, *args, **kwargs)

    return submit
