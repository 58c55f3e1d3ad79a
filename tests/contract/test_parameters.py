"""template.yaml's parameters are bounded where the code and the services stop working, and the stack
finds its Powertools layer in every partition.

Each bound is checked against the code's constants (tracker.config, tracker.budget, tracker.limits), the
state machine definition and the limits of the services, cited where they are stated. As in
test_template.py, the checks are functions returning problems and `test_*_detects_*` feeds each one a
broken copy of the template, so a check that stopped checking would fail.
"""

from __future__ import annotations

import copy
import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
from tracker import limits
from tracker.budget import DEFAULT_LEASE_SECONDS, HEALTHY_RENEWAL_GAP_SECONDS, POLL_TASK_SECONDS
from tracker.config import MAX_POLL_SECONDS
from tracker.polling import PollFacts, next_wait_seconds

from jobtracker.bench.polling_sim import history_events_of_definition
from jobtracker.local.template import Resolver, load_template
from tests.contract.test_template import _function_property, _transform

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
ASL_PATH = ROOT / "statemachine" / "job.asl.json"

# Step Functions: "Maximum execution history size: 25,000 events" (Standard workflows quotas; DESIGN.md).
MAX_HISTORY_EVENTS = 25_000
# A Distributed Map runs at most 10,000 child executions at once; MaxConcurrency 0 means "no limit"
# (Step Functions developer guide, Map state in Distributed mode).
MAX_DISTRIBUTED_MAP_CONCURRENCY = 10_000
# FullStory: 100 batches run per org at once; from 200 in progress every request answers 429
# (developer.fullstory.com, "Create Batch Import", Special Batch Rate Limits).
FULLSTORY_RUNNING_BATCHES = 100
FULLSTORY_THROTTLED_FROM = 200
# DynamoDB: an item holds at most 400 KB. A budget's leases are one map in one item; an entry is a lease
# id (a job id and a batch number, under 40 characters) and its expiry (a number, at most 21 bytes).
DYNAMODB_ITEM_BYTES = 400 * 1024
LEASE_ENTRY_BYTES = 100
# Lambda SQS event sources: ScalingConfig.MaximumConcurrency is 2..1,000 (Lambda API reference).
SQS_MAXIMUM_CONCURRENCY = (2, 1000)
# A provider call opens its connection within 5 s (urllib3 connect timeout in the provider modules); the
# handler's own AWS calls (S3, DynamoDB, Secrets Manager) get at least 10 s of the function's timeout.
PROVIDER_CONNECT_SECONDS = 5
HANDLER_AWS_SECONDS = 10
# The function that holds a batch body while sending it may use at most this share of its memory for it.
BATCH_BODY_MEMORY_SHARE = 1 / 8
# Intake's read rate, estimated from `make bench` (README, Performance): 150,584 NDJSON rows/s of about
# 267 bytes on one vCPU, about 40 MB/s; Lambda gives one vCPU per 1,769 MB of memory (Lambda docs).
INGEST_BYTES_PER_VCPU_SECOND = 40_000_000
LAMBDA_MB_PER_VCPU = 1769
# The official layer's publisher account per partition and region, from Powertools for AWS Lambda
# (Python), docs/getting-started/install.md: "Lambda Layer", "AWS China regions", "AWS GovCloud regions".
POWERTOOLS_PUBLISHERS = {
    ("aws", "us-east-1"): "017000801446",
    ("aws", "eu-west-1"): "017000801446",
    ("aws", "ap-southeast-7"): "017000801446",
    ("aws-cn", "cn-north-1"): "498634801083",
    ("aws-us-gov", "us-gov-east-1"): "165087284144",
    ("aws-us-gov", "us-gov-west-1"): "165093116878",
}
POWERTOOLS_LAYER = "AWSLambdaPowertoolsPythonV3-python313-arm64"


