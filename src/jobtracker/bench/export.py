"""Results export benchmark: page a finished job's /imports and /errors into NDJSON in S3.

The FullStory simulator (this process, 127.0.0.1) holds a finished job of `rows` users, submitted as
batches of 50,000 rows and polled once each. In a child process the tracker's code path --
`FullStoryBatchProvider.pages` into `S3StreamWriter` (multipart), into S3 under moto -- writes one
imports and one errors object per batch, as the results Lambda does; in another child the floor fetches
the same pages the same way and drops them. Each child's RSS high-water mark is its peak memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobtracker.bench.runner import run_child
from jobtracker.simulators.fullstory import FullStorySimulator, SimulatorConfig

BATCH_ROWS = 50_000
PAGE_SIZE = 10_000


def _bodies(path: Path, limit: int) -> list[bytes]:
    """Batch bodies of up to BATCH_ROWS rows from an NDJSON file (its lines are compact JSON already)."""
    bodies, lines, taken = [], [], 0
    with path.open("rb") as stream:
        for line in stream:
            if taken == limit:
                break
            lines.append(line.rstrip(b"\n"))
            taken += 1
            if len(lines) == BATCH_ROWS:
                bodies.append(b'{"requests":[' + b",".join(lines) + b"]}")
                lines = []
    if lines:
        bodies.append(b'{"requests":[' + b",".join(lines) + b"]}")
    return bodies


def measure(ndjson: Path, rows: int, *, repeat: int = 2) -> dict[str, Any]:
    from tracker.providers.base import Submitted
    from tracker.providers.fullstory.batch import USERS_PATH, FullStoryBatchProvider

    # All batches are sent before any is polled: the org caps (FullStory's, which the simulator keeps) are not
    # what this measures.
    caps = {"in_progress_limit": 10_000, "operations_limit": 10**9}
    sim = FullStorySimulator(SimulatorConfig(page_size=PAGE_SIZE, polls_to_complete=1, **caps))
    with sim:
        provider = FullStoryBatchProvider(path=USERS_PATH, api_key="bench", base_url=sim.base_url)
        job_ids = []
        for index, body in enumerate(_bodies(ndjson, rows), 1):
            submitted = provider.submit(body, f"bench-b{index:05d}")
            assert isinstance(submitted, Submitted), submitted
            job_ids.append(submitted.provider_job_id)
            del body
        for job_id in job_ids:
            status = provider.status(job_id)
            assert getattr(status, "finished", False), status
        tracker, floor = [], []
        for _ in range(repeat):
            tracker.append(run_child("export_tracker", base_url=sim.base_url, job_ids=job_ids))
            floor.append(run_child("export_floor", base_url=sim.base_url, job_ids=job_ids))
        # The same path for one batch only: the memory a single batch needs, to tell whether it grows.
        one = run_child("export_tracker", base_url=sim.base_url, job_ids=job_ids[:1])
        stats = sim.stats
    best, best_floor = min(tracker, key=lambda r: r["seconds"]), min(floor, key=lambda r: r["seconds"])
    if best["rows"] != best_floor["rows"] or best["rows"] != rows:
        raise RuntimeError(
            f"export benchmark: {rows} rows in, tracker wrote {best['rows']}, floor saw {best_floor['rows']}"
        )
    rows_per_s = best["rows"] / best["seconds"]
    floor_rows_per_s = best_floor["rows"] / best_floor["seconds"]
    return {
        "rows": best["rows"],
        "rows_per_s": round(rows_per_s),
        "floor_rows_per_s": round(floor_rows_per_s),
        "ratio": round(rows_per_s / floor_rows_per_s, 3),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in tracker),
        # beside the required keys
        "batches": len(job_ids),
        "page_size": PAGE_SIZE,
        "out_bytes": best["out_bytes"],
        "stored_bytes": best["stored_bytes"],
        "floor_peak_rss_mb": max(r["peak_rss_mb"] for r in floor),
        "rows_one_batch": one["rows"],
        "peak_rss_mb_one_batch": one["peak_rss_mb"],
        "page_gets": stats["page_gets"],
    }
