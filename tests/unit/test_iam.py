"""The offline IAM check's two halves without a stack: which IAM actions and resources a call needs
(Service Authorization Reference tables), and how a role's statements decide (IAM's evaluation logic:
an explicit Deny wins, else any Allow; `*` and `?` wildcards; actions case-insensitive)."""

from __future__ import annotations

from typing import Any

import pytest

from jobtracker.local.iam import AWS_SIDE, Need, UnmappedCall, Where, evaluate, requirements, role_grants, shape

WHERE = Where(
    partition="aws",
    region="us-east-1",
    account="123456789012",
    topic_key_arn=lambda topic: "arn:aws:kms:us-east-1:123456789012:key/k-1" if topic.endswith(":encrypted") else None,
    secret_arn=lambda name: f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf",
)
TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/jobs"


@pytest.mark.parametrize(
    ("prefix", "operation", "params", "expected"),
    [
        ("s3", "GetObject", {"Bucket": "b", "Key": "k/1"}, [("s3:GetObject", "arn:aws:s3:::b/k/1")]),
        (
            "s3",
            "GetObject",
            {"Bucket": "b", "Key": "k", "VersionId": "v"},
            [("s3:GetObjectVersion", "arn:aws:s3:::b/k")],
        ),
        ("s3", "HeadObject", {"Bucket": "b", "Key": "k"}, [("s3:GetObject", "arn:aws:s3:::b/k")]),
        ("s3", "UploadPart", {"Bucket": "b", "Key": "k"}, [("s3:PutObject", "arn:aws:s3:::b/k")]),
        ("s3", "CompleteMultipartUpload", {"Bucket": "b", "Key": "k"}, [("s3:PutObject", "arn:aws:s3:::b/k")]),
        ("s3", "AbortMultipartUpload", {"Bucket": "b", "Key": "k"}, [("s3:AbortMultipartUpload", "arn:aws:s3:::b/k")]),
        ("s3", "ListObjectsV2", {"Bucket": "b", "Prefix": "x/"}, [("s3:ListBucket", "arn:aws:s3:::b")]),
        ("s3", "ListMultipartUploads", {"Bucket": "b"}, [("s3:ListBucketMultipartUploads", "arn:aws:s3:::b")]),
        (
            "s3",
            "PutObject",
            {"Bucket": "b", "Key": "k", "ACL": "private"},
            [("s3:PutObject", "arn:aws:s3:::b/k"), ("s3:PutObjectAcl", "arn:aws:s3:::b/k")],
        ),
        (
            "s3",
            "CopyObject",
            {"Bucket": "b", "Key": "to", "CopySource": "src/from%20here?versionId=v1"},
            [("s3:PutObject", "arn:aws:s3:::b/to"), ("s3:GetObjectVersion", "arn:aws:s3:::src/from here")],
        ),
        (
            "s3",
            "DeleteObjects",
            {"Bucket": "b", "Delete": {"Objects": [{"Key": "a"}, {"Key": "c", "VersionId": "v"}]}},
            [("s3:DeleteObject", "arn:aws:s3:::b/a"), ("s3:DeleteObjectVersion", "arn:aws:s3:::b/c")],
        ),
        ("dynamodb", "GetItem", {"TableName": "jobs"}, [("dynamodb:GetItem", TABLE)]),
        (
            "dynamodb",
            "Query",
            {"TableName": "jobs", "IndexName": "ByOwner"},
            [("dynamodb:Query", f"{TABLE}/index/ByOwner")],
        ),
        ("dynamodb", "BatchWriteItem", {"RequestItems": {"jobs": []}}, [("dynamodb:BatchWriteItem", TABLE)]),
        (
            "dynamodb",
            "TransactWriteItems",
            {"TransactItems": [{"Put": {"TableName": "jobs"}}, {"ConditionCheck": {"TableName": "jobs"}}]},
            [("dynamodb:PutItem", TABLE), ("dynamodb:ConditionCheckItem", TABLE)],
        ),
        (
            "sqs",
            "SendMessage",
            {"QueueUrl": "https://sqs.eu-west-1.amazonaws.com/210987654321/intake"},
            [("sqs:SendMessage", "arn:aws:sqs:eu-west-1:210987654321:intake")],
        ),
        (
            "sqs",
            "GetQueueUrl",
            {"QueueName": "intake"},
            [("sqs:GetQueueUrl", "arn:aws:sqs:us-east-1:123456789012:intake")],
        ),
        (
            "sns",
            "Publish",
            {"TopicArn": "arn:aws:sns:us-east-1:1:plain"},
            [("sns:Publish", "arn:aws:sns:us-east-1:1:plain")],
        ),
        (
            "secretsmanager",
            "GetSecretValue",
            {"SecretId": "fullstory"},
            [
                (
                    "secretsmanager:GetSecretValue",
                    "arn:aws:secretsmanager:us-east-1:123456789012:secret:fullstory-AbCdEf",
                )
            ],
        ),
        (
            "states",
            "StopExecution",
            {"executionArn": "arn:aws:states:us-east-1:1:execution:m:j"},
            [("states:StopExecution", "arn:aws:states:us-east-1:1:execution:m:j")],
        ),
        (
            "lambda",
            "Invoke",
            {"FunctionName": "submit"},
            [("lambda:InvokeFunction", "arn:aws:lambda:us-east-1:123456789012:function:submit")],
        ),
        ("sts", "GetCallerIdentity", {}, []),
    ],
)
def test_a_call_needs_the_actions_the_service_authorization_reference_lists(
    prefix: str, operation: str, params: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert [(n.action, n.resource) for n in requirements(prefix, operation, params, WHERE)] == expected


def test_publishing_to_an_encrypted_topic_needs_the_key_too() -> None:
    needs = requirements("sns", "Publish", {"TopicArn": "arn:aws:sns:us-east-1:1:encrypted"}, WHERE)
    key = "arn:aws:kms:us-east-1:123456789012:key/k-1"
    assert needs[1:] == [
        Need("kms:GenerateDataKey", key, AWS_SIDE, needs[1].why),
        Need("kms:Decrypt", key, AWS_SIDE, needs[2].why),
    ]


@pytest.mark.parametrize(("prefix", "operation"), [("s3", "PutBucketPolicy"), ("iam", "CreateRole")])
def test_an_operation_without_a_mapping_is_refused_not_waved_through(prefix: str, operation: str) -> None:
    with pytest.raises(UnmappedCall, match=f"{prefix}:{operation}"):
        requirements(prefix, operation, {"Bucket": "b"}, WHERE)


# ------------------------------------------------------------------------------------------ evaluation


def _grants(*statements: dict[str, Any]) -> list[Any]:
    rendered = {
        "Resources": {
            "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"Role": {"Fn::GetAtt": ["FnRole", "Arn"]}}},
            "FnRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {"Policies": [{"PolicyName": "P", "PolicyDocument": {"Statement": list(statements)}}]},
            },
        }
    }
    return role_grants(rendered, lambda value: value)["Fn"]


