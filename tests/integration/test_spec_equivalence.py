"""FullStory's operation tracking declared as a spec (specs/fullstory_export.yaml, type http:fullstory_export)
gives the same job view, results and notification as the built-in provider (fullstory.segment_export, and
`track` of a fullstory.operation) on the same simulator run.

Both flavours run in one offline stack against one FullStory simulator:
- tracking one operation someone else started: both follow the very same operation, so the views, the
  notification and the result file (bytes) must be identical once ids and times are normalized;
- starting an export: each job starts its own operation of the same request (queued, then progress over
  three polls); the views and notifications must be identical once ids and times are normalized, and each
  stored file must be exactly the file the simulator served for its operation, under the same name.
"""

from __future__ import annotations

import difflib
import gzip
import json
import re
from typing import Any

from jobtracker.local.session import OfflineSession
from jobtracker.local.stack import LOCAL_API_KEY
from tests.integration.test_http_jobs import HTTP, stack, stored
from tests.integration.test_job_types import check_views

EXPORT = {
    "segmentId": "everyone",
    "type": "TYPE_INDIVIDUAL",
    "format": "FORMAT_CSV",
    "timeRange": {"start": "", "end": ""},
}
BUILT_IN = {"start": "fullstory.segment_export", "track": "fullstory.operation"}
AS_SPEC = "http:fullstory_export"
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _normalized(value: Any, names: dict[str, str]) -> Any:
    """Ids -> their role (<job>, <operation>), timestamps -> <time>, the job type -> <type>; a presigned
    URL keeps its path (the file's key) and loses its signature."""
    if isinstance(value, dict):
        return {key: _normalized(item, names) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalized(item, names) for item in value]
    if not isinstance(value, str):
        return value
    if _TIME.match(value):
        return "<time>"
    if value in names:
        return names[value]
    text = value.split("?X-Amz-", 1)[0].split("?AWSAccessKeyId", 1)[0]
    for real, role in names.items():
        # ids inside keys, ARNs and file names, qualified type names inside a subject; "track" only whole
        if role in ("<job>", "<operation>", "<execution>") or "." in real or ":" in real:
            text = text.replace(real, role)
    return text


