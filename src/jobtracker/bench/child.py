"""One measurement in a fresh process: `python -m jobtracker.bench.child <task> '<json arguments>'`.

Each run prints one JSON line with what it measured, its own `seconds` (the work only, not the
interpreter start) and `peak_rss_mb`, the process's RSS high-water mark (VmHWM, see `peak_rss_mb`):
a separate process per measurement, so one size's memory never hides another's.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

JOB_TYPE = "fullstory.users"  # the benchmark files hold FullStory users (bench/data.py)


def peak_rss_mb() -> float:
    """VmHWM: the high-water mark of this process's own memory. (getrusage's ru_maxrss is the fallback
    only: Linux carries it across exec, so a child of a big parent would report the parent's size.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:  # pragma: no cover - not Linux
        pass
    import resource

    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


# -- ingest ----------------------------------------------------------------------------------------


def ingest_tracker(path: str, **_: Any) -> dict[str, Any]:
    """Read -> validate -> split into batch bodies, as intake does (bodies are dropped, not uploaded)."""
    from tracker.batching import BatchSplitter
    from tracker.catalogue import row_rules
    from tracker.ingest import Row, detect_format, read_requests

    started = time.perf_counter()
    splitter = BatchSplitter()
    rows = rejected = body_bytes = 0
    batch_rows: list[int] = []
    with open(path, "rb") as stream:
        for item in read_requests(stream, detect_format(path), row_rules(JOB_TYPE)):
            if item.__class__ is Row:
                rows += 1
                batch = splitter.add(item.encoded)
                if batch is not None:
                    batch_rows.append(batch.rows)
                    body_bytes += len(batch.body)
            else:
                rejected += 1
        last = splitter.finish()
        if last is not None:
            batch_rows.append(last.rows)
            body_bytes += len(last.body)
    return {
        "seconds": time.perf_counter() - started,
        "rows": rows,
        "rejected": rejected,
        "batch_rows": batch_rows,
        "body_bytes": body_bytes,
    }


def ingest_floor(path: str, batch_rows: list[int], **_: Any) -> dict[str, Any]:
    """Nothing but read + parse every row + json.dumps of the same batch bodies (same rows per body)."""
    import csv
    import io

    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    started = time.perf_counter()
    rows = body_bytes = 0
    sizes = iter(batch_rows)
    want = next(sizes, 0)
    batch: list[Any] = []

    def flush() -> None:
        nonlocal batch, body_bytes, want
        body_bytes += len(dumps({"requests": batch}).encode())
        batch = []
        want = next(sizes, 0)

    with open(path, "rb") as stream:
        if path.endswith(".csv"):
            reader = csv.reader(io.TextIOWrapper(stream, encoding="utf-8", newline=""))
            header = next(reader)
            parsed = (dict(zip(header, record, strict=True)) for record in reader if record)
        else:
            parsed = (json.loads(line) for line in stream if line.strip())
        for obj in parsed:
            batch.append(obj)
            rows += 1
            if len(batch) == want:
                flush()
        if batch:
            flush()
    return {"seconds": time.perf_counter() - started, "rows": rows, "body_bytes": body_bytes}


# -- results export ----------------------------------------------------------------------------------


def _provider(base_url: str) -> Any:
    from tracker.providers.fullstory.batch import USERS_PATH, FullStoryBatchProvider

    return FullStoryBatchProvider(path=USERS_PATH, api_key="bench", base_url=base_url)


def export_tracker(base_url: str, job_ids: list[str], **_: Any) -> dict[str, Any]:
    """Page every job's /imports and /errors into NDJSON objects in S3 (moto), as BatchTasks.collect does."""
    import boto3
    from moto import mock_aws
    from tracker.s3io import S3StreamWriter

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bench-results")
        provider = _provider(base_url)
        started = time.perf_counter()
        rows = out_bytes = 0
        for index, job_id in enumerate(job_ids, 1):
            for kind in ("imports", "errors"):
                writer = S3StreamWriter("bench-results", f"work/bench/{kind}/b{index:05d}.ndjson", s3=s3)
                for page in provider.pages(job_id, kind):
                    writer.write_records(page)
                writer.close()
                rows += writer.lines
                out_bytes += writer.bytes_written
        seconds = time.perf_counter() - started
        stored = sum(o["Size"] for o in s3.list_objects_v2(Bucket="bench-results").get("Contents", []))
    return {"seconds": seconds, "rows": rows, "out_bytes": out_bytes, "stored_bytes": stored}


def export_floor(base_url: str, job_ids: list[str], **_: Any) -> dict[str, Any]:
    """Fetch the same pages the same way and drop them."""
    provider = _provider(base_url)
    started = time.perf_counter()
    rows = 0
    for job_id in job_ids:
        for kind in ("imports", "errors"):
            for page in provider.pages(job_id, kind):
                rows += len(page)
    return {"seconds": time.perf_counter() - started, "rows": rows}


TASKS: dict[str, Callable[..., dict[str, Any]]] = {
    "ingest_tracker": ingest_tracker,
    "ingest_floor": ingest_floor,
    "export_tracker": export_tracker,
    "export_floor": export_floor,
}


def main(argv: list[str]) -> None:
    task, arguments = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    result = TASKS[task](**arguments)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
