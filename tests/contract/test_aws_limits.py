"""The limits AWS sets that moto never enforces, measured against the template and the code that lives
within them: Lambda's 6 MB invoke vs the inline-body cap, intake's timeout vs the largest file it takes,
Step Functions' 256 KiB state vs the Map's collected result, the dead-letter queue's wiring, and the
uploads prefix the template expires."""

from __future__ import annotations

import json
from typing import Any

from tracker import access
from tracker.limits import (
    INTAKE_CSV_BYTES_PER_CPU_SECOND,
    LAMBDA_SYNC_PAYLOAD_BYTES,
    MAX_BATCHES_PER_JOB,
    MAX_INLINE_BODY_BYTES,
    MAX_INTAKE_OBJECT_BYTES,
)

from jobtracker.local.api_gateway import OfflineApiServer, Route
from jobtracker.local.lambdas import FunctionSpec
from jobtracker.local.stack import REPO_ROOT
from jobtracker.local.template import load_template

TEMPLATE = load_template(REPO_ROOT / "template.yaml")
RESOURCES = TEMPLATE["Resources"]
ASL = json.loads((REPO_ROOT / "statemachine" / "job.asl.json").read_text())
API_GATEWAY_HEADER_BYTES = 10 * 1024  # REST API quota: request line and headers together (API Gateway quotas)
LAMBDA_MB_PER_VCPU = 1769  # Lambda: one vCPU at 1,769 MB (Lambda Developer Guide, "Configuring memory")
STATE_PAYLOAD_BYTES = 256 * 1024  # Step Functions quota: input or output of a state


class _Echo:
    """Stands in for the Lambda runtime: answers every invocation 200, and counts them."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def invoke(self, name: str, event: dict[str, Any]) -> dict[str, Any]:
        self.events.append(event)
        return {"statusCode": 200, "body": "{}"}


def _gateway() -> tuple[OfflineApiServer, _Echo]:
    echo = _Echo()
    spec = FunctionSpec("ApiFunction", "api", "arn", REPO_ROOT, "app.lambda_handler", 29, 512, {}, {})
    return OfflineApiServer(echo, [Route("POST", "/jobs", spec)], allow_unsigned=True), echo  # type: ignore[arg-type]


def _worst_escaping(size: int) -> bytes:
    """Valid JSON of `size` bytes made of what a JSON string escapes once more: backslashes and quotes."""
    inner = size - len(b'[""]')
    return b'["' + b'\\"' * (inner // 2) + b" " * (inner % 2) + b'"]'


def test_a_body_at_the_inline_cap_always_fits_lambdas_invoke_with_the_largest_headers():
    gateway, echo = _gateway()
    headers = {"X-Padding": '"' * (API_GATEWAY_HEADER_BYTES - 200)}  # quotes: escaped once more in the event
    body = _worst_escaping(MAX_INLINE_BODY_BYTES)
    assert len(body) == MAX_INLINE_BODY_BYTES
    status, _, _ = gateway.handle("POST", "/jobs?" + "q=" * 500, headers, body)
    assert status == 200 and len(echo.events) == 1  # the event reached the function
    size = len(json.dumps(echo.events[0], ensure_ascii=False, separators=(",", ":")).encode())
    assert size < LAMBDA_SYNC_PAYLOAD_BYTES
    print(f"worst event at the cap: {size:,} bytes; limit {LAMBDA_SYNC_PAYLOAD_BYTES:,}")


def test_the_check_bites_a_body_whose_event_is_over_six_mb():
    gateway, echo = _gateway()
    status, _, answer = gateway.handle("POST", "/jobs", {}, _worst_escaping(LAMBDA_SYNC_PAYLOAD_BYTES // 2 + 1))
    assert (status, json.loads(answer)["code"]) == (500, "invoke_payload_too_large")
    assert echo.events == []


def test_the_largest_file_intake_takes_is_read_within_its_timeout_at_its_memory():
    intake = RESOURCES["IntakeFunction"]["Properties"]
    seconds, memory = intake["Timeout"], intake["MemorySize"]
    readable = seconds * INTAKE_CSV_BYTES_PER_CPU_SECOND * memory / LAMBDA_MB_PER_VCPU
    assert 0.8 * readable >= MAX_INTAKE_OBJECT_BYTES, (
        f"intake reads about {readable / 1e9:.1f} GB in {seconds} s at {memory} MB; "
        f"it may not take files of {MAX_INTAKE_OBJECT_BYTES / 1e9:.1f} GB"
    )


def test_the_maps_collected_result_stays_within_a_states_payload():
    processes = next(s for s in ASL["States"].values() if s.get("Type") == "Map")
    assert processes["ResultPath"] is None
    assert processes["ToleratedFailurePercentage"] == 100  # one child's failure never aborts its siblings
    children = processes["ItemProcessor"]["States"]
    ends = [s for s in children.values() if s.get("End")]
    assert ends and all(s["Type"] == "Pass" and s.get("Result") == {} for s in ends)
    assert MAX_BATCHES_PER_JOB * len(b"{},") < STATE_PAYLOAD_BYTES


def test_intake_dead_letters_reach_finalize_and_the_queue_allows_its_timeout():
    finalize = RESOURCES["FinalizeFunction"]["Properties"]
    (source,) = [e for e in finalize["Events"].values() if e["Type"] == "SQS"]
    assert source["Properties"]["Queue"] == {"Fn::GetAtt": ["IntakeDeadLetterQueue", "Arn"]}
    # Lambda refuses an SQS event source whose queue hides a message for less than the function runs.
    assert RESOURCES["IntakeDeadLetterQueue"]["Properties"]["VisibilityTimeout"] >= finalize["Timeout"]
    assert source["Properties"].get("FunctionResponseTypes") == ["ReportBatchItemFailures"]


def test_api_uploads_start_nothing_and_expire():
    inbox = RESOURCES["InboxBucket"]["Properties"]
    (notification,) = inbox["NotificationConfiguration"]["QueueConfigurations"]
    (prefix,) = [r["Value"] for r in notification["Filter"]["S3Key"]["Rules"] if r["Name"] == "prefix"]
    assert not access.UPLOADS_PREFIX.startswith(prefix)  # an upload waits for POST /jobs
    rules = {r["Id"]: r for r in inbox["LifecycleConfiguration"]["Rules"]}
    assert rules["ExpireApiUploads"]["Prefix"] == access.UPLOADS_PREFIX
    assert rules["ExpireApiUploads"]["ExpirationInDays"] == {"Ref": "RetentionDays"}
    assert "AbortIncompleteMultipartUpload" in rules["AbortIncompleteUploads"]
