"""The phases the batch steps answer (tracker.batch_tasks) and the Choice states of statemachine/job.asl.json agree.

(a) Every phase a step declares (STEP_PHASES; tests/unit/test_batch_tasks.py shows each one is really produced,
and a step answering an undeclared one raises) is routed from that step's Task to what the phase means (MEANING):
by a Choice rule or by a Default, which counts only when it leads where the phase must go.
(b) Every phase a Choice tests for is a Phase, and one that a step whose Task leads to that Choice answers.
(c) The distributed Map's ItemSelector builds a valid BatchTask from the execution input and a manifest item.

Each check returns a list of problems; the `*_detects_*` tests feed it a broken copy of the definition.
"""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from tracker.batch_tasks import STEP_PHASES
from tracker.executions import ExecutionInput, ManifestRef
from tracker.messages import BatchTask, Phase

from tests.contract.test_template import _invocation, _scopes

ROOT = Path(__file__).resolve().parents[2]
ASL_PATH = ROOT / "statemachine" / "job.asl.json"

# The step of tracker.batch_tasks a Task state runs: (function placeholder, Payload action) -> step.
STEP_OF_TASK = {
    ("SubmitFunctionArn", None): "submit",
    ("StatusFunctionArn", None): "check",
    ("CollectFunctionArn", "collect"): "collect",
    ("CollectFunctionArn", "batch_failed"): "record_failure",
}
BATCH_STEP_FUNCTIONS = {function for function, _ in STEP_OF_TASK}
END = "the end of the batch"
# What the state machine must do with each phase: (wait `nextPollSeconds` first?, the step that runs next).
MEANING: dict[Phase, tuple[bool, str]] = {
    Phase.THROTTLED: (True, "submit"),
    Phase.POLLING: (True, "check"),
    Phase.DONE: (False, "collect"),
    Phase.RESULTS_PENDING: (True, "collect"),
    Phase.RESULTS_THROTTLED: (True, "collect"),
    Phase.COLLECTED: (False, END),
    Phase.FAILED: (False, END),
}


@dataclass(frozen=True)
class Route:
    """Where a phase goes after a Task: the states it passes, whether it waits, what runs next."""

    passes: tuple[str, ...]
    waited: bool = False
    then: str | None = None  # a step, END, or None when there is no route (see `problem`)
    problem: str | None = None

    def describe(self) -> str:
        return " -> ".join(self.passes) or "(nothing)"


def _choose(name: str, state: dict[str, Any], phase: str) -> tuple[str | None, str]:
    """The Choice's target for `phase` and how it got there; only plain `$.phase` StringEquals rules are
    understood, so a rule this check cannot read is a problem rather than silently skipped."""
    for index, rule in enumerate(state.get("Choices", [])):
        if set(rule) - {"Comment"} != {"Variable", "StringEquals", "Next"} or rule["Variable"] != "$.phase":
            raise ValueError(f"{name}.Choices[{index}] is not a plain $.phase StringEquals rule: {rule}")
        if rule["StringEquals"] == phase:
            return rule["Next"], f"{name}[{phase}]"
    return state.get("Default"), f"{name}[Default]"


def _route(states: Mapping[str, dict[str, Any]], task: str, phase: str) -> Route:
    passes: list[str] = []
    waited = False
    current = None if states[task].get("End") else states[task].get("Next")
    while current is not None:
        if current in passes or len(passes) > len(states):
            return Route(tuple(passes), problem="loops without reaching a Task or an end")
        state = states.get(current)
        if state is None:
            return Route(tuple(passes), problem=f"{current!r} names no state in this scope")
        kind = state.get("Type")
        if kind == "Choice":
            try:
                target, how = _choose(current, state, phase)
            except ValueError as exc:
                return Route(tuple(passes), problem=str(exc))
            passes.append(how)
            if target is None:
                problem = f"{current} has no rule for it and no Default (States.NoChoiceMatched)"
                return Route(tuple(passes), problem=problem)
            current = target
            continue
        passes.append(current)
        if kind == "Task":
            step = STEP_OF_TASK.get(_invocation(state))
            return Route(tuple(passes), waited, step or f"Task {current} (no batch step)")
        if kind in ("Succeed", "Fail") or state.get("End"):
            return Route(tuple(passes), waited, END)
        if kind == "Wait":
            waited = True
        elif kind != "Pass":
            return Route(tuple(passes), problem=f"{current} is a {kind}, which this check does not follow")
        current = state.get("Next")
    return Route(tuple(passes), waited, END)


def _step_tasks(definition: dict[str, Any]) -> list[tuple[str, dict[str, Any], str, str | None]]:
    """(scope, scope's states, Task name, step) for every Task invoking a batch-step function."""
    found = []
    for scope, body in _scopes(definition):
        states = body.get("States", {})
        for name, state in states.items():
            invocation = _invocation(state) if state.get("Type") == "Task" else (None, None)
            if invocation[0] in BATCH_STEP_FUNCTIONS:
                found.append((scope, states, name, STEP_OF_TASK.get(invocation)))
    return found


