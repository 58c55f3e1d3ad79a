"""`jobtracker submit / watch / jobs / show / results` against the offline stack (--local)."""

from __future__ import annotations

import json
from pathlib import Path

from jobtracker.client.api import ApiClient
from tests.cli.conftest import finished, job_id_in, one_line_error, users_csv

FILES = {"imports.ndjson", "errors.ndjson", "rejected.ndjson", "manifest.json", "report.html"}


def test_submit_uploads_watches_to_completion_and_says_how_to_get_the_results(cli, local, session, tmp_path):
    result = cli("submit", str(users_csv(tmp_path / "users.csv")), "--type", "fullstory.users", *local)

    assert result.exit_code == 0, result.output
    job_id = job_id_in(result.stderr)
    assert "uploaded users.csv" in result.stderr
    assert "s3://jobtracker-local-inboxbucket/inbox/users/" in result.stderr
    assert "Ctrl-C stops watching, not the job" in result.stderr
    assert f"Job {job_id} COMPLETED" in result.stdout
    assert "accounting: rows in 11 = imported 9 + provider errors 1 + rejected 1  (exact)" in result.stdout
    assert "batches  3 total · 3 sent · 0 polling · 0 collecting · 3 done" in result.stdout
    assert f"results: jobtracker results {job_id} --local --api-url {session.api.base_url}" in result.stdout
    job = finished(session, job_id)
    assert (job["state"], job["imported"], job["providerErrors"], job["rejected"]) == ("COMPLETED", 9, 1, 1)


def test_submit_via_api_creates_the_job_with_post_jobs_and_prints_json(cli, local, session, tmp_path):
    rows = [json.dumps({"uid": f"e-{i}", "email": f"e{i}@example.com"}) for i in range(5)]
    (tmp_path / "five.ndjson").write_text("\n".join(rows) + "\n")

    result = cli("submit", str(tmp_path / "five.ndjson"), "--type", "fullstory.users", "--via-api", "--json", *local)

    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["state"] == "COMPLETED"
    assert job["metrics"]["imported"] == 5
    # Uploaded through POST /uploads' presigned URL into the caller's own prefix, no S3 rights needed.
    assert job["operationParams"]["source"].startswith("s3://jobtracker-local-inboxbucket/uploads/local/")
    # Created by a SigV4-signed POST /jobs (the offline API names the caller after the access key).
    assert job["creatorToken"]["id"] == "arn:aws:iam::123456789012:user/local"


def test_a_job_that_fails_exits_1_with_its_error(cli, local, tmp_path):
    (tmp_path / "empty.csv").write_text("uid,email\n")

    result = cli("submit", str(tmp_path / "empty.csv"), "--type", "fullstory.users", *local)

    assert result.exit_code == 1, result.output
    assert "FAILED" in result.stdout
    assert "error: empty_file" in result.stdout


def test_jobs_lists_jobs_as_a_table_and_as_json(cli, local, done_job):
    table = cli("jobs", *local)
    assert table.exit_code == 0, table.output
    assert done_job in table.stdout
    assert "COMPLETED" in table.stdout

    as_json = cli("jobs", "--state", "COMPLETED", "--limit", "200", "--json", *local)
    assert as_json.exit_code == 0, as_json.output
    page = json.loads(as_json.stdout)
    assert done_job in [j["id"] for j in page["jobs"]]
    assert {j["state"] for j in page["jobs"]} == {"COMPLETED"}

    none = cli("jobs", "--state", "RUNNING", *local)
    assert none.exit_code == 0
    assert "no RUNNING jobs" in none.stdout


def test_show_prints_the_job_with_its_batches_and_json_that_parses(cli, local, done_job):
    human = cli("show", done_job, *local)
    assert human.exit_code == 0, human.output
    assert done_job in human.stdout
    assert "rows in 11 = imported 9 + provider errors 1 + rejected 1  (exact)" in human.stdout
    assert "batches (3)" in human.stdout

    result = cli("show", done_job, "--json", *local)
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["id"] == done_job
    assert job["state"] == "COMPLETED"
    assert [b["rows"] for b in job["batches"]] == [4, 4, 2]
    assert all(b["providerJobId"] for b in job["batches"])


def test_watch_of_a_finished_job_returns_at_once_with_its_exit_code(cli, local, done_job):
    result = cli("watch", done_job, *local)
    assert result.exit_code == 0, result.output
    assert f"Job {done_job} COMPLETED" in result.stdout

    as_json = cli("watch", done_job, "--json", *local)
    assert json.loads(as_json.stdout)["id"] == done_job


