"""Injected failures shared by the provider simulators: the ``--fault`` grammar and the dice that decide
which request a fault hits.

A fault is a claim about how a real service fails, not about our code: throttling with ``Retry-After``
(FullStory's 429 carries it, ../shared/DESIGN.md "FullStory facts") and without it (`429-bare`: a
client's fallback when the header is missing), a 5xx, a connection lost after the provider acted (so
only the answer is lost: the reason FullStory offers Idempotency-Key), a slow or garbled answer, a job
that never ends, a paging token that repeats. Each simulator names the requests a fault may target
(:meth:`Simulator.fault_targets`) and renders its injected errors in its own error format; this module
knows only the grammar and the dice.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

__all__ = [
    "FAULT_KINDS",
    "FAULT_TARGETS",
    "JOB_FAULTS",
    "REQUEST_FAULTS",
    "Fault",
    "FaultDice",
    "parse_fault",
]

# Hit one request. 429/429-bare/500 answer instead of the provider; reset/slow/malformed spoil the answer
# of a request the provider did process.
REQUEST_FAULTS = ("429", "429-bare", "500", "reset", "slow", "malformed")
# Change how jobs behave rather than one answer: never rolled per request.
JOB_FAULTS = ("stuck", "repeat-token")
FAULT_KINDS = REQUEST_FAULTS + JOB_FAULTS
FAULT_TARGETS = ("submit", "status", "pages", "export", "operation", "results", "download")


@dataclass(frozen=True)
class Fault:
    """A failure the simulator injects into matching requests.

    Before the request is processed: `429` (with Retry-After), `429-bare` (no Retry-After), `500`.
    After it is processed (so the provider *did* act, and only the answer is lost or late): `reset`
    (the connection is closed without an answer), `malformed` (200 with a body that is not JSON),
    `slow` (the answer waits `seconds`). Job-level: `stuck` (jobs never finish), `repeat-token`
    (paging answers the same next_page_token forever).

    `target` limits it to one kind of request (the simulator says which requests are `submit`, `status`,
    `pages`, `export`, `operation`, `results` or `download`); it hits with probability `rate`, or exactly
    the first `times` matching requests when `times` is set.
    """

    kind: str
    rate: float = 1.0
    seconds: float = 0.0
    target: str | None = None
    times: int | None = None


def parse_fault(spec: str, kinds: Sequence[str] = FAULT_KINDS, targets: Sequence[str] = FAULT_TARGETS) -> Fault:
    """`KIND[@TARGET][:ARG...]`: `429:0.3`, `500@status:0.1`, `reset@submit:1x` (the first submit only),
    `slow:2s`, `slow@submit:2s:1x`, `malformed:0.05`, `stuck`, `repeat-token`, `500@operation:1x`,
    `reset@download:1x`. `stuck` also keeps export operations from finishing. A simulator passes its own
    `kinds` when it knows more (or fewer) than the shared ones."""
    head, *args = spec.strip().split(":")
    kind, _, target = head.partition("@")
    if kind not in kinds:
        raise ValueError(f"unknown fault {kind!r}; one of {', '.join(kinds)}")
    if target and target not in targets:
        raise ValueError(f"unknown fault target {target!r}; one of {', '.join(targets)}")
    seconds, rate, times = 0.0, 1.0, None
    try:
        if kind == "slow":
            if not args or not args[0].endswith("s"):
                raise ValueError("slow needs a duration like 2s")
            seconds = float(args.pop(0)[:-1])
        for arg in args:
            if arg.endswith("x"):
                times = int(arg[:-1])
            else:
                rate = float(arg)
    except ValueError as exc:
        raise ValueError(f"bad fault spec {spec!r}: {exc}") from exc
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"fault rate must be between 0 and 1: {spec!r}")
    return Fault(kind, rate, seconds, target or None, times)


class FaultDice:
    """Decides which configured fault (if any) hits a request: the first that matches its targets and
    either still has `times` left or wins its `rate` roll. Seeded, so a run repeats with the same seed.

    The faults are read at every roll (a test may swap them while the simulator runs); equal faults share
    their `times` count.
    """

    def __init__(self, faults: Callable[[], Sequence[Fault]], seed: int | None, lock: threading.RLock) -> None:
        self._faults = faults
        self._dice = random.Random(seed)
        self._uses: dict[Fault, int] = {}
        self._lock = lock

    def has(self, kind: str) -> bool:
        """Whether a job-level fault (`stuck`, `repeat-token`) is configured."""
        return any(f.kind == kind for f in self._faults())

    def roll(self, targets: Collection[str], applies: Callable[[Fault], bool] = lambda _: True) -> Fault | None:
        """The per-request fault that hits a request of these targets (none when `targets` is empty)."""
        if not targets:
            return None
        with self._lock:
            for fault in self._faults():
                if fault.kind in JOB_FAULTS or (fault.target is not None and fault.target not in targets):
                    continue
                if not applies(fault):
                    continue
                if fault.times is not None:
                    used = self._uses.get(fault, 0)
                    if used >= fault.times:
                        continue
                    self._uses[fault] = used + 1
                elif self._dice.random() >= fault.rate:
                    continue
                return fault
        return None
