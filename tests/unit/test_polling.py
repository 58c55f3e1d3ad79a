import random

import pytest
from tracker.polling import PollFacts, next_wait_seconds

FAR = 10**9


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
