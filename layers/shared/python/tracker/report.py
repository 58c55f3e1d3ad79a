"""report.html: one self-contained page per job (inline CSS and SVG; no script, no external asset).

Finalize renders it from the manifest it has just built plus the error codes it counted while it
streamed errors.ndjson (and read rejected.ndjson): the job's summary, the accounting, a timeline of
every batch (submitted, each poll, finished, collected) and the top error codes with counts.

Everything shown is escaped: codes, messages and ids can carry user data. Memory stays bounded
whatever the job's size: codes are counted in a Counter of at most MAX_DISTINCT_CODES keys over at
most SCAN_BYTES per file, and the timeline draws at most MAX_TIMELINE_BATCHES rows with poll marks
merged per pixel.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from html import escape
from typing import Any

from tracker import catalogue
from tracker.model import parse_iso

SCAN_BYTES = 256 * 1024 * 1024  # per file; past this the codes are counted on the rows read so far
MAX_COUNTED_ROW_BYTES = 4 * 1024 * 1024  # a longer errors/rejected row counts as unreadable, never buffered
MAX_DISTINCT_CODES = 1000
MAX_CODE_CHARS = 80
TOP_CODES = 10
MAX_TIMELINE_BATCHES = 200

STATE_COLOURS = {
    "COMPLETED": "#1a7f37",
    "PARTIAL": "#b35900",
    "FAILED": "#c62828",
    "RUNNING": "#0969da",
    "COLLECTING": "#8250df",
    "PENDING": "#6e7781",
}


class CodeCounter:
    """Counts the `code` of NDJSON rows fed in arbitrary chunks, in bounded memory."""

    def __init__(self, *, max_bytes: int = SCAN_BYTES, max_distinct: int = MAX_DISTINCT_CODES) -> None:
        self.counts: Counter[str] = Counter()
        self.rows = 0
        self.truncated = False  # stopped after max_bytes: counts cover the first `rows` rows
        self._max_bytes = max_bytes
        self._max_distinct = max_distinct
        self._read = 0
        self._tail = b""
        self._skipping = False  # inside an over-long line: drop bytes until its newline

    def feed(self, chunk: bytes) -> None:
        if self.truncated or not chunk:
            return
        if self._read + len(chunk) > self._max_bytes:
            chunk = chunk[: self._max_bytes - self._read]
            self.truncated = True
        self._read += len(chunk)
        if self._skipping:
            newline = chunk.find(b"\n")
            if newline < 0:
                return
            chunk, self._skipping = chunk[newline + 1 :], False
        lines = (self._tail + chunk).split(b"\n")
        self._tail = lines.pop()
        for line in lines:
            self._count_line(line)
        if len(self._tail) > MAX_COUNTED_ROW_BYTES:
            self._tail, self._skipping = b"", True
            self._add("(unreadable row)")
        if self.truncated:
            self._tail = b""  # a cut line is not a row

    def close(self) -> None:
        """End of one object: its last line may lack a newline."""
        if self._tail:
            self._count_line(self._tail)
        self._tail, self._skipping = b"", False

    def top(self, n: int = TOP_CODES) -> list[tuple[str, int]]:
        return sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))[:n]

    def _count_line(self, line: bytes) -> None:
        line = line.strip()
        if not line:
            return
        try:
            record = json.loads(line)
            code = record.get("code") if isinstance(record, dict) else None
        except ValueError:
            code = "(unreadable row)"
        self._add(str(code)[:MAX_CODE_CHARS] if code not in (None, "") else "(no code)")

    def _add(self, code: str) -> None:
        self.rows += 1
        if code not in self.counts and len(self.counts) >= self._max_distinct:
            code = "(other codes)"
        self.counts[code] += 1


def render_report(
    manifest: dict[str, Any],
    *,
    provider_codes: CodeCounter | None = None,
    rejected_codes: CodeCounter | None = None,
    generated_at: str | None = None,
) -> str:
    """The whole page as a string (UTF-8 when stored)."""
    job = manifest.get("job") or {}
    counts = manifest.get("accounting") or manifest.get("counts") or {}
    batches = manifest.get("batches") or []
    state = str(job.get("state") or "UNKNOWN")
    job_id = str(job.get("id") or "")
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>jobtracker report: {_e(job_id)} {_e(state)}</title>",
        f"<style>{_CSS}</style></head><body>",
        '<header><div class="brand">jobtracker job report</div>',
        f'<h1><span id="job-id">{_e(job_id)}</span> {_badge(state)}</h1>',
        f'<p class="sub">{_e(catalogue.label(job.get("type")))} ({_e(job.get("type"))})</p></header>',
        _summary(job, batches),
        _warnings(manifest.get("warnings") or []),
        _accounting(counts),
        _timeline(job, batches),
        _batch_table(batches),
        _codes(provider_codes, rejected_codes, counts),
        _files(manifest.get("results") or {}),
        f"<footer>generated {_e(generated_at or _now())} by finalize &middot; self-contained: no scripts, "
        "no external assets</footer>",
        "</body></html>",
    ]
    return "\n".join(parts)


# -- sections -------------------------------------------------------------------------------------
def _summary(job: dict[str, Any], batches: list[dict[str, Any]]) -> str:
    created, finished = parse_iso(job.get("createdAt")), parse_iso(job.get("finishedAt"))
    duration = _duration((finished - created).total_seconds()) if created and finished else "-"
    source = job.get("source")
    if isinstance(source, dict):
        source = source.get("uri") or source.get("key")
    rows = [
        ("state", _badge(str(job.get("state") or "UNKNOWN"))),
        ("type", _e(job.get("type"))),
        ("created", _e(job.get("createdAt") or "-")),
        ("started", _e(job.get("startTime") or "-")),
        ("finished", _e(job.get("finishedAt") or "-")),
        ("duration", _e(duration)),
        ("batches", str(len(batches))),
        ("polls", str(sum(_int(b.get("polls")) for b in batches))),
        ("source", f"<code>{_e(source or '-')}</code>"),
        ("run", f"<code>{_e(job.get('runId') or '-')}</code>"),
    ]
    error = job.get("error")
    if isinstance(error, dict):
        rows.append(
            ("error", f'<span class="err"><code>{_e(error.get("code"))}</code> {_e(error.get("message"))}</span>')
        )
    items = "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<section id="summary"><h2>Summary</h2><dl class="kv">{items}</dl></section>'


def _warnings(warnings: list[dict[str, Any]]) -> str:
    """A finished job's warnings (rows not listed by the provider, its counts disagreeing, ...), first thing
    after the summary: the job COMPLETED, but these want reading."""
    if not warnings:
        return ""
    items = "".join(
        f'<li><code>{_e(w.get("code"))}</code> {_e(w.get("message"))}</li>' for w in warnings if isinstance(w, dict)
    )
    return f'<section id="warnings"><h2>Warnings</h2><ul class="warn">{items}</ul></section>'


def _accounting(counts: dict[str, Any]) -> str:
    rows_in, imported = _int(counts.get("rowsIn")), _int(counts.get("imported"))
    provider_errors, rejected = _int(counts.get("providerErrors")), _int(counts.get("rejected"))
    unlisted = _int(counts.get("unlisted"))
    balanced = counts.get("balanced")
    if balanced is None:
        balanced = rows_in == imported + provider_errors + rejected + unlisted
    kinds = [
        ("rows-in", "rows in", rows_in),
        ("imported", "imported", imported),
        ("provider-errors", "provider errors", provider_errors),
        ("rejected", "rejected locally", rejected),
    ]
    if unlisted:
        kinds.append(("unlisted", "not listed by the provider", unlisted))
    cards = "".join(
        f'<div class="card {cls}" id="count-{cls}"><div class="n">{n:,}</div><div class="l">{label}</div></div>'
        for cls, label, n in kinds
    )
    line = (
        f"rows in {rows_in:,} {'=' if balanced else '&ne;'} imported {imported:,} + provider errors "
        f"{provider_errors:,} + rejected {rejected:,}" + (f" + unlisted {unlisted:,}" if unlisted else "")
    )
    verdict = '<span class="ok">exact</span>' if balanced else '<span class="err">NOT exact</span>'
    total = max(imported + provider_errors + rejected + unlisted, 1)
    x = 0.0
    segments = []
    for value, colour, label in (
        (imported, "#2da44e", "imported"),
        (provider_errors, "#cf222e", "provider errors"),
        (rejected, "#bf8700", "rejected"),
        (unlisted, "#8250df", "unlisted"),
    ):
        width = 1000 * value / total
        if value:
            segments.append(
                f'<rect x="{x:.1f}" y="0" width="{width:.1f}" height="14" fill="{colour}">'
                f"<title>{label}: {value:,}</title></rect>"
            )
        x += width
    bar = (
        '<svg class="bar" viewBox="0 0 1000 14" preserveAspectRatio="none" role="img" '
        f'aria-label="imported {imported}, provider errors {provider_errors}, rejected {rejected}">'
        f'<rect width="1000" height="14" fill="#eaeef2"/>{"".join(segments)}</svg>'
    )
    return (
        f'<section id="accounting"><h2>Accounting</h2><div class="cards">{cards}</div>{bar}'
        f'<p class="check" id="accounting-check">{line} &nbsp;({verdict})</p></section>'
    )


def _timeline(job: dict[str, Any], batches: list[dict[str, Any]]) -> str:
    shown = batches[:MAX_TIMELINE_BATCHES]
    created = parse_iso(job.get("createdAt"))
    moments = [created, parse_iso(job.get("startTime")), parse_iso(job.get("finishedAt"))]
    for b in shown:
        moments += [parse_iso(b.get(k)) for k in ("submittedAt", "finishedAt", "collectedAt")]
        moments += [parse_iso(t) for t in b.get("pollTimes") or []]
    known = [m for m in moments if m]
    if not shown or not known:
        return '<section id="timeline"><h2>Timeline</h2><p class="muted">No batch was submitted.</p></section>'
    t0, t1 = min(known), max(known)
    span = max((t1 - t0).total_seconds(), 0.001)
    left, right, top, row_h = 70, 20, 34, 18
    width = 1000
    plot_w = width - left - right
    height = top + row_h * len(shown) + 12

    def x(moment: datetime | None) -> float:
        return left + plot_w * ((moment - t0).total_seconds() / span) if moment else left

    out = [
        f'<svg class="timeline" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="timeline of {len(shown)} batches over {_e(_duration(span))}">',
    ]
    for i in range(6):  # time axis
        tx = left + plot_w * i / 5
        out.append(f'<line x1="{tx:.1f}" y1="{top - 6}" x2="{tx:.1f}" y2="{height - 8}" class="grid"/>')
        anchor = "start" if i == 0 else "end" if i == 5 else "middle"
        out.append(
            f'<text x="{tx:.1f}" y="{top - 10}" text-anchor="{anchor}" class="axis">+{_duration(span * i / 5)}</text>'
        )
    for label, moment in (("created", created), ("finished", parse_iso(job.get("finishedAt")))):
        if moment:
            mx = x(moment)
            out.append(
                f'<line x1="{mx:.1f}" y1="{top - 4}" x2="{mx:.1f}" y2="{height - 8}" class="jobline">'
                f"<title>job {label} {_e(job.get(label + 'At'))}</title></line>"
            )
    for row, b in enumerate(shown):
        y = top + row_h * row + row_h / 2
        index = _int(b.get("index"))
        state = str(b.get("state") or "")
        colour = STATE_COLOURS.get(state, "#6e7781")
        submitted, finished, collected = (parse_iso(b.get(k)) for k in ("submittedAt", "finishedAt", "collectedAt"))
        polls = [p for p in (parse_iso(t) for t in b.get("pollTimes") or []) if p]
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" class="label">batch {index}</text>')
        start, end = submitted, collected or finished or (polls[-1] if polls else None)
        if start and end:
            out.append(
                f'<line x1="{x(start):.1f}" y1="{y:.1f}" x2="{x(end):.1f}" y2="{y:.1f}" stroke="{colour}" '
                f'class="span"><title>batch {index} {_e(state)}: {b.get("rows", 0)} rows, '
                f"{_int(b.get('polls'))} polls</title></line>"
            )
        seen: set[int] = set()
        for n, poll in enumerate(polls, 1):
            px = x(poll)
            if int(px / 2) in seen:  # merge polls closer than 2 px: the page stays small
                continue
            seen.add(int(px / 2))
            out.append(
                f'<line x1="{px:.1f}" y1="{y - 5:.1f}" x2="{px:.1f}" y2="{y + 5:.1f}" class="poll">'
                f"<title>batch {index} poll {n} at {_e(_iso(poll))}</title></line>"
            )
        if submitted:
            out.append(
                f'<circle cx="{x(submitted):.1f}" cy="{y:.1f}" r="4" class="submitted">'
                f"<title>batch {index} submitted {_e(_iso(submitted))}</title></circle>"
            )
        if finished:
            fx = x(finished)
            out.append(
                f'<path d="M{fx:.1f} {y - 5:.1f} l5 5 l-5 5 l-5 -5 z" fill="{colour}" class="finished">'
                f"<title>batch {index} finished ({_e(state)}) {_e(_iso(finished))}</title></path>"
            )
        if collected:
            cx = x(collected)
            out.append(
                f'<rect x="{cx - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" class="collected">'
                f"<title>batch {index} results collected {_e(_iso(collected))}</title></rect>"
            )
    out.append("</svg>")
    more = (
        f'<p class="muted">First {len(shown)} of {len(batches)} batches shown; all are in the table below.</p>'
        if len(batches) > len(shown)
        else ""
    )
    legend = (
        '<p class="legend"><svg width="12" height="12"><circle cx="6" cy="6" r="4" class="submitted"/></svg> submitted '
        '<svg width="12" height="12"><line x1="6" y1="1" x2="6" y2="11" class="poll"/></svg> status poll '
        '<svg width="12" height="12"><path d="M6 1 l5 5 l-5 5 l-5 -5 z" fill="#1a7f37"/></svg> provider finished '
        '<svg width="12" height="12"><rect x="2" y="2" width="8" height="8" class="collected"/></svg> '
        "results collected "
        '<svg width="12" height="12"><line x1="6" y1="0" x2="6" y2="12" class="jobline"/></svg> job created / finished'
        f" &middot; from {_e(_iso(t0))} to {_e(_iso(t1))}</p>"
    )
    return f'<section id="timeline"><h2>Timeline</h2>{legend}{"".join(out)}{more}</section>'


def _batch_table(batches: list[dict[str, Any]]) -> str:
    if not batches:
        return ""
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "batch",
            "state",
            "provider job",
            "rows",
            "imported",
            "provider errors",
            "polls",
            "submitted",
            "finished",
            "collected",
            "error",
        )
    )
    rows = []
    for b in batches:
        state = str(b.get("state") or "")
        error = b.get("error")
        error_cell = (
            f"<code>{_e(error.get('code'))}</code> {_e(error.get('message'))}" if isinstance(error, dict) else ""
        )
        rows.append(
            "<tr>"
            f'<td class="num">{_int(b.get("index"))}</td><td>{_badge(state)}</td>'
            f"<td><code>{_e(b.get('providerJobId') or '-')}</code></td>"
            f'<td class="num">{_int(b.get("rows")):,}</td><td class="num">{_int(b.get("imported")):,}</td>'
            f'<td class="num">{_int(b.get("providerErrors")):,}</td><td class="num">{_int(b.get("polls"))}</td>'
            f"<td>{_e(_short(b.get('submittedAt')))}</td><td>{_e(_short(b.get('finishedAt')))}</td>"
            f"<td>{_e(_short(b.get('collectedAt')))}</td><td>{error_cell}</td>"
            "</tr>"
        )
    return (
        f'<section id="batches"><h2>Batches</h2><div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _codes(provider: CodeCounter | None, rejected: CodeCounter | None, counts: dict[str, Any]) -> str:
    blocks = []
    for title, counter, total, file_name, block_id in (
        ("Provider errors", provider, _int(counts.get("providerErrors")), "errors.ndjson", "provider-codes"),
        ("Rejected locally", rejected, _int(counts.get("rejected")), "rejected.ndjson", "rejected-codes"),
    ):
        if counter is None or not counter.counts:
            body = f'<p class="muted">none{"" if total == 0 else " counted"}</p>'
        else:
            largest = max(counter.counts.values())
            rows = "".join(
                f'<tr><td><code class="code">{_e(code)}</code></td><td class="num">{n:,}</td>'
                f'<td class="barcell"><div class="hbar" style="width:{100 * n / largest:.1f}%"></div></td></tr>'
                for code, n in counter.top()
            )
            note = []
            if len(counter.counts) > TOP_CODES:
                note.append(f"top {TOP_CODES} of {len(counter.counts)} codes")
            if counter.truncated:
                note.append(f"counted over the first {counter.rows:,} rows of {file_name}")
            body = (
                f"<table><thead><tr><th>code</th><th>rows</th><th></th></tr></thead><tbody>{rows}</tbody></table>"
                + (f'<p class="muted">{_e("; ".join(note))}</p>' if note else "")
            )
        blocks.append(
            f'<div class="codes" id="{block_id}"><h3>{title} <span class="muted">({total:,} '
            f"row{'' if total == 1 else 's'}, {file_name})</span></h3>{body}</div>"
        )
    return f'<section id="codes"><h2>Top error codes</h2><div class="two">{"".join(blocks)}</div></section>'


def _files(results: dict[str, Any]) -> str:
    if not results:
        return ""
    items = "".join(f"<dt>{_e(name)}</dt><dd><code>{_e(uri)}</code></dd>" for name, uri in sorted(results.items()))
    return f'<section id="files"><h2>Result files</h2><dl class="kv">{items}</dl></section>'


# -- helpers --------------------------------------------------------------------------------------
def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _badge(state: str) -> str:
    colour = STATE_COLOURS.get(state, "#6e7781")
    return f'<span class="badge" style="background:{colour}">{_e(state)}</span>'


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _short(value: Any) -> str:
    moment = parse_iso(value)
    return moment.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3] if moment else "-"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 and seconds != int(seconds) else f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_CSS = """
