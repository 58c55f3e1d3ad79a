"""Ingest benchmark: rows/s through read -> validate -> split against a floor, and peak RSS by size.

Per input format: the tracker's path (`tracker.ingest.read_requests` + `tracker.batching.BatchSplitter`)
on the small and the large file, each in its own process (its RSS high-water mark is that size's peak
memory), and the floor on the large file (read + parse every row + json.dumps of batch bodies of the
same rows), also in its own process. Both timed passes run `repeat` times, alternating, and the best of
each counts (the machine may be busy with something else).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobtracker.bench.runner import run_child


def measure(small: Path, large: Path, *, repeat: int = 2) -> dict[str, Any]:
    peak_small = run_child("ingest_tracker", path=str(small))
    tracker: list[dict[str, Any]] = []
    floor: list[dict[str, Any]] = []
    for _ in range(repeat):
        tracker.append(run_child("ingest_tracker", path=str(large)))
        floor.append(run_child("ingest_floor", path=str(large), batch_rows=tracker[0]["batch_rows"]))
    best, best_floor = min(tracker, key=lambda r: r["seconds"]), min(floor, key=lambda r: r["seconds"])
    rows = best["rows"]
    if best_floor["rows"] != rows or best["rejected"]:
        raise RuntimeError(
            f"ingest benchmark: tracker saw {rows} rows ({best['rejected']} rejected), floor {best_floor['rows']}"
        )
    rows_per_s = rows / best["seconds"]
    floor_rows_per_s = best_floor["rows"] / best_floor["seconds"]
    return {
        "rows": rows,
        "rows_per_s": round(rows_per_s),
        "floor_rows_per_s": round(floor_rows_per_s),
        "ratio": round(rows_per_s / floor_rows_per_s, 3),
        "peak_rss_mb_100k": peak_small["peak_rss_mb"],
        "peak_rss_mb_1m": max(r["peak_rss_mb"] for r in tracker),
        # beside the required keys
        "small_rows": peak_small["rows"],
        "bytes": large.stat().st_size,
        "batches": len(best["batch_rows"]),
        "floor_peak_rss_mb": max(r["peak_rss_mb"] for r in floor),
    }
