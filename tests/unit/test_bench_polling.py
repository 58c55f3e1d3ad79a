"""The polling benchmark's simulation (virtual time; nothing here measures a clock)."""

import math
import statistics
from pathlib import Path

import pytest

from jobtracker.bench import polling_sim as sim
from jobtracker.bench.__main__ import template_defaults

ROOT = Path(__file__).resolve().parents[2]
ASL = ROOT / "statemachine" / "job.asl.json"


@pytest.fixture
def no_throttling(monkeypatch):
    monkeypatch.setattr(sim, "THROTTLE_SHARE", 0.0)


def test_jobs_are_log_uniform_from_30_seconds_to_6_hours_half_of_them_with_progress():
    jobs = sim.make_jobs(2_000, seed=1)
    durations = [j.duration for j in jobs]
    assert min(durations) >= sim.MIN_DURATION and max(durations) <= sim.MAX_DURATION
    # the median of a log-uniform 30 s .. 6 h is their geometric mean, about 805 s
    assert statistics.median(durations) == pytest.approx(math.sqrt(30 * 21_600), rel=0.15)
    assert sum(j.kind == sim.OPERATION for j in jobs) == 1_000
    assert [j.start for j in jobs] == sorted(j.start for j in jobs)


def test_fixed_pollers_see_the_end_within_one_interval(no_throttling):
    jobs = sim.make_jobs(200, seed=2)
    outcome = sim.run_simple(jobs, sim.fixed(10), seed=2)
    for job, polls, lag in zip(jobs, outcome.polls, outcome.lags, strict=True):
        assert polls == math.ceil(job.duration / 10)
        assert 0 <= lag < 10


def test_kbcstorage_looks_at_once_then_sleeps_min_2_to_the_n_20():
    assert [sim.kbcstorage(n) for n in range(7)] == [0, 4, 8, 16, 20, 20, 20]


def test_a_throttled_poll_waits_at_least_its_retry_after(monkeypatch):
    monkeypatch.setattr(sim, "THROTTLE_SHARE", 1.0)
    provider = sim.Provider(sim.SimJob(0, sim.BATCH, 10, 0.0, 60.0, 1.0), seed=1)
    state, retry_after = provider.status(100.0)
    assert state == "throttled" and retry_after in sim.RETRY_AFTER_CHOICES


def test_operations_report_noisy_progress_below_100_until_done(no_throttling):
    provider = sim.Provider(sim.SimJob(1, sim.OPERATION, 10, 0.0, 1_000.0, 1.0), seed=1)
    reports = [provider.status(t)[1] for t in (100, 500, 900)]
    assert all(0 <= pct <= 99 for pct in reports) and reports[0] < reports[2]
    assert provider.status(1_000.0) == ("done", None)


def test_history_keeps_at_most_the_slots_the_table_keeps():
    history = sim.DurationHistory()
    job = sim.SimJob(0, sim.BATCH, 500, 0.0, 60.0, 1.0)
    for i in range(500):
        history.record(sim.SimJob(i, sim.BATCH, 500, 0.0, 60.0, 1.0), float(i))
    assert 20 <= len(history.read(job)) <= sim.DURATION_SLOTS


def test_history_events_per_batch_come_from_the_state_machine():
    assert sim.history_events_per_batch(ASL) == (18, 9)


def test_the_tracker_polls_a_third_as_often_as_every_10_seconds_and_sees_95_percent_in_budget():
    jobs = sim.make_jobs(600, seed=3)
    tracker = sim.run_tracker(jobs, template_defaults(ROOT), seed=3).summary()
    fixed_10s = sim.run_simple(jobs, sim.fixed(10), seed=3).summary()
    assert tracker["median_polls"] <= fixed_10s["median_polls"] / 3
    assert tracker["share_in_budget"] >= 0.95
    assert {"median_polls", "p95_lag_s", "p95_rel_lag"} <= set(tracker)


def test_history_events_of_a_day_long_batch_follow_the_poll_cap():
    events_300 = sim.history_events_24h(sim.Defaults(5, 300, 86_400), ASL, seed=1)
    events_600 = sim.history_events_24h(sim.Defaults(5, 600, 86_400), ASL, seed=1)
    # a 300 s cap alone needs 86,400 / 300 = 288 polls in a day
    assert events_300["polls"] >= 288 and events_300["events"] == 18 + 9 * events_300["polls"]
    assert events_600["events"] < 2_500 < events_300["events"]
