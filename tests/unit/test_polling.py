import math
import random
import statistics

import pytest
from tracker.polling import (
    LAG_FLOOR_SECONDS,
    PollFacts,
    lag_budget,
    next_wait_seconds,
    observed_duration,
    predict,
    progress_rate,
    size_class,
)

FAR = 10**9
DAY = 86_400


# -- before a provider job runs: exponential backoff (throttled submit, results not ready) ------------


@pytest.mark.parametrize("attempt", range(12))
def test_wait_stays_between_half_and_all_of_the_capped_exponential(attempt):
    ceiling = min(300, 5 * 2**attempt)
    for seed in range(50):
        wait = next_wait_seconds(PollFacts(attempt, FAR), min_seconds=5, max_seconds=300, rng=random.Random(seed))
        assert ceiling / 2 <= wait <= ceiling + 1


def test_waits_grow_then_stop_at_the_cap():
    rng = random.Random(7)
    waits = [next_wait_seconds(PollFacts(a, FAR), min_seconds=5, max_seconds=60, rng=rng) for a in range(10)]
    assert waits[0] <= 5 and max(waits) <= 60 and waits[-1] >= 30


def test_jitter_spreads_batches_started_together():
    waits = {
        next_wait_seconds(PollFacts(4, FAR), min_seconds=5, max_seconds=300, rng=random.Random(s)) for s in range(40)
    }
    assert len(waits) > 10


def test_retry_after_is_a_floor():
    assert next_wait_seconds(PollFacts(0, FAR, retry_after=42), min_seconds=1, max_seconds=5) == 42


def test_wait_never_overshoots_the_deadline_by_more_than_a_second():
    assert next_wait_seconds(PollFacts(20, seconds_to_deadline=3), min_seconds=5, max_seconds=300) <= 4
    assert next_wait_seconds(PollFacts(3, seconds_to_deadline=-50, retry_after=30), min_seconds=5, max_seconds=300) == 1


def test_zero_minimum_polls_immediately():
    assert next_wait_seconds(PollFacts(9, FAR), min_seconds=0, max_seconds=0) == 0


# -- while a provider job runs ----------------------------------------------------------------------


def running(elapsed, *, attempt=1, deadline=DAY, **facts):
    return PollFacts(attempt, seconds_to_deadline=deadline - elapsed, elapsed_seconds=elapsed, **facts)


def schedule(facts_at, *, min_seconds=5, max_seconds=300, seed=1, until=DAY):
    """Poll times (elapsed seconds) the policy produces, `facts_at(elapsed, attempt)` giving the facts."""
    rng, elapsed, attempt, times = random.Random(seed), 0.0, 0, []
    while elapsed < until:
        elapsed += next_wait_seconds(
            facts_at(elapsed, attempt), min_seconds=min_seconds, max_seconds=max_seconds, rng=rng
        )
        attempt += 1
        times.append(elapsed)
    return times


def lag(times, duration):
    return next(t for t in times if t >= duration) - duration


def test_lag_budget_is_15_seconds_or_a_tenth_of_the_duration():
    assert lag_budget(30) == LAG_FLOOR_SECONDS == lag_budget(150)
    assert lag_budget(3600) == 360


@pytest.mark.parametrize("elapsed", [0, 10, 100, 1_000, 2_500])
def test_without_a_prediction_the_wait_is_the_lag_budget_so_far(elapsed):
    for seed in range(20):
        wait = next_wait_seconds(running(elapsed), min_seconds=5, max_seconds=300, rng=random.Random(seed))
        assert 0.9 * lag_budget(elapsed) - 1 <= wait <= lag_budget(elapsed)


def test_without_a_prediction_every_end_is_seen_within_its_lag_budget():
    times = schedule(lambda elapsed, attempt: running(elapsed, attempt=attempt))
    for duration in [1, 14, 15, 31, 149, 151, 600, 2_999, 3_001, 7_200, 21_600, 80_000]:
        assert lag(times, duration) <= lag_budget(duration)


def test_waits_stay_within_the_configured_minimum_and_maximum():
    assert next_wait_seconds(running(0), min_seconds=20, max_seconds=300) == 20
    assert next_wait_seconds(running(50_000), min_seconds=5, max_seconds=120) == 120
    history = (3_600.0,) * 32
    assert next_wait_seconds(running(0, history=history), min_seconds=5, max_seconds=300) <= 300


