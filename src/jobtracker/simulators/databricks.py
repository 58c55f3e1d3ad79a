"""Databricks Jobs API simulator: run-now, runs/get and jobs/list, in versions 2.2 and 2.1.

Sources (each behaviour below names its own):
- [SDK] the official Python client, databricks-sdk 0.162.0: databricks/sdk/service/jobs.py (paths,
  request and answer fields, the RunLifeCycleState / RunResultState / TerminationCode enums) and
  databricks/sdk/errors/ (error body, status mapping, Retry-After, error overrides).
- [RUNNOW] https://docs.databricks.com/api/workspace/jobs/runnow
- [GETRUN] https://docs.databricks.com/api/workspace/jobs/getrun
- [V22] https://docs.databricks.com/reference/jobs-api-2-2-updates.html (page_token paging of jobs/list)
- [ERRORS] https://docs.databricks.com/api/account/errors ({"error_code", "message"} on every error)
- [STATES] https://databricks.github.io/sdk-js/api/variables/_databricks_sdk-jobs.v2.RunLifeCycleState_RunLifeCycleState.html
  and ..._RunResultState_RunResultState.html (what each state means).

A run moves by polls of runs/get (deterministic, no sleeps): PENDING for ``pending_polls`` answers,
RUNNING for ``running_polls``, TERMINATING for ``terminating_polls``, then its job's outcome. Outcomes:
SUCCESS, SUCCESS_WITH_FAILURES, FAILED, TIMEDOUT, CANCELED, MAXIMUM_CONCURRENT_RUNS_REACHED, EXCLUDED,
UPSTREAM_FAILED, UPSTREAM_CANCELED, DISABLED (TERMINATED with that result_state), SKIPPED and
INTERNAL_ERROR (their own terminal life-cycle states, no result_state).

Serving, ``--tls`` and injected faults are the shared ones (:mod:`jobtracker.simulators.server`,
:mod:`jobtracker.simulators.faults`); targets: ``submit`` = run-now, ``status``/``operation`` = runs/get,
``pages`` = jobs/list. ``stuck`` keeps every run RUNNING. Errors are Databricks' ``{"error_code",
"message"}`` [ERRORS], an injected 429 is ``REQUEST_LIMIT_EXCEEDED`` with ``Retry-After`` [SDK].
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jobtracker.simulators.faults import Fault
from jobtracker.simulators.server import Answer, ApiError, Simulator, run_until_interrupted

__all__ = ["DEFAULT_JOBS", "OUTCOMES", "DatabricksConfig", "DatabricksSimulator", "SimJob", "serve"]

# result_state -> (termination code, termination type, state_message) [SDK TerminationCodeCode descriptions]
_TERMINATED = {
    "SUCCESS": ("SUCCESS", "SUCCESS", ""),
    "SUCCESS_WITH_FAILURES": ("SUCCESS_WITH_FAILURES", "SUCCESS", "Some child runs failed; leaf tasks succeeded."),
    "FAILED": ("RUN_EXECUTION_ERROR", "CLIENT_ERROR", "Task main failed with message: ZeroDivisionError."),
    "TIMEDOUT": ("CANCELED", "CLIENT_ERROR", "Run timed out after reaching its timeout_seconds."),
    "CANCELED": ("USER_CANCELED", "SUCCESS", "Run cancelled by user."),
    "MAXIMUM_CONCURRENT_RUNS_REACHED": (
        "MAX_CONCURRENT_RUNS_EXCEEDED",
        "CLIENT_ERROR",
        "Maximum concurrent runs reached.",
    ),
    "EXCLUDED": ("SKIPPED", "SUCCESS", "Run condition was not met."),
    "UPSTREAM_FAILED": ("SKIPPED", "CLIENT_ERROR", "An upstream task failed."),
    "UPSTREAM_CANCELED": ("SKIPPED", "CLIENT_ERROR", "An upstream task was canceled."),
    "DISABLED": ("DISABLED", "CLIENT_ERROR", "Run was disabled by the user."),
}
# Terminal life-cycle states without a result_state [STATES]: "aborted because a previous run of the same
# job was already active" / "a failure in the Jobs service".
_OTHER_TERMINAL = {
    "SKIPPED": ("SKIPPED", "SUCCESS", "Run skipped: a previous run of this job is still active."),
    "INTERNAL_ERROR": ("INTERNAL_ERROR", "INTERNAL_ERROR", "Internal error: the Jobs service lost the run."),
}
OUTCOMES = (*_TERMINATED, *_OTHER_TERMINAL)
VERSIONS = ("2.1", "2.2")
LIST_LIMIT_MAX = 100  # [SDK] jobs.list: "less or equal to 100. The default value is 20."
LIST_LIMIT_DEFAULT = 20
IDEMPOTENCY_TOKEN_MAX = 64  # [RUNNOW] "This token must have at most 64 characters."


@dataclass(frozen=True)
class SimJob:
    job_id: int
    name: str
    outcome: str = "SUCCESS"


DEFAULT_JOBS = (
    SimJob(101, "daily-etl", "SUCCESS"),
    SimJob(102, "orders-report", "FAILED"),
    SimJob(103, "singleton-sync", "SKIPPED"),
    SimJob(104, "ad-hoc-backfill", "CANCELED"),
    SimJob(105, "legacy-cluster-job", "INTERNAL_ERROR"),
    SimJob(106, "slow-aggregation", "TIMEDOUT"),
    SimJob(107, "multi-task-pipeline", "SUCCESS_WITH_FAILURES"),
)


@dataclass
class DatabricksConfig:
    token: str | None = None  # None: any non-empty bearer token; else only this one
    jobs: tuple[SimJob, ...] = DEFAULT_JOBS
    pending_polls: int = 1
    running_polls: int = 1
    terminating_polls: int = 0
    retry_after_seconds: int = 1
    missing_run_status: int = 400  # 400 INVALID_PARAMETER_VALUE as the service answers; 404 for the generic form
    # A life-cycle state newer than the pinned SDK knows, which every run reports once it has left PENDING
    # and never leaves: [STATES] "Additional states might be introduced in future releases".
    future_lifecycle_state: str | None = None
    faults: tuple[Fault, ...] = ()  # injected failures (jobtracker.simulators.faults)
    fault_seed: int | None = None
    workspace_url: str = "https://dbc-simulated.cloud.databricks.com"  # for run_page_url only
    workspace_id: str = "1234567890123456"
    user: str = "jobtracker@example.com"
    clock: Callable[[], float] = time.time


@dataclass
class _Run:
    run_id: int
    job: SimJob
    created: float
    job_parameters: dict[str, str]
    polls: int = 0
    ended: float | None = None


class DatabricksSimulator(Simulator[DatabricksConfig]):
    """A Databricks workspace's Jobs API on a real local port (``with DatabricksSimulator() as sim``)."""

    title = "Databricks simulator"
    server_name = "DatabricksSimulator/1.0"
    # [ERRORS] every error is {"error_code", "message"}; [SDK errors/platform.py] maps these codes.
    injected_errors = {
        "500": ("INTERNAL_ERROR", "Injected fault: internal error"),
        "429": ("REQUEST_LIMIT_EXCEEDED", "Too many requests. Please wait a moment and try again."),
    }
    internal_error = ("INTERNAL_ERROR", "Internal error")
    malformed_answer = (200, b'{"run_id": 8800000', {"Content-Type": "application/json"})

    def __init__(
        self,
        config: DatabricksConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: bool = False,
        tls_dir: Path | None = None,
    ) -> None:
        super().__init__(config or DatabricksConfig(), host, port, tls=tls, tls_dir=tls_dir)
        self._runs: dict[int, _Run] = {}
        self._tokens: dict[str, int] = {}
        self._next_run_id = 880_000_000_001
        self._stats.update(run_now=0, runs_get=0, lists=0, unauthorized=0)
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for tests

    # -- knobs for tests ------------------------------------------------------------------------
    def forget_run(self, run_id: int) -> None:
        """The run vanishes ("Runs are automatically removed after 60 days" [SDK get_run_output doc])."""
        with self._lock:
            self._runs.pop(run_id, None)

    # -- HTTP ------------------------------------------------------------------------------------
    def fault_targets(self, method: str, path: str) -> Collection[str]:
        if path.endswith("/jobs/run-now"):
            return ("submit",)
        if path.endswith("/jobs/runs/get"):
            return ("status", "operation")
        if path.endswith("/jobs/list"):
            return ("pages",)
        return ()  # the discovery probe: a workspace answers it whatever else fails

    def error_answer(self, err: ApiError) -> Answer:
        return _json(err.status, {"error_code": err.code, "message": err.message}, err.headers)

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes, fault: Fault | None = None) -> Answer:
        parts = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.requests.append((method, parts.path))
            if parts.path == "/.well-known/databricks-config" and method == "GET":
                # [SDK oauth.py get_host_metadata] the client's best-effort, unauthenticated discovery probe
                # (HostMetadata: oidc_endpoint, workspace_id); a workspace answers it before any API call.
                base = self.public_base(headers)
                return _json(200, {"oidc_endpoint": f"{base}/oidc", "workspace_id": self.config.workspace_id})
            self._authenticate(headers)
            return self._route(method, parts.path, query, body)

    def _authenticate(self, headers: Any) -> None:
        scheme, _, token = (headers.get("Authorization") or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            self._stats["unauthorized"] += 1
            raise ApiError(401, "UNAUTHENTICATED", "Credential was not sent or was of an unsupported type.")
        if self.config.token is not None and token != self.config.token:
            self._stats["unauthorized"] += 1
            raise ApiError(403, "PERMISSION_DENIED", "Invalid access token.")

    def _route(self, method: str, path: str, query: dict[str, str], body: bytes) -> Answer:
        for version in VERSIONS:
            prefix = f"/api/{version}/jobs"
            if path == f"{prefix}/run-now" and method == "POST":
                return self._run_now(body)
            if path == f"{prefix}/runs/get" and method == "GET":
                return self._get_run(query)
            if path == f"{prefix}/list" and method == "GET":
                return self._list(query)
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")

    def _run_now(self, body: bytes) -> Answer:
        self._stats["run_now"] += 1
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            raise ApiError(400, "MALFORMED_REQUEST", "Invalid JSON given in the body of the request") from None
        if not isinstance(request, dict):
            raise ApiError(400, "MALFORMED_REQUEST", "Invalid JSON given in the body of the request")
        job_id = request.get("job_id")
        if isinstance(job_id, str) and job_id.isdigit():
            job_id = int(job_id)  # [SDK] int64 fields travel as numbers or strings
        if not isinstance(job_id, int) or isinstance(job_id, bool):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "Missing required field: job_id")
        job = next((j for j in self.config.jobs if j.job_id == job_id), None)
        if job is None:
            # [SDK errors/overrides.py] a missing job: 400 INVALID_PARAMETER_VALUE "Job .. does not exist".
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Job {job_id} does not exist.")
        parameters = request.get("job_parameters") or {}
        if not isinstance(parameters, dict):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "job_parameters must be a map of strings")
        token = request.get("idempotency_token")
        if token is not None:
            if not isinstance(token, str) or len(token) > IDEMPOTENCY_TOKEN_MAX:
                raise ApiError(400, "INVALID_PARAMETER_VALUE", "idempotency_token must have at most 64 characters")
            # [RUNNOW] "If a run with the provided token already exists, the request does not create a new
            # run but returns the ID of the existing run instead."
            if token in self._tokens:
                run_id = self._tokens[token]
                return _json(200, {"run_id": run_id, "number_in_job": run_id})
        run = _Run(self._next_run_id, job, self.config.clock(), {str(k): str(v) for k, v in parameters.items()})
        self._next_run_id += 1
        self._runs[run.run_id] = run
        if token is not None:
            self._tokens[token] = run.run_id
        # [SDK RunNowResponse] run_id and number_in_job ("set to the same value as run_id").
        return _json(200, {"run_id": run.run_id, "number_in_job": run.run_id})

    def _get_run(self, query: dict[str, str]) -> Answer:
        self._stats["runs_get"] += 1
        raw = query.get("run_id", "")
        if not raw.isdigit():
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "Missing required field: run_id")
        run = self._runs.get(int(raw))
        if run is None:
            if self.config.missing_run_status == 404:
                raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Run {raw} does not exist.")
            # [SDK errors/overrides.py] "Job Runs InvalidParameterValue=>ResourceDoesNotExist": runs/get
            # answers 400 INVALID_PARAMETER_VALUE "Run .* does not exist".
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Run {raw} does not exist.")
        run.polls += 1
        return _json(200, self._run_view(run))

    def _phase(self, run: _Run) -> str:
        config = self.config
        if run.polls <= config.pending_polls:
            return "PENDING"
        if run.polls <= config.pending_polls + config.running_polls:
            return "RUNNING"
        if run.polls <= config.pending_polls + config.running_polls + config.terminating_polls:
            return "TERMINATING"
        if self.has_fault("stuck"):
            return "RUNNING"  # a run whose cluster never finishes its work
        return "ENDED"

    def _run_view(self, run: _Run) -> dict[str, Any]:
        """A Run as runs/get answers it [GETRUN], fields as the SDK's Run.from_dict reads them."""
        phase = self._phase(run)
        outcome = run.job.outcome
        start_ms = int(run.created * 1000)
        state: dict[str, Any] = {"user_cancelled_or_timedout": False, "state_message": ""}
        status: dict[str, Any] = {}
        if phase == "PENDING":
            state["life_cycle_state"] = "PENDING"
            state["state_message"] = "Waiting for cluster"
            status["state"] = "PENDING"
        elif self.config.future_lifecycle_state is not None:
            state["life_cycle_state"] = self.config.future_lifecycle_state
            status["state"] = self.config.future_lifecycle_state
        elif phase in ("RUNNING", "TERMINATING"):
            state["life_cycle_state"] = phase
            status["state"] = phase
        else:
            if run.ended is None:
                run.ended = self.config.clock()
            if outcome in _OTHER_TERMINAL:
                code, kind, message = _OTHER_TERMINAL[outcome]
                state["life_cycle_state"] = outcome
            else:
                code, kind, message = _TERMINATED[outcome]
                state["life_cycle_state"] = "TERMINATED"
                state["result_state"] = outcome  # "only available for terminal lifecycle states" [STATES]
            state["state_message"] = message
            state["user_cancelled_or_timedout"] = outcome in ("CANCELED", "TIMEDOUT")
            status = {"state": "TERMINATED", "termination_details": {"code": code, "type": kind, "message": message}}
        end_ms = int(run.ended * 1000) if run.ended is not None else 0
        task_state = dict(state)
        return {
            "job_id": run.job.job_id,
            "run_id": run.run_id,
            "number_in_job": run.run_id,
            "original_attempt_run_id": run.run_id,
            "attempt_number": 0,
            "creator_user_name": self.config.user,
            "run_name": run.job.name,
            "run_type": "JOB_RUN",
            "trigger": "ONE_TIME",
            "run_page_url": f"{self.config.workspace_url}/jobs/{run.job.job_id}/runs/{run.run_id}",
            "start_time": start_ms,
            "end_time": end_ms,  # 0 while the run is not over, as the service sends it
            "setup_duration": 0,
            "execution_duration": max(0, end_ms - start_ms) if end_ms else 0,
            "cleanup_duration": 0,
            "run_duration": max(0, end_ms - start_ms) if end_ms else 0,
            "state": state,
            "status": status,
            "job_parameters": [{"name": k, "value": v} for k, v in sorted(run.job_parameters.items())],
            "tasks": [
                {
                    "task_key": "main",
                    "run_id": run.run_id + 1_000_000,
                    "state": task_state,
                    "start_time": start_ms,
                    "end_time": end_ms,
                    "attempt_number": 0,
                }
            ],
        }

    def _list(self, query: dict[str, str]) -> Answer:
        self._stats["lists"] += 1
        try:
            limit = int(query.get("limit") or LIST_LIMIT_DEFAULT)
            offset = int(query.get("page_token") or query.get("offset") or 0)
        except ValueError:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "limit, offset and page_token are integers here") from None
        if not 0 < limit <= LIST_LIMIT_MAX:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"limit must be between 1 and {LIST_LIMIT_MAX}")
        name = (query.get("name") or "").lower()
        jobs = [j for j in self.config.jobs if not name or j.name.lower() == name]  # [SDK] exact, case-insensitive
        page = jobs[offset : offset + limit]
        answer: dict[str, Any] = {
            "jobs": [
                {
                    "job_id": j.job_id,
                    "creator_user_name": self.config.user,
                    "created_time": 1_767_225_600_000 + j.job_id,
                    "settings": {"name": j.name, "max_concurrent_runs": 1, "format": "MULTI_TASK"},
                }
                for j in page
            ],
            "has_more": offset + limit < len(jobs),
        }
        if offset + limit < len(jobs):
            answer["next_page_token"] = str(offset + limit)  # [V22] page with next_page_token
        if offset > 0:
            answer["prev_page_token"] = str(max(0, offset - limit))
        return _json(200, answer)


def _json(status: int, value: Any, headers: dict[str, str] | None = None) -> Answer:
    return status, json.dumps(value).encode(), {"Content-Type": "application/json", **(headers or {})}


def serve(
    config: DatabricksConfig,
    host: str = "127.0.0.1",
    port: int = 8904,
    *,
    tls: bool = False,
    tls_dir: Path | None = None,
) -> None:
    """Blocking entry point for ``jobtracker simulate databricks --port N [--tls]``; Ctrl-C stops it."""
    run_until_interrupted(DatabricksSimulator(config, host=host, port=port, tls=tls, tls_dir=tls_dir))
