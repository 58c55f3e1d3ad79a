"""The in-flight budget against DynamoDB (moto): conditional writes never over-book it."""

from __future__ import annotations

import threading

import boto3
import pytest
from moto import mock_aws
from tracker.budget import InFlightBudget


@pytest.fixture
def table():
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
