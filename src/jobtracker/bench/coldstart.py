"""Cold start: import time of each handler module in a fresh interpreter, against a bare `import boto3`.

Each handler (functions/<name>/app.py) is loaded by file path, as the offline runtime loads it
(jobtracker.local.lambdas), with the function's directory and the shared layer on sys.path as in
Lambda, and the environment template.yaml's Globals give every function (jobtracker.local.settings). One
warm-up run writes the bytecode caches; then `runs` timed runs each, interleaved, median counts.
Only the import is timed, not the interpreter's own start.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

from jobtracker.bench.runner import child_env
from jobtracker.local.settings import template_environment

# Lambda's own variables beside the ones template.yaml gives every function.
LAMBDA_ENV = {"POWERTOOLS_TRACE_DISABLED": "true", "AWS_LAMBDA_FUNCTION_NAME": "bench"}


@cache
def handler_env() -> dict[str, str]:
    """What a handler finds when it is imported: template.yaml's Globals environment (parameter defaults,
    placeholder resource names) and Lambda's own variables."""
    return {**template_environment(), **LAMBDA_ENV}


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
        env=child_env(handler_env()),
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
