"""The org-wide in-flight budgets in DynamoDB: the records behind tracker.scheduling, and the lease's length.

One budget per provider family (FullStory batches, FullStory exports, Keboola jobs; tracker.catalogue).
Its leases live in one item (`BUDGET#<family>` / `SLOTS`): a map {lease id -> {e: expiry, r: rows,
j: job}} and `ops`, the rows the leases hold. Taking a lease is one conditional update that succeeds
only while the map holds fewer than `slots` leases and `ops` leaves room for the rows, so concurrent
Lambdas can never over-book it. Each waiter is an item of its own (`WAIT#<lease id>`): a task token is
up to 2 KB, and a thousand of them would not fit in one 400 KB item. The fair order, granting and waking
are tracker.scheduling's; waking is Step Functions' SendTaskSuccess (`StepFunctionsWaker`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from tracker import catalogue
from tracker.config import MAX_POLL_SECONDS
from tracker.scheduling import Lease, Limits, SlotScheduler, SlotStore, Waiter, Waker, WakeResult

log = logging.getLogger(__name__)

SLOTS_SK = "SLOTS"
WAITER_PREFIX = "WAIT#"
WAITER_TTL_SECONDS = 2 * 86_400  # DynamoDB's TTL removes a forgotten waiter record eventually
# The lease outlives the longest gap between two renewals of a healthy holder, and no more, so a dead
# holder's slot comes back within minutes. A holder takes its lease in the submit task and renews it in
# every status task, throttled or not; between two renewals lie the rest of one task, the longest wait
# (PollMaxSeconds, at most MAX_POLL_SECONDS: a provider's Retry-After never stretches a wait past it,
# tracker.polling) and the next task up to its renewal. Each task runs at most POLL_TASK_SECONDS (the
# ASL's TimeoutSeconds of SubmitBatch and CheckBatch); the margin covers Step Functions' own latency
# between states. tests/contract/test_parameters.py ties these numbers to template.yaml and the ASL.
POLL_TASK_SECONDS = 90
LEASE_MARGIN_SECONDS = 120
HEALTHY_RENEWAL_GAP_SECONDS = 2 * POLL_TASK_SECONDS + MAX_POLL_SECONDS
DEFAULT_LEASE_SECONDS = HEALTHY_RENEWAL_GAP_SECONDS + LEASE_MARGIN_SECONDS  # 900
# How long a batch sleeps in the ASL's WaitForSlot state before it asks again by itself (its TimeoutSeconds;
# the contract test ties the two). A release wakes it long before; this only bounds what a lost wake-up
# (a Lambda dying between granting and waking) can cost: the granted lease lapses after
# DEFAULT_LEASE_SECONDS and goes to the next waiter, and the sleeper queues again when it wakes.
WAIT_FOR_SLOT_SECONDS = 3600


class DynamoSlotStore:
    """tracker.scheduling.SlotStore on the jobs table (one item for the leases, one per waiter)."""

    def __init__(self, table: Any, family: str) -> None:
        self._table = table
        self._pk = f"BUDGET#{family}"
        self._key = {"pk": self._pk, "sk": SLOTS_SK}

    @property
    def _failed(self) -> type[Exception]:
        return self._table.meta.client.exceptions.ConditionalCheckFailedException

    # -- leases ----------------------------------------------------------------------------------
    def leases(self) -> list[Lease]:
        item = self._table.get_item(Key=self._key, ConsistentRead=True).get("Item") or {}
        return [
            Lease(lease_id, str(value.get("j", "")), int(value.get("r", 0)), float(value.get("e", 0)))
            for lease_id, value in (item.get("leases") or {}).items()
            if isinstance(value, dict)
        ]

    def add_lease(self, lease: Lease, limits: Limits) -> bool:
        condition = "attribute_exists(leases) AND attribute_not_exists(leases.#id) AND size(leases) < :slots"
        values: dict[str, Any] = {
            ":lease": {"e": int(lease.expires), "r": lease.rows, "j": lease.job},
            ":rows": lease.rows,
            ":zero": 0,
            ":slots": limits.slots,
        }
        if limits.operations is not None:
            condition += " AND ops <= :room"
            values[":room"] = limits.operations - lease.rows
        update = "SET leases.#id = :lease, ops = if_not_exists(ops, :zero) + :rows"
        for _ in range(2):  # the second try follows the creation of the item
            if self._update_lease_if(lease.lease_id, update, condition, values):
                return True
            if not self._create():
                return False
        return False

    def renew_lease(self, lease_id: str, expires: float) -> bool:
        return self._update_lease_if(
            lease_id, "SET leases.#id.e = :e", "attribute_exists(leases.#id)", {":e": int(expires)}
        )

    def remove_lease(self, lease: Lease, *, only_if_unrenewed: bool = False) -> bool:
        condition = "leases.#id.r = :rows"
        values: dict[str, Any] = {":rows": lease.rows}
        if only_if_unrenewed:
            condition += " AND leases.#id.e = :e"
            values[":e"] = int(lease.expires)
        # False: released, renewed or swept meanwhile
        return self._update_lease_if(lease.lease_id, "REMOVE leases.#id SET ops = ops - :rows", condition, values)

    def _update_lease_if(self, lease_id: str, update: str, condition: str, values: dict[str, Any]) -> bool:
        """One conditional write on the budget item about lease `lease_id` (`#id`); False when the condition failed."""
        try:
            self._table.update_item(
                Key=self._key,
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#id": lease_id},
                ExpressionAttributeValues=values,
            )
        except self._failed:
            return False
        return True

    def _create(self) -> bool:
        """Create the empty item the first time; False when it already existed (the write failed on room)."""
        try:
            self._table.put_item(
                Item={**self._key, "leases": {}, "ops": 0}, ConditionExpression="attribute_not_exists(pk)"
            )
        except self._failed:
            return False
        return True

    # -- waiters ---------------------------------------------------------------------------------
    def waiters(self) -> list[Waiter]:
        found: list[Waiter] = []
        query: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": self._pk, ":prefix": WAITER_PREFIX},
            "ConsistentRead": True,
        }
        while True:
            page = self._table.query(**query)
            found.extend(_waiter(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return found
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def put_waiter(self, waiter: Waiter) -> None:
        values: dict[str, Any] = {
            ":job": waiter.job,
            ":rows": waiter.rows,
            ":since": Decimal(str(waiter.since)),
            ":seen": Decimal(str(waiter.seen)),
            ":ttl": int(waiter.seen) + WAITER_TTL_SECONDS,
        }
        update = "SET job = :job, #rows = :rows, since = if_not_exists(since, :since), seen = :seen, expiresAt = :ttl"
        if waiter.token:
            update += ", #token = :token"
            values[":token"] = waiter.token
        else:
            update += " REMOVE #token"
        self._table.update_item(
            Key=self._waiter_key(waiter.lease_id),
            UpdateExpression=update,
            ExpressionAttributeNames={"#rows": "rows", "#token": "token"},
            ExpressionAttributeValues=values,
        )

    def set_waiter_token(self, lease_id: str, token: str, seen: float) -> bool:
        try:
            self._table.update_item(
                Key=self._waiter_key(lease_id),
                UpdateExpression="SET #token = :token, seen = :seen, expiresAt = :ttl",
                ConditionExpression="attribute_exists(sk)",
                ExpressionAttributeNames={"#token": "token"},
                ExpressionAttributeValues={
                    ":token": token,
                    ":seen": Decimal(str(seen)),
                    ":ttl": int(seen) + WAITER_TTL_SECONDS,
                },
            )
        except self._failed:
            return False
        return True

    def take_waiter(self, lease_id: str) -> Waiter | None:
        old = self._table.delete_item(Key=self._waiter_key(lease_id), ReturnValues="ALL_OLD").get("Attributes")
        return _waiter(old) if old else None

    def _waiter_key(self, lease_id: str) -> dict[str, str]:
        return {"pk": self._pk, "sk": WAITER_PREFIX + lease_id}


def _waiter(item: dict[str, Any]) -> Waiter:
    return Waiter(
        lease_id=str(item["sk"])[len(WAITER_PREFIX) :],
        job=str(item.get("job", "")),
        rows=int(item.get("rows", 0)),
        since=float(item.get("since", 0)),
        seen=float(item.get("seen", 0)),
        token=item.get("token") or None,
    )


class StepFunctionsWaker:
    """Wakes a batch sleeping in the ASL's WaitForSlot state (`.waitForTaskToken`) with SendTaskSuccess."""

    OUTPUT = json.dumps({"slot": "granted"})

    def __init__(self, sfn: Callable[[], Any]) -> None:
        self._sfn = sfn  # built on the first wake: most tasks never wake anybody

    def wake(self, token: str) -> WakeResult:
        sfn = self._sfn()
        errors = sfn.exceptions
        try:
            sfn.send_task_success(taskToken=token, output=self.OUTPUT)
        except errors.TaskTimedOut:
            return WakeResult.LATE
        except (errors.TaskDoesNotExist, errors.InvalidToken):
            return WakeResult.GONE
        except Exception:  # throttled past botocore's retries, a network error: the sleeper times out instead
            log.warning("could not wake a batch waiting for a slot", exc_info=True)
            return WakeResult.LATE
        return WakeResult.WOKEN


class Budgets:
    """Each provider family's budget (tracker.catalogue: limits by family; 0 slots turns one off), its
    records in `store(family)`: DynamoDB in AWS (`DynamoSlotStore`), memory in the bench's simulation."""

    def __init__(
        self,
        limits: dict[str, Limits],
        store: Callable[[str], SlotStore],
        waker: Waker | None = None,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._budgets = {
            family: SlotScheduler(
                store(family),
                limit,
                waker,
                lease_seconds=lease_seconds,
                wait_seconds=WAIT_FOR_SLOT_SECONDS,
                clock=clock,
            )
            for family, limit in limits.items()
            if limit.slots > 0
        }

    def for_type(self, task_type: str) -> SlotScheduler | None:
        """The budget a task type draws on (its family in tracker.catalogue); None when it has none or it is off."""
        return self._budgets.get(catalogue.budget_family(task_type) or "")

    def release_everywhere(self, lease_id: str) -> None:
        """For a job whose execution is gone: whichever budget its task held or waited on, give it back."""
        for budget in self._budgets.values():
            budget.release(lease_id)
