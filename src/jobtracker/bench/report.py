"""The printed form of results.json: rich tables."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table

POLICY_LABELS = {
    "tracker": "tracker",
    "fixed_60s": "fixed 60 s (AWS sample)",
    "fixed_10s": "fixed 10 s",
    "fixed_2s": "fixed 2 s (FullStory SDK)",
    "kbcstorage": "min(2^n,20) s (kbcstorage)",
}


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def render(results: dict[str, Any]) -> Group:
    details = results.get("details", {})
    polling = results["polling"]
    extra = details.get("polling", {}).get("policies", {})
    settings = details.get("polling", {}).get("settings", {})
    by_max = details.get("polling", {}).get("history_events_24h_job_by_poll_max_seconds", {})
    table = Table(
        title=f"Polling: {details.get('polling', {}).get('jobs', '?')} simulated jobs of 30 s - 6 h (virtual time)",
        caption=(
            f"tracker with PollMinSeconds={settings.get('PollMinSeconds')}, "
            f"PollMaxSeconds={settings.get('PollMaxSeconds')}, MaxJobHours={settings.get('MaxJobHours')}; "
            f"a 24-hour batch: {_n(polling['history_events_24h_job'])} history events"
            + "".join(
                f"; {_n(v)} at PollMaxSeconds={k}"
                for k, v in by_max.items()
                if float(k) != settings.get("PollMaxSeconds")
            )
        ),
    )
    for column in ("policy", "median polls", "mean polls", "p95 lag s", "p95 lag / duration", "in lag budget"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for name, row in polling["policies"].items():
        more = extra.get(name, {})
        table.add_row(
            POLICY_LABELS.get(name, name),
            _n(row["median_polls"], 1),
            _n(more.get("mean_polls", float("nan")), 1),
            _n(row["p95_lag_s"], 1),
            f"{row['p95_rel_lag']:.3f}",
            f"{more.get('share_in_budget', float('nan')):.1%}",
        )

    flows = Table(title="Throughput and memory (tracker's code path vs a floor, same run, same input)")
    small = details.get("ingest", {}).get("small_rows", 100_000)
    rss = f"peak RSS MB (ingest: {small:,} / all rows)"
    for column in ("benchmark", "rows", "tracker rows/s", "floor rows/s", "ratio", rss):
        flows.add_column(column, justify="left" if column == "benchmark" else "right")
    for key, label in (("ingest", "ingest NDJSON"), ("ingest_csv", "ingest CSV")):
        if key in results:
            section = results[key]
            flows.add_row(
                label,
                _n(section["rows"]),
                _n(section["rows_per_s"]),
                _n(section["floor_rows_per_s"]),
                f"{section['ratio']:.2f}",
                f"{_n(section['peak_rss_mb_100k'], 1)} / {_n(section['peak_rss_mb_1m'], 1)}",
            )
    export = results["results_export"]
    one = details.get("results_export", {}).get("peak_rss_mb_one_batch")
    flows.add_row(
        "results export to S3",
        _n(export["rows"]),
        _n(export["rows_per_s"]),
        _n(export["floor_rows_per_s"]),
        f"{export['ratio']:.2f}",
        f"{_n(export['peak_rss_mb'], 1)}" + (f" (1 batch: {_n(one, 1)})" if one is not None else ""),
    )

    imports = results["import_time"]
    modules = details.get("import_time", {}).get("modules_ms", {})
    cold = Table(title=f"Cold start: import ms, median of fresh interpreters (boto3 {imports['boto3_ms']} ms)")
    cold.add_column("handler (functions/<name>/app.py)")
    cold.add_column("ms", justify="right")
    cold.add_column("x import boto3", justify="right")
    for name, ms in imports["handlers"].items():
        ratio = details.get("import_time", {}).get("ratios", {}).get(name, ms / imports["boto3_ms"])
        cold.add_row(name, _n(ms, 1), f"{ratio:.2f}")
    if modules:
        cold.add_section()
        for name, ms in modules.items():
            cold.add_row(
                f"[dim]alone: {name}[/dim]", f"[dim]{_n(ms, 1)}[/dim]", f"[dim]{ms / imports['boto3_ms']:.2f}[/dim]"
            )

    tables = [table]
    if "utilization" in results:
        tables.append(_utilization(details.get("utilization", {})))
    tables += [flows]
    if "cost" in results:
        tables.append(_cost(results["cost"], details.get("cost", {})))
    tables.append(cold)

    goals = Table(title="Goals")
    for column in ("goal", "value", "limit", "met"):
        goals.add_column(column, justify="left" if column == "goal" else "right")
    for name, goal in results.get("goals", {}).items():
        goals.add_row(name, str(goal["value"]), str(goal["limit"]), "yes" if goal["met"] else "[bold red]no[/]")
    return Group(*tables, goals)


UTILIZATION_LABELS = {
    "one_big_job": "(a) one job, 740 x 50,000 rows",
    "job_mix": "(b) 10 jobs of 1-300 batches in an hour",
    "small_behind_big": "(c) (a) + a 1-batch job after 3 h",
    "many_small_jobs": "(d) 400 one-batch jobs at once",
    "one_big_job_in_5000_row_batches": "(a) in batches of 5,000 rows",
}


def _utilization(detail: dict[str, Any]) -> Table:
    model = detail.get("model", {})
    settings = model.get("settings", {})
    table = Table(
        title="Utilization: the tracker's scheduling against FullStory's caps (virtual time)",
        caption=(
            f"FullStory: {model.get('running_limit')} run, more wait, 429 from {model.get('throttled_from_batches')} "
            f"in progress or {model.get('throttled_from_operations', 0):,} rows; a batch runs "
            f"{model.get('batch_seconds')} s; ideal = batch time / 100; caps ideal = the best within both caps; "
            + ", ".join(f"{k}={v:g}" for k, v in settings.items())
        ),
    )
    columns = ("scenario", "batches", "makespan h", "/ ideal", "/ caps ideal", "busy slots", "429s", "first start s")
    for column in columns:
        table.add_column(column, justify="left" if column == "scenario" else "right")
    for name, label in UTILIZATION_LABELS.items():
        run = detail.get(name)
        if run is None:
            continue
        if name == "small_behind_big":
            first = f"{_n(run['first_start_wait_s'], 1)} (one batch: {_n(run['batch_time_s'])})"
            run = run["run"]
        else:
            first = _n(run["max_first_start_wait_s"], 1) + (" max" if run["jobs"] > 1 else "")
        table.add_row(
            label,
            _n(run["batches"]),
            _n(run["makespan_s"] / 3600, 2),
            f"{run['makespan_over_ideal']:.2f}",
            f"{run['makespan_over_caps_ideal']:.2f}",
            _n(run["mean_busy_slots"], 1),
            str(run["tracker_429s"]),
            first,
        )
    return table


POLLERS = (("tracker", "tracker"), ("fixed_10s", "fixed 10 s"), ("fixed_60s", "fixed 60 s (AWS sample)"))


def _cost(required: dict[str, Any], detail: dict[str, Any]) -> Table:
    runs = detail.get("runs", {})
    table = Table(
        title="Cost in AWS (USD, us-east-1 list prices of " + str(required["prices_date"]) + ")",
        caption="counted units: state transitions, Lambda requests and GB-s (arm64), DynamoDB units, S3 requests, SNS",
    )
    for column in ("job", "poller", "USD", "polls", "transitions", "Lambda", "DynamoDB", "429s"):
        table.add_column(column, justify="left" if column in ("job", "poller") else "right")
    for job, label in (("import_1m_rows", "1M-row import"), ("export_6h", "6-hour export")):
        for poller, name in POLLERS:
            run = runs.get(f"{poller}:{job}")
            if run is None:
                continue
            units = run["units"]
            table.add_row(
                label,
                name,
                f"{run['usd']:.4f}",
                _n(run["polls"]),
                _n(units["state_transitions"]),
                _n(units["lambda_requests"]),
                _n(units["dynamodb_write_units"] + units["dynamodb_read_units"]),
                str(run["provider_429s"]),
            )
    table.add_section()
    table.add_row("ratio vs fixed 10 s", "tracker", f"{required['ratio_vs_fixed_10s']:.3f}", "", "", "", "", "")
    return table
