"""What a spec says about one request or one answer: pure functions, no HTTP, no AWS.

- :func:`render_start`, :func:`render_status`, :func:`render_result` fill a spec's request templates
  from a job's params (missing or mistyped params -> :class:`SpecParamsError` naming every one);
- :func:`decode_answer` turns a body into JSON (not JSON -> :class:`ProviderAnswerError`);
- :func:`read_job_id` finds the started job's id in the start answer;
- :func:`evaluate_status` maps a status answer to the tracker's state, the provider's own word,
  progress and error; :func:`vanished` says whether an HTTP status means the job no longer exists;
- :func:`auth_headers` builds the credentials header from a secret's value.

An answer the spec cannot read raises :class:`ProviderAnswerError` (a ProviderTransientError: the
state machine retries it a few times, then the job ends FAILED with its code). A state no rule knows
is counted: the caller keeps ``unknown_streak`` between polls and passes it back, so an endless
unknown state ends the job instead of following it forever.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from tracker.errors import ProviderTransientError, TrackerError
from tracker.providers.spec.model import (
    BasicAuth,
    BearerAuth,
    HeaderAuth,
    ProviderSpec,
    RequestSpec,
    Rule,
    StateMapping,
)
from tracker.providers.spec.params import params_model
from tracker.providers.spec.selectors import SelectorMissError, parse_selector
from tracker.providers.spec.templates import TemplateValueError, TemplateValues, render_json, render_text

UNKNOWN_STATE_CODE = "unknown_provider_state"
PROVIDER_FAILED_CODE = "provider_failed"
VANISHED_CODE = "provider_job_not_found"
MAX_TEXT = 500  # provider words and messages kept in a job record are cut to this many characters


class ProviderAnswerError(ProviderTransientError):
    """A provider answer the spec cannot read: not JSON, a selector that matches nothing, a value of the
    wrong type. Codes: answer_not_json, answer_field_missing, answer_wrong_type."""

    code = "answer_unreadable"


class SpecParamsError(TrackerError):
    """A job's params do not fit its spec: every missing, unknown or mistyped param is named."""

    code = "invalid_params"


@dataclass(frozen=True, slots=True)
class RenderedRequest:
    method: str
    path: str  # already URL-encoded, starts with '/'
    query: dict[str, str]
    body: Any  # JSON value or None


@dataclass(frozen=True, slots=True)
class ResultSource:
    """Where a finished job's output is: a request to the API (with credentials) or a bare URL (without)."""

    file_name: str
    content_type: str
    request: RenderedRequest | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class StatusReading:
    state: str  # PENDING | RUNNING | COMPLETED | FAILED
    provider_status: str  # the provider's own word(s), e.g. TERMINATED/SUCCESS or Success
    progress_pct: float | None = None
    error: dict[str, str] | None = None  # {code, message} when FAILED
    unknown_streak: int = 0  # consecutive answers no rule matched, to pass to the next evaluation
    warnings: tuple[str, ...] = field(default_factory=tuple)  # problems that do not change the state

    @property
    def finished(self) -> bool:
        return self.state in ("COMPLETED", "FAILED")


