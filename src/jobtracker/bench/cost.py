"""What a job costs in AWS, in USD, from counted billable units at us-east-1 list prices.

Counted in the utilization simulation (jobtracker.bench.utilization), which runs the real batch steps and
the real ASL: Step Functions state transitions, Lambda invocations of every batch step, DynamoDB read
and write units of every request the steps and budgets make (item sizes as written), S3 requests of
the steps. Once per job, counted from the code of tracker/intake.py and tracker/finalize.py (they do not
run in the simulation): their invocations, DynamoDB and S3 requests and the SNS notification; S3 objects
of 8 MiB or more are multipart (tracker.s3io.PART_BYTES: create, one request a part, complete).
Lambda GB-seconds at each function's memory from template.yaml on arm64; durations are assumptions
for the calls that mostly wait on a network (stated in DURATION_SECONDS), and for the row-heavy steps
(intake, collect) the rows/s this same bench measured on one core scaled to the vCPU share Lambda gives
the function's memory (one vCPU per 1,769 MB, Lambda's documentation).

A fixed poller (10 s, 60 s: the AWS sample's) is the same state machine with every wait fixed and no org
budget (the AWS sample has none), so it learns of FullStory's caps from 429s.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
from pathlib import Path
from typing import Any

from tracker.polling import size_class
from tracker.s3io import PART_BYTES

from jobtracker.bench import utilization
from jobtracker.local.template import load_template

# us-east-1 list prices, looked up on PRICES_DATE (pages cited beside each).
PRICES_DATE = "2026-12-01"
PRICES = {
    # aws.amazon.com/step-functions/pricing/: Standard, US East (N. Virginia) $0.0250 per 1,000 state transitions
    "state_transition": 0.025 / 1_000,
    # aws.amazon.com/lambda/pricing/ (arm64 as listed on the page's Arm tab; also e.g. cloudchipr.com/blog/
    # aws-lambda-pricing, 2024): requests $0.20 per 1M; duration $0.0000133334 per GB-second (first tier)
    "lambda_request": 0.20 / 1_000_000,
    "lambda_gb_second_arm64": 0.0000133334,
    # aws.amazon.com/dynamodb/pricing/on-demand/ after the November 2024 reduction (airbyte.com/data-engineering-
    # resources/dynamodb-pricing, 2025): $0.625 per million write request units, $0.125 per million read
    "dynamodb_write_unit": 0.625 / 1_000_000,
    "dynamodb_read_unit": 0.125 / 1_000_000,
    # aws.amazon.com/s3/pricing/ (c3x.dev/blog/s3-request-fees-explained): S3 Standard PUT, COPY, POST, LIST
    # $0.005 per 1,000; GET $0.0004 per 1,000
    "s3_write_request": 0.005 / 1_000,
    "s3_read_request": 0.0004 / 1_000,
    # aws.amazon.com/sns/pricing/ (factualminds.com, 2026): standard topic publish $0.50 per 1M
    "sns_publish": 0.50 / 1_000_000,
}
PRICE_SOURCES = (
    "https://aws.amazon.com/step-functions/pricing/",
    "https://aws.amazon.com/lambda/pricing/",
    "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    "https://aws.amazon.com/s3/pricing/",
    "https://aws.amazon.com/sns/pricing/",
)
LAMBDA_MB_PER_VCPU = 1769
ROW_BYTES = 270  # a FullStory user row as the bench writes it (jobtracker.bench.data)
# Seconds of one invocation that mostly waits on FullStory, S3 or DynamoDB (assumptions).
DURATION_SECONDS = {"submit": 0.4, "wait_for_slot": 0.1, "check": 0.15, "record_failure": 0.1}
FINALIZE_BYTES_PER_S = 50_000_000  # finalize streams each batch's result parts into the job's files
STEP_FUNCTION = {
    "submit": "SubmitFunction",
    "wait_for_slot": "SubmitFunction",
    "check": "StatusFunction",
    "collect": "CollectFunction",
    "record_failure": "CollectFunction",
    "intake": "IntakeFunction",
    "finalize": "FinalizeFunction",
}
IMPORT_ROWS = 1_000_000
EXPORT_SECONDS = 6 * 3600.0
EXPORT_BYTES = 200_000_000  # the export file collect streams into S3 (an assumption: FullStory's size varies)


def function_memory_mb(root: Path) -> dict[str, int]:
    template = load_template(root / "template.yaml")
    default = int(template["Globals"]["Function"].get("MemorySize", 128))
    return {
        name: int(resource["Properties"].get("MemorySize", default))
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def s3_writes(size: int) -> int:
    """Requests to store an object of `size` bytes the way tracker.s3io.S3StreamWriter does."""
    return 1 if size < PART_BYTES else math.ceil(size / PART_BYTES) + 2


def once_per_job(rows: int, batches: int, *, export_bytes: int = 0) -> dict[str, float]:
    """Units intake and finalize spend on one job, counted from their code."""
    result_bytes = rows * ROW_BYTES
    write_units = (
        2  # intake: create_job (a ~1.5 KB job item)
        + 2  # intake: Powertools idempotency record (put, then completed)
        + batches  # intake: put_batches, one item a batch
        + 2 * 2  # intake: update_job (counts) and mark_running
        + 3 * 2  # finalize: update_job (final state), claim_notification, notifiedAt
    )
    read_units = 3 + math.ceil(batches * 1024 / 4096)  # get_job reads, list_batches
    s3_write = 2 + sum(s3_writes(min(rows - n * 50_000, 50_000) * ROW_BYTES) for n in range(batches) if rows)
    s3_write += 2 + (s3_writes(result_bytes) + 1 if rows else s3_writes(export_bytes))  # manifest, report, files
    s3_read = 1 + 2 * batches + 1  # the input, each batch's imports and errors parts, the rejected rows
    return {"write_units": write_units, "read_units": read_units, "s3_write": s3_write, "s3_read": s3_read, "sns": 1}


def price(
    run: dict[str, Any],
    *,
    rows: int,
    batches: int,
    memory: dict[str, int],
    rates: dict[str, float],
    export_bytes: int = 0,
) -> dict[str, Any]:
    """USD of one simulated run (utilization.Run.figures()) plus intake and finalize, by service."""
    invocations = dict(run["invocations"])
    seconds = dict(DURATION_SECONDS)
    seconds["intake"] = 0.5 + rows / rates["intake"] * LAMBDA_MB_PER_VCPU / memory["IntakeFunction"]
    per_batch_rows = rows / batches if batches else 0
    if export_bytes:
        seconds["collect"] = 0.5 + export_bytes / FINALIZE_BYTES_PER_S
    else:
        seconds["collect"] = 0.5 + per_batch_rows / rates["collect"] * LAMBDA_MB_PER_VCPU / memory["CollectFunction"]
    seconds["finalize"] = 1.0 + rows * ROW_BYTES / FINALIZE_BYTES_PER_S
    gb_seconds = sum(n * seconds[step] * memory[STEP_FUNCTION[step]] / 1024 for step, n in invocations.items())
    requests = run["requests"]
    once = once_per_job(rows, batches, export_bytes=export_bytes)
    # The simulated provider pages no rows: collect's result objects are counted at their real size here.
    collect_writes = sum(n for name, n in requests.items() if name.startswith("s3.Put"))
    if rows:
        imports_bytes = int(per_batch_rows * ROW_BYTES)
        collect_writes += batches * (s3_writes(imports_bytes) - 1)
    elif export_bytes:
        collect_writes += s3_writes(export_bytes) - 1
    units = {
        "state_transitions": run["transitions"],
        "lambda_requests": sum(invocations.values()),
        "lambda_gb_seconds": round(gb_seconds, 1),
        "dynamodb_write_units": run["dynamodb"]["write_units"] + once["write_units"],
        "dynamodb_read_units": run["dynamodb"]["read_units"] + once["read_units"],
        "s3_write_requests": collect_writes + once["s3_write"],
        "s3_read_requests": requests.get("s3.GetObject", 0) + once["s3_read"],
        "sns_publishes": once["sns"],
    }
    usd = {
        "step_functions": units["state_transitions"] * PRICES["state_transition"],
        "lambda": units["lambda_requests"] * PRICES["lambda_request"]
        + units["lambda_gb_seconds"] * PRICES["lambda_gb_second_arm64"],
        "dynamodb": units["dynamodb_write_units"] * PRICES["dynamodb_write_unit"]
        + units["dynamodb_read_units"] * PRICES["dynamodb_read_unit"],
        "s3": units["s3_write_requests"] * PRICES["s3_write_request"]
        + units["s3_read_requests"] * PRICES["s3_read_request"],
        "sns": units["sns_publishes"] * PRICES["sns_publish"],
    }
    return {
        "usd": round(sum(usd.values()), 4),
        "usd_by_service": {name: round(value, 5) for name, value in usd.items()},
        "units": units,
        "invocations": invocations,
        "polls": invocations.get("check", 0),
    }


def measure(settings: Any, root: Path, rates: dict[str, float], *, seed: int = 5) -> dict[str, Any]:
    """The 1M-row import and the 6-hour export, by the tracker and by fixed 10 s and 60 s pollers."""
    asl = json.loads((root / "statemachine" / "job.asl.json").read_text(encoding="utf-8"))
    memory = function_memory_mb(root)
    batches = math.ceil(IMPORT_ROWS / utilization.FULL_BATCH)
    rng = random.Random(seed)
    # A deployment that has tracked batches like these before: the policy's duration history is filled.
    history = {
        (utilization.IMPORT_TYPE, size_class(utilization.FULL_BATCH)): [
            utilization.run_seconds(utilization.FULL_BATCH, rng) for _ in range(32)
        ]
    }
    import_job = [utilization.JobSpec("import", 0.0, (utilization.FULL_BATCH,) * batches)]
    export_job = [utilization.JobSpec("export", 0.0, (0,), utilization.EXPORT_TYPE, EXPORT_SECONDS)]
    jobs = {
        "import_1m_rows": (import_job, IMPORT_ROWS, batches, 0),
        "export_6h": (export_job, 0, 1, EXPORT_BYTES),
    }
    runs: dict[str, dict[str, Any]] = {}
    for poller, fixed in (("tracker", None), ("fixed_10s", 10.0), ("fixed_60s", 60.0)):
        for name, (specs, rows, job_batches, export_bytes) in jobs.items():
            with utilization.fixed_polling(fixed) if fixed else contextlib.nullcontext():
                figures = utilization.simulate(
                    specs, settings, asl, seed=seed, budgets=fixed is None, history=history
                ).figures()
            runs[f"{poller}:{name}"] = {
                **price(figures, rows=rows, batches=job_batches, memory=memory, rates=rates, export_bytes=export_bytes),
                "makespan_s": figures["makespan_s"],
                "provider_429s": figures["tracker_429s"],
            }
    tracker, fixed_10s = runs["tracker:import_1m_rows"]["usd"], runs["fixed_10s:import_1m_rows"]["usd"]
    return {
        "import_1m_rows_usd": tracker,
        "export_6h_usd": runs["tracker:export_6h"]["usd"],
        "fixed_10s_import_1m_rows_usd": fixed_10s,
        "fixed_60s_import_1m_rows_usd": runs["fixed_60s:import_1m_rows"]["usd"],
        "ratio_vs_fixed_10s": round(tracker / fixed_10s, 3),
        "prices_date": PRICES_DATE,
        # beside the required keys
        "fixed_10s_export_6h_usd": runs["fixed_10s:export_6h"]["usd"],
        "fixed_60s_export_6h_usd": runs["fixed_60s:export_6h"]["usd"],
        "export_ratio_vs_fixed_10s": round(runs["tracker:export_6h"]["usd"] / runs["fixed_10s:export_6h"]["usd"], 3),
        "runs": runs,
        "prices": PRICES,
        "price_sources": PRICE_SOURCES,
        "rates_rows_per_s": rates,
        "memory_mb": memory,
    }
