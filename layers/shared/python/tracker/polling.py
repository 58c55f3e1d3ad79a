"""When to look again: the one polling policy, used by the status and submit handlers and by `make bench`.

Pure functions of the facts known so far (no I/O, standard library only).

*While a provider job runs* (``PollFacts.elapsed_seconds`` is known) the policy aims at two things at
once: see the end of the job within its **lag budget**, max(15 s, 10 % of its duration), and poll as
little as possible.

1. Without any prediction the wait is the lag budget of the time the job has run so far,
   max(15 s, 10 % of elapsed): a job that ends during that wait is seen at most one budget later,
   and the budget of a job that ran longer is only larger. Waits grow by 10 % a poll once a job
   has run 150 s.
2. A prediction of the job's duration lets the wait jump over a stretch where the job is unlikely to
   end. The prediction is a log-normal fitted to the observed durations of earlier jobs of the same
   provider and size class (``history``), combined with the duration implied by the progress
   percentage and its rate when the provider reports one, mixed with a broad log-uniform share
   (``OUTLIER_SHARE``) for jobs that follow no prediction. The next poll is placed so that, given
   the job still runs, at most ``RISK_PER_JUMP`` of the remaining probability falls where the job
   would be seen later than its budget; a jump is taken only when it saves at least one poll, so
   the risk is spent a few times per job, not at every poll.

*Before a provider job runs* (a throttled submit, results not ready yet: no ``elapsed_seconds``) the
wait is exponential from ``min_seconds``, capped at ``max_seconds``, with equal jitter.

In both regimes waits stay within [min_seconds, max_seconds] (both 0: poll immediately, as the offline
tests do), and a provider's Retry-After is a floor. While the caller holds a budget lease
(``holds_lease``: a running batch, which renews its lease on every poll, the lease sized for waits of at
most PollMaxSeconds, tracker.budget) that floor stops at max_seconds: a longer wait would let the lease
lapse while the provider still holds the job and over-book the budget (a poll that comes early is
answered 429 again, and waits again). Without a lease (a throttled submit gave its slot back; results
are paged after the slot was released) the Retry-After is honoured in full, even above max_seconds.
The wait never overshoots the job's deadline by more than a second; jitter spreads
batches started together (while running it only ever shortens a wait, so the lag bound holds).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

LAG_FLOOR_SECONDS = 15.0  # a job is "seen" in time when seen within max(15 s, 10 % of its duration)
LAG_SHARE = 0.10
RISK_PER_JUMP = 0.01  # probability mass (given the job still runs) a jump may skip at most
JUMP_MIN_BUDGETS = 2.0  # jump only when the wait is at least this many lag budgets (saves >= 1 poll)
OUTLIER_SHARE = 0.10  # share of jobs assumed to follow no prediction ...
OUTLIER_RANGE_SECONDS = (10.0, 2 * 86_400.0)  # ... log-uniform over this range
MIN_HISTORY = 5  # fewer observed durations than this: no history-based prediction
SIGMA_FLOOR = 0.15  # the narrowest spread (of ln duration) a prediction may claim
PROGRESS_NOISE_PCT = 5.0  # noise of a reported percentage, in percentage points
PROGRESS_SHAPE = 0.35  # spread of ln(duration) per unit ln(100 / pct): progress is not linear in time
JITTER_SHARE = 0.10  # a running job's wait is shortened by up to this share, at random
SIZE_CLASSES = (1_000, 5_000, 20_000, 50_000)  # batch rows; the class is the first bound >= rows

_NORMAL = NormalDist()


@dataclass(frozen=True, slots=True)
class PollFacts:
    attempt: int  # polls (or throttled submits) so far for this batch
    seconds_to_deadline: float
    retry_after: float | None = None
    # Seconds since the provider accepted the job; None before it runs (exponential backoff then).
    elapsed_seconds: float | None = None
    progress_pct: float | None = None  # 0-100, when the provider reports one
    progress_rate: float | None = None  # percentage points per second, from the last two reports
    history: tuple[float, ...] = ()  # durations (s) of earlier jobs of the same provider and size class


@dataclass(frozen=True, slots=True)
class Prediction:
    """ln(duration) ~ Normal(mu, sigma) for a share 1 - OUTLIER_SHARE of jobs."""

    mu: float
    sigma: float

    @property
    def median_seconds(self) -> float:
        return math.exp(self.mu)


def lag_budget(seconds: float) -> float:
    """How late the end of a job of this duration may be seen: max(15 s, 10 % of the duration)."""
    return max(LAG_FLOOR_SECONDS, LAG_SHARE * seconds)


def size_class(rows: int) -> str:
    """The size class of a batch for its duration history: r1000, r5000, r20000, r50000 or rmore."""
    for bound in SIZE_CLASSES:
        if rows <= bound:
            return f"r{bound}"
    return "rmore"


def observed_duration(last_running_elapsed: float, finished_elapsed: float) -> float:
    """The best estimate of when a job ended that was last seen running at the first and seen finished
    at the second elapsed time: the middle of the two (the end is equally likely anywhere between)."""
    return max(0.0, (last_running_elapsed + finished_elapsed) / 2)


def progress_rate(previous: tuple[float, float] | None, current: tuple[float, float]) -> float | None:
    """Percentage points per second between two (elapsed seconds, percent) reports; None when unknown."""
    if previous is None:
        return None
    (t0, p0), (t1, p1) = previous, current
    if t1 <= t0 or p1 <= p0:
        return None
    return (p1 - p0) / (t1 - t0)


def predict(facts: PollFacts) -> Prediction | None:
    """The job's predicted duration from its history and progress, or None when nothing is known."""
    parts: list[Prediction] = []
    history = sorted(math.log(d) for d in facts.history if d > 0)
    if len(history) >= MIN_HISTORY:
        n = len(history)
        mu = _quantile(history, 0.5)
        # Robust spread (interquartile range of a normal is 1.349 sigma), widened for a small sample.
        sigma = max(SIGMA_FLOOR, (_quantile(history, 0.75) - _quantile(history, 0.25)) / 1.349)
        parts.append(Prediction(mu, sigma * math.sqrt(1 + 1 / n)))
    pct, elapsed = facts.progress_pct, facts.elapsed_seconds or 0.0
    if pct is not None and 0 < pct < 100 and elapsed > 0:
        total = elapsed * 100 / pct  # at the average rate so far
        if facts.progress_rate and facts.progress_rate > 0:
            # At the recent rate; noise in it can only make the prediction earlier (more polls, never late).
            total = min(total, elapsed + (100 - pct) / facts.progress_rate)
        sigma = max(SIGMA_FLOOR, math.hypot(PROGRESS_NOISE_PCT / pct, PROGRESS_SHAPE * math.log(100 / pct)))
        parts.append(Prediction(math.log(max(total, elapsed)), sigma))
    if not parts:
        return None
    # Independent log-normal evidence: precision-weighted.
    weights = [1 / (p.sigma * p.sigma) for p in parts]
    mu = sum(w * p.mu for w, p in zip(weights, parts, strict=True)) / sum(weights)
    return Prediction(mu, max(SIGMA_FLOOR, 1 / math.sqrt(sum(weights))))


