"""`jobtracker providers schema|validate|list` through the real command group (no stack needed)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from tracker import catalogue

from jobtracker.cli import main
from jobtracker.specs import SPECS_DIR


def test_list_shows_every_job_type_spec_types_like_built_in_ones() -> None:
    result = CliRunner().invoke(main, ["providers", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["TYPE", "KIND", "PROVIDER", "IN-FLIGHT", "TITLE"]
    rows = {line.split()[0]: line.split()[1:4] for line in lines[1:]}
    assert list(rows) == list(catalogue.NAMES)
    assert rows["fullstory.segment_export"] == ["operation", "fullstory", "10"]
    assert rows["fullstory.users"] == ["batch", "fullstory", "150/500,000rows"]  # batches and rows in flight
    assert rows["http:databricks"] == ["operation", "spec", "databricks"]  # then its in-flight, 20
    assert lines[list(rows).index("http:databricks") + 1].split()[4] == "20"


def test_validate_accepts_the_shipped_specs() -> None:
    files = [str(p) for p in sorted(SPECS_DIR.glob("*.yaml"))]
    result = CliRunner().invoke(main, ["providers", "validate", *files])
    assert result.exit_code == 0 and result.output.count(": ok (http:") == len(files) == 3


def test_validate_prints_file_line_field_and_exits_1(tmp_path: Path) -> None:
    broken = tmp_path / "databricks.yaml"
    text = (SPECS_DIR / "databricks.yaml").read_text()
    broken.write_text(text.replace("jobId: run_id", "jobId: runs[*].run_id").replace("inFlight: 20", "inFlight: -1"))
    result = CliRunner().invoke(main, ["providers", "validate", str(broken)])
    assert result.exit_code == 1
    errors = result.stderr.splitlines()
    lines = text.splitlines()
    in_flight, job_id = lines.index("inFlight: 20") + 1, lines.index("  jobId: run_id") + 1
    assert errors[0] == f"{broken}:{in_flight}: inFlight: Input should be greater than or equal to 1"
    assert errors[1].startswith(f"{broken}:{job_id}: start.jobId: unsupported selector syntax 'runs[*].run_id'")


def test_schema_is_json_schema_of_the_spec() -> None:
    result = CliRunner().invoke(main, ["providers", "schema"])
    schema = json.loads(result.output)
    assert schema["$schema"].endswith("2020-12/schema") and {"name", "baseUrl", "auth", "inFlight", "status"} <= set(
        schema["required"]
    )
