"""Provider utilization: the tracker's real scheduling against FullStory's caps, in virtual time.

What runs is the code the Lambdas run: `tracker.batch_tasks.BatchTasks` (submit, wait for a slot, check,
collect), its budgets (`tracker.budget.Budgets` over `tracker.scheduling`, records in memory with the
conditions DynamoDB puts on them: jobtracker.bench.memory), the polling policy (`tracker.polling`, with
the duration history the steps record) and the batch loop of `statemachine/job.asl.json` itself: a small
interpreter walks the Map child's states (Task, Choice, Wait, Pass; `.waitForTaskToken` tasks sleep
until a release wakes them with SendTaskSuccess or their TimeoutSeconds pass) and the Map starts at most
`InFlightBudget` children per job, as MaxConcurrencyPath does. Settings are template.yaml's defaults.

The provider is a model of one FullStory org with the documented caps (developer.fullstory.com, "Create
Batch Import", Special Batch Rate Limits): 100 batches run at once, more are accepted but wait (FIFO)
until some complete, and while 200 batches or 500,000 individual operations (rows) are in progress every
new batch is answered 429. Nothing else uses the org, so every 429 is one the tracker caused.

How long a batch runs once it starts is not published by FullStory; the model (an assumption, stated
here and in the README) is BASE_SECONDS + PER_ROW_SECONDS per row, times a log-normal factor of sigma
DURATION_SIGMA: a batch of 50,000 rows takes about 10 minutes, one of 1,000 rows under a minute. The
ratios below hardly depend on the scale; they depend on the caps, the lag of the polls and the order.

Reported per scenario: makespan (first arrival to the last batch's end) over the ideal (total batch
processing time / 100, the issue's definition), and over the ideal within both caps (no schedule of the
same batches can beat max(total time / 100, sum of rows x time / 500,000)); mean provider slots busy;
429s; each job's wait from its arrival until its first batch starts running at FullStory.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import random
import statistics
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracker import batch_tasks as batch_tasks_module
from tracker import catalogue, layout
from tracker.batch_tasks import TASK_STEPS, BatchTasks
from tracker.budget import DEFAULT_LEASE_SECONDS, Budgets
from tracker.config import Settings
from tracker.messages import BatchTask
from tracker.providers.base import JobStatus, NdjsonPage, OperationStatus, ResultFile, Submitted, Throttled
from tracker.scheduling import WakeResult
from tracker.store import duration_slot

from jobtracker.bench.memory import InMemoryObjects, InMemoryRecords, MemorySlotStore, RequestLog

RUNNING_LIMIT = 100  # "The limit for in-progress batches per Fullstory org is 100" (then they wait)
THROTTLED_FROM_BATCHES = 200  # "Once there are 200 in-progress batches ..."
THROTTLED_FROM_OPERATIONS = 500_000  # "... or 500,000 individual operations, the API will return 429"
RETRY_AFTER_SECONDS = 30.0  # FullStory documents no value for this 429's Retry-After: an assumption
BASE_SECONDS, PER_ROW_SECONDS, DURATION_SIGMA = 20.0, 0.012, 0.35  # batch run time (see the docstring)
# The AWS side, in virtual seconds: a Lambda task's duration, Step Functions between states, and from a
# SendTaskSuccess to the woken task's next state.
LAMBDA_SECONDS = {"submit": 0.4, "wait_for_slot": 0.1, "check": 0.15, "collect": 2.0, "record_failure": 0.1}
TRANSITION_SECONDS = 0.05
WAKE_SECONDS = 0.3
EXPORT_TYPE = "fullstory.segment_export"
IMPORT_TYPE = "fullstory.users"


def run_seconds(rows: int, rng: random.Random) -> float:
    """How long a batch of `rows` runs at FullStory once it starts (the model's assumption)."""
    return (BASE_SECONDS + PER_ROW_SECONDS * rows) * rng.lognormvariate(0.0, DURATION_SIGMA)


class Clock:
    """Virtual time and its events: `at(t, fn)` runs fn at t; `run()` until nothing is left."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0  # epoch seconds, as the steps expect
        self.start = self.now
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def __call__(self) -> float:
        return self.now

    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (max(when, self.now), next(self._seq), action))

    def after(self, seconds: float, action: Callable[[], None]) -> None:
        self.at(self.now + seconds, action)

    def run(self) -> None:
        while self._events:
            self.now, _, action = heapq.heappop(self._events)
            action()


# -- the provider -------------------------------------------------------------------------------------
@dataclass
class ProviderJob:
    id: str
    key: str
    rows: int
    seconds: float  # how long it runs once started
    operation: bool = False
    accepted: float = 0.0
    started: float | None = None
    finished: float | None = None


class FullStoryOrg:
    """One FullStory org with its documented caps (see the module docstring)."""

    def __init__(self, clock: Clock, rng: random.Random) -> None:
        self._clock, self._rng = clock, rng
        self.jobs: dict[str, ProviderJob] = {}
        self._by_key: dict[str, ProviderJob] = {}
        self._waiting: list[ProviderJob] = []
        self.running = 0
        self.in_progress = 0
        self.operations = 0
        self.throttled = 0
        self.busy_seconds = 0.0  # integral of running batches over time
        self._since = clock.now
        self._ids = itertools.count(1)

    def submit(self, rows: int, key: str, *, seconds: float | None = None, operation: bool = False) -> Any:
        if key in self._by_key:  # an Idempotency-Key replay answers the first job
            job = self._by_key[key]
            return Submitted(job.id, "PROCESSING")
        full = self.in_progress >= THROTTLED_FROM_BATCHES or self.operations >= THROTTLED_FROM_OPERATIONS
        if full and not operation:
            self.throttled += 1
            return Throttled(RETRY_AFTER_SECONDS)
        job = ProviderJob(f"fs-{next(self._ids)}", key, rows, seconds or run_seconds(rows, self._rng), operation)
        job.accepted = self._clock.now
        self.jobs[job.id] = self._by_key[key] = job
        if operation:  # exports run beside imports; only their own duration matters here
            self._start(job)
            return Submitted(job.id, "PENDING")
        self.in_progress += 1
        self.operations += rows
        if self.running < RUNNING_LIMIT:
            self._start(job)
        else:
            self._waiting.append(job)
        return Submitted(job.id, "PROCESSING")

    def _start(self, job: ProviderJob) -> None:
        if not job.operation:
            self._account()
            self.running += 1
        job.started = self._clock.now
        self._clock.after(job.seconds, lambda: self._finish(job))

    def _finish(self, job: ProviderJob) -> None:
        job.finished = self._clock.now
        if job.operation:
            return
        self._account()
        self.running -= 1
        self.in_progress -= 1
        self.operations -= job.rows
        if self._waiting:
            self._start(self._waiting.pop(0))

    def _account(self) -> None:
        now = self._clock.now
        self.busy_seconds += self.running * (now - self._since)
        self._since = now

    def done(self, job_id: str) -> bool:
        job = self.jobs[job_id]
        return job.finished is not None and job.finished <= self._clock.now


class SimImport:
    """tracker.providers.base.BatchProvider on the model: the body says how many rows the batch has."""

    def __init__(self, org: FullStoryOrg) -> None:
        self._org = org

    def submit(self, body: bytes, idempotency_key: str) -> Submitted | Throttled:
        return self._org.submit(int(json.loads(body)["rows"]), idempotency_key)

    def status(self, provider_job_id: str) -> JobStatus:
        job = self._org.jobs[provider_job_id]
        if self._org.done(provider_job_id):
            return JobStatus("COMPLETED", True, imports=job.rows)
        return JobStatus("PROCESSING", False)

    def ndjson_pages(
        self, provider_job_id: str, kind: str, *, after: str | None = None, seen: Collection[str] = ()
    ) -> Iterator[NdjsonPage]:
        yield NdjsonPage(b"", 0)  # the rows themselves are the export benchmark's business


class SimExport:
    """tracker.providers.base.OperationProvider on the model: a segment export reporting its progress."""

    def __init__(self, org: FullStoryOrg, seconds: float) -> None:
        self._org, self._seconds = org, seconds

    def start(self, params: dict[str, Any], idempotency_key: str) -> Submitted | Throttled:
        return self._org.submit(0, idempotency_key, seconds=self._seconds, operation=True)

    def status(self, provider_job_id: str) -> OperationStatus:
        job = self._org.jobs[provider_job_id]
        if self._org.done(provider_job_id):
            return OperationStatus("COMPLETED", "COMPLETED", 100.0)
        elapsed = self._org._clock.now - (job.started or job.accepted)
        return OperationStatus("RUNNING", "RUNNING", round(min(99.0, 100 * elapsed / job.seconds), 1))

    def result(self, provider_job_id: str) -> ResultFile:
        return ResultFile("export.ndjson.gz", "application/gzip", lambda: iter([b"\x1f\x8b"]))


# -- the state machine ----------------------------------------------------------------------------------
@dataclass
class Child:
    """One Map child execution: one batch."""

    job: JobRun
    item: dict[str, Any]
    task: dict[str, Any] = field(default_factory=dict)
    ended: bool = False


@dataclass
class JobRun:
    id: str
    type: str
    arrival: float
    items: list[dict[str, Any]]
    pending: list[dict[str, Any]] = field(default_factory=list)
    running: int = 0
    ended_at: float | None = None


class StateMachine:
    """The Map child of statemachine/job.asl.json, interpreted: states entered count as transitions."""

    def __init__(self, asl: dict[str, Any], clock: Clock, steps: BatchTasks, settings: Settings) -> None:
        map_state = next(s for s in asl["States"].values() if s.get("Type") == "Map")
        self._child = map_state["ItemProcessor"]
        self._parent_states = len(asl["States"]) - 2  # ProcessBatches, Finalize, JobOutcome, one end state
        self._clock, self._steps, self._settings = clock, steps, settings
        self.transitions = 0
        self.invocations: Counter[str] = Counter()
        self.errors: list[str] = []
        self._sleeping: dict[str, tuple[Child, str]] = {}  # token -> (child, its WaitForSlot state)
        self._issued: set[str] = set()
        self._tokens = itertools.count(1)
        self.ended: list[JobRun] = []

    # -- the parent: one execution per job, a Map over its batches --------------------------------
    def start_job(self, job: JobRun) -> None:
        self.transitions += 1  # ProcessBatches
        self.invocations["intake"] += 1
        job.pending = list(job.items)
        for _ in range(min(self._settings.in_flight_budget, len(job.pending))):
            self._next_child(job)

    def _next_child(self, job: JobRun) -> None:
        item = job.pending.pop(0)
        deadline = int(job.arrival + self._settings.max_job_seconds)
        child = Child(job, item, {"jobId": job.id, "type": job.type, "deadline": deadline, "batch": item})
        child.task.update(attempt=0, nextPollSeconds=0)
        job.running += 1
        self._enter(child, self._child["StartAt"])

    def _child_ended(self, child: Child) -> None:
        child.ended = True
        job = child.job
        job.running -= 1
        if job.pending:
            self._next_child(job)
        elif job.running == 0:
            job.ended_at = self._clock.now
            self.transitions += self._parent_states - 1  # Finalize, JobOutcome, JobCompleted
            self.invocations["finalize"] += 1
            self.ended.append(job)

    # -- the child's states --------------------------------------------------------------------------
    def _enter(self, child: Child, name: str) -> None:
        self.transitions += 1
        state = self._child["States"][name]
        kind = state["Type"]
        if kind == "Task":
            self._clock.after(TRANSITION_SECONDS, lambda: self._task(child, name, state))
        elif kind == "Choice":
            self._clock.after(TRANSITION_SECONDS, lambda: self._enter(child, _choose(state, child.task)))
        elif kind == "Wait":
            seconds = _path(child.task, state["SecondsPath"])
            self._clock.after(seconds + TRANSITION_SECONDS, lambda: self._enter(child, state["Next"]))
        elif kind == "Pass" and state.get("End"):
            self._child_ended(child)
        elif kind == "Pass":
            self._clock.after(TRANSITION_SECONDS, lambda: self._enter(child, state["Next"]))
        else:
            raise ValueError(f"the simulation does not interpret {kind} states ({name})")

    def _task(self, child: Child, name: str, state: dict[str, Any]) -> None:
        params = state["Parameters"]
        function = str(params["FunctionName"]).strip("${}")
        payload = params.get("Payload")
        action = payload.get("action") if isinstance(payload, dict) else None
        step = TASK_STEPS[(function, action)]
        self.invocations[step] += 1
        task = BatchTask.model_validate(child.task)
        if str(state["Resource"]).endswith(".waitForTaskToken"):
            token = f"token-{next(self._tokens)}"
            self._issued.add(token)
            self._sleeping[token] = (child, name)
            self._clock.after(state["TimeoutSeconds"], lambda: self._timed_out(token))
            self._run(step, lambda: self._steps.wait_for_slot(task, token), child, state)
            return
        answer = self._run(step, lambda: getattr(self._steps, step)(task), child, state)
        if answer is not None:
            child.task = answer.for_state_machine()
            self._clock.after(LAMBDA_SECONDS[step], lambda: self._enter(child, state["Next"]))

    def _run(self, step: str, call: Callable[[], Any], child: Child, state: dict[str, Any]) -> Any:
        try:
            return call()
        except Exception as exc:  # the ASL's Catch; the simulation reports every one
            self.errors.append(f"{step}: {type(exc).__name__}: {exc}")
            catch = next(c for c in state.get("Catch", []) if "States.ALL" in c["ErrorEquals"])
            child.task["failure"] = {"Error": type(exc).__name__, "Cause": str(exc)}
            self._clock.after(LAMBDA_SECONDS[step], lambda: self._enter(child, catch["Next"]))
            return None

    def wake(self, token: str) -> WakeResult:
        """SendTaskSuccess: the sleeping task ends and its child goes on (ResultPath null: task unchanged)."""
        sleeping = self._sleeping.pop(token, None)
        if sleeping is None:
            return WakeResult.LATE if token in self._issued else WakeResult.GONE
        child, name = sleeping
        self._clock.after(WAKE_SECONDS, lambda: self._enter(child, self._child["States"][name]["Next"]))
        return WakeResult.WOKEN

    def _timed_out(self, token: str) -> None:
        sleeping = self._sleeping.pop(token, None)
        if sleeping is None:
            return
        child, name = sleeping
        catch = next(c for c in self._child["States"][name]["Catch"] if "States.Timeout" in c["ErrorEquals"])
        self._enter(child, catch["Next"])


def _choose(state: dict[str, Any], task: dict[str, Any]) -> str:
    for rule in state["Choices"]:
        if _path(task, rule["Variable"]) == rule["StringEquals"]:
            return rule["Next"]
    return state["Default"]


def _path(task: dict[str, Any], path: str) -> Any:
    assert path.startswith("$.") and "." not in path[2:], path
    return task.get(path[2:])


# -- a run ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobSpec:
    name: str
    arrival: float  # seconds after the run starts
    rows: tuple[int, ...]  # one entry per batch
    type: str = IMPORT_TYPE
    export_seconds: float = 0.0  # an export: how long it runs


@dataclass
class Run:
    """What one simulated run counted."""

    jobs: list[JobRun]
    org: FullStoryOrg
    machine: StateMachine
    log: RequestLog
    started: float
    ended: float
    first_starts: dict[str, float]

    def figures(self) -> dict[str, Any]:
        batches = [j for j in self.org.jobs.values() if not j.operation]
        makespan = self.ended - self.started
        total = sum(j.seconds for j in batches)
        ideal = total / RUNNING_LIMIT
        caps_ideal = max(ideal, sum(j.seconds * j.rows for j in batches) / THROTTLED_FROM_OPERATIONS)
        waits = {job.id: round(self.first_starts[job.id] - job.arrival, 1) for job in self.jobs}
        return {
            "jobs": len(self.jobs),
            "batches": len(batches),
            "makespan_s": round(makespan, 1),
            "ideal_s": round(ideal, 1),
            "caps_ideal_s": round(caps_ideal, 1),
            "makespan_over_ideal": round(makespan / ideal, 3) if ideal else None,
            "makespan_over_caps_ideal": round(makespan / caps_ideal, 3) if caps_ideal else None,
            "mean_busy_slots": round(self.org.busy_seconds / makespan, 1) if makespan else 0.0,
            "tracker_429s": self.org.throttled,
            "first_start_wait_s": waits if len(waits) <= 20 else _spread(list(waits.values())),
            "max_first_start_wait_s": max(waits.values(), default=0.0),
            "median_batch_time_s": round(statistics.median(j.seconds for j in batches), 1) if batches else 0.0,
            "step_errors": len(self.machine.errors),
            "transitions": self.machine.transitions,
            "invocations": dict(self.machine.invocations),
            "dynamodb": {"write_units": self.log.write_units, "read_units": round(self.log.read_units, 1)},
            "requests": dict(sorted(self.log.calls.items())),
        }


def _spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 1),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
        "max": ordered[-1],
    }


def simulate(
    specs: list[JobSpec],
    settings: Settings,
    asl: dict[str, Any],
    *,
    seed: int,
    budgets: bool = True,
    history: dict[tuple[str, str], list[float]] | None = None,
) -> Run:
    """Run the jobs to the end; `budgets=False` runs without the org budget (a fixed poller's setup);
    `history` seeds the provider job durations the polling policy predicts from, as a deployment that has
    tracked batches before has them (by job type and size class)."""
    random.seed(seed)  # tracker.polling jitters with the module's generator, as in Lambda
    rng = random.Random(seed)
    clock = Clock()
    log = RequestLog()
    records = InMemoryRecords(log, clock=clock)
    objects = InMemoryObjects(log)
    org = FullStoryOrg(clock, rng)
    for key, durations in (history or {}).items():  # written by earlier jobs: not counted in this run
        records.durations[key] = {duration_slot(f"earlier-{n}"): seconds for n, seconds in enumerate(durations)}
    exports = {spec.name: spec.export_seconds for spec in specs if spec.export_seconds}

    def provider(task_type: str, settings: Settings, *params: Any) -> Any:
        if catalogue.is_operation(task_type):
            return SimExport(org, next(iter(exports.values())))
        return SimImport(org)

    machine_box: list[StateMachine] = []

    class Waker:
        def wake(self, token: str) -> WakeResult:
            return machine_box[0].wake(token)

    slot_budgets = None
    if budgets:
        slot_budgets = Budgets(
            catalogue.budget_limits(settings),
            lambda family: MemorySlotStore(log),
            Waker(),
            lease_seconds=DEFAULT_LEASE_SECONDS,
            clock=clock,
        )
    steps = BatchTasks(settings, records, objects, provider, slot_budgets, clock=clock)
    machine = StateMachine(asl, clock, steps, settings)
    machine_box.append(machine)
    jobs = []
    for number, spec in enumerate(specs):
        job_id = f"job-{number:04d}-{spec.name}"
        items = []
        for index, rows in enumerate(spec.rows, 1):
            key = layout.batch_key(job_id, index)
            objects.objects[(settings.results_bucket, key)] = json.dumps({"rows": rows}).encode()
            items.append({"index": index, "key": key, "rows": rows, "bytes": 270 * rows})
        records.jobs[job_id] = {"id": job_id, "type": spec.type, "operationParams": {"segmentId": "everyone"}}
        job = JobRun(job_id, spec.type, clock.start + spec.arrival, items)
        jobs.append(job)
        clock.at(job.arrival, lambda job=job: machine.start_job(job))
    clock.run()
    first_starts: dict[str, float] = {}
    for provider_job in org.jobs.values():
        job_id = provider_job.key.rsplit("-b", 1)[0]
        if provider_job.started is not None:
            first_starts[job_id] = min(first_starts.get(job_id, math.inf), provider_job.started)
    unfinished = [job.id for job in jobs if job.ended_at is None]
    if unfinished or machine.errors:
        raise RuntimeError(f"utilization run did not finish cleanly: {unfinished[:3]} {machine.errors[:3]}")
    return Run(jobs, org, machine, log, clock.start, max(job.ended_at or 0 for job in jobs), first_starts)


@contextmanager
def fixed_polling(seconds: float) -> Iterator[None]:
    """Every wait of the batch loop a fixed `seconds` (Retry-After honoured), as a fixed poller waits:
    the steps run unchanged; only the function they ask for the next wait is replaced."""
    real = batch_tasks_module.next_wait_seconds

    def fixed(facts: Any, *, min_seconds: float, max_seconds: float, rng: Any = None, holds_lease: bool = True) -> int:
        wait = max(seconds, facts.retry_after or 0.0)
        return max(0, math.ceil(min(wait, max(0.0, facts.seconds_to_deadline) + 1)))

    batch_tasks_module.next_wait_seconds = fixed  # type: ignore[assignment]
    try:
        yield
    finally:
        batch_tasks_module.next_wait_seconds = real


# -- the scenarios of `make bench` -----------------------------------------------------------------------
BIG_JOB_BATCHES = 740
FULL_BATCH = 50_000
SMALL_BATCH = 5_000  # the largest batch of which 100 fit in FullStory's 500,000 operations
# The runs measure() reports with a makespan of their own ((c) is (a) with one more job).
SCENARIOS = ("one_big_job", "job_mix", "many_small_jobs", "one_big_job_in_5000_row_batches")
SMALL_JOB_ARRIVES_AFTER = 3 * 3600.0  # (c): well inside the big job's run
SMALL_JOB_ROWS = 1_000


def one_big_job(batches: int = BIG_JOB_BATCHES, rows: int = FULL_BATCH) -> list[JobSpec]:
    return [JobSpec("big", 0.0, (rows,) * batches)]


def job_mix(rng: random.Random, jobs: int = 10, most: int = 300, window: float = 3600.0) -> list[JobSpec]:
    """`jobs` jobs arriving over `window` seconds, of 1 to `most` batches (log-uniform, both ends included);
    every batch full but each job's last."""
    counts = [1, most] + [max(1, round(math.exp(rng.uniform(0, math.log(most))))) for _ in range(jobs - 2)]
    rng.shuffle(counts)
    arrivals = sorted([0.0] + [rng.uniform(0, window) for _ in range(jobs - 1)])
    return [
        JobSpec(f"mix{n}", at, (FULL_BATCH,) * (count - 1) + (rng.randint(1, FULL_BATCH),))
        for n, (at, count) in enumerate(zip(arrivals, counts, strict=True))
    ]


def small_behind_big(big_batches: int = BIG_JOB_BATCHES) -> list[JobSpec]:
    return [*one_big_job(big_batches), JobSpec("small", SMALL_JOB_ARRIVES_AFTER, (SMALL_JOB_ROWS,))]


def burst_of_small_jobs(rng: random.Random, jobs: int = 400) -> list[JobSpec]:
    """400 one-batch jobs at once, of 10 to 5,000 rows (log-uniform): small files uploaded together."""
    return [JobSpec(f"s{n}", 0.0, (round(math.exp(rng.uniform(math.log(10), math.log(5_000)))),)) for n in range(jobs)]


def measure(settings: Settings, asl_path: Path, *, seed: int = 5, big_batches: int = BIG_JOB_BATCHES) -> dict[str, Any]:
    asl = json.loads(asl_path.read_text(encoding="utf-8"))
    rng = random.Random(seed)
    big = simulate(one_big_job(big_batches), settings, asl, seed=seed).figures()
    mix = simulate(job_mix(rng), settings, asl, seed=seed).figures()
    behind_run = simulate(small_behind_big(big_batches), settings, asl, seed=seed)
    behind = behind_run.figures()
    small_id = next(job.id for job in behind_run.jobs if job.id.endswith("-small"))
    burst = simulate(burst_of_small_jobs(rng), settings, asl, seed=seed).figures()
    # As (a) with batches of 5,000 rows (MaxBatchRequests=5000): 100 of them fit FullStory's 500,000
    # operations, so the running cap, not the rows cap, sets the pace. Rows per hour compare the two.
    fine = simulate(one_big_job(big_batches, SMALL_BATCH), settings, asl, seed=seed).figures()
    for figures, rows in ((big, FULL_BATCH), (fine, SMALL_BATCH)):
        figures["rows_per_hour"] = round(figures["batches"] * rows / figures["makespan_s"] * 3600)
    return {
        "one_big_job": big,
        "job_mix": mix,
        "small_behind_big": {
            "first_start_wait_s": behind["first_start_wait_s"][small_id],
            "batch_time_s": big["median_batch_time_s"],
            "arrives_after_s": SMALL_JOB_ARRIVES_AFTER,
            "rows": SMALL_JOB_ROWS,
            "run": behind,
        },
        "many_small_jobs": burst,
        "one_big_job_in_5000_row_batches": fine,
        "model": {
            "running_limit": RUNNING_LIMIT,
            "throttled_from_batches": THROTTLED_FROM_BATCHES,
            "throttled_from_operations": THROTTLED_FROM_OPERATIONS,
            "batch_seconds": f"({BASE_SECONDS:g} + {PER_ROW_SECONDS:g} x rows) x LogNormal(0, {DURATION_SIGMA:g})",
            "lambda_seconds": LAMBDA_SECONDS,
            "wake_seconds": WAKE_SECONDS,
            "settings": {
                "InFlightBudget": settings.in_flight_budget,
                "OrgInFlightBudget": settings.org_in_flight_budget,
                "OrgOperationsBudget": settings.org_operations_budget,
                "PollMinSeconds": settings.poll_min_seconds,
                "PollMaxSeconds": settings.poll_max_seconds,
            },
        },
    }