# -- requests --------------------------------------------------------------------------------------
def validate_params(spec: ProviderSpec, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The job's params checked against the spec's declared params (unknown names refused)."""
    try:
        model = params_model(spec).model_validate(dict(params or {}))
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            name = ".".join(str(part) for part in error["loc"]) or "params"
            if error["type"] == "missing":
                problems.append(f"params.{name} is required")
            elif error["type"] == "extra_forbidden":
                declared = ", ".join(sorted(spec.params)) or "none"
                problems.append(f"params.{name} is not a param of {spec.job_type} (params: {declared})")
            else:
                problems.append(f"params.{name}: {error['msg']}")
        raise SpecParamsError(f"{spec.job_type}: " + "; ".join(problems)) from None
    return model.model_dump(exclude_none=True)


def render_start(
    spec: ProviderSpec, params: Mapping[str, Any] | None, *, job_id: str, idempotency_key: str
) -> RenderedRequest:
    if spec.start is None:
        raise SpecParamsError(f"{spec.job_type} only tracks jobs started elsewhere (the spec has no `start`)")
    values = TemplateValues(validate_params(spec, params), job_id=job_id, idempotency_key=idempotency_key)
    return _render(spec, "start", spec.start, values)


def render_status(
    spec: ProviderSpec, params: Mapping[str, Any] | None, *, provider_job_id: str, job_id: str
) -> RenderedRequest:
    values = TemplateValues(validate_params(spec, params), provider_job_id=provider_job_id, job_id=job_id)
    return _render(spec, "status", spec.status, values)


def render_result(
    spec: ProviderSpec,
    params: Mapping[str, Any] | None,
    final_answer: Any,
    *,
    provider_job_id: str,
    job_id: str,
) -> ResultSource | None:
    """Where to fetch the result of a job that ended in `state`; None when the spec declares no result."""
    result = spec.result
    if result is None:
        return None
    values = TemplateValues(validate_params(spec, params), provider_job_id=provider_job_id, job_id=job_id)
    file_name = render_text(result.file_name, values).replace("/", "_")
    if result.request is not None:
        return ResultSource(
            file_name, result.content_type, request=_render(spec, "result.request", result.request, values)
        )
    url = _find(parse_selector(str(result.url)), final_answer, "result.url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ProviderAnswerError(
            f"{spec.job_type}: result.url {result.url!r} is {url!r}, not a URL", code="answer_wrong_type"
        )
    return ResultSource(file_name, result.content_type, url=url)


def _render(spec: ProviderSpec, where: str, request: RequestSpec, values: TemplateValues) -> RenderedRequest:
    try:
        path = render_text(request.path, values, url_encode=True)
        query = {name: _query_text(value) for name, value in (render_json(request.query, values) or {}).items()}
        body = render_json(request.body, values) if request.body is not None else None
    except TemplateValueError as exc:
        raise SpecParamsError(f"{spec.job_type} {where}: {exc}") from None
    return RenderedRequest(method=request.method, path=path, query=query, body=body)


def _query_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


# -- answers ---------------------------------------------------------------------------------------
def decode_answer(body: bytes, *, what: str) -> Any:
    """A provider answer's JSON; raises ProviderAnswerError (answer_not_json) naming what was asked."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError):
        start = body[:60].decode("utf-8", "replace").replace("\n", " ")
        raise ProviderAnswerError(
            f"{what}: the answer is not JSON ({len(body)} bytes starting {start!r})", code="answer_not_json"
        ) from None


def read_job_id(spec: ProviderSpec, answer: Any) -> str:
    if spec.start is None:
        raise SpecParamsError(f"{spec.job_type} has no `start`")
    value = _find(parse_selector(spec.start.job_id), answer, f"{spec.job_type} start.jobId")
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value) == "":
        raise ProviderAnswerError(
            f"{spec.job_type} start.jobId {spec.start.job_id!r} is {value!r}, not a job id", code="answer_wrong_type"
        )
    return str(value)


def vanished(spec: ProviderSpec, http_status: int) -> bool:
    """True when a status request answered with an HTTP status the spec says means the job is gone."""
    return http_status in spec.status.vanished_on


def evaluate_status(spec: ProviderSpec, answer: Any, *, unknown_streak: int = 0) -> StatusReading:
    """The tracker's reading of one status answer. Raises ProviderAnswerError when a required state field
    is absent or not a scalar; an unmatched combination counts toward the spec's unknown limit."""
    mapping = spec.status.state
    where = f"{spec.job_type} status"
    observed = _observe(mapping, answer, where)
    warnings: list[str] = []
    provider_status = _provider_status(spec, answer, observed, warnings)
    rule = next((r for r in mapping.rules if _matches(r, observed)), None)
    if rule is None:
        return _unknown(spec, observed, provider_status, unknown_streak, warnings)
    progress = _progress(spec, answer, warnings) if rule.state in ("PENDING", "RUNNING") else None
    if rule.state == "COMPLETED":
        progress = 100.0
    error = _error(spec, answer, rule, provider_status, warnings) if rule.state == "FAILED" else None
    return StatusReading(rule.state, provider_status, progress, error, 0, tuple(warnings))


