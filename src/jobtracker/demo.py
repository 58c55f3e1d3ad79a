"""`make demo`: the whole pipeline offline on the shipped sample file, watched live."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from tracker import catalogue

from jobtracker.client.views import STATE_STYLE
from jobtracker.local.session import OfflineSession
from jobtracker.local.stack import REPO_ROOT
from jobtracker.simulators.fullstory import SimulatorConfig

SAMPLE = REPO_ROOT / "samples" / "users.csv"


def run_demo(
    *,
    file: Path = SAMPLE,
    job_type: str = catalogue.BATCH_TYPES[0],
    out_dir: Path = Path("demo-results"),
    batch_rows: int = 500,
    processing_seconds: float = 3.0,
    console: Console | None = None,
) -> int:
    console = console or Console()
    key = f"{catalogue.get(job_type).inbox_prefix}{file.name}"
    parameters = {"PollMinSeconds": 1, "PollMaxSeconds": 2, "MaxBatchRequests": batch_rows, "InFlightBudget": 4}
    simulator = SimulatorConfig(polls_to_complete=None, processing_seconds=processing_seconds)
    console.print(
        f"[bold]jobtracker demo[/]: offline stack (moto) + FullStory simulator; uploading {file} to s3://<inbox>/{key}"
    )
    with OfflineSession(parameters=parameters, simulator_config=simulator) as session:
        stack = session.stack
        stack.client("s3").upload_file(str(file), stack.inbox_bucket, key)
        job_id = stack.wait_until(
            lambda: next((j["id"] for j in stack.jobs() if j["source"]["key"] == key), None),
            timeout=60,
            what="intake to create the job",
        )
        started = time.monotonic()
        with Live(console=console, refresh_per_second=8, transient=False) as live:
            while True:
                job = stack.get_job(job_id) or {}
                batches = stack.list_batches(job_id)
                live.update(_render(job, batches, time.monotonic() - started))
                if job.get("state") in ("COMPLETED", "FAILED") and job.get("notifiedAt"):
                    break
                time.sleep(0.25)
        job = stack.get_job(job_id) or {}
        notification = next((n for n in stack.notifications() if n["message"]["jobId"] == job_id), None)
        target = out_dir / job_id
        target.mkdir(parents=True, exist_ok=True)
        keys = dict(job.get("resultKeys") or {})
        if job.get("reportKey"):
            keys["report"] = job["reportKey"]
        for _name, result_key in sorted(keys.items()):
            stack.client("s3").download_file(stack.results_bucket, result_key, str(target / Path(result_key).name))
        return _report(console, job, notification, target)


def _render(job: dict[str, Any], batches: list[dict[str, Any]], elapsed: float) -> Panel:
    from tracker.model import estimate_pct_complete

    pct = estimate_pct_complete(job, batches) if job else 0.0
    table = Table(expand=True, show_edge=False)
    for column in ("batch", "rows", "state", "provider job", "polls", "imported", "provider errors"):
        table.add_column(
            column, justify="right" if column in ("rows", "polls", "imported", "provider errors") else "left"
        )
    for b in batches:
        state = b["batchState"]
        table.add_row(
            str(b["index"]),
            str(b["rows"]),
            f"[{STATE_STYLE.get(state, '')}]{state}[/]",
            b.get("providerJobId") or "-",
            str(b.get("polls", 0)),
            str(b.get("imported", 0)),
            str(b.get("providerErrors", 0)),
        )
    sent = sum(1 for b in batches if b.get("providerJobId"))
    done = sum(1 for b in batches if b["batchState"] in ("COMPLETED", "PARTIAL", "FAILED"))
    head = (
        f"job [bold]{job.get('id', '...')}[/]  state [bold]{job.get('state', 'PENDING')}[/]  "
        f"rows in {job.get('rowsIn', 0)}  rejected {job.get('rejected', 0)}  "
        f"batches sent {sent}/{len(batches)}  results saved {done}/{len(batches)}  elapsed {elapsed:.1f}s"
    )
    return Panel(
        Group(head, ProgressBar(total=100, completed=pct), f"{pct:.0f} % (estimatePctComplete)", table),
        title="jobtracker demo: watching the job",
    )


def _report(console: Console, job: dict[str, Any], notification: dict[str, Any] | None, target: Path) -> int:
    accounting = job.get("accounting") or {}
    ok = job.get("state") == "COMPLETED" and bool(accounting.get("balanced"))
    style = "green" if ok else "red"
    console.print(f"\n[bold {style}]Job {job['id']} {job['state']}[/]")
    if job.get("error"):
        console.print(f"error: [red]{job['error']['code']}[/] {job['error']['message']}")
    console.print(
        f"rows in {accounting.get('rowsIn', job.get('rowsIn'))}: imported {accounting.get('imported')}, "
        f"provider errors {accounting.get('providerErrors')}, rejected {accounting.get('rejected')}"
    )
    console.print(
        f"accounting: {accounting.get('check', 'n/a')}  ({'exact' if accounting.get('balanced') else 'NOT exact'})"
    )
    if notification:
        console.print(f"notification: 1 SNS message, attributes {notification['attributes']}")
    else:
        console.print("[red]notification: none published[/]")
    console.print(f"results copied to [bold]{target}[/]:")
    for path in sorted(target.iterdir()):
        console.print(f"  {path}  ({path.stat().st_size} bytes)")
    console.print(
        "next: your own file — `.venv/bin/jobtracker local up` in one terminal, then "
        f"`.venv/bin/jobtracker submit my.csv --type {job.get('type')} --local` and "
        "`.venv/bin/jobtracker results <job id> --local` (README: Command line)"
    )
    return 0 if ok and notification else 1


def run_demo_all(*, out_dir: Path = Path("demo-results"), console: Console | None = None) -> int:
    """`make demo DEMO=all`: one job of every type at once — a users import (the sample file), an events
    import through the API, a FullStory segment export, a Keboola table export, `track` of a FullStory
    batch job started outside the tracker, and a Databricks and a dbt Cloud run (spec types). Exit 0 only if
    every job ends COMPLETED."""
    import json

    import urllib3

    console = console or Console()
    http = urllib3.PoolManager(retries=False, timeout=30)
    parameters = {"PollMinSeconds": 1, "PollMaxSeconds": 2, "MaxBatchRequests": 500, "InFlightBudget": 4}
    simulator = SimulatorConfig(polls_to_complete=None, processing_seconds=2.0, operation_polls_to_complete=3)
    console.print(
        "[bold]jobtracker demo (all job types)[/]: offline stack (moto) + FullStory, Keboola, Databricks and dbt "
        "Cloud simulators"
    )
    with OfflineSession(parameters=parameters, simulator_config=simulator, api_port=0, allow_unsigned=True) as session:
        stack = session.stack

        def post(body: dict[str, Any]) -> str:
            response = http.request("POST", session.api.base_url + "/jobs", body=json.dumps(body).encode())
            answer = json.loads(response.data)
            if response.status != 202:
                raise RuntimeError(f"POST /jobs answered {response.status}: {answer}")
            return str(answer["id"])

        sample_key = f"{catalogue.get('fullstory.users').inbox_prefix}{SAMPLE.name}"
        stack.client("s3").upload_file(str(SAMPLE), stack.inbox_bucket, sample_key)
        events = [
            {"name": "Signed Up", "user": {"uid": f"user-{i:05d}"}, "properties": {"plan": "pro"}} for i in range(50)
        ]
        started = json.loads(
            http.request(
                "POST",
                session.simulator.base_url + "/v2/events/batch",
                body=json.dumps({"requests": events[:10]}).encode(),
                headers={"Authorization": f"Basic {stack.api_key}"},
            ).data
        )
        dbt_params = {"account_id": session.dbt_cloud.config.account_id, "job_id": 201}
        job_ids = [
            post({"type": "fullstory.events", "requests": events}),
            post(
                {
                    "type": "fullstory.segment_export",
                    "params": {"segmentId": "everyone", "type": "TYPE_INDIVIDUAL", "format": "FORMAT_CSV"},
                }
            ),
            post({"type": "keboola.table_export", "params": {"tableId": "in.c-main.users"}}),
            post({"type": "track", "provider": "fullstory.events", "providerJobId": started["job"]["id"]}),
            # Jobs of spec types (specs/*.yaml) against the Databricks and dbt Cloud simulators.
            post({"type": "http:databricks", "params": {"job_id": 101}}),
            post({"type": "http:dbt_cloud", "params": dbt_params}),
        ]
        job_ids.insert(
            0,
            stack.wait_until(
                lambda: next(
                    (j["id"] for j in stack.jobs() if j["source"].get("key") == sample_key), None
                ),
                timeout=60,
                what="the upload's job",
            ),
        )
        with Live(console=console, refresh_per_second=4) as live:
            while True:
                jobs = [stack.get_job(job_id) or {} for job_id in job_ids]
                live.update(_all_table(jobs))
                if all(j.get("state") in ("COMPLETED", "FAILED") and j.get("notifiedAt") for j in jobs):
                    break
                time.sleep(0.5)
        for job in jobs:
            target = out_dir / job["id"]
            target.mkdir(parents=True, exist_ok=True)
            keys = dict(job.get("resultKeys") or {})
            if job.get("reportKey"):
                keys["report"] = job["reportKey"]
            for key in keys.values():
                stack.client("s3").download_file(stack.results_bucket, key, str(target / Path(key).name))
        ok = all(j["state"] == "COMPLETED" for j in jobs)
        console.print(
            f"\n[bold {'green' if ok else 'red'}]{sum(j['state'] == 'COMPLETED' for j in jobs)} of "
            f"{len(jobs)} jobs COMPLETED[/]; results under {out_dir}/<job id>/"
        )
        return 0 if ok else 1


def _all_table(jobs: list[dict[str, Any]]) -> Table:
    table = Table(title="one job of each type", expand=True)
    for column in ("job", "type", "state", "outcome"):
        table.add_column(column)
    for job in jobs:
        state = job.get("state", "PENDING")
        accounting = job.get("accounting") or {}
        keys = job.get("resultKeys") or {}
        if job.get("error"):
            outcome = f"{job['error']['code']}: {job['error']['message']}"
        elif "download" in keys:
            outcome = f"file {Path(keys['download']).name}"
        else:
            outcome = accounting.get("check", "")
        style = {"COMPLETED": "green", "FAILED": "red"}.get(state, "cyan")
        table.add_row(job.get("id", ""), job.get("type", ""), f"[{style}]{state}[/]", outcome)
    return table
