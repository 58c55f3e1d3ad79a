"""What a spec says about one request or one answer: pure functions, no HTTP, no AWS.

- :func:`render_start`, :func:`render_status`, :func:`render_result` fill a spec's request templates
  from a job's params (missing or mistyped params -> :class:`SpecParamsError` naming every one);
- :func:`decode_answer` turns a body into JSON (not JSON -> ProviderTransientError ``answer_not_json``);
- :func:`read_job_id` finds the started job's id in the start answer;
- :func:`evaluate_status` maps a status answer to the tracker's state, the provider's own word,
  progress and error; :func:`vanished` says whether an HTTP status means the job no longer exists;
- :func:`auth_headers` builds the credentials header from a secret's value.

An answer that is not JSON raises ProviderTransientError (code ``answer_not_json``: a proxy's error page
or a cut body; the state machine retries it a few times, then the job ends FAILED with that code). An
answer the spec cannot read raises ProviderRejectedError (``answer_field_missing``, ``answer_wrong_type``:
the API changed or the spec is wrong; retrying cannot help, so the job ends FAILED at once, naming the
selector). These are the error classes the state machine retries or catches by name. A state no rule
knows is counted: the caller keeps ``unknown_streak`` between polls and passes it back, so an endless
unknown state ends the job instead of following it forever.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from pydantic import ValidationError

from tracker.errors import ProviderRejectedError, ProviderTransientError, TrackerError
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




class SpecParamsError(TrackerError):
    """A job's params do not fit its spec: every missing, unknown or mistyped param is named."""

    code = "invalid_params"


@dataclass(frozen=True, slots=True)
class RenderedRequest:
    method: str
    path: str  # already URL-encoded, starts with '/'
    query: dict[str, str]
    body: Any  # JSON value or None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ResultSource:
    """Where a finished job's output is: the answer to a request to the API (with credentials), a download
    URL (fetched without them), or a request whose answer holds the download URL (``url_selector``)."""

    content_type: str
    request: RenderedRequest | None = None
    url: str | None = None
    url_selector: str | None = None


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
def validate_params(spec: ProviderSpec, params: Mapping[str, Any] | None, *, tracking: bool = False) -> dict[str, Any]:
    """The job's params checked against the spec's declared params (unknown names refused, defaults filled
    in). ``tracking``: a job started elsewhere needs only the params its status and result requests use."""
    try:
        model = params_model(spec, tracking=tracking).model_validate(dict(params or {}))
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


def render_start(spec: ProviderSpec, params: Mapping[str, Any] | None, *, idempotency_key: str) -> RenderedRequest:
    if spec.start is None:
        raise SpecParamsError(f"{spec.job_type} only tracks jobs started elsewhere (the spec has no `start`)")
    values = TemplateValues(validate_params(spec, params), idempotency_key=idempotency_key)
    return _render(spec, "start", spec.start, values)


def render_status(spec: ProviderSpec, params: Mapping[str, Any] | None, *, provider_job_id: str) -> RenderedRequest:
    values = TemplateValues(validate_params(spec, params, tracking=True), provider_job_id=provider_job_id)
    return _render(spec, "status", spec.status, values)


def render_result(
    spec: ProviderSpec, params: Mapping[str, Any] | None, final_answer: Any, *, provider_job_id: str
) -> ResultSource | None:
    """Where to fetch the result of a COMPLETED job whose last status answer was `final_answer`; None when
    the spec declares no result."""
    result = spec.result
    if result is None:
        return None
    values = TemplateValues(
        validate_params(spec, params, tracking=True), provider_job_id=provider_job_id, answer=final_answer
    )
    if result.request is not None:
        request = _render(spec, "result.request", result.request, values)
        return ResultSource(result.content_type, request=request, url_selector=result.url)
    return ResultSource(result.content_type, url=download_url(spec, final_answer, "the last status answer"))


def result_file_name(
    spec: ProviderSpec, params: Mapping[str, Any] | None, *, provider_job_id: str, disposition: str | None = None
) -> str:
    """The name the result is stored under in ``results/<job>/``: the spec's ``result.fileName`` (the last
    status answer's file, ``status.json``, without a result); ``{extension}`` is that of the file name the
    download's Content-Disposition gives (``.csv.gz``), empty when it gives none."""
    template = spec.result.file_name if spec.result is not None else "status.json"
    values = TemplateValues(
        validate_params(spec, params, tracking=True),
        provider_job_id=provider_job_id,
        extension=_extension(disposition),
    )
    return _file_name(render_text(template, values, value_filter=_file_name_part))


_DISPOSITION_NAME = re.compile(r"""filename\*?=(?:UTF-8'')?"?([^";]+)"?""", re.IGNORECASE)
_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,6}$")


def _extension(disposition: str | None) -> str:
    """``.csv.gz`` from ``attachment; filename="everyone-2026-12-01.csv.gz"``: its last (at most two) short
    suffixes; empty without a file name."""
    match = _DISPOSITION_NAME.search(disposition or "")
    name = match.group(1).rsplit("/", 1)[-1] if match else ""
    suffixes = [part for part in PurePosixPath(name).suffixes[-2:] if _SUFFIX.match(part)]
    while suffixes and not name.endswith("".join(suffixes)):
        suffixes.pop(0)
    return "".join(suffixes)


def download_url(spec: ProviderSpec, answer: Any, where: str) -> str:
    """The download URL the spec's ``result.url`` selects in an answer; a named error when it is not one."""
    selector = str(spec.result.url if spec.result else "")
    url = _find(parse_selector(selector), answer, f"{spec.job_type} result.url in {where}")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ProviderRejectedError(
            f"{spec.job_type}: result.url {selector!r} in {where} is {_cut(repr(url), 80)}, not a URL",
            code="answer_wrong_type",
        )
    return url