def test_zero_minimum_and_maximum_poll_a_running_job_immediately():
    history = tuple(float(d) for d in range(3_000, 3_032))
    facts = running(100, history=history, progress_pct=10, progress_rate=0.01)
    assert next_wait_seconds(facts, min_seconds=0, max_seconds=0) == 0


def test_retry_after_is_a_floor_and_the_deadline_a_ceiling_while_running():
    assert next_wait_seconds(running(0, retry_after=95), min_seconds=5, max_seconds=60) == 95
    assert next_wait_seconds(running(10_000, deadline=10_003), min_seconds=5, max_seconds=300) <= 4
    assert next_wait_seconds(running(10_000, deadline=9_000, retry_after=30), min_seconds=5, max_seconds=300) == 1


def test_jitter_spreads_running_batches_started_together():
    waits = {next_wait_seconds(running(2_000), min_seconds=5, max_seconds=300, rng=random.Random(s)) for s in range(40)}
    assert len(waits) > 5 and max(waits) <= lag_budget(2_000)


def test_a_history_of_hour_long_jobs_skips_the_first_hour_in_few_polls():
    history = tuple(3_600.0 * (0.8 + 0.4 * i / 31) for i in range(32))
    times = schedule(lambda elapsed, attempt: running(elapsed, attempt=attempt, history=history), max_seconds=3_000)
    blind = schedule(lambda elapsed, attempt: running(elapsed, attempt=attempt), max_seconds=3_000)
    assert sum(t < 2_400 for t in times) <= 6 < 30 <= sum(t < 2_400 for t in blind)
    # around the predicted end the waits come back to the lag budget
    assert lag(times, 3_600) <= lag_budget(3_600)


def test_a_job_far_longer_than_its_history_is_still_seen_within_budget():
    history = tuple(600.0 * (0.8 + 0.4 * i / 31) for i in range(32))
    times = schedule(lambda elapsed, attempt: running(elapsed, attempt=attempt, history=history))
    for duration in [2_000, 7_200, 20_000]:
        assert lag(times, duration) <= lag_budget(duration)


def test_jobs_like_their_history_are_seen_within_budget_and_with_fewer_polls():
    rng = random.Random(3)
    durations = [math.exp(rng.gauss(math.log(1_800), 0.3)) for _ in range(400)]
    history = tuple(durations[:32])
    informed = schedule(lambda elapsed, attempt: running(elapsed, attempt=attempt, history=history))
    blind = schedule(lambda elapsed, attempt: running(elapsed, attempt=attempt))
    in_budget = [lag(informed, d) <= lag_budget(d) for d in durations[32:]]
    assert sum(in_budget) / len(in_budget) >= 0.95
    polls = [sum(t < d for t in informed) + 1 for d in durations[32:]]
    blind_polls = [sum(t < d for t in blind) + 1 for d in durations[32:]]
    assert statistics.median(polls) <= statistics.median(blind_polls) / 2


def test_too_short_a_history_predicts_nothing():
    assert predict(running(0, history=(600.0,) * 4)) is None
    assert predict(running(0, history=(600.0,) * 5)).median_seconds == pytest.approx(600)


def test_progress_predicts_the_end():
    prediction = predict(running(600, progress_pct=50, progress_rate=50 / 600))
    assert prediction.median_seconds == pytest.approx(1_200)
    first = next_wait_seconds(running(600, progress_pct=50), min_seconds=5, max_seconds=3_000)
    assert first > 2 * lag_budget(600)
    # a fast recent rate can only bring the predicted end earlier
    fast = predict(running(600, progress_pct=50, progress_rate=1.0))
    assert fast.median_seconds < prediction.median_seconds


def test_a_job_reporting_100_percent_is_looked_at_again_soon():
    assert next_wait_seconds(running(5_000, progress_pct=100), min_seconds=5, max_seconds=300) <= LAG_FLOOR_SECONDS


def test_size_classes_and_helpers():
    assert [size_class(n) for n in (1, 1_000, 1_001, 20_000, 50_000, 60_000)] == [
        "r1000",
        "r1000",
        "r5000",
        "r20000",
        "r50000",
        "rmore",
    ]
    assert observed_duration(100, 120) == 110
    assert progress_rate(None, (10, 5)) is None
    assert progress_rate((10, 5), (20, 25)) == 2
    assert progress_rate((10, 25), (20, 20)) is None  # noise going backwards: no rate