def _parameters(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return template["Parameters"]


def _bound(template: dict[str, Any], name: str, key: str) -> float:
    return float(_parameters(template)[name][key])


def _functions_invoked_by_poll_tasks(asl: dict[str, Any]) -> dict[str, int | None]:
    """TimeoutSeconds of each task of the batch loop that submits or polls (by its function placeholder)."""
    child = next(s for s in asl["States"].values() if s.get("Type") == "Map")["ItemProcessor"]["States"]
    found = {}
    for state in child.values():
        function = str(state.get("Parameters", {}).get("FunctionName", ""))
        if function in ("${SubmitFunctionArn}", "${StatusFunctionArn}"):
            found[function] = state.get("TimeoutSeconds")
    return found


class _ShortestWaits(random.Random):
    """Jitter at the edge that makes waits shortest: `pick` is the end of uniform(a, b) to answer."""

    def __init__(self, pick: str) -> None:
        super().__init__(0)
        self._pick = pick

    def uniform(self, a: float, b: float) -> float:
        return a if self._pick == "low" else b


def worst_case_polls(seconds: float, min_seconds: float, max_seconds: float) -> float:
    """An upper bound of the loop iterations (polls, throttled submits, results not ready) one batch makes
    in `seconds`, from tracker.polling itself. Once a loop's waits reach the cap, the shortest wait any
    regime takes is half the cap (equal jitter of the backoff regime); before that each loop has a ramp of
    shorter waits, counted once for each of the three loops, plus one poll past the deadline. Not covered:
    a provider that reports 100 % yet keeps running is polled every LAG_FLOOR_SECONDS (tracker.polling),
    and the ASL's retries of failed tasks add events of their own."""
    if min_seconds <= 0:
        return math.inf  # the backoff regime never waits: nothing bounds the loop
    low, high = _ShortestWaits("low"), _ShortestWaits("high")
    backoff_ramp, attempt = 0, 0
    while next_wait_seconds(
        PollFacts(attempt=attempt, seconds_to_deadline=10**9), min_seconds=min_seconds, max_seconds=max_seconds, rng=low
    ) < math.ceil(max_seconds / 2):
        backoff_ramp, attempt = backoff_ramp + 1, attempt + 1
    running_ramp, elapsed = 0, 0.0
    while True:
        facts = PollFacts(attempt=running_ramp, seconds_to_deadline=10**9, elapsed_seconds=elapsed)
        wait = next_wait_seconds(facts, min_seconds=min_seconds, max_seconds=max_seconds, rng=high)
        if wait >= max_seconds:
            break
        running_ramp, elapsed = running_ramp + 1, elapsed + wait
    return 3 * max(backoff_ramp, running_ramp) + math.ceil(seconds / math.ceil(max_seconds / 2)) + 1


def _unbounded_problems(template: dict[str, Any]) -> list[str]:
    problems = []
    for name, spec in _parameters(template).items():
        if spec.get("Type") != "Number":
            continue
        if "AllowedValues" in spec:
            if float(spec["Default"]) not in {float(v) for v in spec["AllowedValues"]}:
                problems.append(f"{name}: Default {spec['Default']} is not an allowed value")
            continue
        if "MinValue" not in spec or "MaxValue" not in spec:
            problems.append(f"{name}: a Number parameter needs MinValue and MaxValue (or AllowedValues)")
            continue
        if not float(spec["MinValue"]) <= float(spec["Default"]) <= float(spec["MaxValue"]):
            problems.append(f"{name}: Default {spec['Default']} outside [{spec['MinValue']}, {spec['MaxValue']}]")
    return problems


def _bound_problems(template: dict[str, Any], asl: dict[str, Any]) -> list[str]:
    """Every cross-check between a parameter's bounds and the code or a service limit."""
    problems = []

    def check(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    def timeout(function: str) -> float:
        resource = template["Resources"][function]
        return float(_function_property(template, resource, "Timeout") or 3)

    def memory(function: str) -> float:
        resource = template["Resources"][function]
        return float(_function_property(template, resource, "MemorySize") or 128)

    # The lease (tracker.budget) is derived from the largest PollMaxSeconds and the poll tasks' timeouts.
    check(
        _bound(template, "PollMaxSeconds", "MaxValue") == MAX_POLL_SECONDS,
        f"PollMaxSeconds MaxValue is not tracker.config.MAX_POLL_SECONDS ({MAX_POLL_SECONDS}), the lease's base",
    )
    task_timeouts = _functions_invoked_by_poll_tasks(asl)
    check(
        set(task_timeouts) == {"${SubmitFunctionArn}", "${StatusFunctionArn}"},
        f"no submit and status task in the batch loop: {task_timeouts}",
    )
    for function, seconds in task_timeouts.items():
        check(
            seconds is not None and seconds <= POLL_TASK_SECONDS,
            f"task of {function} may run {seconds} s, longer than the lease allows ({POLL_TASK_SECONDS} s)",
        )
    check(DEFAULT_LEASE_SECONDS > HEALTHY_RENEWAL_GAP_SECONDS, "the lease does not outlive a healthy gap")

    # History events of one batch's child execution at the fastest polling for the longest job.
    fixed_events, per_poll = history_events_of_definition(asl)
    longest = _bound(template, "MaxJobHours", "MaxValue") * 3600
    polls = worst_case_polls(
        longest, _bound(template, "PollMinSeconds", "MinValue"), _bound(template, "PollMaxSeconds", "MinValue")
    )
    events = fixed_events + per_poll * polls
    check(
        events <= MAX_HISTORY_EVENTS,
        f"a batch polled for MaxJobHours' MaxValue at PollMaxSeconds' MinValue may write {events:,.0f} history "
        f"events, more than Step Functions' {MAX_HISTORY_EVENTS:,}",
    )
    check(
        _bound(template, "PollMinSeconds", "MinValue") >= 1,
        "PollMinSeconds MinValue below 1: a batch waiting for a slot would loop without waiting",
    )
    check(
        _bound(template, "PollMinSeconds", "MaxValue") <= _bound(template, "PollMaxSeconds", "MinValue"),
        "PollMinSeconds may exceed PollMaxSeconds",
    )

    # Working files (batches under work/) must outlive the longest job.
    check(
        _bound(template, "RetentionDays", "MinValue") * 24 > _bound(template, "MaxJobHours", "MaxValue"),
        "RetentionDays' MinValue lets working files expire while a job may still run",
    )

    # Concurrency: the Map's MaxConcurrency and FullStory's per-org limits.
    map_state = next(s for s in asl["States"].values() if s.get("Type") == "Map")
    check(map_state.get("MaxConcurrencyPath") == "$.inFlightBudget", "the Map does not take InFlightBudget")
    check(
        _bound(template, "InFlightBudget", "MinValue") >= 1,
        "InFlightBudget may be 0, which is 'no limit' to a Distributed Map",
    )
    most = min(FULLSTORY_RUNNING_BATCHES, MAX_DISTRIBUTED_MAP_CONCURRENCY)
    check(
        _bound(template, "InFlightBudget", "MaxValue") <= most,
        "InFlightBudget may exceed what FullStory runs per org",
    )
    check(
        _bound(template, "OrgInFlightBudget", "MaxValue") < FULLSTORY_THROTTLED_FROM,
        "OrgInFlightBudget may reach the point where FullStory answers 429 to everything",
    )
    for name in ("OrgInFlightBudget", "ExportInFlightBudget", "KeboolaInFlightBudget"):
        check(_bound(template, name, "MinValue") == 0, f"{name}: 0 (budget off) should be allowed")
        check(
            _bound(template, name, "MaxValue") * LEASE_ENTRY_BYTES <= DYNAMODB_ITEM_BYTES,
            f"{name}: its leases may not fit in one DynamoDB item",
        )

    # Batches: FullStory's row cap, the reader's longest line, the submit function's memory.
    check(
        _bound(template, "MaxBatchRequests", "MaxValue") <= limits.MAX_REQUESTS_PER_BATCH,
        f"MaxBatchRequests may exceed FullStory's {limits.MAX_REQUESTS_PER_BATCH:,} rows per batch",
    )
    check(
        _bound(template, "MaxBatchBytes", "MinValue") >= limits.MAX_LINE_BYTES + limits.BATCH_ENVELOPE_BYTES,
        "MaxBatchBytes may be too small for one row of the largest size the reader accepts",
    )
    check(
        _bound(template, "MaxBatchBytes", "MaxValue") <= memory("SubmitFunction") * 2**20 * BATCH_BODY_MEMORY_SHARE,
        "MaxBatchBytes may take more than its share of the submit function's memory",
    )
    check(
        _bound(template, "MaxUncompressedBytes", "MinValue") >= limits.MAX_LINE_BYTES,
        "MaxUncompressedBytes may be smaller than one line the reader accepts",
    )
    readable = timeout("IntakeFunction") * INGEST_BYTES_PER_VCPU_SECOND * memory("IntakeFunction") / LAMBDA_MB_PER_VCPU
    check(
        _bound(template, "MaxUncompressedBytes", "MaxValue") <= readable,
        f"MaxUncompressedBytes may exceed what intake reads within its timeout (about {readable / 2**30:.1f} GiB)",
    )

    # A provider call ends (and raises its named error) before the calling function's timeout.
    for function in ("SubmitFunction", "StatusFunction"):
        check(
            _bound(template, "ProviderTimeoutSeconds", "MaxValue") + PROVIDER_CONNECT_SECONDS + HANDLER_AWS_SECONDS
            <= timeout(function),
            f"ProviderTimeoutSeconds may outlast {function}'s timeout",
        )

    # The intake queue's event source is capped by IntakeMaxConcurrency, within Lambda's range.
    low, high = SQS_MAXIMUM_CONCURRENCY
    check(
        low <= _bound(template, "IntakeMaxConcurrency", "MinValue")
        and _bound(template, "IntakeMaxConcurrency", "MaxValue") <= high,
        f"IntakeMaxConcurrency outside Lambda's {low}..{high}",
    )
    intake_events = template["Resources"]["IntakeFunction"]["Properties"].get("Events", {}).values()
    scaling = [e.get("Properties", {}).get("ScalingConfig") for e in intake_events if e.get("Type") == "SQS"]
    check(
        scaling == [{"MaximumConcurrency": {"Ref": "IntakeMaxConcurrency"}}],
        f"intake's SQS event source is not capped by IntakeMaxConcurrency: {scaling}",
    )
    return problems


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


@pytest.fixture(scope="module")
def asl() -> dict[str, Any]:
    return json.loads(ASL_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def transformed(template: dict[str, Any]) -> dict[str, Any]:
    return _transform(template)


def test_every_numeric_parameter_is_bounded_with_its_default_inside(template: dict[str, Any]) -> None:
    assert _unbounded_problems(template) == []


def test_parameter_bounds_agree_with_the_code_and_the_services(template: dict[str, Any], asl: dict[str, Any]) -> None:
    assert _bound_problems(template, asl) == []


def _set(name: str, key: str, value: Any) -> Any:
    def mutate(template: dict[str, Any], asl: dict[str, Any]) -> None:
        template["Parameters"][name][key] = value

    return mutate


def _slow_status_task(template: dict[str, Any], asl: dict[str, Any]) -> None:
    child = next(s for s in asl["States"].values() if s.get("Type") == "Map")["ItemProcessor"]["States"]
    for state in child.values():
        if state.get("Parameters", {}).get("FunctionName") == "${StatusFunctionArn}":
            state["TimeoutSeconds"] = POLL_TASK_SECONDS + 60


def _unbounded_intake(template: dict[str, Any], asl: dict[str, Any]) -> None:
    for event in template["Resources"]["IntakeFunction"]["Properties"]["Events"].values():
        event["Properties"].pop("ScalingConfig", None)


SEEDED_DEFECTS = [
    ("lease-outlived-by-wait", _set("PollMaxSeconds", "MaxValue", 900), "the lease's base"),
    ("slow-status-task", _slow_status_task, "longer than the lease allows"),
    ("too-long-for-history", _set("MaxJobHours", "MaxValue", 360), "history events"),
    ("fast-cap-for-history", _set("PollMaxSeconds", "MinValue", 60), "history events"),
    ("zero-min-wait", _set("PollMinSeconds", "MinValue", 0), "loop without waiting"),
    ("short-retention", _set("RetentionDays", "MinValue", 1), "working files expire"),
    ("unlimited-map", _set("InFlightBudget", "MinValue", 0), "no limit"),
    ("org-budget-429", _set("OrgInFlightBudget", "MaxValue", 200), "429"),
    ("lease-item-too-big", _set("KeboolaInFlightBudget", "MaxValue", 10_000), "one DynamoDB item"),
    ("rows-above-fullstory", _set("MaxBatchRequests", "MaxValue", 60_000), "rows per batch"),
    ("body-below-one-line", _set("MaxBatchBytes", "MinValue", 2**20), "largest size the reader accepts"),
    ("body-above-memory", _set("MaxBatchBytes", "MaxValue", 2**30), "submit function's memory"),
    ("gzip-cap-past-timeout", _set("MaxUncompressedBytes", "MaxValue", 2**40), "within its timeout"),
    ("provider-outlasts-function", _set("ProviderTimeoutSeconds", "MaxValue", 60), "outlast"),
    ("intake-above-lambda", _set("IntakeMaxConcurrency", "MaxValue", 5000), "outside Lambda's"),
    ("intake-unbounded", _unbounded_intake, "not capped"),
]


@pytest.mark.parametrize(("mutate", "expected"), [c[1:] for c in SEEDED_DEFECTS], ids=[c[0] for c in SEEDED_DEFECTS])
def test_bound_checks_detect_seeded_defect(
    template: dict[str, Any], asl: dict[str, Any], mutate: Any, expected: str
) -> None:
    broken_template, broken_asl = copy.deepcopy(template), copy.deepcopy(asl)
    mutate(broken_template, broken_asl)
    problems = _bound_problems(broken_template, broken_asl)
    assert any(expected in problem for problem in problems), problems


def test_unbounded_check_detects_a_number_without_max_value(template: dict[str, Any]) -> None:
    broken = copy.deepcopy(template)
    del broken["Parameters"]["RetentionDays"]["MaxValue"]
    broken["Parameters"]["MaxJobHours"]["Default"] = 500
    assert len(_unbounded_problems(broken)) == 2


def test_worst_case_polls_bound_the_policy_of_a_day_long_job() -> None:
    # The bound holds the policy's real waits for a job that runs a whole day (jobtracker.bench's
    # simulation, with and without a duration history and progress).
    from jobtracker.bench import polling_sim

    defaults = polling_sim.Defaults(min_seconds=1, max_seconds=300, max_job_seconds=86_400)
    simulated = polling_sim.history_events_24h(defaults, ASL_PATH, seed=3)["polls"]
    assert simulated <= worst_case_polls(86_400, 1, 300)


def _layers_in(transformed: dict[str, Any], partition: str, region: str) -> dict[str, list[str]]:
    """Each function's layer ARNs as CloudFormation resolves the transformed template in that region
    (CloudFormation resolves every Fn::FindInMap, also in an Fn::If branch it does not take)."""
    resolver = Resolver(
        transformed,
        {},
        {
            "AWS::Region": region,
            "AWS::AccountId": "123456789012",
            "AWS::StackName": "jobtracker",
            "AWS::Partition": partition,
            "AWS::URLSuffix": "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com",
        },
        lambda logical, attribute: f"arn:{partition}:lambda:{region}:123456789012:layer:{logical}:1",
    )
    layers = {}
    for name, resource in transformed["Resources"].items():
        if resource["Type"] == "AWS::Lambda::Function":
            for branch in _walk_find_in_map(resource["Properties"]["Layers"]):
                resolver.resolve(branch)
            layers[name] = resolver.resolve(resource["Properties"]["Layers"])
    return layers


def _walk_find_in_map(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        found = [node] if set(node) == {"Fn::FindInMap"} else []
        return found + [f for value in node.values() for f in _walk_find_in_map(value)]
    if isinstance(node, list):
        return [f for value in node for f in _walk_find_in_map(value)]
    return []


@pytest.mark.parametrize(("partition", "region"), sorted(POWERTOOLS_PUBLISHERS))
def test_the_powertools_layer_is_the_publishers_in_each_partition(
    transformed: dict[str, Any], partition: str, region: str
) -> None:
    version = transformed["Parameters"]["PowertoolsLayerVersion"]["Default"]
    publisher = POWERTOOLS_PUBLISHERS[partition, region]
    expected = f"arn:{partition}:lambda:{region}:{publisher}:layer:{POWERTOOLS_LAYER}:{version}"
    layers = _layers_in(transformed, partition, region)
    assert layers
    for name, arns in layers.items():
        assert [arn for arn in arns if POWERTOOLS_LAYER in arn] == [expected], f"{name}: {arns}"


def test_the_layer_check_detects_a_partition_missing_from_the_mapping(transformed: dict[str, Any]) -> None:
    broken = copy.deepcopy(transformed)
    del broken["Mappings"]["PowertoolsLayerPublisher"]["aws-cn"]
    with pytest.raises(KeyError, match="Unable to get mapping for PowertoolsLayerPublisher::aws-cn::Account"):
        _layers_in(broken, "aws-cn", "cn-north-1")


def test_the_intake_event_source_mapping_caps_its_concurrency(transformed: dict[str, Any]) -> None:
    mappings = [r for r in transformed["Resources"].values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    intake = [m for m in mappings if "IntakeQueue" in json.dumps(m["Properties"]["EventSourceArn"])]
    assert [m["Properties"].get("ScalingConfig") for m in intake] == [
        {"MaximumConcurrency": {"Ref": "IntakeMaxConcurrency"}}
    ]
