"""Human output of jobs: tables, one job with its batches, the final outcome of a watched job."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from tracker.model import parse_iso as parse_time

STATE_STYLE = {
    "COMPLETED": "green",
    "PARTIAL": "yellow",
    "FAILED": "red",
    "RUNNING": "cyan",
    "COLLECTING": "magenta",
    "PENDING": "dim",
}


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def short_time(value: Any) -> str:
    moment = parse_time(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"


def job_duration(job: dict[str, Any]) -> str:
    created, finished = parse_time(job.get("createdAt")), parse_time(job.get("finishedAt"))
    if not created:
        return "-"
    end = finished or datetime.now(UTC)
    return duration((end - created).total_seconds()) + ("" if finished else " so far")


def live_counts(job: dict[str, Any]) -> dict[str, int]:
    """Row counts of a job, also while it runs (the job's own totals are written when it finishes)."""
    metrics = job.get("metrics") or {}
    batches = job.get("batches") or []
    return {
        "rowsIn": int(metrics.get("rowsIn") or 0),
        "imported": max(int(metrics.get("imported") or 0), sum(int(b.get("imported") or 0) for b in batches)),
        "providerErrors": max(
            int(metrics.get("providerErrors") or 0), sum(int(b.get("providerErrors") or 0) for b in batches)
        ),
        "rejected": int(metrics.get("rejected") or 0),
    }


def accounting_line(job: dict[str, Any]) -> tuple[str, bool]:
    c = live_counts(job)
    balanced = c["rowsIn"] == c["imported"] + c["providerErrors"] + c["rejected"]
    sign = "=" if balanced else "!="
    return (
        f"rows in {c['rowsIn']} {sign} imported {c['imported']} + provider errors {c['providerErrors']} "
        f"+ rejected {c['rejected']}",
        balanced,
    )


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def jobs_table(jobs: list[dict[str, Any]], width: int = 120) -> Table:
    """Newest first; columns that do not fit the width are left out, least useful first."""
    columns: list[tuple[str, str, int, int]] = [  # name, justify, width estimate, priority (0 = always)
        ("job", "left", 28, 0),
        ("state", "left", 9, 0),
        ("type", "left", 6, 3),
        ("created", "left", 14, 1),
        ("took", "right", 7, 4),
        ("rows in", "right", 8, 0),
        ("imported", "right", 8, 0),
        ("errors", "right", 7, 0),
        ("rejected", "right", 8, 0),
        ("batches", "right", 7, 2),
        ("source", "left", 30, 5),
    ]
    keep = {c[0] for c in columns}
    for name, _justify, _w, priority in sorted(columns, key=lambda c: -c[3]):
        if sum(c[2] + 2 for c in columns if c[0] in keep) <= width or priority == 0:
            break
        keep.discard(name)
    table = Table(header_style="bold", box=None, padding=(0, 1), pad_edge=False)
    for name, justify, _w, _p in columns:
        if name in keep:
            table.add_column(name, justify=justify, no_wrap=name != "source", overflow="fold")  # type: ignore[arg-type]
    for job in jobs:
        m = job.get("metrics") or {}
        params = job.get("operationParams") or {}
        source = str(params.get("source") or "-")
        if source == "inline":
            source = f"inline ({params.get('requests', '?')} rows)"
        cells = {
            "job": job.get("id", ""),
            "state": state_text(job.get("state", "")),
            "type": str(job.get("type", "")).removeprefix("fullstory."),
            "created": short_time(job.get("createdAt"))[5:-1],
            "took": job_duration(job) if job.get("finishedAt") else "-",
            "rows in": f"{int(m.get('rowsIn') or 0):,}",
            "imported": f"{int(m.get('imported') or 0):,}",
            "errors": f"{int(m.get('providerErrors') or 0):,}",
            "rejected": f"{int(m.get('rejected') or 0):,}",
            "batches": str(m.get("batches") or 0),
            "source": source,
        }
        table.add_row(*(cells[name] for name, *_ in columns if name in keep))
    return table


def job_panel(job: dict[str, Any]) -> RenderableType:
    state = job.get("state", "")
    info = Table.grid(padding=(0, 2))
    info.add_column(style="dim", no_wrap=True)
    info.add_column(overflow="fold")
    params = job.get("operationParams") or {}
    creator = job.get("creatorToken") or {}
    line, balanced = accounting_line(job)
    if balanced:
        accounting = Text(line + "  (exact)")
    elif state in ("COMPLETED", "FAILED"):
        accounting = Text(line + "  (NOT exact)", style="red")
    else:
        accounting = Text(line + "  (running)", style="yellow")
    rows: list[tuple[str, Any]] = [
        ("state", state_text(state)),
        ("type", job.get("type", "")),
        ("created", short_time(job.get("createdAt"))),
        ("started", short_time(job.get("startTime"))),
        ("finished", short_time(job.get("finishedAt"))),
        ("duration", job_duration(job)),
        ("progress", f"{float(job.get('estimatePctComplete') or 0):.0f} %"),
        ("source", str(params.get("source") or "-")),
        ("creator", str(creator.get("id") or "-")),
        ("accounting", accounting),
    ]
    error = job.get("error")
    if error:
        rows.append(("error", Text.assemble((f"{error.get('code')}: ", "bold red"), str(error.get("message")))))
    rows.append(("run", str(job.get("runId") or "-")))
    for key, value in rows:
        info.add_row(key, value)
    parts: list[RenderableType] = [info]
    batches = job.get("batches") or []
    if batches:
        with_errors = any(b.get("error") for b in batches)
        table = Table(header_style="bold", box=None, padding=(0, 1), pad_edge=False)
        for column, justify in (
            ("#", "right"),
            ("state", "left"),
            ("provider job", "left"),
            ("rows", "right"),
            ("imported", "right"),
            ("errors", "right"),
            ("polls", "right"),
            ("submitted", "left"),
            ("finished", "left"),
            *((("batch error", "left"),) if with_errors else ()),
        ):
            table.add_column(column, justify=justify, no_wrap=column != "batch error")  # type: ignore[arg-type]
        for b in batches:
            err = b.get("error") or {}
            table.add_row(
                str(b.get("index")),
                state_text(b.get("state", "")),
                b.get("providerJobId") or "-",
                f"{int(b.get('rows') or 0):,}",
                f"{int(b.get('imported') or 0):,}",
                f"{int(b.get('providerErrors') or 0):,}",
                str(b.get("polls") or 0),
                short_time(b.get("submittedAt"))[11:-1] or "-",
                short_time(b.get("finishedAt"))[11:-1] or "-",
                *((f"{err.get('code')}: {err.get('message')}" if err else "",) if with_errors else ()),
            )
        parts += [Text(""), Text(f"batches ({len(batches)})", style="bold"), table]
    return Panel(
        Group(*parts), title=f"job {job.get('id', '')}", title_align="left", border_style=STATE_STYLE.get(state, "blue")
    )


def print_outcome(console: Console, job: dict[str, Any], *, results_hint: str) -> None:
    state = job.get("state", "")
    style = "green" if state == "COMPLETED" else "red"
    console.print(f"[bold {style}]Job {job.get('id')} {state}[/] in {job_duration(job)}", soft_wrap=True)
    error = job.get("error")
    if error:
        console.print(f"error: [red]{error.get('code')}[/] {error.get('message')}", highlight=False, soft_wrap=True)
    line, balanced = accounting_line(job)
    console.print(f"accounting: {line}  ({'exact' if balanced else 'NOT exact'})", highlight=False, soft_wrap=True)
    console.print(f"results: {results_hint}", highlight=False, soft_wrap=True)
