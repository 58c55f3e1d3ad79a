"""`jobtracker providers schema|validate|list` through the real command group (no stack needed)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from jobtracker.cli import main
from jobtracker.specs import SPECS_DIR


def test_list_shows_the_shipped_specs_with_their_types() -> None:
    result = CliRunner().invoke(main, ["providers", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["TYPE", "START", "IN-FLIGHT", "TITLE"]
    assert [line.split()[0] for line in lines[1:]] == ["http:databricks", "http:dbt_cloud"]


def test_validate_accepts_the_shipped_specs() -> None:
    files = [str(p) for p in sorted(SPECS_DIR.glob("*.yaml"))]
    result = CliRunner().invoke(main, ["providers", "validate", *files])
    assert result.exit_code == 0 and result.output.count(": ok (http:") == 2


def test_validate_prints_file_line_field_and_exits_1(tmp_path: Path) -> None:
    broken = tmp_path / "databricks.yaml"
    text = (SPECS_DIR / "databricks.yaml").read_text()
    broken.write_text(text.replace("jobId: run_id", "jobId: runs[*].run_id").replace("inFlight: 20", "inFlight: -1"))
    result = CliRunner().invoke(main, ["providers", "validate", str(broken)])
    assert result.exit_code == 1
    errors = result.stderr.splitlines()
    assert errors[0] == f"{broken}:23: inFlight: Input should be greater than or equal to 1"
    assert errors[1].startswith(f"{broken}:43: start.jobId: unsupported selector syntax 'runs[*].run_id'")


def test_schema_is_json_schema_of_the_spec() -> None:
    result = CliRunner().invoke(main, ["providers", "schema"])
    schema = json.loads(result.output)
    assert schema["$schema"].endswith("2020-12/schema") and {"name", "baseUrl", "auth", "inFlight", "status"} <= set(
        schema["required"]
    )
