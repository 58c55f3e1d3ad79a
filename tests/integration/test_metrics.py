"""The EMF metrics operations rely on are emitted once per outcome (the alarms read some of them)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from jobtracker.local.stack import REPO_ROOT
from jobtracker.simulators.fullstory import SimulatorConfig, parse_fault
from tests.integration.helpers import ndjson, upload_and_wait, users


@pytest.fixture
def metric_total(monkeypatch) -> Callable[[str], float]:
    """Records every metric the handlers add; metric_total(name) sums what was added under that name."""
    from tracker import observability

    recorded: list[tuple[str, float]] = []
    original = observability.metrics.add_metric
    monkeypatch.setattr(
        observability.metrics,
        "add_metric",
        lambda name, unit, value, **kw: recorded.append((name, value)) or original(name=name, unit=unit, value=value),
    )
    return lambda name: sum(value for metric, value in recorded if metric == name)


def test_a_job_emits_started_submitted_polls_and_its_outcome_once(offline, metric_total):
    sim = SimulatorConfig(polls_to_complete=2, faults=(parse_fault("429@submit:1x"),), retry_after_seconds=0)
    with offline(sim=sim, MaxBatchRequests=2) as session:
        job = upload_and_wait(session, "inbox/users/metrics.ndjson", ndjson([*users(3), {"uid": "x" * 300}]))
        assert job["state"] == "COMPLETED"

    assert (metric_total("UploadsTakenIn"), metric_total("JobsStarted"), metric_total("DuplicateUploads")) == (1, 1, 0)
    assert metric_total("BatchesSubmitted") == 2
    assert metric_total("ProviderThrottled") == 1
    assert metric_total("Polls") == 4
    assert metric_total("JobsCompleted") == 1 and metric_total("JobsFailed") == 0
    assert (metric_total("RowsImported"), metric_total("RowsProviderErrors"), metric_total("RowsRejected")) == (3, 0, 1)
    assert metric_total("PollsPerJob") == 4


def test_an_upload_event_delivered_again_counts_as_a_duplicate_upload_not_a_new_job(offline, metric_total):
    """S3 delivers at least once: the same event twice is one job, and the second is a DuplicateUploads
    (here Powertools Idempotency replays the first answer). No object is put, so no other event comes."""
    sample = json.loads((REPO_ROOT / "events" / "intake-s3-upload.json").read_text())
    with offline() as session:
        for _ in range(2):
            assert session.stack.invoke("IntakeFunction", sample) == {"batchItemFailures": []}
        (job,) = session.stack.jobs()
        assert job["error"]["code"] == "source_not_found"  # the sample's object was never uploaded

    assert (metric_total("UploadsTakenIn"), metric_total("JobsStarted"), metric_total("DuplicateUploads")) == (2, 1, 1)
