"""`make bench`: every benchmark in one run; prints a table and writes .bench/results.json.

    .venv/bin/python -m jobtracker.bench [--out .bench/results.json] [--rows 1000000] [--export-rows N]
        [--jobs 4000] [--import-runs 7] [--repeat 2]

Sections, each measured against its alternative in the same run (see the modules):
polling (jobtracker.bench.polling_sim), ingest (jobtracker.bench.ingest, NDJSON and CSV),
results_export (jobtracker.bench.export), import_time (jobtracker.bench.coldstart).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from jobtracker.bench import coldstart, export, ingest, polling_sim
from jobtracker.bench.report import render
from jobtracker.bench.runner import child_env

ROOT = Path(__file__).resolve().parents[3]

# The keys results.json must hold, exactly; everything else a section measures goes under "details".
REQUIRED = {
    "ingest": ("rows", "rows_per_s", "floor_rows_per_s", "ratio", "peak_rss_mb_100k", "peak_rss_mb_1m"),
    "results_export": ("rows", "rows_per_s", "floor_rows_per_s", "ratio", "peak_rss_mb"),
    "import_time": ("boto3_ms", "handlers", "max_ratio"),
}
POLICY_KEYS = ("median_polls", "p95_lag_s", "p95_rel_lag")


@dataclass(frozen=True)
class Config:
    rows: int = 1_000_000
    small_rows: int = 100_000
    export_rows: int = 1_000_000
    jobs: int = 4_000
    import_runs: int = 7
    repeat: int = 2  # timed passes of tracker and floor (the best counts)
    seed: int = 5


def template_defaults(root: Path) -> polling_sim.Defaults:
    """PollMinSeconds, PollMaxSeconds and MaxJobHours as template.yaml deploys them by default."""
    from jobtracker.local.settings import template_settings

    settings = template_settings(root=root)
    return polling_sim.Defaults(
        min_seconds=settings.poll_min_seconds,
        max_seconds=settings.poll_max_seconds,
        max_job_seconds=settings.max_job_seconds,
    )


def _split(section: dict[str, Any], keys: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    return {k: section[k] for k in keys}, {k: v for k, v in section.items() if k not in keys}


def polling(config: Config, root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    defaults = template_defaults(root)
    asl = root / "statemachine" / "job.asl.json"
    measured = polling_sim.run(config.jobs, config.seed, defaults, asl)
    required = {
        "policies": {name: _split(s, POLICY_KEYS)[0] for name, s in measured["policies"].items()},
        "history_events_24h_job": measured["history_events_24h"]["events"],
    }
    by_max = {}
    for max_seconds in sorted({defaults.max_seconds, 600.0}):
        events = polling_sim.history_events_24h(replace(defaults, max_seconds=max_seconds), asl, config.seed)
        by_max[str(int(max_seconds))] = events["events"]
    detail = {
        "jobs": config.jobs,
        "settings": {
            "PollMinSeconds": defaults.min_seconds,
            "PollMaxSeconds": defaults.max_seconds,
            "MaxJobHours": defaults.max_job_seconds / 3600,
        },
        "policies": {name: _split(s, POLICY_KEYS)[1] for name, s in measured["policies"].items()},
        "history_24h": measured["history_events_24h"],
        "history_events_24h_job_by_poll_max_seconds": by_max,
    }
    return required, detail


def _write_files(workdir: Path, config: Config) -> subprocess.Popen[str]:
    """Generate the input files in a child process (while the polling simulation runs here)."""
    sizes = sorted({config.small_rows, config.rows, config.export_rows})
    ndjson = {n: str(workdir / f"users-{n}.ndjson") for n in sizes}
    csv_paths = {n: str(workdir / f"users-{n}.csv") for n in (config.small_rows, config.rows)}
    code = (
        "import json, sys; from pathlib import Path; from jobtracker.bench.data import write_files; "
        "a = json.loads(sys.argv[1]); "
        "write_files({int(n): Path(p) for n, p in a[0].items()}, {int(n): Path(p) for n, p in a[1].items()})"
    )
    return subprocess.Popen([sys.executable, "-c", code, json.dumps([ndjson, csv_paths])], env=child_env(), text=True)


def run(config: Config, root: Path = ROOT, out: Path | None = None, log: Any = print) -> dict[str, Any]:
    started = time.perf_counter()
    results: dict[str, Any] = {}
    details: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="jobtracker-bench-") as tmp:
        workdir = Path(tmp)
        writer = _write_files(workdir, config)
        log(f"polling: {config.jobs} simulated jobs per policy (input files are being written meanwhile)")
        results["polling"], details["polling"] = polling(config, root)
        if writer.wait() != 0:
            raise RuntimeError("writing the benchmark input files failed")
        for kind, key in (("ndjson", "ingest"), ("csv", "ingest_csv")):
            log(f"ingest {kind}: {config.rows:,} rows, tracker vs floor, {config.repeat} passes each")
            section = ingest.measure(
                workdir / f"users-{config.small_rows}.{kind}",
                workdir / f"users-{config.rows}.{kind}",
                repeat=config.repeat,
            )
            results[key], details[key] = _split(section, REQUIRED["ingest"])
        log(f"results export: {config.export_rows:,} rows through the FullStory simulator into S3 (moto)")
        section = export.measure(
            workdir / f"users-{config.export_rows}.ndjson", config.export_rows, repeat=config.repeat
        )
        results["results_export"], details["results_export"] = _split(section, REQUIRED["results_export"])
    log(f"import time: {config.import_runs} fresh interpreters per handler and for boto3")
    section = coldstart.measure(root, runs=config.import_runs)
    results["import_time"], details["import_time"] = _split(section, REQUIRED["import_time"])
    results["goals"] = goals(results, details)
    results["details"] = details
    results["run"] = {
        "seconds": round(time.perf_counter() - started, 1),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


def goals(results: dict[str, Any], details: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each goal of the issue with the figure it is judged by."""
    policies = results["polling"]["policies"]
    tracker_detail = details["polling"]["policies"]["tracker"]
    out: dict[str, dict[str, Any]] = {
        "polling_median_polls": {
            "value": policies["tracker"]["median_polls"],
            "limit": round(policies["fixed_10s"]["median_polls"] / 3, 1),
        },
        "polling_share_in_lag_budget": {"value": tracker_detail["share_in_budget"], "limit": 0.95, "at_least": True},
        "polling_history_events_24h_job": {"value": results["polling"]["history_events_24h_job"], "limit": 2_499},
    }
    for key in ("ingest", "ingest_csv"):
        section = results[key]
        out[f"{key}_ratio"] = {"value": section["ratio"], "limit": 0.5, "at_least": True}
        out[f"{key}_peak_rss_mb_1m"] = {
            "value": section["peak_rss_mb_1m"],
            "limit": round(min(300.0, 1.25 * section["peak_rss_mb_100k"]), 1),
        }
    export_detail = details["results_export"]
    out["results_export_ratio"] = {"value": results["results_export"]["ratio"], "limit": 0.7, "at_least": True}
    out["results_export_peak_rss_flat"] = {
        "value": results["results_export"]["peak_rss_mb"],
        "limit": round(1.25 * export_detail["peak_rss_mb_one_batch"], 1),
    }
    out["import_time_max_ratio"] = {"value": results["import_time"]["max_ratio"], "limit": 1.5}
    for goal in out.values():
        goal["met"] = goal["value"] >= goal["limit"] if goal.pop("at_least", False) else goal["value"] <= goal["limit"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobtracker.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / ".bench" / "results.json")
    parser.add_argument("--rows", type=int, default=Config.rows)
    parser.add_argument("--small-rows", type=int, default=Config.small_rows)
    parser.add_argument("--export-rows", type=int, default=Config.export_rows)
    parser.add_argument("--jobs", type=int, default=Config.jobs)
    parser.add_argument("--import-runs", type=int, default=Config.import_runs)
    parser.add_argument("--repeat", type=int, default=Config.repeat)
    args = parser.parse_args(argv)
    config = Config(
        rows=args.rows,
        small_rows=args.small_rows,
        export_rows=args.export_rows,
        jobs=args.jobs,
        import_runs=args.import_runs,
        repeat=args.repeat,
    )
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    results = run(config, out=args.out, log=lambda message: console.print(f"[dim]{message}[/dim]"))
    console.print(render(results))
    console.print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
