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
        cold.add_row(name, _n(ms, 1), f"{ms / imports['boto3_ms']:.2f}")
    if modules:
        cold.add_section()
        for name, ms in modules.items():
            cold.add_row(
                f"[dim]alone: {name}[/dim]", f"[dim]{_n(ms, 1)}[/dim]", f"[dim]{ms / imports['boto3_ms']:.2f}[/dim]"
            )

    goals = Table(title="Goals (issue 5)")
    for column in ("goal", "value", "limit", "met"):
        goals.add_column(column, justify="left" if column == "goal" else "right")
    for name, goal in results.get("goals", {}).items():
        goals.add_row(name, str(goal["value"]), str(goal["limit"]), "yes" if goal["met"] else "[bold red]no[/]")
    return Group(table, flows, cold, goals)
