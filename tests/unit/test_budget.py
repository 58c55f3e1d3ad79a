"""The in-flight budget against DynamoDB (moto): conditional writes never over-book it, in slots or in rows,
waiters are granted in fair order and woken, and a lease outlives every healthy gap between renewals."""

from __future__ import annotations

import random
import threading

import boto3
import pytest
from moto import mock_aws
from tracker.budget import (
    DEFAULT_LEASE_SECONDS,
    HEALTHY_RENEWAL_GAP_SECONDS,
    LEASE_MARGIN_SECONDS,
    POLL_TASK_SECONDS,
    WAIT_FOR_SLOT_SECONDS,
    DynamoSlotStore,
)
from tracker.polling import PollFacts, next_wait_seconds
from tracker.scheduling import Limits, SlotScheduler

from jobtracker.bench.memory import MemorySlotStore
from jobtracker.local.settings import template_settings
from jobtracker.local.stack import REPO_ROOT, _atomic_dynamodb_writes
from jobtracker.local.template import load_template
from tests.unit.fakes import Clock, RecordingWaker


@pytest.fixture
def table():
    # DynamoDB applies a conditional write atomically; moto checks and writes in two steps, so threads racing
    # here need the same lock the offline stack puts around moto's DynamoDB (jobtracker.local.stack).
    restore = _atomic_dynamodb_writes()
    with mock_aws():
        ddb = boto3.resource("dynamodb", region_name="us-east-1")
        created = ddb.create_table(
            TableName="jobs",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield created
    restore()


@pytest.fixture(params=["dynamodb", "memory"])
def budget(request):
    """budget(slots, operations=None, ...) -> a SlotScheduler on DynamoDB (moto) or on the in-memory store the
    bench's simulation uses: every behaviour below holds on both, so the simulation runs what AWS runs."""
    stores: dict[str, MemorySlotStore] = {}

    def make(slots, operations=None, *, family="fullstory", clock=None, waker=None, lease=DEFAULT_LEASE_SECONDS):
        if request.param == "dynamodb":
            store = DynamoSlotStore(request.getfixturevalue("table"), family)
        else:
            store = stores.setdefault(family, MemorySlotStore())
        return SlotScheduler(
            store,
            Limits(slots, operations),
            waker,
            lease_seconds=lease,
            wait_seconds=WAIT_FOR_SLOT_SECONDS,
            clock=clock or Clock(),
        )

    return make


def take(scheduler, lease_id, job="job-a", rows=0):
    return scheduler.acquire(scheduler.request(lease_id, job, rows))


def test_acquire_up_to_the_limit_then_queue(budget):
    slots = budget(2)
    assert take(slots, "a") and take(slots, "b")
    assert not take(slots, "c")
    assert take(slots, "a")  # a holder asking again keeps its slot
    slots.release("a")  # the room goes to the waiter, not to whoever asks next
    assert set(slots.holders()) == {"b", "c"}
    assert not take(slots, "d")


def test_rows_in_flight_are_capped_like_fullstorys_operations(budget):
    slots = budget(100, operations=500_000)
    assert all(take(slots, f"big-{n}", rows=50_000) for n in range(10))
    assert not take(slots, "one-more-row", job="job-b", rows=1)  # 500,000 rows in flight: full
    slots.release("big-0")
    assert set(slots.holders()) >= {"one-more-row"}
    assert not take(slots, "big-10", rows=50_000)  # 49,999 rows free: the big batch waits for room


def test_a_new_job_goes_before_the_rest_of_a_big_one(budget):
    slots = budget(2)
    assert take(slots, "big-1", "job-big") and take(slots, "big-2", "job-big")
    for n in range(3, 8):
        assert not take(slots, f"big-{n}", "job-big")
    assert not take(slots, "small-1", "job-small")  # queued last, after five batches of the big job
    slots.release("big-1")
    assert set(slots.holders()) == {"big-2", "small-1"}  # dominant share 0 goes first


def test_a_released_slot_wakes_the_sleeping_waiter(budget):
    waker = RecordingWaker()
    slots = budget(1, waker=waker)
    assert take(slots, "a")
    request = slots.request("b", "job-b")
    assert not slots.acquire(request)
    slots.wait(request, "token-b")
    assert waker.woken == []
    slots.release("a")
    assert waker.woken == ["token-b"] and set(slots.holders()) == {"b"}


def test_a_waiter_whose_execution_is_gone_gives_the_slot_to_the_next(budget):
    from tracker.scheduling import WakeResult

    waker = RecordingWaker(WakeResult.GONE)
    slots = budget(1, waker=waker)
    assert take(slots, "a")
    for lease in ("b", "c"):
        request = slots.request(lease, f"job-{lease}")
        assert not slots.acquire(request)
        slots.wait(request, f"token-{lease}")
    slots.release("a")
    assert waker.woken == ["token-b", "token-c"] and slots.holders() == {}


def test_expired_leases_of_dead_holders_are_swept(budget):
    clock = Clock(1000)
    slots = budget(1, clock=clock, lease=60)
    assert take(slots, "dead")
    clock.advance(59)
    assert not take(slots, "alive")
    clock.advance(2)
    slots.grant()  # whoever looks next (a release, an acquire, a waiter falling asleep) sweeps it
    assert set(slots.holders()) == {"alive"}


def test_renew_keeps_a_live_holder_from_being_swept(budget):
    clock = Clock(1000)
    slots = budget(1, clock=clock, lease=60)
    take(slots, "holder")
    clock.advance(50)
    assert slots.renew(slots.request("holder", "job-a"))
    clock.advance(20)
    assert not take(slots, "other")


def test_a_healthy_holder_polled_at_the_largest_poll_max_seconds_never_loses_its_lease(budget):
    # Worst case at the largest PollMaxSeconds template.yaml allows: the policy's own waits for a job that
    # runs a day, each task running to its timeout on both sides of the wait and Step Functions taking all
    # of the margin between states: just before every renewal the lease is still live.
    largest = load_template(REPO_ROOT / "template.yaml")["Parameters"]["PollMaxSeconds"]["MaxValue"]
    settings = template_settings({"PollMaxSeconds": largest})
    clock = Clock(1_000_000.0)
    slots = budget(1, clock=clock)
    rng = random.Random(7)
    elapsed, waits = 0.0, []
    assert take(slots, "holder")  # in the submit task
    while elapsed < 24 * 3600:
        facts = PollFacts(attempt=len(waits) + 1, seconds_to_deadline=10**6, elapsed_seconds=elapsed)
        waits.append(
            next_wait_seconds(
                facts, min_seconds=settings.poll_min_seconds, max_seconds=settings.poll_max_seconds, rng=rng
            )
        )
        gap = POLL_TASK_SECONDS + waits[-1] + POLL_TASK_SECONDS + LEASE_MARGIN_SECONDS - 1
        clock.advance(gap)
        elapsed += gap
        assert slots.holders()["holder"] > clock(), f"the lease lapsed before poll {len(waits)}"
        assert slots.renew(slots.request("holder", "job-a"))
    assert max(waits) == largest  # the bound itself was exercised
    assert set(slots.holders()) == {"holder"}


def test_a_holder_that_stops_renewing_loses_its_slot_when_the_lease_runs_out(budget):
    clock = Clock(1_000)
    slots = budget(1, clock=clock)
    take(slots, "holder")
    clock.advance(1_000)
    slots.renew(slots.request("holder", "job-a"))  # its last poll
    assert DEFAULT_LEASE_SECONDS > HEALTHY_RENEWAL_GAP_SECONDS
    clock.advance(DEFAULT_LEASE_SECONDS - 1)
    assert not take(slots, "next", job="job-b")
    clock.advance(1)
    assert take(slots, "next", job="job-b")
    assert set(slots.holders()) == {"next"}


def test_budgets_of_different_providers_are_separate(budget):
    assert take(budget(1, family="fullstory"), "x")
    assert take(budget(1, family="keboola"), "y")


def test_concurrent_acquirers_never_exceed_the_limit_in_slots_or_rows(table):
    slots = SlotScheduler(
        DynamoSlotStore(table, "fullstory"),
        Limits(5, 120),
        lease_seconds=DEFAULT_LEASE_SECONDS,
        wait_seconds=WAIT_FOR_SLOT_SECONDS,
    )
    granted: list[str] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        if take(slots, f"lease-{i}", job=f"job-{i % 3}", rows=10 + i % 30):
            with lock:
                granted.append(f"lease-{i}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    leases = DynamoSlotStore(table, "fullstory").leases()
    assert 0 < len(leases) <= 5 and sum(lease.rows for lease in leases) <= 120
    assert set(granted) <= {lease.lease_id for lease in leases}  # queued ones may have been granted since


def test_release_is_idempotent_even_before_any_lease_exists(budget):
    slots = budget(1)
    slots.release("never-taken")  # no item yet
    take(slots, "a")
    slots.release("a")
    slots.release("a")
    assert slots.holders() == {}
