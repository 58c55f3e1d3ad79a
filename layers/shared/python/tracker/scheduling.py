"""Who may have a provider job in flight, and who is next: fair, weighted slots of an org-wide budget.

FullStory runs 100 batches per org, accepts more but queues them, and answers 429 to everything once 200
batches or 500,000 individual operations (rows) are in progress (developer.fullstory.com, "Create Batch
Import", Special Batch Rate Limits). So a budget has two limits: `slots` (provider jobs in flight) and,
when the provider counts rows, `operations` (rows in flight). A batch holds a **lease** on one slot and
its rows until it ends; the lease expires unless its holder renews it on every poll, so a dead holder's
slot comes back by itself.

A batch that finds no room registers as a **waiter** and sleeps in the state machine (a
`.waitForTaskToken` task, its token recorded on the waiter) instead of polling the budget on a backoff.
Whoever frees room -- a release, an expired lease swept -- grants it in **fair order** and wakes the
grantees (Step Functions SendTaskSuccess in AWS), so a freed slot is taken within seconds.

Fair order is dominant resource fairness across jobs (Ghodsi et al., "Dominant Resource Fairness",
NSDI 2011): the waiter whose job holds the smallest share of the budget's scarcer resource goes first
(max of slots held / slots, rows held / operations), then the one waiting longest, then by lease id.
A new job therefore gets the next free slot even behind a job of 740 batches. The order is strict: when
the first waiter does not fit (a 50,000-row batch and 30,000 rows free), nobody behind it is granted,
so room builds up for it and small batches can never starve a big one.

Every step is a single conditional write on the store (DynamoDB in AWS: tracker.budget; in memory in the
simulation of `make bench`), so concurrent Lambdas never over-book a budget, and no wake-up is lost:
a waiter's record is removed by the grant that gives it a lease, and that removal answers the token the
record held at that moment. A waiter that records its token after being granted finds its record gone
and wakes itself. This module does no I/O of its own (standard library only).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

# A waiter that has not refreshed its record for longer than its wait (the WaitForSlot task's timeout,
# after which it registers again) plus this margin belongs to an execution that is gone.
STALE_WAITER_MARGIN_SECONDS = 300
GRANT_ROUNDS = 8  # re-reads after a conflicting write before a grant loop leaves the rest to the next one


@dataclass(frozen=True, slots=True)
class Limits:
    slots: int  # provider jobs in flight at once
    operations: int | None = None  # rows in flight at once; None when the provider does not count rows


@dataclass(frozen=True, slots=True)
class SlotRequest:
    lease_id: str  # one per batch, stable across retries
    job: str
    rows: int = 0


@dataclass(frozen=True, slots=True)
class Lease:
    lease_id: str
    job: str
    rows: int
    expires: float  # epoch seconds


@dataclass(frozen=True, slots=True)
class Waiter:
    lease_id: str
    job: str
    rows: int
    since: float  # when it first asked: its place in the queue
    seen: float  # when it last registered or recorded its token
    token: str | None = None  # the task token that wakes it, once it sleeps


class WakeResult(StrEnum):
    WOKEN = "woken"
    LATE = "late"  # its wait already timed out: it comes back by itself and finds its lease
    GONE = "gone"  # no such task any more (the execution stopped): nobody will use the lease


class SlotStore(Protocol):
    """One budget's records; each method is one conditional write or one consistent read."""

    def leases(self) -> list[Lease]: ...

    def add_lease(self, lease: Lease, limits: Limits) -> bool:
        """Only when the lease is not held and it fits: fewer than `slots` leases, rows within `operations`."""
        ...

    def renew_lease(self, lease_id: str, expires: float) -> bool:
        """Push the expiry out; False when the lease is not held."""
        ...

    def remove_lease(self, lease: Lease, *, only_if_unrenewed: bool = False) -> bool:
        """Remove it (when `only_if_unrenewed`, only while its expiry is still `lease.expires`)."""
        ...

    def waiters(self) -> list[Waiter]: ...

    def put_waiter(self, waiter: Waiter) -> None:
        """Register or refresh: keeps the `since` of a record already there, replaces the rest."""
        ...

    def set_waiter_token(self, lease_id: str, token: str, seen: float) -> bool:
        """Record the token that wakes a registered waiter; False when its record is gone."""
        ...

    def take_waiter(self, lease_id: str) -> Waiter | None:
        """Remove the record and answer it as it was at that moment (None when there was none)."""
        ...


