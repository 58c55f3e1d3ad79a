"""When to look again: the one polling policy, used by the status and submit handlers.

Pure functions of the facts known so far. Exponential growth from `min_seconds`, capped at
`max_seconds`, with "equal jitter" (half fixed, half random) so thousands of batches started together
spread out while the wait never collapses to zero; a provider's Retry-After is a floor; the wait never
overshoots the job's deadline by more than a second.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PollFacts:
    attempt: int  # polls (or throttled submits) so far for this batch
    seconds_to_deadline: float
    retry_after: float | None = None


def next_wait_seconds(
    facts: PollFacts,
    *,
    min_seconds: float,
    max_seconds: float,
    rng: random.Random | None = None,
) -> int:
    """Seconds to wait before the next call; an integer because Step Functions Wait takes whole seconds."""
    rng = rng or random
    ceiling = min(max_seconds, min_seconds * (2 ** min(facts.attempt, 30)))
    wait = ceiling / 2 + rng.uniform(0, ceiling / 2)
    if facts.retry_after is not None:
        wait = max(wait, facts.retry_after)
    wait = min(wait, max(facts.seconds_to_deadline, 0) + 1)
    return max(0, math.ceil(wait))