def routing(definition: dict[str, Any], step_phases: Mapping[str, frozenset[Phase]]) -> dict[tuple[str, Phase], Route]:
    """(Task state, phase) -> its route, for every phase the step run by that Task declares."""
    return {
        (f"{scope}{name}", phase): _route(states, name, phase.value)
        for scope, states, name, step in _step_tasks(definition)
        if step is not None
        for phase in sorted(step_phases.get(step, ()))
    }


def phase_problems(definition: dict[str, Any], step_phases: Mapping[str, frozenset[Phase]]) -> list[str]:
    problems = []
    run_steps = set()
    reaching: dict[str, set[str]] = defaultdict(set)  # Choice (scope + name) -> phases routed through it
    for scope, states, name, step in _step_tasks(definition):
        where = f"{scope}{name}"
        if step is None:
            problems.append(f"{where} invokes {_invocation(states[name])}, which runs no batch step")
            continue
        run_steps.add(step)
        for phase in sorted(step_phases.get(step, ())):
            route = _route(states, name, phase.value)
            for passed in route.passes:
                if passed.endswith("]"):
                    reaching[scope + passed.split("[", 1)[0]].add(phase.value)
            if route.problem:
                problems.append(f"{where}: {step} answers {phase.value!r}: {route.problem}")
                continue
            wait, then = MEANING[phase]
            if (route.waited, route.then) != (wait, then):
                problems.append(
                    f"{where}: {step} answers {phase.value!r}, routed {route.describe()}; {phase.value!r} means "
                    + ("wait, then " if wait else "")
                    + (then if then == END else f"run {then}")
                )
    for step in sorted(set(step_phases) - run_steps):
        problems.append(f"no Task runs step {step!r}")
    known = {phase.value for phase in Phase}
    for scope, body in _scopes(definition):
        for name, state in body.get("States", {}).items():
            for index, rule in enumerate(state.get("Choices", []) if state.get("Type") == "Choice" else []):
                if rule.get("Variable") != "$.phase":
                    continue
                where = f"{scope}{name}.Choices[{index}]"
                value = rule.get("StringEquals")
                if value is None:
                    problems.append(f"{where} compares $.phase other than with StringEquals")
                elif value not in known:
                    problems.append(f"{where} tests phase {value!r}, which is no Phase")
                elif value not in reaching[f"{scope}{name}"]:
                    problems.append(f"{where} tests phase {value!r}, which no step leading here answers")
    return problems


def _select(selector: dict[str, Any], execution_input: dict[str, Any], item: Any) -> dict[str, Any]:
    """The ItemSelector evaluated as Step Functions does, for the paths it uses: `$.name` (the execution
    input) and `$$.Map.Item.Value` (the manifest item); anything else raises."""
    selected = {}
    for key, value in selector.items():
        if not key.endswith(".$"):
            selected[key] = value
        elif value == "$$.Map.Item.Value":
            selected[key[:-2]] = item
        elif value.startswith("$.") and "." not in value[2:]:
            selected[key[:-2]] = execution_input[value[2:]]
        else:
            raise ValueError(f"ItemSelector path {value!r} is not one this check evaluates")
    return selected


def item_selector_problems(definition: dict[str, Any]) -> list[str]:
    execution_input = ExecutionInput(
        jobId="job-1", type="fullstory.users", deadline=1_900_000_000, inFlightBudget=10, manifest=ManifestRef(
            bucket="results", key="work/job-1/batches.json"
        )
    ).model_dump(mode="json")
    item = {"index": 1, "key": "work/job-1/batches/00001.json", "rows": 10, "bytes": 100}  # intake's manifest item
    problems = []
    maps = [(scope, name, state) for scope, body in _scopes(definition) for name, state in body["States"].items()]
    for scope, name, state in maps:
        if state.get("Type") != "Map" or not _step_tasks(state.get("ItemProcessor", {})):
            continue
        try:
            BatchTask.model_validate(_select(state.get("ItemSelector", {}), execution_input, item))
        except (KeyError, ValueError, ValidationError) as exc:
            problems.append(f"{scope}{name}.ItemSelector does not build a BatchTask: {exc}")
    return problems


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    return json.loads(ASL_PATH.read_text(encoding="utf-8"))


# -- the job state machine -----------------------------------------------------------------------------
def test_every_phase_a_step_answers_is_routed_where_it_means_and_the_asl_tests_no_other(definition):
    problems = phase_problems(definition, STEP_PHASES)
    assert problems == [], "\n".join(problems)


def test_every_phase_has_a_meaning_and_some_step_answers_it():
    assert set(MEANING) == set(Phase)
    assert set().union(*STEP_PHASES.values()) == set(Phase)


def test_the_map_hands_every_batch_step_a_valid_task(definition):
    assert item_selector_problems(definition) == []