def _allowed(grants: list[Any], action: str, resource: str) -> bool:
    return evaluate(grants, action, resource)[0]


def test_an_explicit_deny_wins_over_any_allow() -> None:
    grants = _grants(
        {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*"},
        {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::b/keep/*"},
    )
    assert _allowed(grants, "s3:DeleteObject", "arn:aws:s3:::b/tmp/x")
    assert not _allowed(grants, "s3:DeleteObject", "arn:aws:s3:::b/keep/x")
    assert _allowed(grants, "s3:GetObject", "arn:aws:s3:::b/keep/x")


def test_nothing_allowed_unless_a_statement_allows_it() -> None:
    grants = _grants({"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::b/*"]})
    assert not _allowed(grants, "s3:PutObject", "arn:aws:s3:::b/x")
    assert not _allowed(grants, "s3:GetObject", "arn:aws:s3:::other/x")
    assert not _allowed(grants, "s3:GetObject", "arn:aws:s3:::b")  # the bucket is not an object of it


def test_wildcards_are_iams_not_regular_expressions() -> None:
    grants = _grants({"Effect": "Allow", "Action": "s3:Get?bject", "Resource": "arn:aws:s3:::my.bucket/a?c/*"})
    assert _allowed(grants, "s3:GetObject", "arn:aws:s3:::my.bucket/abc/x")
    assert not _allowed(grants, "s3:GetObject", "arn:aws:s3:::myxbucket/abc/x")  # "." is a dot
    assert not _allowed(grants, "s3:GetObject", "arn:aws:s3:::my.bucket/abbc/x")  # "?" is one character


def test_actions_match_regardless_of_case_resources_do_not() -> None:
    grants = _grants({"Effect": "Allow", "Action": "S3:getobject", "Resource": "arn:aws:s3:::b/Key"})
    assert _allowed(grants, "s3:GetObject", "arn:aws:s3:::b/Key")
    assert not _allowed(grants, "s3:GetObject", "arn:aws:s3:::b/key")


def test_the_allow_grants_that_matched_are_named() -> None:
    grants = _grants(
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject"],
            "Resource": ["arn:aws:s3:::b/*", "arn:aws:s3:::c/*"],
        }
    )
    _, matched = evaluate(grants, "s3:PutObject", "arn:aws:s3:::c/x")
    assert [(g.action, g.resource) for g in matched] == [("s3:PutObject", "arn:aws:s3:::c/*")]


@pytest.mark.parametrize("element", ["Condition", "NotAction", "NotResource"])
def test_statements_moto_cannot_evaluate_faithfully_are_refused_at_load(element: str) -> None:
    statement = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", element: {"Bool": {"x": "true"}}}
    with pytest.raises(NotImplementedError, match=element):
        _grants(statement)


@pytest.mark.parametrize(
    ("resource", "pattern"),
    [
        ("arn:aws:s3:::b/results/job-1/imports.ndjson", "arn:aws:s3:::b/results/*"),
        ("arn:aws:s3:::b/top.json", "arn:aws:s3:::b/*"),
        ("arn:aws:s3:::b", "arn:aws:s3:::b"),
        ("arn:aws:states:us-east-1:1:execution:jobs:job-1", "arn:aws:states:us-east-1:1:execution:jobs:*"),
        ("arn:aws:states:us-east-1:1:execution:jobs/label:child", "arn:aws:states:us-east-1:1:execution:jobs/*"),
        ("arn:aws:secretsmanager:us-east-1:1:secret:key-AbCdEf", "arn:aws:secretsmanager:us-east-1:1:secret:key-*"),
    ],
)
def test_resources_are_reported_as_patterns(resource: str, pattern: str) -> None:
    assert shape(resource) == pattern


def test_unused_names_actions_and_resources_no_call_needed() -> None:
    from jobtracker.local.iam import CallRecorder

    grants = _grants(
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObjectAcl"],
            "Resource": ["arn:aws:s3:::b/*", "arn:aws:s3:::c/*"],
        },
        {"Effect": "Allow", "Action": "dynamodb:Scan", "Resource": TABLE},
    )
    recorder = CallRecorder()
    recorder.grants = {g.key: g for g in grants}
    _, matched = evaluate(grants, "s3:GetObject", "arn:aws:s3:::b/x")
    recorder.used = {g.key for g in matched}
    assert [(u["action"], u["resource"]) for u in recorder.unused()["Fn"]] == [
        ("s3:PutObjectAcl", "arn:aws:s3:::b/*, arn:aws:s3:::c/*"),
        ("(any)", "arn:aws:s3:::c/*"),
        ("dynamodb:Scan", TABLE),
    ]