def _job_and_notes(session: OfflineSession, job_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    view = check_views(session, job_id)
    note = next(n for n in session.stack.notifications() if n["message"]["jobId"] == job_id)
    return view, note


def _compare(
    session: OfflineSession, built_in: dict[str, Any], as_spec: dict[str, Any], *, own_files: bool = False
) -> tuple[Any, Any]:
    """The two jobs' normalized views and notifications, asserted equal. ``own_files``: each job exported its
    own operation, whose file has its own size (checked against the simulator's file by the caller)."""
    (batch_a,), (batch_b,) = session.stack.list_batches(built_in["id"]), session.stack.list_batches(as_spec["id"])
    views, notes = [], []
    for job, batch in ((built_in, batch_a), (as_spec, batch_b)):
        view, note = _job_and_notes(session, job["id"])
        operation = batch["providerJobId"]
        names = {job["id"]: "<job>", operation: "<operation>", job["type"]: "<type>"}
        if view.get("runId"):  # the execution: named after the job and its run, with a unique suffix
            names[view["runId"]] = "<execution>"
        names[re.sub(r"[^A-Za-z0-9_-]+", "_", operation).strip("_")] = "<operation>"  # inside a file name
        if own_files:
            assert view["metrics"]["outBytes"] == len(stored(session, job["resultKeys"]["download"]))
            view["metrics"]["outBytes"] = "<size of its file>"
        names[job.get("taskType") or job["type"]] = "<task type>"  # what its task runs as
        if "provider" in job["operationParams"]:  # a tracked job: whose job it follows
            names[str(job["operationParams"]["provider"])] = "<provider>"
        views.append(_normalized(view, names))
        notes.append(_normalized(note, names))
    for what, (a, b) in (("job views", views), ("notifications", notes)):
        left, right = (json.dumps(x, indent=1, sort_keys=True).splitlines() for x in (a, b))
        assert left == right, f"{what} differ (built-in -> spec):\n" + "\n".join(
            difflib.unified_diff(left, right, lineterm="", n=1)
        )
    return views, notes


def test_fullstory_operation_tracking_as_a_spec_matches_the_built_in_provider() -> None:
    with stack() as session:
        fullstory = session.simulator
        # -- track one operation someone else started: the very same operation, followed by each
        fullstory.config.operation_polls_to_complete = 0  # done when it is created: both see one answer
        created = fullstory.respond(
            "POST", "/segments/v1/exports", {"Authorization": f"Basic {LOCAL_API_KEY}"}, json.dumps(EXPORT).encode()
        )
        operation = json.loads(created[1])["operationId"]
        tracked = {}
        for provider in (BUILT_IN["track"], AS_SPEC):
            tracked[provider] = _run(session, {"type": "track", "provider": provider, "providerJobId": operation})
        built_in, as_spec = tracked[BUILT_IN["track"]], tracked[AS_SPEC]
        assert built_in["state"] == as_spec["state"] == "COMPLETED", (built_in.get("error"), as_spec.get("error"))
        _compare(session, built_in, as_spec)
        file_a, file_b = (stored(session, job["resultKeys"]["download"]) for job in (built_in, as_spec))
        assert file_a == file_b and gzip.decompress(file_a).decode().count("\n") == 37  # header + 36 rows
        names = {job["resultKeys"]["download"].rsplit("/", 1)[1] for job in (built_in, as_spec)}
        assert len(names) == 1 and names.pop().endswith(".csv.gz")  # the same name, from Content-Disposition

        # -- start an export: queued, progress over three polls, then the file
        fullstory.config.operation_polls_to_complete = 3
        started = {kind: _run(session, {"type": kind, "params": EXPORT}) for kind in (BUILT_IN["start"], AS_SPEC)}
        built_in, as_spec = started[BUILT_IN["start"]], started[AS_SPEC]
        assert built_in["state"] == as_spec["state"] == "COMPLETED", (built_in.get("error"), as_spec.get("error"))
        views, _ = _compare(session, built_in, as_spec, own_files=True)
        assert views[0]["batches"][0]["polls"] == 3 and views[0]["estimatePctComplete"] == 100
        for job in (built_in, as_spec):
            (batch,) = session.stack.list_batches(job["id"])
            served = _served_file(session, batch["providerJobId"])
            assert stored(session, job["resultKeys"]["download"]) == served  # the file as the provider served it
            assert float(batch["progressPct"]) > 0

        # -- a failed export: the provider's error, the same for both
        failed = {kind: _run(session, {"type": kind, "params": {**EXPORT, "segmentId": "broken"}}) for kind in started}
        assert failed[BUILT_IN["start"]]["error"] == failed[AS_SPEC]["error"]
        assert failed[AS_SPEC]["error"]["code"] == "export_failed"
        _compare(session, failed[BUILT_IN["start"]], failed[AS_SPEC])


def _served_file(session: OfflineSession, operation_id: str) -> bytes:
    """The operation's file as the simulator serves it to any client (its export results, then the download)."""
    fullstory = session.simulator
    (export_id,) = [op["searchExportId"] for op in fullstory.operations() if op["id"] == operation_id]
    headers = {"Authorization": f"Basic {LOCAL_API_KEY}"}
    location = json.loads(fullstory.respond("GET", f"/search/v1/exports/{export_id}/results", headers, b"")[1])
    response = HTTP.request("GET", location["location"], decode_content=False)
    assert response.status == 200
    return response.data


def _run(session: OfflineSession, body: dict[str, Any]) -> dict[str, Any]:
    from tests.integration.test_http_jobs import run

    return run(session, body)