:root{color-scheme:light;--fg:#1f2328;--muted:#656d76;--line:#d0d7de;--bg:#fff;--soft:#f6f8fa}
*{box-sizing:border-box}
body{margin:0 auto;max-width:1100px;padding:24px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:var(--bg)}
header{border-bottom:1px solid var(--line);margin-bottom:16px}
.brand{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.06em}
h1{font-size:22px;margin:4px 0;word-break:break-all}
h2{font-size:16px;margin:24px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}
h3{font-size:14px;margin:8px 0}
.sub,.muted{color:var(--muted)}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;word-break:break-all}
.badge{display:inline-block;color:#fff;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600;
vertical-align:middle}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}
dl.kv dt{color:var(--muted)}dl.kv dd{margin:0}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin-bottom:10px}
.card{flex:1;min-width:150px;border:1px solid var(--line);border-radius:8px;padding:10px 14px;background:var(--soft)}
.card .n{font-size:24px;font-weight:650}.card .l{color:var(--muted)}
.card.imported .n{color:#1a7f37}.card.provider-errors .n{color:#cf222e}.card.rejected .n{color:#9a6700}
.card.unlisted .n{color:#8250df}
ul.warn{margin:0;padding:8px 12px 8px 28px;border:1px solid #d4a72c;border-radius:8px;background:#fff8c5}
svg.bar{width:100%;height:14px;border-radius:4px;display:block}
.check{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.ok{color:#1a7f37;font-weight:600}.err{color:#c62828;font-weight:600}
svg.timeline{width:100%;height:auto;border:1px solid var(--line);border-radius:6px;background:#fff}
svg .grid{stroke:#eaeef2;stroke-width:1}svg .axis{font-size:11px;fill:#656d76}
svg .label{font-size:11px;fill:#1f2328}
svg .span{stroke-width:3;stroke-linecap:round;opacity:.55}
svg .poll{stroke:#0969da;stroke-width:1.5}
svg .submitted{fill:#fff;stroke:#1f2328;stroke-width:1.5}
svg .collected{fill:#8250df}
svg .jobline{stroke:#656d76;stroke-width:1;stroke-dasharray:4 3}
.legend{color:var(--muted);font-size:12px}.legend svg{vertical-align:middle}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.two{display:grid;grid-template-columns:1fr 1fr;gap:24px}
@media (max-width:800px){.two{grid-template-columns:1fr}}
td.barcell{width:35%}.hbar{height:10px;background:#cf222e;border-radius:3px;opacity:.7}
#rejected-codes .hbar{background:#bf8700}
footer{margin-top:32px;color:var(--muted);font-size:12px;border-top:1px solid var(--line);padding-top:8px}
"""
