"""Execution names: one per run, never reused, and the job always found from the name (also the names
earlier releases gave)."""

from __future__ import annotations

import re

from tracker.executions import execution_name_of, job_id_of_execution, new_execution_name

JOB = "job-0123456789abcdef01234567"


def test_every_run_gets_a_name_of_its_own_that_step_functions_accepts():
    names = {new_execution_name(JOB, attempt) for attempt in (0, 0, 1, 1)}
    assert len(names) == 4  # the same job and attempt twice (a record that expired) still differ
    for name in names:
        # Step Functions: at most 80 characters, no blanks or the characters it reserves.
        assert len(name) <= 80 and re.fullmatch(r"[A-Za-z0-9_-]+", name)
        assert job_id_of_execution(name) == JOB


def test_the_job_is_found_from_names_of_earlier_releases_too():
    assert job_id_of_execution(JOB) == JOB
    assert job_id_of_execution(f"{JOB}-retry-3") == JOB


def test_the_name_is_the_last_part_of_the_arn():
    arn = f"arn:aws:states:us-east-1:123456789012:execution:jobtracker-jobs:{JOB}-r2-00ff00ff"
    assert execution_name_of(arn) == f"{JOB}-r2-00ff00ff"
