"""`make demo` and `make demo DEMO=all` through the real entry points: they must end COMPLETED."""

from __future__ import annotations

from rich.console import Console

from jobtracker.demo import run_demo, run_demo_all


def test_demo_ends_completed_with_exact_accounting_and_results_on_disk(tmp_path):
    console = Console(record=True, width=120)
    assert run_demo(out_dir=tmp_path, processing_seconds=0.5, console=console) == 0
    (job_dir,) = list(tmp_path.iterdir())
    assert {p.name for p in job_dir.iterdir()} >= {
        "imports.ndjson",
        "errors.ndjson",
        "rejected.ndjson",
        "manifest.json",
    }
    assert "rows in 3000 = imported 2910 + provider errors 33 + rejected 57  (exact)" in console.export_text()


def test_demo_of_every_job_type_ends_with_every_job_completed(tmp_path):
    console = Console(record=True, width=200)
    assert run_demo_all(out_dir=tmp_path, console=console) == 0
    assert "7 of 7 jobs COMPLETED" in console.export_text()
    files = {p.name for job_dir in tmp_path.iterdir() for p in job_dir.iterdir()}
    assert "in.c-main.users.csv.gz" in files and any(name.startswith("segment-export-") for name in files)
    # the spec types' results: a Databricks run record and dbt Cloud's run_results.json
    assert "run_results.json" in files and any(name.startswith("run-") and name.endswith(".json") for name in files)
