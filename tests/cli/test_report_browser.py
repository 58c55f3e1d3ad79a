"""report.html of a real job, rendered by a real browser (Debian's chromium, headless).

The page must show the job id and the counts with no network at all (every host resolves to nothing),
and a screenshot is left in .artifacts/report.png for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from jobtracker.local.stack import REPO_ROOT

CHROMIUM = os.environ.get("JOBTRACKER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"no chromium at {CHROMIUM}: install Debian's `chromium` package (.ci/run does) to render report.html",
)


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # self-contained: nothing may be fetched
        f"--user-data-dir={tmp_path / 'profile'}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_the_report_of_a_real_job_renders_in_a_browser(cli, local, done_job, tmp_path):
    result = cli("results", done_job, "--out", str(tmp_path / "results"), *local)
    assert result.exit_code == 0, result.output
    report = tmp_path / "results" / "report.html"
    url = report.resolve().as_uri()

    dom = _chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = " ".join(dom.stdout.split())
    assert done_job in text
    assert "rows in 11 = imported 9 + provider errors 1 + rejected 1" in text
    for card in ('id="count-rows-in"><div class="n">11<', 'id="count-imported"><div class="n">9<'):
        assert card in text
    assert "invalid_email" in text and "value_too_long" in text
    assert text.count('class="poll"') >= 6  # 3 batches, 2 polls each (one may hide under another)

    artifacts = REPO_ROOT / ".artifacts"
    artifacts.mkdir(exist_ok=True)
    screenshot = artifacts / "report.png"
    screenshot.unlink(missing_ok=True)
    shot = _chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1280,1600", url)
    assert shot.returncode == 0, shot.stderr[-2000:]
    header = screenshot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (1280, 1600)