def vanished_reading(spec: ProviderSpec, http_status: int, provider_job_id: str) -> StatusReading:
    """The terminal reading for a job the provider no longer knows."""
    return StatusReading(
        "FAILED",
        f"HTTP {http_status}",
        error={
            "code": VANISHED_CODE,
            "message": f"{spec.title}: job {provider_job_id} no longer exists (status request answered {http_status})",
        },
    )


def _observe(mapping: StateMapping, answer: Any, where: str) -> dict[str, Any]:
    observed = {}
    for name in mapping.fields:
        state_field = mapping.field(name)
        selector = parse_selector(state_field.selector)
        try:
            value = selector.find(answer)
        except SelectorMissError as exc:
            if state_field.optional:
                value = None
            else:
                raise ProviderAnswerError(
                    f"{where}: state field {name!r}: {exc}", code="answer_field_missing"
                ) from None
        if isinstance(value, (dict, list)):
            kind = "an object" if isinstance(value, dict) else "a list"
            raise ProviderAnswerError(
                f"{where}: state field {name!r} ({state_field.selector}) is {kind}, not a value",
                code="answer_wrong_type",
            )
        observed[name] = value
    return observed


def _matches(rule: Rule, observed: Mapping[str, Any]) -> bool:
    return all(any(_same(observed[name], expected) for expected in rule.values(name)) for name in rule.when)


