"""report.html: escaping, error-code counts in bounded memory, the timeline's elements, self-containment."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

from tracker.report import MAX_TIMELINE_BATCHES, CodeCounter, render_report

VOID = {"meta", "br", "hr", "img", "input", "link", "circle", "line", "rect", "path"}


def _manifest(**job_extra):
    return {
        "job": {
            "id": "job-abc",
            "type": "fullstory.users",
            "state": "COMPLETED",
            "createdAt": "2026-11-23T10:00:00.000Z",
            "startTime": "2026-11-23T10:00:01.000Z",
            "finishedAt": "2026-11-23T10:01:00.000Z",
            "source": {"uri": "s3://inbox/inbox/users/people.csv"},
            "runId": "arn:aws:states:us-east-1:1:execution:jobs:job-abc",
            "error": None,
            **job_extra,
        },
        "accounting": {"rowsIn": 1234, "imported": 1200, "providerErrors": 30, "rejected": 4, "balanced": True},
        "batches": [
            {
                "index": 1,
                "state": "COMPLETED",
                "providerJobId": "p-1",
                "rows": 600,
                "imported": 600,
                "providerErrors": 0,
                "polls": 3,
                "submittedAt": "2026-11-23T10:00:02.000Z",
                "pollTimes": ["2026-11-23T10:00:10.000Z", "2026-11-23T10:00:20.000Z", "2026-11-23T10:00:40.000Z"],
                "finishedAt": "2026-11-23T10:00:40.000Z",
                "collectedAt": "2026-11-23T10:00:45.000Z",
                "error": None,
            },
            {
                "index": 2,
                "state": "PARTIAL",
                "providerJobId": "p-2",
                "rows": 630,
                "imported": 600,
                "providerErrors": 30,
                "polls": 2,
                "submittedAt": "2026-11-23T10:00:03.000Z",
                "pollTimes": ["2026-11-23T10:00:15.000Z", "2026-11-23T10:00:50.000Z"],
                "finishedAt": "2026-11-23T10:00:50.000Z",
                "collectedAt": "2026-11-23T10:00:55.000Z",
                "error": None,
            },
        ],
        "results": {"imports": "s3://results/results/job-abc/imports.ndjson"},
    }


def _counter(rows):
    counter = CodeCounter()
    counter.feed(b"".join(json.dumps(r).encode() + b"\n" for r in rows))
    counter.close()
    return counter


class _Checker(HTMLParser):
    """Collects text, tags and attributes; checks that every non-void element is closed in order."""

    def __init__(self):
        super().__init__()
        self.stack, self.text, self.tags, self.attrs, self.problems = [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse(page):
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.problems == []
    assert checker.stack == []
    return checker


def test_summary_accounting_and_code_counts_are_on_the_page():
    provider = _counter([{"code": "invalid_email"}] * 20 + [{"code": "invalid_property_type"}] * 10)
    rejected = _counter([{"line": 3, "code": "value_too_long"}] * 3 + [{"line": 9, "code": "invalid_json"}])
    page = render_report(_manifest(), provider_codes=provider, rejected_codes=rejected, generated_at="now")
    text = " ".join(_parse(page).text)

    assert "job-abc" in text and "COMPLETED" in text and "fullstory.users" in text
    assert "rows in 1,234 = imported 1,200 + provider errors 30 + rejected 4" in text
    assert "exact" in text
    for code, count in (("invalid_email", "20"), ("invalid_property_type", "10"), ("value_too_long", "3")):
        assert re.search(rf"{code}</code></td><td class=\"num\">{count}<", page), code
    assert "duration 1m00s" in " ".join(text.split())  # createdAt -> finishedAt


def test_the_timeline_draws_every_batch_submission_poll_finish_and_collection():
    page = render_report(_manifest())
    svg = page[page.index('<svg class="timeline"') : page.index("</svg>", page.index('<svg class="timeline"'))]
    assert svg.count('class="submitted"') == 2
    assert svg.count('class="poll"') == 5
    assert svg.count('class="finished"') == 2
    assert svg.count('class="collected"') == 2
    assert svg.count('class="span"') == 2
    assert "batch 2 poll 2 at 2026-11-23 10:00:50.000Z" in svg
    assert "batch 1 submitted 2026-11-23 10:00:02.000Z" in svg


def test_user_data_is_escaped_everywhere():
    evil = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    manifest = _manifest(
        id="job-<b>x</b>",
        source={"uri": f"s3://inbox/inbox/users/{evil}.csv"},
        state="FAILED",
        error={"code": "bad<code>", "message": evil},
    )
    manifest["batches"][0]["providerJobId"] = evil
    manifest["batches"][0]["error"] = {"code": evil, "message": evil}
    codes = _counter([{"code": evil}, {"code": "ok"}])
    page = render_report(manifest, provider_codes=codes, rejected_codes=codes)
    checker = _parse(page)

    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert "script" not in checker.tags and "img" not in checker.tags
    assert not [name for name, _ in checker.attrs if name.startswith("on")]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "job-&lt;b&gt;x&lt;/b&gt;" in page


def test_the_page_is_self_contained():
    page = render_report(_manifest(), provider_codes=_counter([{"code": "a"}]))
    checker = _parse(page)
    assert not {"script", "link", "img", "iframe", "object", "embed"} & set(checker.tags)
    assert not [(n, v) for n, v in checker.attrs if n in ("src", "href") and v]
    assert "url(" not in page and "@import" not in page
    assert "http://" not in page and "https://" not in page


def test_code_counter_handles_chunk_boundaries_missing_codes_and_bad_lines():
    data = b'{"code":"a"}\n{"code":"b"}\n\n{"x":1}\nnot json\n{"code":"a"}'  # last line without newline
    counter = CodeCounter()
    for i in range(len(data)):
        counter.feed(data[i : i + 1])
    counter.close()
    assert counter.counts == {"a": 2, "b": 1, "(no code)": 1, "(unreadable row)": 1}
    assert counter.rows == 5
    assert counter.top(2) == [("a", 2), ("(no code)", 1)]


def test_code_counter_memory_is_bounded():
    many = CodeCounter(max_distinct=3)
    many.feed(b"".join(json.dumps({"code": f"c{i}"}).encode() + b"\n" for i in range(10)))
    many.close()
    assert len(many.counts) == 4
    assert many.counts["(other codes)"] == 7

    truncated = CodeCounter(max_bytes=30)
    truncated.feed(b'{"code":"a"}\n' * 10)
    truncated.close()
    assert truncated.truncated
    assert truncated.counts == {"a": 2}

    long_line = CodeCounter()
    long_line.feed(b'{"code":"' + b"x" * (5 * 1024 * 1024))
    long_line.feed(b'"}\n{"code":"after"}\n')
    long_line.close()
    assert long_line.counts == {"(unreadable row)": 1, "after": 1}

    assert CodeCounter().top() == []
    long_code = _counter([{"code": "y" * 500}])
    assert [len(code) for code in long_code.counts] == [80]


def test_a_job_without_batches_and_many_batches_still_render():
    empty = _manifest(state="FAILED", error={"code": "empty_file", "message": "holds no rows"})
    empty["batches"] = []
    empty["accounting"] = {"rowsIn": 0, "imported": 0, "providerErrors": 0, "rejected": 0, "balanced": True}
    page = render_report(empty)
    _parse(page)
    assert "No batch was submitted." in page
    assert "empty_file" in page

    big = _manifest()
    big["batches"] = [dict(big["batches"][0], index=i) for i in range(1, MAX_TIMELINE_BATCHES + 6)]
    page = render_report(big)
    _parse(page)
    assert f"First {MAX_TIMELINE_BATCHES} of {MAX_TIMELINE_BATCHES + 5} batches shown" in page
    assert page.count('class="submitted"') == MAX_TIMELINE_BATCHES + 1  # + the legend's


def test_a_flagged_job_shows_its_warnings_first_and_its_unlisted_rows_in_the_accounting():
    manifest = _manifest()
    manifest["accounting"] = {
        "rowsIn": 1234,
        "imported": 1198,
        "providerErrors": 30,
        "rejected": 4,
        "unlisted": 2,
        "balanced": True,
    }
    manifest["warnings"] = [{"code": "unlisted_rows", "message": "2 row(s) <listed> neither way"}]
    page = render_report(manifest, generated_at="now")
    text = " ".join(_parse(page).text)
    assert "rows in 1,234 = imported 1,198 + provider errors 30 + rejected 4 + unlisted 2" in text and "exact" in text
    assert page.index('id="warnings"') < page.index('id="accounting"')
    assert "unlisted_rows" in text and "&lt;listed&gt;" in page  # escaped like every other value
    assert 'id="count-unlisted"' in page
    assert 'id="warnings"' not in render_report(_manifest(), generated_at="now")  # only when there are any