def running_wait_seconds(facts: PollFacts, prediction: Prediction | None = None) -> float:
    """The ideal wait for a running job, before jitter, limits and the deadline."""
    elapsed = max(0.0, facts.elapsed_seconds or 0.0)
    wait = lag_budget(elapsed)
    if facts.progress_pct is not None and facts.progress_pct >= 100:
        return min(wait, LAG_FLOOR_SECONDS)  # reported done but not yet finished: look again soon
    if prediction is None:
        return wait
    cdf = _mixture_cdf(prediction)
    before = cdf(max(elapsed, 1e-9))
    target = before + RISK_PER_JUMP * (1 - before)
    # The latest end time v such that the job ends in (elapsed, v] with probability <= RISK_PER_JUMP;
    # polling at v + budget(v) sees every later end within its budget.
    low, high = math.log(max(elapsed, 1.0)), math.log(OUTLIER_RANGE_SECONDS[1])
    if cdf(math.exp(low)) >= target:
        return wait
    for _ in range(40):
        mid = (low + high) / 2
        if cdf(math.exp(mid)) <= target:
            low = mid
        else:
            high = mid
    latest = math.exp(low)
    jump = latest + lag_budget(latest) - elapsed
    return jump if jump >= JUMP_MIN_BUDGETS * wait else wait


def next_wait_seconds(
    facts: PollFacts,
    *,
    min_seconds: float,
    max_seconds: float,
    rng: random.Random | None = None,
    holds_lease: bool = True,
) -> int:
    """Seconds to wait before the next call; an integer because Step Functions Wait takes whole seconds."""
    rng = rng or random
    if facts.elapsed_seconds is None:
        ceiling = min(max_seconds, min_seconds * (2 ** min(facts.attempt, 30)))
        wait = ceiling / 2 + rng.uniform(0, ceiling / 2)
        wait = math.ceil(wait)
    else:
        wait = running_wait_seconds(facts, predict(facts)) * (1 - rng.uniform(0, JITTER_SHARE))
        # Whole seconds, rounded down so the end is never seen later than planned; then the limits.
        wait = min(max(math.floor(wait), math.ceil(min_seconds)), max_seconds)
    if facts.retry_after is not None:
        floor = math.ceil(facts.retry_after)
        wait = max(wait, min(floor, math.floor(max_seconds)) if holds_lease else floor)
    wait = min(wait, math.floor(max(facts.seconds_to_deadline, 0)) + 1)
    return max(0, math.ceil(wait))


def _mixture_cdf(prediction: Prediction) -> Callable[[float], float]:
    lo, hi = OUTLIER_RANGE_SECONDS
    span = math.log(hi / lo)
    mu, sigma, share = prediction.mu, prediction.sigma, OUTLIER_SHARE

    def cdf(seconds: float) -> float:
        y = math.log(seconds)
        broad = min(1.0, max(0.0, (y - math.log(lo)) / span))
        return (1 - share) * _NORMAL.cdf((y - mu) / sigma) + share * broad

    return cdf


def _quantile(ordered: list[float], q: float) -> float:
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
