"""The utilization simulation's arithmetic on tiny cases (virtual time; no wall-clock time is asserted), and
the cost model's sums."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobtracker.bench import cost, utilization
from jobtracker.local.settings import template_settings

ROOT = Path(__file__).resolve().parents[2]
ASL = json.loads((ROOT / "statemachine" / "job.asl.json").read_text(encoding="utf-8"))
SETTINGS = template_settings()


@pytest.fixture
def batches_of_100_seconds(monkeypatch):
    monkeypatch.setattr(utilization, "run_seconds", lambda rows, rng: 100.0)


def big_batches(count: int) -> list[utilization.JobSpec]:
    return [utilization.JobSpec("big", 0.0, (200_000,) * count)]  # two fit in FullStory's 500,000 operations


def test_the_budget_keeps_rows_in_flight_within_fullstorys_operations(batches_of_100_seconds):
    run = utilization.simulate(big_batches(3), SETTINGS, ASL, seed=1)
    figures = run.figures()
    starts = sorted(job.started for job in run.org.jobs.values())
    assert figures["tracker_429s"] == 0
    assert starts[2] - starts[0] >= 100  # the third batch waited for one of the first two to end
    assert run.org.busy_seconds == pytest.approx(300.0)  # three batches of 100 s, nothing else ran
    assert figures["ideal_s"] == 3.0  # 300 s of batches over FullStory's 100 running slots
    assert figures["caps_ideal_s"] == 120.0  # 3 x 200,000 rows x 100 s / 500,000 rows in flight
    assert figures["mean_busy_slots"] == pytest.approx(300.0 / figures["makespan_s"], abs=0.05)
    assert figures["invocations"]["wait_for_slot"] >= 1  # it slept, and a release woke it


def test_without_the_budget_fullstory_answers_429_once_500000_rows_are_in_progress(batches_of_100_seconds):
    with utilization.fixed_polling(10.0):
        run = utilization.simulate(big_batches(4), SETTINGS, ASL, seed=1, budgets=False)
    assert run.org.throttled >= 1  # the fourth batch found 600,000 rows in progress
    assert len(run.org.jobs) == 4 and all(job.finished for job in run.org.jobs.values())


def test_a_new_job_goes_first_when_a_slot_frees(batches_of_100_seconds):
    # Two batches of 250,000 rows fill FullStory's 500,000; the big job's third and the small job wait.
    specs = [utilization.JobSpec("big", 0.0, (250_000,) * 3), utilization.JobSpec("small", 50.0, (1_000,))]
    run = utilization.simulate(specs, SETTINGS, ASL, seed=1)
    small = next(job for job in run.org.jobs.values() if "-small-" in job.key)
    big = sorted((job for job in run.org.jobs.values() if "-big-" in job.key), key=lambda job: job.started)
    assert big[0].finished <= small.started < big[2].started  # the first release goes to the small job ...
    assert big[2].started >= big[1].finished  # ... and the big batch waits for room of its size
    assert run.figures()["tracker_429s"] == 0


def test_cost_adds_up_the_units_at_the_listed_prices():
    run = {
        "invocations": {"submit": 10, "check": 100},
        "transitions": 1_000,
        "dynamodb": {"write_units": 200, "read_units": 100},
        "requests": {"s3.GetObject": 10, "s3.PutObject": 20},
    }
    memory = {name: 1024 for name in cost.STEP_FUNCTION.values()}
    priced = cost.price(run, rows=0, batches=1, memory=memory, rates={"intake": 1.0, "collect": 1.0})
    units = priced["units"]
    assert units["state_transitions"] == 1_000 and units["lambda_requests"] == 110
    assert units["lambda_gb_seconds"] == pytest.approx(10 * 0.4 + 100 * 0.15, abs=0.1)
    expected = (
        1_000 * cost.PRICES["state_transition"]
        + 110 * cost.PRICES["lambda_request"]
        + units["lambda_gb_seconds"] * cost.PRICES["lambda_gb_second_arm64"]
        + units["dynamodb_write_units"] * cost.PRICES["dynamodb_write_unit"]
        + units["dynamodb_read_units"] * cost.PRICES["dynamodb_read_unit"]
        + units["s3_write_requests"] * cost.PRICES["s3_write_request"]
        + units["s3_read_requests"] * cost.PRICES["s3_read_request"]
        + cost.PRICES["sns_publish"]
    )
    assert priced["usd"] == pytest.approx(expected, abs=1e-4)
    assert cost.s3_writes(1) == 1 and cost.s3_writes(20 * 2**20) == 5  # create, three parts, complete
