"""In-memory stand-ins for what tracker.batch_tasks depends on (records, object store, budgets, clock), so a
batch's state changes are unit-tested without moto. The records, objects and budget store are the ones the
bench's simulation runs on (jobtracker.bench.memory); the budget is the real tracker.scheduling."""

from __future__ import annotations

from tracker.budget import DEFAULT_LEASE_SECONDS, WAIT_FOR_SLOT_SECONDS
from tracker.scheduling import Limits, SlotScheduler, WakeResult

from jobtracker.bench.memory import InMemoryObjects, InMemoryRecords, MemorySlotStore

__all__ = ["Clock", "InMemoryObjects", "InMemoryRecords", "OneBudget", "RecordingWaker"]


class Clock:
    """A clock the test moves: `clock()` is now (epoch seconds), `clock.advance(s)` passes time."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingWaker:
    """tracker.scheduling.Waker that records the tokens it woke (and answers `result` for each)."""

    def __init__(self, result: WakeResult = WakeResult.WOKEN) -> None:
        self.woken: list[str] = []
        self.result = result

    def wake(self, token: str) -> WakeResult:
        self.woken.append(token)
        return self.result


class OneBudget:
    """tracker.batch_tasks.SlotBudgets with one real budget (tracker.scheduling) for every task type, its
    records in memory; `holders` are the lease ids it holds, `waiters` the lease ids queued."""

    def __init__(self, limit: int, clock: Clock, *, operations: int | None = None) -> None:
        self.store = MemorySlotStore()
        self.waker = RecordingWaker()
        self.scheduler = SlotScheduler(
            self.store,
            Limits(limit, operations),
            self.waker,
            lease_seconds=DEFAULT_LEASE_SECONDS,
            wait_seconds=WAIT_FOR_SLOT_SECONDS,
            clock=clock,
        )

    def for_type(self, task_type: str) -> SlotScheduler:
        return self.scheduler

    def take(self, lease_id: str, job: str = "job-other") -> bool:
        return self.scheduler.acquire(self.scheduler.request(lease_id, job))

    @property
    def holders(self) -> set[str]:
        return set(self.store.held())

    @property
    def waiters(self) -> set[str]:
        return set(self.store.waiting())
