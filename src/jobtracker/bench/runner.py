"""Run a measurement in a child process (jobtracker.bench.child) and read back its JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# What every child gets: no real AWS (moto only), no tracing, a region for boto3.
CHILD_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "PYTHONHASHSEED": "0",
}


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update(CHILD_ENV)
    env.update(extra or {})
    return env


@contextmanager
def serving_child(task: str, **arguments: Any) -> Iterator[dict[str, Any]]:
    """A child that prints one JSON line when it is ready and serves until its stdin closes (the offline AWS
    endpoint): yields that line."""
    child = subprocess.Popen(
        [sys.executable, "-m", "jobtracker.bench.child", task, json.dumps(arguments)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark child {task} ended before it was ready ({child.wait()})")
        yield json.loads(line)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run_child(task: str, timeout: float = 900, **arguments: Any) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "jobtracker.bench.child", task, json.dumps(arguments)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"benchmark child {task} failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])
