"""The fair order of tracker.scheduling, as pure arithmetic: dominant shares, strictness, weights."""

from __future__ import annotations

from tracker.scheduling import Lease, Limits, Waiter, next_grants


def lease(lease_id: str, job: str, rows: int = 0) -> Lease:
    return Lease(lease_id, job, rows, expires=10**9)


def waiter(lease_id: str, job: str, rows: int = 0, since: float = 0.0) -> Waiter:
    return Waiter(lease_id, job, rows, since=since, seen=since)


def ids(waiters: list[Waiter]) -> list[str]:
    return [w.lease_id for w in waiters]


def test_free_slots_go_round_robin_across_jobs_then_by_time_waited():
    queue = [waiter("a1", "A", since=1), waiter("a2", "A", since=2), waiter("b1", "B", since=3)]
    queue.append(waiter("c1", "C", since=4))
    assert ids(next_grants([], queue, Limits(slots=3))) == ["a1", "b1", "c1"]


def test_the_job_holding_least_goes_first_even_when_it_asked_last():
    held = [lease(f"a{n}", "A") for n in range(5)]
    queue = [waiter("a9", "A", since=1), waiter("b1", "B", since=99)]
    assert ids(next_grants(held, queue, Limits(slots=6))) == ["b1"]


def test_shares_are_dominant_shares_of_slots_or_rows():
    # A holds one slot of 10 but 400,000 of 500,000 rows (80 %); B holds five small slots (50 %).
    held = [lease("a1", "A", 400_000), *(lease(f"b{n}", "B", 10) for n in range(5))]
    queue = [waiter("a2", "A", 10, since=1), waiter("b9", "B", 10, since=2)]
    assert ids(next_grants(held, queue, Limits(slots=10, operations=500_000))) == ["b9", "a2"]


def test_the_first_waiter_that_does_not_fit_blocks_everyone_behind_it():
    held = [lease("a1", "A", 40_000)]
    queue = [waiter("b1", "B", 50_000, since=1), waiter("c1", "C", 1_000, since=2)]
    assert next_grants(held, queue, Limits(slots=10, operations=60_000)) == []  # room builds up for b1
    assert ids(next_grants([], queue, Limits(slots=10, operations=60_000))) == ["b1", "c1"]


def test_a_waiter_that_already_holds_its_lease_is_not_granted_twice():
    assert next_grants([lease("a1", "A")], [waiter("a1", "A")], Limits(slots=5)) == []