class Waker(Protocol):
    def wake(self, token: str) -> WakeResult: ...


def fair_order_key(
    waiter: Waiter, held: dict[str, tuple[int, int]], limits: Limits
) -> tuple[float, float, str]:
    """Lower goes first: the job's dominant share, then time waited, then the lease id."""
    slots, rows = held.get(waiter.job, (0, 0))
    share = slots / limits.slots if limits.slots else 0.0
    if limits.operations:
        share = max(share, rows / limits.operations)
    return share, waiter.since, waiter.lease_id


def next_grants(leases: Iterable[Lease], waiters: Iterable[Waiter], limits: Limits) -> list[Waiter]:
    """The waiters to grant now, in order: fair order, stopping at the first that does not fit."""
    live = list(leases)
    held_ids = {lease.lease_id for lease in live}
    held: dict[str, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for lease in live:
        slots, rows = held[lease.job]
        held[lease.job] = (slots + 1, rows + lease.rows)
    used_slots, used_rows = len(live), sum(lease.rows for lease in live)
    queue = [w for w in waiters if w.lease_id not in held_ids]
    granted: list[Waiter] = []
    while queue:
        first = min(queue, key=lambda w: fair_order_key(w, held, limits))
        if used_slots + 1 > limits.slots:
            break
        if limits.operations is not None and used_rows + first.rows > limits.operations:
            break
        granted.append(first)
        queue.remove(first)
        used_slots, used_rows = used_slots + 1, used_rows + first.rows
        slots, rows = held[first.job]
        held[first.job] = (slots + 1, rows + first.rows)
    return granted


class SlotScheduler:
    """The budget protocol the batch steps run: acquire, wait, renew, release (see the module docstring)."""

    def __init__(
        self,
        store: SlotStore,
        limits: Limits,
        waker: Waker | None = None,
        *,
        lease_seconds: float,
        wait_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.limits = limits
        self._waker = waker
        self.lease_seconds = lease_seconds
        self.wait_seconds = wait_seconds
        self._clock = clock

    def request(self, lease_id: str, job: str, rows: int = 0) -> SlotRequest:
        """A batch's request; its weight never exceeds the budget's operations, so it always fits an empty one."""
        weight = max(0, rows)
        if self.limits.operations is not None:
            weight = min(weight, self.limits.operations)
        return SlotRequest(lease_id, job, weight)

    # -- the steps ---------------------------------------------------------------------------
    def acquire(self, request: SlotRequest) -> bool:
        """Hold a lease (True), or be registered as a waiter in fair order (False)."""
        now = self._clock()
        if self._store.renew_lease(request.lease_id, now + self.lease_seconds):
            return True
        self._store.put_waiter(Waiter(request.lease_id, request.job, request.rows, since=now, seen=now))
        self.grant()
        return self._holds_after_queueing(request.lease_id)

    def wait(self, request: SlotRequest, token: str) -> None:
        """The batch sleeps until woken with `token`: record it, or wake at once when already granted."""
        now = self._clock()
        if self._store.set_waiter_token(request.lease_id, token, now):
            self.grant()  # closes the gap between registering and sleeping: room freed meanwhile is granted
            return
        # The record is gone: a grant removed it (the lease is held) or it was swept as stale.
        if self._store.renew_lease(request.lease_id, now + self.lease_seconds):
            self._wake(token)
            return
        waiter = Waiter(request.lease_id, request.job, request.rows, since=now, seen=now, token=token)
        self._store.put_waiter(waiter)
        self.grant()

    def renew(self, request: SlotRequest) -> bool:
        """Every poll of a running provider job. A lease that lapsed anyway is taken again when it fits
        (the provider job runs whatever the budget says); False when it did not."""
        now = self._clock()
        if self._store.renew_lease(request.lease_id, now + self.lease_seconds):
            return True
        return self._store.add_lease(
            Lease(request.lease_id, request.job, request.rows, now + self.lease_seconds), self.limits
        )

    def release(self, lease_id: str) -> None:
        """The provider job ended (or the batch gave up): free its room and give it to the next waiters.
        Idempotent; also forgets a waiter record of that lease (a cancelled job's sleeping batch)."""
        for lease in self._store.leases():
            if lease.lease_id == lease_id:
                self._store.remove_lease(lease)
        self._store.take_waiter(lease_id)
        self.grant()

    def holders(self) -> dict[str, float]:
        return {lease.lease_id: lease.expires for lease in self._store.leases()}

    # -- granting ------------------------------------------------------------------------------
    def grant(self) -> list[str]:
        """Sweep expired leases and stale waiters, then grant in fair order while the first waiter fits
        and wake each grantee. Answers the lease ids granted by this call."""
        granted: list[str] = []
        for _ in range(GRANT_ROUNDS):
            now = self._clock()
            live = self._sweep(self._store.leases(), now)
            waiters = self._fresh(self._store.waiters(), now)
            plan = next_grants(live, waiters, self.limits)
            conflict = False
            held = {lease.lease_id: lease for lease in live}
            for waiter in waiters:
                if waiter.lease_id in held:
                    # Granted, and its record not yet taken: the grant is between its two writes, or the
                    # batch registered again after it was granted. Whoever takes the record wakes it.
                    conflict |= self._deliver(held[waiter.lease_id])
            if not plan:
                return granted
            for waiter in plan:
                lease = Lease(waiter.lease_id, waiter.job, waiter.rows, now + self.lease_seconds)
                if not self._store.add_lease(lease, self.limits):
                    conflict = True  # another grant or acquire took the room first: read again
                    break
                granted.append(waiter.lease_id)
                conflict |= self._deliver(lease)
            if not conflict:
                return granted
        return granted

    def _deliver(self, lease: Lease) -> bool:
        """Take the granted waiter's record and wake the token it held at that moment. True when nobody
        will ever use the lease (the waiting task is gone): its room is given back for the next round."""
        taken = self._store.take_waiter(lease.lease_id)
        if taken is None or not taken.token or self._wake(taken.token) is not WakeResult.GONE:
            return False
        self._store.remove_lease(lease, only_if_unrenewed=True)
        return True

    def _sweep(self, leases: list[Lease], now: float) -> list[Lease]:
        live = []
        for lease in leases:
            if lease.expires > now:
                live.append(lease)
            else:
                self._store.remove_lease(lease, only_if_unrenewed=True)  # its holder died
        return live

    def _fresh(self, waiters: list[Waiter], now: float) -> list[Waiter]:
        fresh = []
        for waiter in waiters:
            if waiter.seen + self.wait_seconds + STALE_WAITER_MARGIN_SECONDS < now:
                self._store.take_waiter(waiter.lease_id)  # its execution is gone
            else:
                fresh.append(waiter)
        return fresh

    def _holds_after_queueing(self, lease_id: str) -> bool:
        if not self._store.renew_lease(lease_id, self._clock() + self.lease_seconds):
            return False
        self._store.take_waiter(lease_id)  # granted meanwhile; its record may have been registered again
        return True

    def _wake(self, token: str) -> WakeResult:
        if self._waker is None:
            return WakeResult.LATE  # nobody to call: the waiter comes back when its wait times out
        return self._waker.wake(token)
