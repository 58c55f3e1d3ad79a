"""Who is calling AWS right now, offline: a function of the stack, its state machine, or nobody (tests,
the CLI, the emulation itself).

In AWS every call is signed with the credentials of the role of whatever makes it; offline every
handler runs in this one process with the same fake credentials, so the caller is carried in a
context variable instead: set while a handler runs (LambdaRuntime.invoke), while Lambda's event source
polls a queue for a function, and while a state machine execution runs. jobtracker.local.iam reads it
to check each call against the caller's role as template.yaml defines it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    scope: str  # the OfflineStack run the resource belongs to (names repeat from one stack to the next)
    logical_id: str  # the function or state machine, as template.yaml names it


_CURRENT: ContextVar[Caller | None] = ContextVar("jobtracker_offline_caller", default=None)


def current_caller() -> Caller | None:
    return _CURRENT.get()


@contextmanager
def acting_as(caller: Caller | None) -> Iterator[None]:
    token = _CURRENT.set(caller)
    try:
        yield
    finally:
        _CURRENT.reset(token)
