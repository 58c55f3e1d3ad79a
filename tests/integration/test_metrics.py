"""The EMF metrics operations rely on are emitted once per outcome (the alarms read some of them)."""

from __future__ import annotations

from jobtracker.simulators.fullstory import SimulatorConfig, parse_fault
from tests.integration.helpers import ndjson, upload_and_wait, users


def test_a_job_emits_started_submitted_polls_and_its_outcome_once(offline, monkeypatch):
    from tracker import observability

    recorded: list[tuple[str, float]] = []
    original = observability.metrics.add_metric
    monkeypatch.setattr(
        observability.metrics,
        "add_metric",
        lambda name, unit, value, **kw: recorded.append((name, value)) or original(name=name, unit=unit, value=value),
    )
    sim = SimulatorConfig(polls_to_complete=2, faults=(parse_fault("429@submit:1x"),), retry_after_seconds=0)
    with offline(sim=sim, MaxBatchRequests=2) as session:
        job = upload_and_wait(session, "inbox/users/metrics.ndjson", ndjson([*users(3), {"uid": "x" * 300}]))
        assert job["state"] == "COMPLETED"

    def total(name: str) -> float:
        return sum(value for metric, value in recorded if metric == name)

    assert total("UploadsTakenIn") == 1
    assert total("BatchesSubmitted") == 2
    assert total("ProviderThrottled") == 1
    assert total("Polls") == 4
    assert total("JobsCompleted") == 1 and total("JobsFailed") == 0
    assert (total("RowsImported"), total("RowsProviderErrors"), total("RowsRejected")) == (3, 0, 1)
    assert total("PollsPerJob") == 4
