"""The in-flight budget against DynamoDB (moto): conditional writes never over-book it."""

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
    InFlightBudget,
)
from tracker.polling import PollFacts, next_wait_seconds

from jobtracker.local.settings import template_settings
from jobtracker.local.stack import REPO_ROOT, _atomic_dynamodb_writes
from jobtracker.local.template import load_template


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


def test_acquire_up_to_the_limit_then_refuse(table):
    budget = InFlightBudget(table, "fullstory", limit=2)
    assert budget.acquire("a") and budget.acquire("b")
    assert not budget.acquire("c")
    assert budget.acquire("a")  # a holder asking again keeps its slot
    budget.release("a")
    assert budget.acquire("c")
    assert set(budget.holders()) == {"b", "c"}


def test_expired_leases_of_dead_holders_are_swept(table):
    budget = InFlightBudget(table, "fullstory", limit=1, lease_seconds=60)
    assert budget.acquire("dead", now=1000)
    assert not budget.acquire("alive", now=1059)
    assert budget.acquire("alive", now=1061)
    assert set(budget.holders()) == {"alive"}


def test_renew_keeps_a_live_holder_from_being_swept(table):
    budget = InFlightBudget(table, "fullstory", limit=1, lease_seconds=60)
    budget.acquire("holder", now=1000)
    budget.renew("holder", now=1050)
    assert not budget.acquire("other", now=1070)


def test_a_healthy_holder_polled_at_the_largest_poll_max_seconds_never_loses_its_lease(table):
    # Worst case at the largest PollMaxSeconds template.yaml allows: the policy's own waits for a job that
    # runs a day, each task running to its timeout on both sides of the wait and Step Functions taking all
    # of the margin between states; someone else asks for the slot just before every renewal.
    largest = load_template(REPO_ROOT / "template.yaml")["Parameters"]["PollMaxSeconds"]["MaxValue"]
    settings = template_settings({"PollMaxSeconds": largest})
    budget = InFlightBudget(table, "fullstory", limit=1)
    rng = random.Random(7)
    now, elapsed, waits = 1_000_000.0, 0.0, []
    assert budget.acquire("holder", now=now)  # in the submit task
    while elapsed < 24 * 3600:
        facts = PollFacts(attempt=len(waits) + 1, seconds_to_deadline=10**6, elapsed_seconds=elapsed)
        waits.append(
            next_wait_seconds(
                facts, min_seconds=settings.poll_min_seconds, max_seconds=settings.poll_max_seconds, rng=rng
            )
        )
        gap = POLL_TASK_SECONDS + waits[-1] + POLL_TASK_SECONDS + LEASE_MARGIN_SECONDS - 1
        now, elapsed = now + gap, elapsed + gap
        assert not budget.acquire("contender", now=now), f"the lease lapsed before poll {len(waits)}"
        budget.renew("holder", now=now)
    assert max(waits) == largest  # the bound itself was exercised
    assert set(budget.holders()) == {"holder"}


def test_a_holder_that_stops_renewing_loses_its_slot_when_the_lease_runs_out(table):
    budget = InFlightBudget(table, "fullstory", limit=1)
    budget.acquire("holder", now=1_000)
    budget.renew("holder", now=2_000)  # its last poll
    assert DEFAULT_LEASE_SECONDS > HEALTHY_RENEWAL_GAP_SECONDS
    assert not budget.acquire("next", now=2_000 + DEFAULT_LEASE_SECONDS - 1)
    assert budget.acquire("next", now=2_000 + DEFAULT_LEASE_SECONDS)
    assert set(budget.holders()) == {"next"}


def test_budgets_of_different_providers_are_separate(table):
    assert InFlightBudget(table, "fullstory", limit=1).acquire("x")
    assert InFlightBudget(table, "keboola", limit=1).acquire("y")


def test_concurrent_acquirers_never_exceed_the_limit(table):
    budget = InFlightBudget(table, "fullstory", limit=5)
    granted: list[str] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        if budget.acquire(f"lease-{i}"):
            with lock:
                granted.append(f"lease-{i}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 5
    assert len(budget.holders()) == 5


def test_release_is_idempotent_even_before_any_lease_exists(table):
    budget = InFlightBudget(table, "fullstory", limit=1)
    budget.release("never-taken")  # no item yet
    budget.acquire("a")
    budget.release("a")
    budget.release("a")
    assert budget.holders() == {}
