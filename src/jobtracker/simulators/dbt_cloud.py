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
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from jobtracker.simulators.handler_server import Answer, HandlerServer

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


@dataclass
class _Run:
    id: int
    job: SimDbtJob
    trigger: dict[str, Any]
    created: float
    polls: int = 0
    started: float | None = None
    finished: float | None = None


@dataclass(eq=False)
class _ApiError(Exception):
    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)


class DbtCloudSimulator:
    """The API logic; ``handle`` needs no server (see :class:`DbtCloudServer`)."""

    def __init__(self, config: DbtCloudConfig | None = None) -> None:
        self.config = config or DbtCloudConfig()
        self._lock = threading.Lock()
        self._runs: dict[int, _Run] = {}
        self._next_run_id = 300_000_001
        self._throttle = 0
        self.requests: list[tuple[str, str]] = []

    def throttle(self, count: int) -> None:
        """Answer the next `count` requests 429 with Retry-After ([AIRFLOW] retries 429 as transient)."""
        with self._lock:
            self._throttle = count

    def forget_run(self, run_id: int) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        route = urlsplit(path).path
        with self._lock:
            self.requests.append((method, route))
            try:
                self._authenticate(headers)
                if self._throttle > 0:
                    self._throttle -= 1
                    raise _ApiError(429, "Too many requests.", {"Retry-After": str(self.config.retry_after_seconds)})
                return self._route(method, route, body)
            except _ApiError as exc:
                return _envelope(exc.status, None, user_message=exc.message, headers=exc.headers)

    def _authenticate(self, headers: dict[str, str]) -> None:
        scheme, _, token = (headers.get("authorization") or "").partition(" ")
        token = token.strip()
        if scheme not in ("Token", "Bearer") or not token:  # [AUTH]
            raise _ApiError(401, "Invalid token.")
        if self.config.token is not None and token != self.config.token:
            raise _ApiError(401, "Invalid token.")

    def _route(self, method: str, path: str, body: bytes) -> Answer:
        if match := _TRIGGER.match(path):
            if method != "POST":
                raise _ApiError(405, f'Method "{method}" not allowed.')
            self._account(match)
            return self._trigger(int(match.group("job")), body)
        if match := _RUN.match(path):
            if method != "GET":
                raise _ApiError(405, f'Method "{method}" not allowed.')
            self._account(match)
            run = self._run(int(match.group("run")))
            run.polls += 1
            return _envelope(200, self._run_view(run))
        if match := _ARTIFACT.match(path):
            self._account(match)
            return self._artifact(self._run(int(match.group("run"))), match.group("path"))
        raise _ApiError(404, "The requested resource was not found.")

    def _account(self, match: re.Match[str]) -> None:
        if int(match.group("account")) != self.config.account_id:
            raise _ApiError(404, "The requested resource was not found.")

    def _run(self, run_id: int) -> _Run:
        run = self._runs.get(run_id)
        if run is None:
            raise _ApiError(404, "The requested resource was not found.")
        return run

    def _trigger(self, job_id: int, body: bytes) -> Answer:
        job = next((j for j in self.config.jobs if j.job_id == job_id), None)
        if job is None:
            raise _ApiError(404, "The requested resource was not found.")
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            raise _ApiError(400, "JSON parse error.") from None
        cause = request.get("cause") if isinstance(request, dict) else None
        if not isinstance(cause, str) or not cause.strip():
            raise _ApiError(400, "cause: This field is required.")  # [OPENAPI] required, minLength 1
        if len(cause) > CAUSE_MAX:
            raise _ApiError(400, f"cause: Ensure this field has no more than {CAUSE_MAX} characters.")
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
        if run.polls <= config.queued_polls + config.starting_polls + config.running_polls:
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
            raise _ApiError(404, "The requested resource was not found.")
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
        return 200, {"Content-Type": "application/json"}, json.dumps(results).encode()


def _envelope(code: int, data: Any, *, user_message: str = "Success!", headers: dict[str, str] | None = None) -> Answer:
    """{"status": Status, "data": ...} [OPENAPI RunResponseEnveloped, Status]."""
    body = {
        "status": {"code": code, "is_success": code < 400, "user_message": user_message, "developer_message": ""},
        "data": data,
    }
    return code, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")


def _duration(start: float, end: float) -> str:
    seconds = max(0, int(end - start))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class DbtCloudServer(HandlerServer):
    """The simulator over HTTP on 127.0.0.1."""

    def __init__(self, config: DbtCloudConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = DbtCloudSimulator(config)
        super().__init__(self.simulator, host=host, port=port)