def test_results_downloads_every_file_including_the_report(cli, local, session, done_job, tmp_path):
    out = tmp_path / "out"
    result = cli("results", done_job, "--out", str(out), *local)

    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == FILES
    assert f"5 files in {out}/" in result.stdout
    imports = [json.loads(line) for line in (out / "imports.ndjson").read_text().splitlines()]
    assert len(imports) == 9
    errors = [json.loads(line) for line in (out / "errors.ndjson").read_text().splitlines()]
    assert [e["code"] for e in errors] == ["invalid_email"]
    rejected = [json.loads(line) for line in (out / "rejected.ndjson").read_text().splitlines()]
    assert [r["code"] for r in rejected] == ["value_too_long"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["job"]["id"] == done_job
    assert manifest["report"] == f"s3://jobtracker-local-resultsbucket/results/{done_job}/report.html"
    report = (out / "report.html").read_text()
    assert done_job in report
    assert "invalid_email" in report and "value_too_long" in report

    as_json = cli("results", done_job, "--out", str(tmp_path / "again"), "--json", *local)
    listing = json.loads(as_json.stdout)
    assert set(listing["files"]) == {"imports", "errors", "rejected", "manifest", "report"}
    assert all(Path(p).exists() for p in listing["files"].values())


def test_the_notification_links_the_report(session, done_job):
    finished(session, done_job)
    (note,) = [n for n in session.stack.notifications() if n["message"]["jobId"] == done_job]
    assert note["message"]["results"]["report"] == (
        f"s3://jobtracker-local-resultsbucket/results/{done_job}/report.html"
    )


def test_ctrl_c_stops_watching_not_the_job_and_says_how_to_resume(cli, local, done_job, monkeypatch):
    calls = []

    def interrupted(self, job_id):
        calls.append(job_id)
        if len(calls) > 2:  # the id is checked, one poll shows it running, then Ctrl-C
            raise KeyboardInterrupt
        return {"id": job_id, "state": "RUNNING", "batches": []}

    monkeypatch.setattr(ApiClient, "get_job", interrupted)
    result = cli("watch", done_job, *local)

    assert result.exit_code == 130, result.output
    assert f"stopped watching; job {done_job} goes on (RUNNING)" in result.stderr
    assert f"Resume with: jobtracker watch {done_job} --local --api-url" in result.stderr


def test_unknown_job_is_one_line_and_exit_4(cli, local):
    result = cli("show", "job-000000000000000000000000", *local)
    assert result.exit_code == 4
    assert one_line_error(result) == (
        "error: no job job-000000000000000000000000 (GET /jobs/job-000000000000000000000000: 404 not_found)"
    )


def test_cancel_a_running_job_then_retry_it_to_completion(cli, local, session, tmp_path):
    config = session.simulator.config
    saved = (config.polls_to_complete, config.processing_seconds)
    config.polls_to_complete, config.processing_seconds = None, 3600.0  # provider jobs stay PROCESSING
    try:
        started = cli(
            "submit", str(users_csv(tmp_path / "slow.csv")), "--type", "fullstory.users", "--no-watch", *local
        )
        assert started.exit_code == 0, started.output
        job_id = started.stdout.strip()
        # all() of no batches is True: wait for the three batches to exist, then for the provider to accept them
        session.stack.wait_until(
            lambda: (
                len(batches := session.stack.list_batches(job_id)) == 3
                and all(b.get("providerJobId") for b in batches)
            )
            or None,
            what="every batch accepted by the provider",
        )
        cancelled = cli("cancel", job_id, *local)
    finally:
        config.polls_to_complete, config.processing_seconds = saved
    assert cancelled.exit_code == 0, cancelled.output
    assert f"Job {job_id} FAILED" in cancelled.stdout
    assert "error: cancelled cancelled by arn:aws:iam::123456789012:user/local" in cancelled.stdout

    again = cli("cancel", job_id, *local)
    assert again.exit_code == 4
    assert "409 already_finished" in one_line_error(again)

    finished(session, job_id)  # closed once its execution stopped (EventBridge -> finalize): retry may start
    retried = cli("retry", job_id, *local)
    assert retried.exit_code == 0, retried.output
    assert f"job {job_id} is RUNNING again: 3 of 3 batches to finish" in retried.stderr
    assert f"Job {job_id} COMPLETED" in retried.stdout
    assert "rows in 11 = imported 9 + provider errors 1 + rejected 1  (exact)" in retried.stdout


def test_retry_of_a_completed_job_is_refused_in_one_line(cli, local, done_job):
    result = cli("retry", done_job, *local)
    assert result.exit_code == 4
    assert "409 not_failed" in one_line_error(result)