def test_routes_take_the_default_only_where_the_default_is_meant(definition):
    """The Default branches, spelled out: a phase routed by a Default is one whose meaning the Default has."""
    by_default = {
        (task, phase.value): route.describe()
        for (task, phase), route in routing(definition, STEP_PHASES).items()
        if "[Default]" in route.describe()
    }
    assert by_default == {
        ("ProcessBatches.ItemProcessor/SubmitBatch", "polling"): "AfterSubmit[Default] -> WaitForBatch -> CheckBatch",
        ("ProcessBatches.ItemProcessor/CheckBatch", "polling"): "BatchState[Default] -> WaitForBatch -> CheckBatch",
        ("ProcessBatches.ItemProcessor/CollectResults", "collected"): "ResultsState[Default] -> BatchEnded",
        ("ProcessBatches.ItemProcessor/CollectResults", "failed"): "ResultsState[Default] -> BatchEnded",
    }


# -- the checks find what they look for ----------------------------------------------------------------
def _inner(d: dict[str, Any]) -> dict[str, Any]:
    return d["States"]["ProcessBatches"]["ItemProcessor"]["States"]


def _drop_rule(choice: str, phase: str) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        state = _inner(d)[choice]
        state["Choices"] = [r for r in state["Choices"] if r.get("StringEquals") != phase]

    return mutate


def _add_rule(choice: str, phase: str, target: str) -> Callable[[dict[str, Any]], None]:
    return lambda d: _inner(d)[choice]["Choices"].append(
        {"Variable": "$.phase", "StringEquals": phase, "Next": target}
    )


def _retarget(choice: str, phase: str, target: str) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        next(r for r in _inner(d)[choice]["Choices"] if r["StringEquals"] == phase)["Next"] = target

    return mutate


def _compound_rule(d: dict[str, Any]) -> None:
    rule = _inner(d)["BatchState"]["Choices"][0]
    _inner(d)["BatchState"]["Choices"][0] = {
        "And": [{"Variable": "$.phase", "StringEquals": rule["StringEquals"]}], "Next": rule["Next"]
    }


def _pattern_rule(d: dict[str, Any]) -> None:
    rule = _inner(d)["ResultsState"]["Choices"][0]
    rule["StringMatches"] = rule.pop("StringEquals").replace("pending", "*")


def _unknown_action(d: dict[str, Any]) -> None:
    _inner(d)["RecordBatchFailure"]["Parameters"]["Payload"]["action"] = "forget"


ASL_MUTATIONS: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("throttled-falls-to-default", _drop_rule("AfterSubmit", "throttled"), "'throttled', routed AfterSubmit[Default]"),
    ("done-goes-back-to-waiting", _retarget("BatchState", "done", "WaitForBatch"), "'done' means run collect"),
    ("pending-skips-the-wait", _retarget("ResultsState", "results_pending", "CollectResults"), "means wait, then"),
    ("no-default", lambda d: _inner(d)["ResultsState"].pop("Default"), "'collected': ResultsState has no rule"),
    ("unknown-phase", _add_rule("BatchState", "finished", "CollectResults"), "tests phase 'finished', which is no"),
    ("dead-rule", _add_rule("BatchState", "collected", "BatchEnded"), "'collected', which no step leading here"),
    ("compound-rule", _compound_rule, "is not a plain $.phase StringEquals rule"),
    ("other-comparison", _pattern_rule, "compares $.phase other than with StringEquals"),
    ("unknown-action", _unknown_action, "runs no batch step"),
]


@pytest.mark.parametrize(("mutate", "expected"), [m[1:] for m in ASL_MUTATIONS], ids=[m[0] for m in ASL_MUTATIONS])
def test_phase_check_detects_seeded_defect(definition, mutate, expected):
    broken = copy.deepcopy(definition)
    mutate(broken)
    problems = phase_problems(broken, STEP_PHASES)
    assert any(expected in p for p in problems), f"expected a problem containing {expected!r}, got {problems}"


def test_phase_check_detects_a_phase_a_step_declares_that_the_asl_misroutes(definition):
    declared = {**STEP_PHASES, "submit": STEP_PHASES["submit"] | {Phase.DONE}}
    problems = phase_problems(definition, declared)
    assert any("submit answers 'done', routed AfterSubmit[Default] -> WaitForBatch" in p for p in problems), problems


def test_phase_check_detects_a_step_no_task_runs(definition):
    problems = phase_problems(definition, {**STEP_PHASES, "cancel": frozenset({Phase.FAILED})})
    assert "no Task runs step 'cancel'" in problems


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda s: s.pop("deadline.$"), "deadline"),
        (lambda s: s.update({"deadLine.$": s.pop("deadline.$")}), "deadLine"),
        (lambda s: s.update({"batch.$": "$.manifest"}), "batch"),
    ],
    ids=["missing-field", "misspelt-field", "wrong-item"],
)
def test_item_selector_check_detects_seeded_defect(definition, mutate, expected):
    broken = copy.deepcopy(definition)
    mutate(broken["States"]["ProcessBatches"]["ItemSelector"])
    problems = item_selector_problems(broken)
    assert any(expected in p for p in problems), problems