def _same(actual: Any, expected: Any) -> bool:
    """Equality that keeps JSON types apart: true is not 1, "10" is not 10, 10 is 10.0."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected
    if isinstance(actual, (int, float)) and isinstance(expected, (int, float)):
        return actual == expected
    return type(actual) is type(expected) and actual == expected


def _provider_status(spec: ProviderSpec, answer: Any, observed: Mapping[str, Any], warnings: list[str]) -> str:
    if spec.status.text is not None:
        try:
            text = parse_selector(spec.status.text).find(answer)
            if text is not None and not isinstance(text, (dict, list)):
                return _cut(str(text))
        except SelectorMissError as exc:
            warnings.append(f"status.text: {exc}")
    return _cut("/".join(_word(v) for v in observed.values() if v is not None) or "unknown")


def _unknown(
    spec: ProviderSpec, observed: Mapping[str, Any], provider_status: str, streak: int, warnings: list[str]
) -> StatusReading:
    policy = spec.status.state.unknown
    seen = ", ".join(f"{name}={_word(value)}" for name, value in observed.items())
    streak += 1
    if policy.then == "RUNNING" and streak < policy.limit:
        warnings.append(f"no rule matches {seen} ({streak} unknown answer(s) in a row, limit {policy.limit})")
        return StatusReading("RUNNING", provider_status, None, None, streak, tuple(warnings))
    reason = (
        f"{streak} answers in a row (limit {policy.limit})"
        if policy.then == "RUNNING"
        else "the spec fails unknown states"
    )
    return StatusReading(
        "FAILED",
        provider_status,
        None,
        {"code": UNKNOWN_STATE_CODE, "message": _cut(f"{spec.title}: no rule of the spec matches {seen}; {reason}")},
        streak,
        tuple(warnings),
    )


def _progress(spec: ProviderSpec, answer: Any, warnings: list[str]) -> float | None:
    progress = spec.status.progress
    if progress is None:
        return None
    try:
        if progress.percent is not None:
            value = _number(parse_selector(progress.percent).find(answer), "progress.percent") * progress.scale
        else:
            done = _number(parse_selector(str(progress.done)).find(answer), "progress.done")
            total = _number(parse_selector(str(progress.total)).find(answer), "progress.total")
            if total <= 0:
                return None
            value = 100.0 * done / total
    except (SelectorMissError, ValueError) as exc:
        warnings.append(f"progress: {exc}")
        return None
    return round(min(100.0, max(0.0, value)), 2)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{where} is {value!r}, not a number")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{where} is {value!r}, not a number") from None


def _error(spec: ProviderSpec, answer: Any, rule: Rule, provider_status: str, warnings: list[str]) -> dict[str, str]:
    selectors = spec.status.error
    code = rule.code or _optional_text(answer, selectors.code if selectors else None, "error.code", warnings)
    message = _optional_text(answer, selectors.message if selectors else None, "error.message", warnings)
    return {
        "code": _cut(code or PROVIDER_FAILED_CODE, 64),
        "message": _cut(message or f"{spec.title} ended {provider_status}"),
    }


def _optional_text(answer: Any, selector: str | None, where: str, warnings: list[str]) -> str | None:
    if selector is None:
        return None
    try:
        value = parse_selector(selector).find(answer)
    except SelectorMissError:
        return None  # an error field is often absent (e.g. no result_state on an internal error)
    if value is None or value == "":
        return None
    if isinstance(value, (dict, list)):
        warnings.append(f"{where} ({selector}) is not text")
        return None
    return str(value)


def _find(selector: Any, answer: Any, where: str) -> Any:
    try:
        return selector.find(answer)
    except SelectorMissError as exc:
        raise ProviderAnswerError(f"{where}: {exc}", code="answer_field_missing") from None


def _word(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) or value is None else str(value)


def _cut(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- credentials -----------------------------------------------------------------------------------
def auth_headers(
    auth: BearerAuth | BasicAuth | HeaderAuth, secret_string: str, *, key: str | None = None
) -> dict[str, str]:
    """The credentials header from a secret's value (the whole string, or `key` of a JSON secret).
    Error messages never include the value."""
    value = _secret_value(secret_string, key if key is not None else auth.secret.key, basic=isinstance(auth, BasicAuth))
    if isinstance(auth, BearerAuth):
        return {"Authorization": f"{auth.scheme} {value}"}
    if isinstance(auth, HeaderAuth):
        return {auth.name: f"{auth.prefix}{value}"}
    return {"Authorization": "Basic " + base64.b64encode(value.encode()).decode("ascii")}


def _secret_value(secret_string: str, key: str | None, *, basic: bool) -> str:
    text = (secret_string or "").strip()
    document: Any = None
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except ValueError:
            raise TrackerError("the secret looks like JSON but does not parse", code="invalid_secret") from None
    if basic and isinstance(document, dict) and key is None:
        user, password = document.get("username"), document.get("password")
        if not isinstance(user, str) or not isinstance(password, str):
            raise TrackerError("a Basic-auth secret needs string fields username and password", code="invalid_secret")
        return f"{user}:{password}"
    if key is not None:
        if not isinstance(document, dict) or not isinstance(document.get(key), str):
            raise TrackerError(f"the secret has no string field {key!r}", code="invalid_secret")
        text = document[key].strip()
    if not text or any(ch in text for ch in "\r\n"):
        raise TrackerError("the secret is empty or spans several lines", code="invalid_secret")
    if basic and ":" not in text:
        raise TrackerError("a Basic-auth secret is user:password or JSON {username, password}", code="invalid_secret")
    return text


__all__ = [
    "ProviderAnswerError",
    "RenderedRequest",
    "ResultSource",
    "SpecParamsError",
    "StatusReading",
    "auth_headers",
    "decode_answer",
    "evaluate_status",
    "read_job_id",
    "render_result",
    "render_start",
    "render_status",
    "validate_params",
    "vanished",
    "vanished_reading",
]
