"""Cold start: import time of each handler module in a fresh interpreter, against a bare `import boto3`.

Each handler (functions/<name>/app.py) is loaded by file path, as the offline runtime loads it
(jobtracker.local.lambdas), with the function's directory and the shared layer on sys.path as in
Lambda, and the environment template.yaml's Globals give every function (placeholder values). One
warm-up run writes the bytecode caches; then `runs` timed runs each, interleaved, median counts.
Only the import is timed, not the interpreter's own start.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from jobtracker.bench.runner import child_env

HANDLER_ENV = {
    "JOBS_TABLE": "bench-jobs",
    "INBOX_BUCKET": "bench-inbox",
    "RESULTS_BUCKET": "bench-results",
    "TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:bench-jobs",
    "INTAKE_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/bench-intake",
    "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:bench-jobs",
    "FULLSTORY_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:bench",
    "FULLSTORY_BASE_URL": "https://api.fullstory.com",
    "IN_FLIGHT_BUDGET": "10",
    "POLL_MIN_SECONDS": "5",
    "POLL_MAX_SECONDS": "300",
    "MAX_JOB_HOURS": "24",
    "MAX_BATCH_BYTES": "8388608",
    "MAX_BATCH_REQUESTS": "50000",
    "RETENTION_DAYS": "30",
    "POWERTOOLS_SERVICE_NAME": "jobtracker",
    "POWERTOOLS_METRICS_NAMESPACE": "JobTracker",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "AWS_LAMBDA_FUNCTION_NAME": "bench",
}

_HANDLER = """
import importlib.util, sys, time
sys.path[:0] = [{code!r}, {layer!r}]
started = time.perf_counter()
spec = importlib.util.spec_from_file_location("app", {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print((time.perf_counter() - started) * 1000)
"""

_MODULE = """
import importlib, sys, time
sys.path[:0] = [{layer!r}]
started = time.perf_counter()
importlib.import_module({module!r})
print((time.perf_counter() - started) * 1000)
"""

_BOTO3 = _MODULE.format(layer=str(Path(__file__).resolve().parents[3] / "layers" / "shared" / "python"), module="boto3")

# What the handlers import at their top level, timed alone the same way (cumulative: a module's own
# imports included), to show where an import-time budget goes.
MODULES = (
    "tracker.observability",  # Powertools Logger, Metrics and Tracer (which imports aws_xray_sdk)
    "aws_xray_sdk.core",
    "aws_lambda_powertools.utilities.parser",
    "aws_lambda_powertools.event_handler",
    "pydantic",
    "tracker.wiring",
)


def _once(code: str) -> float:
    completed = subprocess.run(
        [sys.executable, "-I", "-c", code],
        capture_output=True,
        text=True,
        env=child_env(HANDLER_ENV),
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"import timing failed:\n{completed.stderr[-3000:]}")
    return float(completed.stdout.strip().splitlines()[-1])


def handler_modules(root: Path) -> dict[str, Path]:
    return {path.parent.name: path for path in sorted((root / "functions").glob("*/app.py"))}


def measure(root: Path, *, runs: int = 7) -> dict[str, Any]:
    layer = str(root / "layers" / "shared" / "python")
    programs = {"boto3": _MODULE.format(layer=layer, module="boto3")}
    for name, path in handler_modules(root).items():
        programs[name] = _HANDLER.format(code=str(path.parent), layer=layer, path=str(path))
    for code in programs.values():
        _once(code)  # bytecode caches
    modules = {f"module:{m}": _MODULE.format(layer=layer, module=m) for m in MODULES}
    times: dict[str, list[float]] = {name: [] for name in (*programs, *modules)}
    for _ in range(runs):
        for name, code in programs.items():
            times[name].append(_once(code))
    for name, code in modules.items():
        _once(code)
        times[name] = [_once(code) for _ in range(max(3, runs // 2))]
    boto3_ms = statistics.median(times.pop("boto3"))
    module_ms = {name[7:]: round(statistics.median(times.pop(name)), 1) for name in modules}
    handlers = {name: round(statistics.median(values), 1) for name, values in times.items()}
    return {
        "boto3_ms": round(boto3_ms, 1),
        "handlers": handlers,
        "max_ratio": round(max(handlers.values()) / boto3_ms, 2),
        # beside the required keys
        "ratios": {name: round(ms / boto3_ms, 2) for name, ms in handlers.items()},
        "modules_ms": module_ms,
        "runs": runs,
    }
