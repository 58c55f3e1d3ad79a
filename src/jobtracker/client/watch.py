"""Watching a job live: progress from GET /jobs/{id}, rendered with rich until the job ends."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from jobtracker.client.errors import CliError
from jobtracker.client.views import STATE_STYLE, duration, live_counts

TERMINAL = ("COMPLETED", "FAILED")
TABLE_ROWS = 10
MAX_CONSECUTIVE_ERRORS = 5


class Interrupted(Exception):
    """Ctrl-C while watching: the job goes on."""

    def __init__(self, job: dict[str, Any] | None) -> None:
        super().__init__("interrupted")
        self.job = job


class WatchTimeout(Exception):
    def __init__(self, job: dict[str, Any] | None, seconds: float) -> None:
        super().__init__(f"still {job.get('state') if job else 'unknown'} after {seconds:.0f}s")
        self.job = job
        self.seconds = seconds


class EtaEstimator:
    """Time left from the rate of estimatePctComplete over a sliding window."""

    def __init__(self, window_seconds: float = 120.0) -> None:
        self._window = window_seconds
        self._samples: deque[tuple[float, float]] = deque()

    def add(self, now: float, pct: float) -> None:
        self._samples.append((now, pct))
        while len(self._samples) > 2 and now - self._samples[0][0] > self._window:
            self._samples.popleft()

    def seconds_left(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, p0), (t1, p1) = self._samples[0], self._samples[-1]
        if p1 >= 100:
            return 0.0
        if p1 <= p0 or t1 <= t0:
            return None
        return (100 - p1) / ((p1 - p0) / (t1 - t0))


def watch_job(
    get_job: Callable[[], dict[str, Any]],
    *,
    console: Console,
    interval: float = 2.0,
    timeout: float | None = None,
    title: str = "jobtracker",
    live: bool = True,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll until the job is COMPLETED or FAILED; returns the final job. Raises Interrupted, WatchTimeout."""
    started = clock()
    eta = EtaEstimator()
    job: dict[str, Any] | None = None
    errors = 0
    note = ""
    display = Live(console=console, refresh_per_second=4, transient=False) if live else None
    try:
        if display is not None:
            display.start()
        while True:
            try:
                job = get_job()
                errors, note = 0, ""
            except CliError as exc:
                errors += 1
                if not exc.transient or errors >= MAX_CONSECUTIVE_ERRORS:
                    raise
                note = f"lost contact ({exc.message}); retrying"
            now = clock()
            if job is not None:
                eta.add(now, float(job.get("estimatePctComplete") or 0))
                if display is not None:
                    display.update(render(job, now - started, eta.seconds_left(), note, title=title))
                if job.get("state") in TERMINAL:
                    return job
            if timeout is not None and now - started >= timeout:
                raise WatchTimeout(job, now - started)
            sleep(interval if not errors else min(interval * 2**errors, 30))
    except KeyboardInterrupt:
        raise Interrupted(job) from None
    finally:
        if display is not None:
            display.stop()
            if not console.is_terminal:
                console.line()  # a terminal's Live ends its last frame with a newline; a pipe's does not


def render(
    job: dict[str, Any], elapsed: float, seconds_left: float | None, note: str = "", *, title: str = "jobtracker"
) -> RenderableType:
    state = str(job.get("state") or "PENDING")
    pct = float(job.get("estimatePctComplete") or 0)
    batches = job.get("batches") or []
    counts = live_counts(job)
    by_state: dict[str, int] = {}
    for b in batches:
        by_state[b.get("state", "")] = by_state.get(b.get("state", ""), 0) + 1
    sent = sum(1 for b in batches if b.get("providerJobId"))
    done = sum(by_state.get(s, 0) for s in ("COMPLETED", "PARTIAL", "FAILED"))
    if state in TERMINAL:
        left = "done"
    elif seconds_left is None:
        left = "estimating…"
    else:
        left = "about " + duration(seconds_left)

    head = Text.assemble(
        (f" {state} ", f"bold reverse {STATE_STYLE.get(state, '')}"),
        "  ",
        (str(job.get("id", "")), "bold"),
        f"  {job.get('type', '')}",
    )
    progress = Table.grid(expand=True, padding=(0, 1))
    progress.add_column(ratio=1)
    progress.add_column(justify="right", width=6)
    progress.add_row(ProgressBar(total=100, completed=pct), Text(f"{pct:.0f} %", style="bold"))
    timing = Text.assemble(("elapsed  ", "dim"), duration(elapsed), ("   time left ", "dim"), left)
    if not batches and state not in TERMINAL:
        batch_line = Text("batches  — (intake: reading, validating and splitting the file)", style="dim")
    else:
        batch_line = Text.assemble(
            ("batches  ", "dim"),
            f"{len(batches)} total · {sent} sent · ",
            (f"{by_state.get('RUNNING', 0)} polling", "cyan"),
            " · ",
            (f"{by_state.get('COLLECTING', 0)} collecting", "magenta"),
            " · ",
            (f"{done} done", "green"),
            *([" · ", (f"{by_state['FAILED']} failed", "red")] if by_state.get("FAILED") else []),
        )
    rows_line = Text.assemble(
        ("rows     ", "dim"),
        f"{counts['rowsIn']:,} in · ",
        (f"{counts['imported']:,} imported", "green"),
        " · ",
        (f"{counts['providerErrors']:,} provider errors", "red" if counts["providerErrors"] else ""),
        " · ",
        (f"{counts['rejected']:,} rejected", "yellow" if counts["rejected"] else ""),
    )
    parts: list[RenderableType] = [
        head,
        progress,
        timing,
        batch_line,
        rows_line,
    ]
    if job.get("error"):
        parts.append(
            Text.assemble(
                ("error    ", "dim"), (f"{job['error'].get('code')}: ", "bold red"), str(job["error"].get("message"))
            )
        )
    if batches:
        parts.append(_batch_table(batches))
    if note:
        parts.append(Text(note, style="yellow"))
    return Panel(Group(*parts), title=title, title_align="left", border_style=STATE_STYLE.get(state, "blue"))


def _batch_table(batches: list[dict[str, Any]]) -> RenderableType:
    order = {"RUNNING": 0, "COLLECTING": 1, "PENDING": 2, "FAILED": 3, "PARTIAL": 4, "COMPLETED": 5}
    shown = sorted(batches, key=lambda b: (order.get(b.get("state", ""), 9), int(b.get("index", 0))))[:TABLE_ROWS]
    shown.sort(key=lambda b: int(b.get("index", 0)))
    table = Table(show_edge=False, box=None, padding=(0, 1), header_style="dim")
    for column, justify in (
        ("batch", "right"),
        ("state", "left"),
        ("rows", "right"),
        ("polls", "right"),
        ("imported", "right"),
        ("errors", "right"),
        ("provider job", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for b in shown:
        state = b.get("state", "")
        table.add_row(
            str(b.get("index")),
            Text(state, style=STATE_STYLE.get(state, "")),
            f"{int(b.get('rows', 0)):,}",
            str(b.get("polls", 0)),
            f"{int(b.get('imported', 0)):,}",
            f"{int(b.get('providerErrors', 0)):,}",
            b.get("providerJobId") or "-",
        )
    if len(batches) > len(shown):
        return Group(table, Text(f"… {len(batches) - len(shown)} more batches (jobtracker show ID)", style="dim"))
    return table
