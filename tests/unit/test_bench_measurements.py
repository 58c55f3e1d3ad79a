"""The benchmark's inputs, child processes and results.json shape, at toy sizes (no timing asserted)."""

import io
import json
from pathlib import Path

import pytest

from jobtracker.bench import __main__ as bench
from jobtracker.bench import coldstart, data, export
from jobtracker.bench.runner import run_child

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    ndjson = {300: tmp / "u300.ndjson", 1_234: tmp / "u1234.ndjson"}
    csv_paths = {300: tmp / "u300.csv", 1_234: tmp / "u1234.csv"}
    data.write_files(ndjson, csv_paths)
    return ndjson, csv_paths


def test_input_files_hold_valid_users_of_about_250_bytes(files):
    from tracker.ingest import Row, detect_format, read_requests
    from tracker.providers.fullstory import USER_RULES

    ndjson, csv_paths = files
    lines = ndjson[1_234].read_bytes().splitlines()
    assert len(lines) == 1_234 and lines[:300] == ndjson[300].read_bytes().splitlines()
    assert 200 <= sum(map(len, lines)) / len(lines) <= 300
    for path in (ndjson[1_234], csv_paths[1_234]):
        with path.open("rb") as stream:
            items = list(read_requests(stream, detect_format(path.name), USER_RULES))
        assert len(items) == 1_234 and all(isinstance(i, Row) for i in items)
    # every 100th e-mail lacks '@': FullStory refuses it, so results have errors too
    assert sum(b"@" not in json.loads(line)["email"].encode() for line in lines) == 12
    assert csv_paths[300].read_text().count("\n") == 301


@pytest.mark.parametrize("kind", ["ndjson", "csv"])
def test_ingest_children_see_the_same_rows_and_report_their_memory(files, kind):
    path = str(files[0 if kind == "ndjson" else 1][1_234])
    tracker = run_child("ingest_tracker", path=path)
    floor = run_child("ingest_floor", path=path, batch_rows=tracker["batch_rows"])
    assert tracker["rows"] == floor["rows"] == 1_234 and tracker["rejected"] == 0
    assert sum(tracker["batch_rows"]) == 1_234
    for result in (tracker, floor):
        assert result["seconds"] > 0 and result["peak_rss_mb"] > 0


def test_export_pages_imports_and_errors_into_s3(files):
    result = export.measure(files[0][1_234], 1_234, repeat=1)
    assert result["rows"] == 1_234 and result["stored_bytes"] == result["out_bytes"] > 0
    assert {"rows_per_s", "floor_rows_per_s", "ratio", "peak_rss_mb", "peak_rss_mb_one_batch"} <= set(result)


def test_batch_bodies_for_the_simulator_hold_at_most_50000_rows(files):
    bodies = export._bodies(files[0][1_234], 1_000)
    assert len(bodies) == 1 and len(json.loads(bodies[0])["requests"]) == 1_000


def test_import_timing_loads_a_handler_by_path_in_a_fresh_interpreter():
    handlers = coldstart.handler_modules(ROOT)
    assert {"intake", "submit", "status", "collect", "finalize", "api"} <= set(handlers)
    code = coldstart._HANDLER.format(
        code=str(handlers["status"].parent), layer=str(ROOT / "layers/shared/python"), path=str(handlers["status"])
    )
    assert coldstart._once(code) > 0
    assert coldstart._once(coldstart._BOTO3) > 0


def test_template_defaults_feed_the_polling_simulation():
    from jobtracker.local.template import load_template

    parameters = load_template(ROOT / "template.yaml")["Parameters"]
    assert bench.template_defaults(ROOT) == bench.polling_sim.Defaults(
        min_seconds=float(parameters["PollMinSeconds"]["Default"]),
        max_seconds=float(parameters["PollMaxSeconds"]["Default"]),
        max_job_seconds=float(parameters["MaxJobHours"]["Default"]) * 3600,
    )


def _results(ratio=0.8, handlers_ms=100.0):
    policy = {"median_polls": 10, "p95_lag_s": 20.0, "p95_rel_lag": 0.1}
    ingest = {
        "rows": 10,
        "rows_per_s": 10,
        "floor_rows_per_s": 10,
        "ratio": 1.0,
        "peak_rss_mb_100k": 40.0,
        "peak_rss_mb_1m": 44.0,
    }
    results = {
        "ingest": ingest,
        "ingest_csv": dict(ingest),
        "polling": {
            "policies": {
                name: dict(policy) for name in ("tracker", "fixed_60s", "fixed_10s", "fixed_2s", "kbcstorage")
            },
            "history_events_24h_job": 1_000,
        },
        "results_export": {"rows": 10, "rows_per_s": 8, "floor_rows_per_s": 10, "ratio": ratio, "peak_rss_mb": 100.0},
        "import_time": {"boto3_ms": 100.0, "handlers": {"status": handlers_ms}, "max_ratio": handlers_ms / 100},
    }
    results["polling"]["policies"]["fixed_10s"]["median_polls"] = 60
    details = {
        "polling": {"policies": {"tracker": {"share_in_budget": 0.97}}},
        "results_export": {"peak_rss_mb_one_batch": 95.0},
    }
    return results, details


def test_goals_judge_each_figure_against_its_limit():
    results, details = _results(ratio=0.5, handlers_ms=200.0)
    goals = bench.goals(results, details)
    failed = {name for name, goal in goals.items() if not goal["met"]}
    assert failed == {"results_export_ratio", "import_time_max_ratio"}
    assert goals["polling_median_polls"] == {"value": 10, "limit": 20.0, "met": True}


def test_results_json_holds_exactly_the_required_keys_in_each_required_section():
    results, _ = _results()
    assert set(results["ingest"]) == set(bench.REQUIRED["ingest"])
    assert set(results["results_export"]) == set(bench.REQUIRED["results_export"])
    assert set(results["import_time"]) == set(bench.REQUIRED["import_time"])
    section = {"rows": 1, "ratio": 2.0, "extra": 3}
    assert bench._split(section, ("rows", "ratio")) == ({"rows": 1, "ratio": 2.0}, {"extra": 3})


def test_the_report_renders_every_section():
    from rich.console import Console

    from jobtracker.bench.report import render

    results, details = _results()
    results["goals"] = bench.goals(results, details)
    results["details"] = details
    out = io.StringIO()
    Console(file=out, width=140).print(render(results))
    text = out.getvalue()
    for needle in ("Polling", "ingest NDJSON", "ingest CSV", "results export", "status", "Goals"):
        assert needle in text
