"""`jobtracker local up` serves an AWS endpoint: an outside client's upload triggers the pipeline
exactly as an upload to the deployed bucket does."""

from __future__ import annotations

import boto3

from jobtracker.local.session import OfflineSession
from jobtracker.simulators.fullstory import SimulatorConfig
from tests.integration.helpers import ndjson, users


def test_upload_through_the_emulated_aws_endpoint_runs_a_job():
    params = {"PollMinSeconds": 0, "PollMaxSeconds": 0}
    with OfflineSession(
        parameters=params, simulator_config=SimulatorConfig(polls_to_complete=1), aws_port=0
    ) as session:
        outside = boto3.session.Session(aws_access_key_id="any", aws_secret_access_key="any", region_name="us-east-1")
        s3 = outside.client("s3", endpoint_url=session.aws_endpoint)
        assert session.stack.inbox_bucket in {b["Name"] for b in s3.list_buckets()["Buckets"]}
        s3.put_object(Bucket=session.stack.inbox_bucket, Key="inbox/users/from-cli.ndjson", Body=ndjson(users(3)))
        stack = session.stack
        job_id = stack.wait_until(lambda: next((j["id"] for j in stack.jobs()), None), what="the job")
        assert stack.wait_for_job(job_id)["imported"] == 3
