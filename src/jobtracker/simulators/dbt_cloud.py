"""dbt Cloud API v2 simulator: trigger a job run, retrieve a run, fetch a run artifact.

Sources:
- [OPENAPI] dbt Labs' OpenAPI spec of API v2 (github.com/dbt-labs/dbt-cloud-openapi-spec, openapi-v2.yaml),
  from which https://docs.getdbt.com/dbt-cloud/api-v2 is generated: the paths, TriggerRunRequestRequest
  (``cause`` required, minLength 1), RunResponseEnveloped {"data", "status"} and Status {code,
  is_success, user_message, developer_message}, RunResponseResponse's fields.
- [AUTH] the same document: "Be sure to include the Token prefix in the Authorization header, or the
  request will fail with a 401 Unauthorized error. Note: Bearer can be used in place of Token."
- [AIRFLOW] apache-airflow-providers-dbt-cloud, hooks/dbt.py: DbtCloudJobRunStatus QUEUED=1, STARTING=2,
  RUNNING=3, SUCCESS=10, ERROR=20, CANCELLED=30; retries on 429 and 5xx.

A run moves by polls of Retrieve Run (deterministic, no sleeps): Queued (1) for ``queued_polls``
answers, Starting (2) for ``starting_polls``, Running (3) for ``running_polls``, then its job's outcome:
Success (10), Error (20) or Cancelled (30).

Serving, ``--tls`` and injected faults are the shared ones (:mod:`jobtracker.simulators.server`,
:mod:`jobtracker.simulators.faults`); targets: ``submit`` = Trigger Job Run, ``status``/``operation`` =
Retrieve Run, ``results``/``download`` = Retrieve Run Artifact. ``stuck`` keeps every run Running.
Every error is the documented envelope ``{"status": {...}, "data": null}`` [OPENAPI].
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jobtracker.simulators.faults import Fault
from jobtracker.simulators.server import Answer, ApiError, Simulator, run_until_interrupted

__all__ = ["DEFAULT_DBT_JOBS", "DbtCloudConfig", "DbtCloudSimulator", "SimDbtJob", "serve"]

QUEUED, STARTING, RUNNING, SUCCESS, ERROR, CANCELLED = 1, 2, 3, 10, 20, 30
HUMANIZED = {
    QUEUED: "Queued",
    STARTING: "Starting",
    RUNNING: "Running",
    SUCCESS: "Success",
    ERROR: "Error",
    CANCELLED: "Cancelled",
}
OUTCOMES = {"success": SUCCESS, "error": ERROR, "cancelled": CANCELLED}
CAUSE_MAX = 255  # [AIRFLOW] DBT_CAUSE_MAX_LENGTH: longer causes are refused by the API, so the hook truncates

_TRIGGER = re.compile(r"^/api/v2/accounts/(?P<account>\d+)/jobs/(?P<job>\d+)/run/$")
_RUN = re.compile(r"^/api/v2/accounts/(?P<account>\d+)/runs/(?P<run>\d+)/$")
_ARTIFACT = re.compile(r"^/api/v2/accounts/(?P<account>\d+)/runs/(?P<run>\d+)/artifacts/(?P<path>.+)$")


@dataclass(frozen=True)
class SimDbtJob:
    job_id: int
    name: str
    outcome: str = "success"  # success | error | cancelled


DEFAULT_DBT_JOBS = (
    SimDbtJob(201, "nightly build", "success"),
    SimDbtJob(202, "broken tests", "error"),
    SimDbtJob(203, "cancelled by admin", "cancelled"),
)


@dataclass
class DbtCloudConfig:
    token: str | None = None  # None: any non-empty token; else only this one
    account_id: int = 70_403
    project_id: int = 270_542
    environment_id: int = 218_762
    jobs: tuple[SimDbtJob, ...] = DEFAULT_DBT_JOBS
    queued_polls: int = 1
    starting_polls: int = 1
    running_polls: int = 1
    retry_after_seconds: int = 1
    base_url: str = "https://cloud.getdbt.com"  # for `href` only
    clock: Callable[[], float] = time.time
    faults: tuple[Fault, ...] = ()  # injected failures (jobtracker.simulators.faults)
    fault_seed: int | None = None


@dataclass
class _Run:
    id: int
    job: SimDbtJob
    trigger: dict[str, Any]
    created: float
    polls: int = 0
    started: float | None = None
    finished: float | None = None


class DbtCloudSimulator(Simulator[DbtCloudConfig]):
    """dbt Cloud's API v2 (runs) on a real local port (``with DbtCloudSimulator() as sim``)."""

    title = "dbt Cloud simulator"
    server_name = "DbtCloudSimulator/1.0"
    # The error codes are not part of dbt Cloud's envelope (only the HTTP status and user_message are);
    # they are kept for the shared plumbing and never sent.
    injected_errors = {
        "500": ("server_error", "Injected fault: an unexpected error occurred."),
        "429": ("throttled", "Too many requests."),
    }
    internal_error = ("server_error", "Internal error")
    malformed_answer = (200, b'{"status": {"code": 200, "is_success": tr', {"Content-Type": "application/json"})

    def __init__(
        self,
        config: DbtCloudConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: bool = False,
        tls_dir: Path | None = None,
    ) -> None:
        super().__init__(config or DbtCloudConfig(), host, port, tls=tls, tls_dir=tls_dir)
        self._runs: dict[int, _Run] = {}
        self._next_run_id = 300_000_001
        self._stats.update(triggers=0, run_gets=0, artifact_gets=0, unauthorized=0)
        self.requests: list[tuple[str, str]] = []

    def forget_run(self, run_id: int) -> None:
        """The run is no longer there (a test knob): Retrieve Run answers 404 for a run it does not know, in
        the documented envelope with ``data`` null [OPENAPI]."""
        with self._lock:
            self._runs.pop(run_id, None)

    def fault_targets(self, method: str, path: str) -> Collection[str]:
        if _TRIGGER.match(path):
            return ("submit",)
        if _RUN.match(path):
            return ("status", "operation")
        if _ARTIFACT.match(path):
            return ("results", "download")
        return ("other",)

    def error_answer(self, err: ApiError) -> Answer:
        return _envelope(err.status, None, user_message=err.message, headers=err.headers)

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes, fault: Fault | None = None) -> Answer:
        route = urlsplit(raw_path).path
        with self._lock:
            self.requests.append((method, route))
            self._authenticate(headers)
            return self._route(method, route, body)

    def _authenticate(self, headers: Any) -> None:
        scheme, _, token = (headers.get("Authorization") or "").partition(" ")
        token = token.strip()
        if scheme not in ("Token", "Bearer") or not token or (self.config.token not in (None, token)):  # [AUTH]
            self._stats["unauthorized"] += 1
            raise ApiError(401, "unauthorized", "Invalid token.")

    def _route(self, method: str, path: str, body: bytes) -> Answer:
        if match := _TRIGGER.match(path):
            if method != "POST":
                raise ApiError(405, "error", f'Method "{method}" not allowed.')
            self._account(match)
            return self._trigger(int(match.group("job")), body)
        if match := _RUN.match(path):
            if method != "GET":
                raise ApiError(405, "error", f'Method "{method}" not allowed.')
            self._account(match)
            run = self._run(int(match.group("run")))
            run.polls += 1
            self._stats["run_gets"] += 1
            return _envelope(200, self._run_view(run))
        if match := _ARTIFACT.match(path):
            self._account(match)
            self._stats["artifact_gets"] += 1
            return self._artifact(self._run(int(match.group("run"))), match.group("path"))
        raise ApiError(404, "error", "The requested resource was not found.")

    def _account(self, match: re.Match[str]) -> None:
        if int(match.group("account")) != self.config.account_id:
            raise ApiError(404, "error", "The requested resource was not found.")

    def _run(self, run_id: int) -> _Run:
        run = self._runs.get(run_id)
        if run is None:
            raise ApiError(404, "error", "The requested resource was not found.")
        return run

    def _trigger(self, job_id: int, body: bytes) -> Answer:
        self._stats["triggers"] += 1
        job = next((j for j in self.config.jobs if j.job_id == job_id), None)
        if job is None:
            raise ApiError(404, "error", "The requested resource was not found.")
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            raise ApiError(400, "error", "JSON parse error.") from None
        cause = request.get("cause") if isinstance(request, dict) else None
        if not isinstance(cause, str) or not cause.strip():
            raise ApiError(400, "error", "cause: This field is required.")  # [OPENAPI] required, minLength 1
        if len(cause) > CAUSE_MAX:
            raise ApiError(400, "error", f"cause: Ensure this field has no more than {CAUSE_MAX} characters.")
        trigger = {
            "cause": cause,
            "job_definition_id": job.job_id,
            **{k: request[k] for k in ("git_branch", "git_sha", "schema_override", "steps_override") if k in request},
        }
        run = _Run(self._next_run_id, job, trigger, self.config.clock())
        self._next_run_id += 1
        self._runs[run.id] = run
        return _envelope(200, self._run_view(run))  # [OPENAPI] Trigger Job Run answers 200 RunResponseEnveloped

    def _status(self, run: _Run) -> int:
        config = self.config
        if run.polls <= config.queued_polls:
            return QUEUED
        if run.polls <= config.queued_polls + config.starting_polls:
            return STARTING
        if run.polls <= config.queued_polls + config.starting_polls + config.running_polls or self.has_fault("stuck"):
            return RUNNING
        return OUTCOMES[run.job.outcome]

    def _run_view(self, run: _Run) -> dict[str, Any]:
        """A RunResponseResponse [OPENAPI]."""
        now = self.config.clock()
        status = self._status(run)
        if status >= STARTING and run.started is None:
            run.started = now
        if status >= SUCCESS and run.finished is None:
            run.finished = now
        message = {ERROR: "Database Error in model orders: relation does not exist", CANCELLED: "Cancelled by user"}
        return {
            "id": run.id,
            "trigger_id": run.id + 5_000_000,
            "account_id": self.config.account_id,
            "environment_id": self.config.environment_id,
            "project_id": self.config.project_id,
            "job_definition_id": run.job.job_id,
            "job_id": run.job.job_id,
            "status": status,
            "status_humanized": HUMANIZED[status],
            "status_message": message.get(status),
            "dbt_version": "versionless",
            "git_branch": run.trigger.get("git_branch", "main"),
            "git_sha": "981c5cf1ba299e942c6c277c38c8dec9b0738dd0",
            "in_progress": status in (QUEUED, STARTING, RUNNING),
            "is_running": status == RUNNING,
            "is_complete": status >= SUCCESS,
            "is_success": status == SUCCESS,
            "is_error": status == ERROR,
            "is_cancelled": status == CANCELLED,
            "artifacts_saved": status >= SUCCESS,
            "has_docs_generated": False,
            "has_sources_generated": False,
            "created_at": _iso(run.created),
            "updated_at": _iso(now),
            "dequeued_at": _iso(run.started) if run.started else None,
            "started_at": _iso(run.started) if run.started else None,
            "finished_at": _iso(run.finished) if run.finished else None,
            "duration": _duration(run.created, run.finished or now),
            "duration_humanized": f"{int((run.finished or now) - run.created)} seconds",
            "trigger": run.trigger,
            "run_steps": [],
            "href": f"{self.config.base_url}/deploy/{self.config.account_id}/projects/"
            f"{self.config.project_id}/runs/{run.id}/",
        }

    def _artifact(self, run: _Run, path: str) -> Answer:
        # [OPENAPI] "Once a run has been completed, you can use this endpoint to download the manifest.json,
        # run_results.json, or catalog.json files"; before that there is nothing to fetch.
        if self._status(run) < SUCCESS or path != "run_results.json":
            raise ApiError(404, "error", "The requested resource was not found.")
        failed = run.job.outcome != "success"
        results = {
            "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json"},
            "results": [
                {"unique_id": "model.shop.customers", "status": "success", "execution_time": 1.2, "message": "OK"},
                {
                    "unique_id": "model.shop.orders",
                    "status": "error" if failed else "success",
                    "execution_time": 0.4,
                    "message": "relation does not exist" if failed else "OK",
                },
            ],
            "elapsed_time": 1.6,
        }
        return 200, json.dumps(results).encode(), {"Content-Type": "application/json"}


def _envelope(code: int, data: Any, *, user_message: str = "Success!", headers: dict[str, str] | None = None) -> Answer:
    """{"status": Status, "data": ...} [OPENAPI RunResponseEnveloped, Status]."""
    body = {
        "status": {"code": code, "is_success": code < 400, "user_message": user_message, "developer_message": ""},
        "data": data,
    }
    return code, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")


def _duration(start: float, end: float) -> str:
    seconds = max(0, int(end - start))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def serve(
    config: DbtCloudConfig,
    host: str = "127.0.0.1",
    port: int = 8905,
    *,
    tls: bool = False,
    tls_dir: Path | None = None,
) -> None:
    """Blocking entry point for ``jobtracker simulate dbt-cloud --port N [--tls]``; Ctrl-C stops it."""
    run_until_interrupted(DbtCloudSimulator(config, host=host, port=port, tls=tls, tls_dir=tls_dir))
