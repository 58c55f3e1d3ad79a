"""--stack NAME: the API and buckets come from the CloudFormation outputs; API calls are SigV4-signed.

The outputs of a stack created in the offline stack's moto point at the offline REST API, which takes
the caller from a SigV4 Authorization header's access key (as API Gateway's AWS_IAM auth does).
"""

from __future__ import annotations

import json

import pytest

from tests.cli.conftest import one_line_error

STACK = "jobtracker-cli-test"


@pytest.fixture(scope="module")
def deployed(session):
    outputs = {
        "ApiUrl": session.api.base_url,
        "InboxBucketName": session.stack.inbox_bucket,
        "ResultsBucketName": session.stack.results_bucket,
    }
    template = {
        "Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    session.stack.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))
    return STACK


def test_stack_outputs_give_the_api_and_the_requests_are_signed(cli, deployed, tmp_path):
    (tmp_path / "two.ndjson").write_text('{"uid": "s1"}\n{"uid": "s2"}\n')
    result = cli(
        "submit", str(tmp_path / "two.ndjson"), "--type", "fullstory.users", "--via-api", "--json",
        "--stack", deployed, "--region", "us-east-1", "--interval", "0.2",
        env={"AWS_ACCESS_KEY_ID": "AKIACLITEST", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": None},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["state"] == "COMPLETED"
    # The offline API names the caller after the SigV4 Authorization header's access key.
    assert job["creatorToken"]["id"] == "arn:aws:iam::123456789012:user/AKIACLITEST"

    listed = cli("jobs", "--json", env={"JOBTRACKER_STACK": deployed, "JOBTRACKER_REGION": "us-east-1"})
    assert listed.exit_code == 0, listed.output
    assert job["id"] in [j["id"] for j in json.loads(listed.stdout)["jobs"]]


def test_an_upload_to_the_stacks_inbox_is_found_and_watched(cli, deployed, tmp_path):
    (tmp_path / "one.ndjson").write_text('{"uid": "s3"}\n')
    result = cli(
        "submit", str(tmp_path / "one.ndjson"), "--type", "fullstory.users",
        "--stack", deployed, "--region", "us-east-1", "--interval", "0.2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "results: jobtracker results job-" in result.stdout
    assert f"--stack {deployed} --region us-east-1" in result.stdout


def test_config_file_names_the_stack_and_flags_win_over_it(cli, deployed, local, tmp_path):
    config = tmp_path / "config" / "jobtracker" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'stack = "{deployed}"\nregion = "us-east-1"\n')
    from_file = cli("jobs", "--json")
    assert from_file.exit_code == 0, from_file.output

    config.write_text('stack = "no-such-stack"\nregion = "us-east-1"\n')
    missing = cli("jobs")
    assert missing.exit_code == 3
    assert one_line_error(missing) == ("error: stack no-such-stack not found in us-east-1 (check --stack and --region)")
    assert cli("jobs", *local).exit_code == 0  # --local beats the file's stack
