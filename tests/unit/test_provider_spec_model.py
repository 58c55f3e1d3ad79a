"""Loading provider specs: the shipped ones validate; bad ones fail with the field and the line."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from tracker.providers.spec.loader import SpecError, load_bundle, spec_from_document
from tracker.providers.spec.model import ProviderSpec

from jobtracker.specs import SPECS_DIR, bundle_text, read_spec_text, shipped_specs, write_bundle

DATABRICKS = (SPECS_DIR / "databricks.yaml").read_text()
LAYER = Path(__file__).resolve().parents[2] / "layers" / "shared" / "python" / "tracker"

MINIMAL = """\
name: tiny
title: Tiny API
baseUrl: https://api.example.com
auth:
  type: bearer
  secret:
    parameter: TinyTokenSecretArn
inFlight: 5
params:
  id:
    type: string
    required: true
status:
  path: /jobs/{providerJobId}
  state:
    fields:
      status: data.status
    rules:
      - when: {status: done}
        state: COMPLETED
"""


def problems_of(text: str, source: str = "specs/x.yaml") -> list[str]:
    with pytest.raises(SpecError) as caught:
        read_spec_text(text, source=source)
    return [str(p) for p in caught.value.problems]


def test_shipped_specs_load_with_their_types() -> None:
    assert [s.job_type for s in shipped_specs()] == ["http:databricks", "http:dbt_cloud", "http:fullstory_export"]


def test_a_minimal_spec_loads() -> None:
    spec = read_spec_text(MINIMAL, source="tiny.yaml", expected_name="tiny")
    assert spec.start is None and spec.status.vanished_on == [404] and spec.status.state.unknown.limit == 10


def test_error_names_the_field_and_its_line() -> None:
    broken = DATABRICKS.replace("when: {lifecycle: [RUNNING, TERMINATING]}", "when: {lifecyle: [RUNNING, TERMINATING]}")
    line = 1 + DATABRICKS.splitlines().index("      - when: {lifecycle: [RUNNING, TERMINATING]}")
    assert problems_of(broken, "specs/databricks.yaml") == [
        f"specs/databricks.yaml:{line}: status.state.rules[1].when.lifecyle: "
        "not one of the declared fields (lifecycle, result)"
    ]


def test_every_problem_is_listed_in_line_order() -> None:
    broken = MINIMAL.replace("inFlight: 5", "inFlight: 0\nfoo: 1").replace("type: bearer", "type: bearr")
    found = problems_of(broken)
    assert [p.split(":")[1] for p in found] == ["4", "8", "9"]
    assert "auth: Input tag 'bearr'" in found[0]
    assert "inFlight: Input should be greater than or equal to 1" in found[1]
    assert found[2].endswith("foo: unknown field (check the spelling; `jobtracker providers schema` lists every field)")


def test_missing_field_is_named_at_its_parent_line() -> None:
    assert problems_of(MINIMAL.replace("inFlight: 5\n", "")) == ["specs/x.yaml:1: inFlight: required field is missing"]
    found = problems_of(MINIMAL.replace("        state: COMPLETED\n", ""))
    assert found == ["specs/x.yaml:19: status.state.rules[0].state: required field is missing"]


def test_wrong_type_is_reported() -> None:
    found = problems_of(MINIMAL.replace("inFlight: 5", "inFlight: many"))
    assert found == ["specs/x.yaml:8: inFlight: Input should be a valid integer, unable to parse string as an integer"]


@pytest.mark.parametrize("selector", ["data..status", "data[*].status", "$..status", "data[?(@.x)]", "data.", "$"])
def test_unsupported_selector_syntax_is_refused(selector: str) -> None:
    found = problems_of(MINIMAL.replace("status: data.status", f"status: '{selector}'"))
    assert len(found) == 1 and found[0].startswith("specs/x.yaml:17: status.state.fields.status: ")
    assert "use dotted field names and [N] list indexes" in found[0]


def test_templates_may_only_name_declared_params_and_known_values() -> None:
    text = MINIMAL.replace("path: /jobs/{providerJobId}", "path: /jobs/{params.nope}/{runId}")
    found = problems_of(text)
    assert len(found) == 1 and "status.path: unknown placeholder {runId}" in found[0]
    found = problems_of(MINIMAL.replace("path: /jobs/{providerJobId}", "path: /jobs/{params.nope}"))
    assert found == ["specs/x.yaml:14: status.path: {params.nope} is not a declared param (params: id)"]


def test_optional_params_must_be_marked_and_only_as_whole_values() -> None:
    text = DATABRICKS.replace('job_parameters: "{params.job_parameters?}"', 'job_parameters: "{params.job_parameters}"')
    assert "params.job_parameters is optional; write {params.job_parameters?}" in problems_of(text)[0]
    token = 'idempotency_token: "{idempotencyKey}"'
    text = DATABRICKS.replace(token, 'idempotency_token: "x-{params.job_parameters?}"')
    assert "may only be a whole value of a body or query field" in problems_of(text)[0]


def test_provider_job_id_is_not_known_when_starting() -> None:
    text = DATABRICKS.replace("path: /api/2.2/jobs/run-now", "path: /api/2.2/jobs/run-now/{providerJobId}")
    assert problems_of(text)[0].endswith("start.path: {providerJobId} is not known before the job is started")


def test_a_spec_never_holds_a_secret() -> None:
    text = DATABRICKS.replace("    parameter: DatabricksTokenSecretArn", "    value: dapi0123456789")
    [found] = problems_of(text)
    assert "auth.secret: a spec never holds a secret (value)" in found and "dapi0123456789" not in found
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:databricks-token-AbCdEf"
    spec = read_spec_text(DATABRICKS.replace("parameter: DatabricksTokenSecretArn", f"arn: {arn}"), source="x")
    assert spec.auth.secret.arn == arn


def test_base_url_is_https_or_a_parameter() -> None:
    found = problems_of(MINIMAL.replace("https://api.example.com", "http://api.example.com"))
    assert "baseUrl: must be an https:// URL" in found[0]


def test_yaml_pitfalls_are_errors_not_surprises() -> None:
    assert problems_of(MINIMAL + "inFlight: 6\n") == ["specs/x.yaml:21: inFlight: duplicate key (first at line 8)"]
    found = problems_of(MINIMAL + "result:\n  on: [COMPLETED]\n  url: data.url\n")
    assert found[0] == "specs/x.yaml:22: result: key 'on' reads as a bool; quote it"
    found = problems_of(MINIMAL.replace("inFlight: 5", "inFlight: [5"))
    assert found[0].startswith("specs/x.yaml:") and "not valid YAML" in found[0]


def test_name_must_match_the_file() -> None:
    with pytest.raises(SpecError, match="'tiny' must match the file name 'other'"):
        read_spec_text(MINIMAL, source="other.yaml", expected_name="other")


def test_rules_values_and_codes_are_checked() -> None:
    text = MINIMAL.replace("        state: COMPLETED", "        state: COMPLETED\n        code: NOPE")
    assert problems_of(text) == ["specs/x.yaml:21: status.state.rules[0].code: a code is only for state FAILED"]
    assert "Input should be 'PENDING', 'RUNNING', 'COMPLETED' or 'FAILED'" in problems_of(
        MINIMAL.replace("state: COMPLETED", "state: DONE")
    )[0]


def test_progress_needs_percent_or_done_and_total() -> None:
    spec_text = MINIMAL.replace("  state:\n", "  progress:\n    done: data.done\n  state:\n")
    assert problems_of(spec_text) == ["specs/x.yaml:15: status.progress: give `percent`, or both `done` and `total`"]


def test_the_published_schema_accepts_the_shipped_specs_and_rejects_a_broken_one() -> None:
    schema = ProviderSpec.model_json_schema(by_alias=True)
    for path in sorted(SPECS_DIR.glob("*.yaml")):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    broken = yaml.safe_load(DATABRICKS)
    broken["inFlight"] = 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_the_lambda_bundle_round_trips(tmp_path: Path) -> None:
    out = tmp_path / "specs.json"
    assert write_bundle(out) == 3
    assert load_bundle(out) == {s.name: s for s in shipped_specs()}


def test_the_committed_bundle_is_the_specs_folder() -> None:
    """The functions read layers/shared/python/tracker/providers/spec/specs.json (sam build copies the layer
    as it is): it must say what specs/*.yaml say. `make specs` rewrites it."""
    from tracker.providers.spec import shipped

    text, count = bundle_text()
    assert shipped.BUNDLE_PATH.read_text(encoding="utf-8") == text, "specs.json is out of date: run `make specs`"
    assert count == len(list(SPECS_DIR.glob("*.yaml")))
    # What the catalogue reads without validating agrees with the validated specs.
    facts = {f.name: f for f in shipped.facts()}
    for spec in shipped_specs():
        fact = facts[spec.name]
        assert (fact.job_type, fact.title, fact.in_flight) == (spec.job_type, spec.title, spec.in_flight)
        assert fact.starts_jobs == (spec.start is not None) and fact.parameters == spec.template_parameters
        assert shipped.spec(spec.name) == spec


def test_a_hand_edited_bundle_gets_a_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "specs.json"
    write_bundle(out)
    document = json.loads(out.read_text())
    document["specs"]["databricks"]["inFlight"] = -1
    out.write_text(json.dumps(document))
    with pytest.raises(SpecError, match=r"specs.json#databricks: inFlight: Input should be greater than or equal to 1"):
        load_bundle(out)
    out.write_text("{}")
    with pytest.raises(SpecError, match="not a version 1 spec bundle"):
        load_bundle(out)


def test_documents_without_lines_still_name_fields() -> None:
    with pytest.raises(SpecError, match=r"^x: auth.secret: give exactly one of `parameter` or `arn`$"):
        spec_from_document({**yaml.safe_load(MINIMAL), "auth": {"type": "bearer", "secret": {}}}, source="x")


def test_the_deployed_spec_code_imports_no_yaml() -> None:
    """PyYAML is in neither the Lambda runtime nor the Powertools layer: the layer must not need it."""
    for path in (LAYER / "providers" / "spec").glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not any(name.split(".")[0] == "yaml" for name in imported), path.name


def test_built_in_values_are_known_only_where_they_exist() -> None:
    text = DATABRICKS.replace('idempotency_token: "{idempotencyKey}"', 'idempotency_token: "{extension}"')
    assert problems_of(text)[0].endswith("start.body.idempotency_token: {extension} is only known to result.fileName")
    status_query = '    run_id: "{providerJobId}"\n  # An unknown'
    text = DATABRICKS.replace(status_query, status_query.replace("{providerJobId}", "{idempotencyKey}"))
    assert "status.query.run_id: {idempotencyKey} is only known when starting a job" in problems_of(text)[0]
    text = DATABRICKS.replace("path: /api/2.2/jobs/run-now", "path: /api/2.2/jobs/{answer.run_id}")
    assert "start.path: {answer.run_id} (a field of the last status answer) is only known to result.request" in (
        problems_of(text)[0]
    )


def test_headers_are_templates_and_never_the_credentials() -> None:
    start_path = "  path: /api/2.2/jobs/run-now\n"
    with_header = DATABRICKS.replace(start_path, start_path + "  headers:\n    X: h\n")
    spec = read_spec_text(with_header.replace("X: h", "X-Request-Id: '{idempotencyKey}'"), source="x")
    assert spec.start is not None and spec.start.headers == {"X-Request-Id": "{idempotencyKey}"}
    found = problems_of(with_header.replace("X: h", "Authorization: Bearer x"))
    assert "start.headers: header Authorization: set by the tracker itself" in found[0]
    found = problems_of(with_header.replace("X: h", "X-Run: '{params.nope}'"))
    assert "start.headers.X-Run: {params.nope} is not a declared param" in found[0]


def test_param_defaults_fit_their_type_and_make_the_param_usable_without_a_question_mark() -> None:
    text = DATABRICKS.replace(
        "  job_parameters:\n    type: object\n", "  job_parameters:\n    type: object\n    default: {a: '1'}\n"
    ).replace('"{params.job_parameters?}"', '"{params.job_parameters}"')
    assert read_spec_text(text, source="x").params["job_parameters"].default == {"a": "1"}
    found = problems_of(text.replace("default: {a: '1'}", "default: 5"))
    assert "params.job_parameters: default 5 is not of type object" in found[0]


def test_a_result_is_a_request_a_url_or_a_request_answering_a_url() -> None:
    fullstory = (SPECS_DIR / "fullstory_export.yaml").read_text()
    spec = read_spec_text(fullstory, source="x")
    assert spec.result is not None and spec.result.request is not None and spec.result.url == "location"
    found = problems_of(fullstory.replace("  url: location\n", "").replace(
        "  request:\n    method: GET\n    path: /search/v1/exports/{answer.results.searchExportId}/results\n", ""
    ))
    assert "result: give `request`, `url` (a selector) or both" in found[0]
    found = problems_of(fullstory.replace("{answer.results.searchExportId}", "{answer.results..id}"))
    assert "result.request.path: unsupported selector syntax 'results..id'" in found[0]
