"""Pieces of the client without a stack: SigV4 signing, ETA, presigned URL parsing, the live panel."""

from __future__ import annotations

import boto3
import pytest
from rich.console import Console

from jobtracker.client.api import SigV4Signer
from jobtracker.client.target import bucket_and_key
from jobtracker.client.watch import EtaEstimator, Interrupted, render, watch_job


def test_sigv4_signer_signs_for_execute_api_in_the_region():
    session = boto3.session.Session(
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret", region_name="eu-west-1"
    )
    headers = SigV4Signer(session, "eu-west-1")(
        "GET", "https://abc.execute-api.eu-west-1.amazonaws.com/v1/jobs?limit=5", None, {"Accept": "application/json"}
    )
    authorization = headers["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in authorization
    assert "X-Amz-Date" in headers


def test_eta_follows_the_rate_of_estimate_pct_complete():
    eta = EtaEstimator()
    assert eta.seconds_left() is None
    eta.add(0.0, 10.0)
    eta.add(10.0, 30.0)  # 2 % a second, 70 % to go
    assert eta.seconds_left() == pytest.approx(35.0)
    eta.add(20.0, 30.0)
    assert eta.seconds_left() == pytest.approx(70 / 1.0)
    stalled = EtaEstimator()
    stalled.add(0.0, 40.0)
    stalled.add(5.0, 40.0)
    assert stalled.seconds_left() is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://b1.s3.amazonaws.com/results/job-1/imports.ndjson?X-Amz-Signature=x",
            ("b1", "results/job-1/imports.ndjson"),
        ),
        ("https://b1.s3.eu-west-1.amazonaws.com/results/a%20b.json", ("b1", "results/a b.json")),
        ("http://127.0.0.1:5000/b2/results/job-2/manifest.json", ("b2", "results/job-2/manifest.json")),
    ],
)
def test_bucket_and_key_of_presigned_urls(url, expected):
    assert bucket_and_key(url) == expected


def test_watch_returns_the_final_job_and_turns_ctrl_c_into_interrupted():
    states = iter(["PENDING", "RUNNING", "COMPLETED"])
    console = Console(file=None, force_terminal=False, width=100)
    job = watch_job(
        lambda: {"id": "job-1", "state": next(states), "batches": []},
        console=console,
        interval=0,
        live=False,
        sleep=lambda _s: None,
    )
    assert job["state"] == "COMPLETED"

    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        watch_job(interrupted, console=console, interval=0, live=False, sleep=lambda _s: None)


def test_the_live_panel_shows_batches_rows_and_time_left():
    job = {
        "id": "job-1",
        "type": "fullstory.users",
        "state": "RUNNING",
        "estimatePctComplete": 50,
        "metrics": {"rowsIn": 10, "rejected": 1},
        "batches": [
            {"index": 1, "state": "COMPLETED", "rows": 5, "imported": 4, "providerErrors": 1, "providerJobId": "p1"},
            {"index": 2, "state": "RUNNING", "rows": 4, "polls": 3, "providerJobId": "p2"},
        ],
    }
    console = Console(record=True, width=100, force_terminal=False)
    console.print(render(job, 12.0, 30.0))
    text = console.export_text()
    assert "batches  2 total · 2 sent · 1 polling · 0 collecting · 1 done" in text
    assert "rows     10 in · 4 imported · 1 provider errors · 1 rejected" in text
    assert "time left about 30s" in text
    assert "50 %" in text