_EXTENSION = re.compile(r"^(?:\.[A-Za-z0-9]{1,6}){1,2}$")


def _file_name_part(value: str) -> str:
    """A value inside a file name (a provider job id may hold '/', '=' or '..'): letters, digits, _ and -;
    an extension (``.csv.gz``) as it is."""
    if not value or _EXTENSION.match(value):
        return value
    return re.sub(r"[^A-Za-z0-9_-]+", "_", value).strip("_") or "x"


def _file_name(text: str) -> str:
    """A file name within the job's results folder: no path, nothing a shell or a URL would trip on."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "result"
    return cleaned[:128]


def _render(spec: ProviderSpec, where: str, request: RequestSpec, values: TemplateValues) -> RenderedRequest:
    try:
        path = render_text(request.path, values, url_encode=True)
        query = {name: _query_text(value) for name, value in (render_json(request.query, values) or {}).items()}
        headers = {name: render_text(text, values) for name, text in request.headers.items()}
        body = render_json(request.body, values) if request.body is not None else None
    except TemplateValueError as exc:
        answer_fields = [name for name in exc.missing if name.startswith("answer.")]
        if answer_fields:
            raise ProviderRejectedError(
                f"{spec.job_type} {where}: the last status answer has no {', '.join(answer_fields)}",
                code="answer_field_missing",
            ) from None
        raise SpecParamsError(f"{spec.job_type} {where}: {exc}") from None
    for name, value in headers.items():
        if any(ch in value for ch in "\r\n"):
            raise SpecParamsError(f"{spec.job_type} {where}: header {name} would span several lines")
    return RenderedRequest(method=request.method, path=path, query=query, body=body, headers=headers)


def _query_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


# -- answers ---------------------------------------------------------------------------------------
def decode_answer(body: bytes, *, what: str) -> Any:
    """A provider answer's JSON; raises ProviderTransientError (answer_not_json) naming what was asked."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError):
        start = body[:60].decode("utf-8", "replace").replace("\n", " ")
        raise ProviderTransientError(
            f"{what}: the answer is not JSON ({len(body)} bytes starting {start!r})", code="answer_not_json"
        ) from None


def read_job_id(spec: ProviderSpec, answer: Any) -> str:
    if spec.start is None:
        raise SpecParamsError(f"{spec.job_type} has no `start`")
    value = _find(parse_selector(spec.start.job_id), answer, f"{spec.job_type} start.jobId")
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value) == "":
        raise ProviderRejectedError(
            f"{spec.job_type} start.jobId {spec.start.job_id!r} is {value!r}, not a job id", code="answer_wrong_type"
        )
    return str(value)


def vanished(spec: ProviderSpec, http_status: int) -> bool:
    """True when a status request answered with an HTTP status the spec says means the job is gone."""
    return http_status in spec.status.vanished_on


def evaluate_status(spec: ProviderSpec, answer: Any, *, unknown_streak: int = 0) -> StatusReading:
    """The tracker's reading of one status answer. Raises ProviderRejectedError when a required state field
    is absent or not a scalar; an unmatched combination counts toward the spec's unknown limit."""
    mapping = spec.status.state
    where = f"{spec.job_type} status"
    observed = _observe(mapping, answer, where)
    warnings: list[str] = []
    provider_status = _provider_status(spec, answer, observed, warnings)
    rule = next((r for r in mapping.rules if _matches(r, observed)), None)
    if rule is None:
        return _unknown(spec, observed, provider_status, unknown_streak, warnings)
    progress = 100.0 if rule.state == "COMPLETED" else _progress(spec, answer, warnings)
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
                raise ProviderRejectedError(
                    f"{where}: state field {name!r}: {exc}", code="answer_field_missing"
                ) from None
        if isinstance(value, (dict, list)):
            kind = "an object" if isinstance(value, dict) else "a list"
            raise ProviderRejectedError(
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
        raise ProviderRejectedError(f"{where}: {exc}", code="answer_field_missing") from None


def _word(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) or value is None else str(value)


def _cut(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- credentials -----------------------------------------------------------------------------------
def auth_headers(
    auth: BearerAuth | BasicAuth | HeaderAuth, secret_string: str, *, key: str | None = None
) -> dict[str, str]:
    """The credentials header from a secret's value: the whole string, or, when the secret is a JSON object,
    its field `key` (as the built-in providers read theirs). Error messages never include the value."""
    value = _secret_value(secret_string, key if key is not None else auth.secret.key, basic=isinstance(auth, BasicAuth))
    if isinstance(auth, BearerAuth):
        return {"Authorization": f"{auth.scheme} {value}"}
    if isinstance(auth, HeaderAuth):
        given_scheme = auth.keep_scheme and " " in value  # "Basic <key>" stored whole: not "Basic Basic <key>"
        return {auth.name: value if given_scheme else f"{auth.prefix}{value}"}
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
    if key is not None and document is not None:
        if not isinstance(document, dict) or not isinstance(document.get(key), str):
            raise TrackerError(f"the secret has no string field {key!r}", code="invalid_secret")
        text = document[key].strip()
    if not text or any(ch in text for ch in "\r\n"):
        raise TrackerError("the secret is empty or spans several lines", code="invalid_secret")
    if basic and ":" not in text:
        raise TrackerError("a Basic-auth secret is user:password or JSON {username, password}", code="invalid_secret")
    return text


__all__ = [
    "RenderedRequest",
    "ResultSource",
    "SpecParamsError",
    "StatusReading",
    "auth_headers",
    "decode_answer",
    "download_url",
    "evaluate_status",
    "read_job_id",
    "render_result",
    "render_start",
    "render_status",
    "validate_params",
    "vanished",
    "vanished_reading",
]
