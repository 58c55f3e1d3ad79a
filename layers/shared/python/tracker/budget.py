"""The org-wide in-flight budget: at most N provider batch jobs in progress across every execution.

FullStory runs 100 batches per org and answers 429 to everything from 200 in progress, so ten files
uploaded at once must share one budget. It is one DynamoDB item holding a map of leases
{lease id -> expiry epoch}; acquiring is a conditional write that succeeds only while the map holds
fewer than N leases (or already holds this one), so concurrent Lambdas can never over-book it.
A holder renews its lease on every poll and releases it when the provider job finishes, fails, is
cancelled or times out; a lease whose holder died simply expires and is swept by the next acquirer.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from tracker import catalogue
from tracker.config import MAX_POLL_SECONDS

BUDGET_SK = "LEASES"
# The lease outlives the longest gap between two renewals of a healthy holder, and no more, so a dead
# holder's slot comes back within minutes. A holder takes its lease in the submit task and renews it in
# every status task; between two renewals lie the rest of one task, the longest wait (PollMaxSeconds, at
# most MAX_POLL_SECONDS) and the next task up to its renewal. Each task runs at most POLL_TASK_SECONDS
# (the ASL's TimeoutSeconds of SubmitBatch and CheckBatch); the margin covers Step Functions' own latency
# between states. tests/contract/test_parameters.py ties these numbers to template.yaml and the ASL.
POLL_TASK_SECONDS = 90
LEASE_MARGIN_SECONDS = 120
HEALTHY_RENEWAL_GAP_SECONDS = 2 * POLL_TASK_SECONDS + MAX_POLL_SECONDS
DEFAULT_LEASE_SECONDS = HEALTHY_RENEWAL_GAP_SECONDS + LEASE_MARGIN_SECONDS  # 900


class InFlightBudget:
    def __init__(self, table: Any, provider: str, limit: int, lease_seconds: int = DEFAULT_LEASE_SECONDS) -> None:
        self._table = table
        self._key = {"pk": f"BUDGET#{provider}", "sk": BUDGET_SK}
        self.limit = limit
        self.lease_seconds = lease_seconds

    def acquire(self, lease_id: str, *, now: float | None = None) -> bool:
        """Take (or keep) a slot; False when the budget is full of live leases."""
        now = time.time() if now is None else now
        for _ in range(2):  # the second try follows a sweep of expired leases
            if self._put(lease_id, now):
                return True
            if not self._sweep(now):
                return False
        return False

    def renew(self, lease_id: str, *, now: float | None = None) -> None:
        """Push the expiry out; a lease that was swept meanwhile is taken again if there is room."""
        self.acquire(lease_id, now=now)

    def release(self, lease_id: str) -> None:
        """Idempotent: releasing a lease that is not held (never taken, swept, released) is a no-op."""
        with contextlib.suppress(self._table.meta.client.exceptions.ConditionalCheckFailedException):
            self._table.update_item(
                Key=self._key,
                UpdateExpression="REMOVE leases.#id",
                ConditionExpression="attribute_exists(leases.#id)",
                ExpressionAttributeNames={"#id": lease_id},
            )

    def holders(self) -> dict[str, int]:
        item = self._table.get_item(Key=self._key, ConsistentRead=True).get("Item") or {}
        return {k: int(v) for k, v in (item.get("leases") or {}).items()}

    def _put(self, lease_id: str, now: float) -> bool:
        expires = int(now) + self.lease_seconds
        client_errors = self._table.meta.client.exceptions
        try:
            # The map must exist before a nested path can be set: create it empty the first time.
            self._table.update_item(
                Key=self._key,
                UpdateExpression="SET leases = if_not_exists(leases, :empty)",
                ExpressionAttributeValues={":empty": {}},
            )
            self._table.update_item(
                Key=self._key,
                UpdateExpression="SET leases.#id = :expires",
                ConditionExpression="size(leases) < :limit OR attribute_exists(leases.#id)",
                ExpressionAttributeNames={"#id": lease_id},
                ExpressionAttributeValues={":expires": expires, ":limit": self.limit},
            )
        except client_errors.ConditionalCheckFailedException:
            return False
        return True

    def _sweep(self, now: float) -> bool:
        """Remove leases past their expiry; True if any slot came free."""
        freed = False
        for lease_id, expires in self.holders().items():
            if expires > now:
                continue
            try:
                self._table.update_item(
                    Key=self._key,
                    UpdateExpression="REMOVE leases.#id",
                    ConditionExpression="leases.#id = :expires",
                    ExpressionAttributeNames={"#id": lease_id},
                    ExpressionAttributeValues={":expires": expires},
                )
                freed = True
            except self._table.meta.client.exceptions.ConditionalCheckFailedException:
                continue  # renewed or released meanwhile
        return freed


class Budgets:
    """Each provider's own in-flight budget (limits by family; a limit of 0 turns that budget off)."""

    def __init__(self, table: Any, limits: dict[str, int], lease_seconds: int = DEFAULT_LEASE_SECONDS) -> None:
        self._budgets = {
            family: InFlightBudget(table, family, limit, lease_seconds) for family, limit in limits.items() if limit > 0
        }

    def for_type(self, task_type: str) -> InFlightBudget | None:
        """The budget a task type draws on (its family in tracker.catalogue); None when it has none or it is off."""
        return self._budgets.get(catalogue.budget_family(task_type) or "")

    def release_everywhere(self, lease_id: str) -> None:
        """For a job whose execution is gone: whichever budget its task held, give the slot back."""
        for budget in self._budgets.values():
            budget.release(lease_id)