# -- the history's storage and the status step (moto) -------------------------------------------------


@pytest.fixture
def jobs_table(monkeypatch):
    moto = pytest.importorskip("moto")
    import boto3

    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    with moto.mock_aws():
        attrs = ("pk", "sk", "state", "createdAt", "listPk")
        index = [
            ("ByState", "state"),
            ("ByCreated", "listPk"),
        ]
        table = boto3.resource("dynamodb").create_table(
            TableName="jobs",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in attrs],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": name,
                    "KeySchema": [
                        {"AttributeName": key, "KeyType": "HASH"},
                        {"AttributeName": "createdAt", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
                for name, key in index
            ],
        )
        yield table


def test_durations_are_kept_in_a_bounded_item_outside_the_job_indexes(jobs_table):
    from tracker.store import DURATION_SLOTS, JobStore

    store = JobStore("jobs", table=jobs_table)
    for i in range(200):
        store.record_duration("fullstory.users", "r50000", 100 + i, sample_id=f"job-{i}-b00001")
    store.record_duration("fullstory.users", "r1000", 7.5, sample_id="job-x-b00001")
    durations = store.duration_history("fullstory.users", "r50000")
    assert 20 <= len(durations) <= DURATION_SLOTS and set(durations) <= {100.0 + i for i in range(200)}
    assert store.duration_history("fullstory.users", "r1000") == (7.5,)
    assert store.duration_history("fullstory.events", "r1000") == ()
    item = jobs_table.get_item(Key={"pk": "STATS#fullstory.users#r50000", "sk": "DURATIONS"})["Item"]
    assert "state" not in item and "listPk" not in item
    assert store.list_jobs() == ([], None) and store.list_jobs(state="RUNNING") == ([], None)


def test_a_retried_write_keeps_one_duration_and_reads_are_cached_per_container(jobs_table):
    from tracker.store import JobStore

    store = JobStore("jobs", table=jobs_table)
    store.record_duration("fullstory.users", "r1000", 10, sample_id="job-a-b00001")
    store.record_duration("fullstory.users", "r1000", 12, sample_id="job-a-b00001")
    assert store.duration_history("fullstory.users", "r1000") == (12.0,)
    JobStore("jobs", table=jobs_table).record_duration("fullstory.users", "r1000", 99, sample_id="job-b-b00002")
    assert store.duration_history("fullstory.users", "r1000") == (12.0,)  # cached
    assert sorted(JobStore("jobs", table=jobs_table).duration_history("fullstory.users", "r1000")) == [12.0, 99.0]


def test_the_status_step_carries_its_clock_and_records_the_duration(jobs_table):
    import time

    from tracker.batch_tasks import BatchTasks
    from tracker.messages import BatchTask, Phase
    from tracker.providers.base import JobStatus
    from tracker.store import JobStore

    from jobtracker.local.settings import template_settings

    answers = [JobStatus("PROCESSING", False), JobStatus("COMPLETED", True, imports=3)]

    class Provider:
        def status(self, provider_job_id):
            return answers.pop(0)

    settings = template_settings({"PollMinSeconds": 5}, jobs_table="jobs")  # the first wait asserted below
    store = JobStore("jobs", table=jobs_table)
    tasks = BatchTasks(settings, store, s3=None, provider_factory=lambda job_type, settings: Provider())
    task = BatchTask(
        jobId="job-1",
        type="fullstory.users",
        deadline=int(time.time()) + DAY,
        batch={"index": 1, "key": "k", "rows": 800, "bytes": 1_000},
        attempt=0,
        providerJobId="p1",
        nextPollSeconds=40,  # the wait before this first check
    )
    first = tasks.check(task)
    assert first.phase == Phase.POLLING and first.attempt == 1
    assert first.poll.since <= time.time() - 39 and first.poll.last >= first.poll.since
    assert 5 <= first.nextPollSeconds <= 15  # 40 s into the job: its lag budget
    done = tasks.check(first)
    assert done.phase == Phase.DONE
    (duration,) = JobStore("jobs", table=jobs_table).duration_history("fullstory.users", "r1000")
    assert 39 <= duration <= 45
