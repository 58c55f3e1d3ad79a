"""The provider spec: an asynchronous HTTP job API declared in data (issue 14).

One spec says where the API lives, how to authenticate, how to start a job (optional: a job started
elsewhere can still be tracked), how to read its status and turn the answer into the tracker's four
states, how far along it is, why it failed, where its result is, and how many may run at once.
Field names are camelCase in the files (as in the API's JSON), snake_case in Python.

A spec never holds a secret: it names a Secrets Manager secret through a template parameter (or
an ARN), and the value is read at run time.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from tracker.providers.spec.selectors import SYNTAX_HELP, Selector, SelectorSyntaxError, parse_selector
from tracker.providers.spec.templates import BUILTINS, Placeholder, placeholders, walk_strings, whole_placeholder

STATES = ("PENDING", "RUNNING", "COMPLETED", "FAILED")
TYPE_PREFIX = "http:"
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
PARAMETER_PATTERN = r"^[A-Za-z][A-Za-z0-9]{0,254}$"  # a CloudFormation parameter's logical name
SECRET_ARN_PATTERN = r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$"
HTTPS_URL_PATTERN = r"^https://[A-Za-z0-9.-]+(:\d{1,5})?(/[^\s?#]*)?$"
HEADER_NAME_PATTERN = r"^[A-Za-z0-9-]{1,64}$"

State = Literal["PENDING", "RUNNING", "COMPLETED", "FAILED"]
Scalar = str | int | float | bool | None


def _selector(text: str) -> Selector:
    try:
        return parse_selector(text)
    except SelectorSyntaxError as exc:
        raise ValueError(str(exc)) from None


SelectorText = Annotated[
    str,
    AfterValidator(lambda text: _selector(text).text),
    WithJsonSchema({"type": "string", "description": f"a field of the JSON answer; {SYNTAX_HELP}"}),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


# -- where the API is, and who we are ---------------------------------------------------------------
class BaseUrlRef(_Model):
    """A base URL the deployment provides: a template parameter of the stack, by name (template.yaml owns its
    default and its allowed pattern; the functions get it as an environment variable of the same name)."""

    parameter: str = Field(pattern=PARAMETER_PATTERN, description="Template parameter (logical name) holding it.")


class SecretRef(_Model):
    """Names a Secrets Manager secret; the secret's value is never in a spec, a log or a job record."""

    parameter: str | None = Field(
        default=None, pattern=PARAMETER_PATTERN, description="Template parameter holding the secret ARN."
    )
    arn: str | None = Field(default=None, pattern=SECRET_ARN_PATTERN, description="The secret ARN itself.")
    key: str | None = Field(default=None, description="When the secret is a JSON object: the field holding the value.")

    @model_validator(mode="before")
    @classmethod
    def _no_values(cls, data: Any) -> Any:
        if isinstance(data, dict):
            leaked = sorted(set(data) & {"value", "token", "password", "secret", "apiKey", "api_key"})
            if leaked:
                raise ValueError(
                    f"a spec never holds a secret ({', '.join(leaked)}): name the Secrets Manager secret by "
                    "`parameter` (a template parameter holding its ARN) or `arn`"
                )
        return data

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.parameter is None) == (self.arn is None):
            raise ValueError("give exactly one of `parameter` or `arn`")
        return self


class BearerAuth(_Model):
    """``Authorization: <scheme> <secret>``."""

    type: Literal["bearer"]
    secret: SecretRef
    scheme: str = Field(default="Bearer", pattern=r"^[A-Za-z][A-Za-z0-9._-]{0,31}$")


class BasicAuth(_Model):
    """``Authorization: Basic base64(user:password)``; the secret holds ``user:password`` or a JSON object
    with ``username`` and ``password``."""

    type: Literal["basic"]
    secret: SecretRef


class HeaderAuth(_Model):
    """A named header carrying the secret, optionally after a fixed prefix (``Token ``)."""

    type: Literal["header"]
    name: str = Field(pattern=HEADER_NAME_PATTERN)
    secret: SecretRef
    prefix: str = Field(default="", max_length=32)
    keep_scheme: bool = Field(
        default=False,
        description="A secret that already holds a scheme (it has a space, e.g. 'Basic <key>') is sent as it "
        "is, without the prefix (as FullStory's Node SDK sends its key).",
    )


Auth = Annotated[BearerAuth | BasicAuth | HeaderAuth, Field(discriminator="type")]


# -- the params a job of this type takes ------------------------------------------------------------
class ParamSpec(_Model):
    type: Literal["string", "integer", "number", "boolean", "object", "array"]
    required: bool = False
    default: Any = Field(default=None, description="The value when the job does not give one (not with required).")
    description: str = ""

    @model_validator(mode="after")
    def _default_fits(self) -> ParamSpec:
        if self.default is None:
            return self
        if self.required:
            raise ValueError("a required param has no default")
        fits = {
            "string": isinstance(self.default, str),
            "integer": isinstance(self.default, int) and not isinstance(self.default, bool),
            "number": isinstance(self.default, int | float) and not isinstance(self.default, bool),
            "boolean": isinstance(self.default, bool),
            "object": isinstance(self.default, dict),
            "array": isinstance(self.default, list),
        }[self.type]
        if not fits:
            raise ValueError(f"default {self.default!r} is not of type {self.type}")
        return self


# -- requests ---------------------------------------------------------------------------------------
# Headers a spec may not set: the credentials (auth's), what the HTTP layer writes itself, and hop-by-hop ones.
RESERVED_HEADERS = frozenset(
    {"authorization", "host", "content-length", "content-type", "transfer-encoding", "connection", "cookie", "accept"}
)


class RequestSpec(_Model):
    method: Literal["GET", "POST", "PUT", "PATCH"] = "GET"
    path: str = Field(description="Path template, e.g. /api/v2/accounts/{params.account_id}/runs/{providerJobId}/")
    query: dict[str, Any] = Field(default_factory=dict, description="Query parameters (templates).")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra request headers (templates), e.g. Idempotency-Key: '{idempotencyKey}'."
    )
    body: Any = Field(default=None, description="JSON body template (not for GET).")

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.match(HEADER_NAME_PATTERN, name):
                raise ValueError(f"header name {name!r}: letters, digits and - only")
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"header {name}: set by the tracker itself (credentials come from `auth`)")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or "?" in value or "#" in value or "://" in value:
            raise ValueError("path must start with '/' and hold no query (use `query`) nor scheme/host")
        return value

    @model_validator(mode="after")
    def _body_only_with_content(self) -> RequestSpec:
        if self.method == "GET" and self.body is not None:
            raise ValueError("a GET request has no body; use `query`")
        for name, value in self.query.items():
            if not isinstance(value, (str, int, float, bool)):
                raise ValueError(f"query.{name}: a query value is a string, number or boolean")
        return self


class StartSpec(RequestSpec):
    method: Literal["GET", "POST", "PUT", "PATCH"] = "POST"
    job_id: SelectorText = Field(description="Where the answer holds the new job's id, e.g. run_id or data.id.")


# -- reading the state ------------------------------------------------------------------------------
class StateField(_Model):
    selector: SelectorText
    optional: bool = Field(default=False, description="The field may be absent (then it matches null).")


class Rule(_Model):
    when: dict[str, Scalar | list[Scalar]] = Field(
        min_length=1, description="field name -> value or list of values (all must match; null matches absent)."
    )
    state: State
    code: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Error code when FAILED.")

    def values(self, field: str) -> list[Scalar]:
        expected = self.when[field]
        return list(expected) if isinstance(expected, list) else [expected]


class UnknownPolicy(_Model):
    """What an answer no rule matches does: count as RUNNING up to `limit` answers in a row, then FAILED with
    code ``unknown_provider_state``; or FAILED at once."""

    then: Literal["RUNNING", "FAILED"] = "RUNNING"
    limit: int = Field(default=10, ge=1, le=1000, description="Consecutive unknown answers tolerated (then=RUNNING).")


class StateMapping(_Model):
    fields: dict[str, SelectorText | StateField] = Field(min_length=1)
    rules: list[Rule] = Field(min_length=1)
    unknown: UnknownPolicy = Field(default_factory=UnknownPolicy)

    @field_validator("fields")
    @classmethod
    def _field_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$", name):
                raise ValueError(f"field name {name!r}: letters, digits and _ only")
        return value

    @model_validator(mode="after")
    def _rules_use_declared_fields(self) -> StateMapping:
        problems = []
        for index, rule in enumerate(self.rules):
            for name in sorted(set(rule.when) - set(self.fields)):
                problems.append(
                    f"rules[{index}].when.{name}: not one of the declared fields ({', '.join(sorted(self.fields))})"
                )
            if rule.code and rule.state != "FAILED":
                problems.append(f"rules[{index}].code: a code is only for state FAILED")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def field(self, name: str) -> StateField:
        value = self.fields[name]
        return value if isinstance(value, StateField) else StateField(selector=value)


class ProgressSpec(_Model):
    percent: SelectorText | None = None
    done: SelectorText | None = None
    total: SelectorText | None = None
    scale: float = Field(default=1.0, gt=0, description="Multiply `percent` by this (100 when the API gives 0..1).")

    @model_validator(mode="after")
    def _one_form(self) -> ProgressSpec:
        pair = self.done is not None and self.total is not None
        half_pair = (self.done is None) != (self.total is None)
        if half_pair or (self.percent is not None) == pair:
            raise ValueError("give `percent`, or both `done` and `total`")
        return self


class ErrorSelectors(_Model):
    code: SelectorText | None = None
    message: SelectorText | None = None


class StatusSpec(RequestSpec):
    state: StateMapping
    text: SelectorText | None = Field(default=None, description="The provider's own word for the state.")
    progress: ProgressSpec | None = None
    error: ErrorSelectors | None = None
    vanished_on: list[int] = Field(
        default_factory=lambda: [404],
        description="HTTP statuses of the status request meaning the job no longer exists (terminal FAILED).",
    )

    @field_validator("vanished_on")
    @classmethod
    def _client_errors(cls, value: list[int]) -> list[int]:
        for status in value:
            if not 400 <= status < 500 or status in (401, 403, 429):
                raise ValueError(f"{status}: only 4xx other than 401, 403, 429 can mean a vanished job")
        return value


class ResultSpec(_Model):
    """A COMPLETED job's output, streamed into ``results/<job>/<fileName>``. Three forms:

    - ``request`` alone: the answer to this API request (sent with the credentials) is the file;
    - ``url`` alone: a download URL found in the job's last status answer;
    - ``request`` and ``url``: the request's answer holds the download URL (FullStory's export results).

    A download URL is fetched without the credentials (it is a signed URL, often on another host, which
    must be in the tracker's allowlist); an expired one is asked for again. A FAILED job has no result: its
    error is the job's error."""

    url: SelectorText | None = Field(
        default=None,
        description="Where the download URL is: in the answer to `request`, or without it in the last status answer.",
    )
    request: RequestSpec | None = Field(
        default=None, description="A request to the API (with credentials); may use {answer.SELECTOR}."
    )
    file_name: str = Field(default="result.json", pattern=r"^[A-Za-z0-9._{}-]{1,128}$")
    content_type: str = "application/json"

    @model_validator(mode="after")
    def _a_source(self) -> ResultSpec:
        if self.url is None and self.request is None:
            raise ValueError("give `request`, `url` (a selector) or both")
        return self


class ProviderSpec(_Model):
    """One asynchronous HTTP job API; its job type is ``http:<name>``."""

    name: str = Field(pattern=NAME_PATTERN, description="Lowercase; the job type is http:<name>.")
    title: str = Field(min_length=1, max_length=120)
    docs: list[str] = Field(default_factory=list, description="The provider documentation this spec follows.")
    base_url: str | BaseUrlRef = Field(description="https:// URL, or {parameter: Name} (a template parameter).")
    auth: Auth
    in_flight: int = Field(ge=1, le=10_000, description="At most this many jobs of this type in progress at once.")
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    start: StartSpec | None = Field(default=None, description="Absent: jobs are only tracked, started elsewhere.")
    status: StatusSpec
    result: ResultSpec | None = None

    @field_validator("base_url")
    @classmethod
    def _https(cls, value: str | BaseUrlRef) -> str | BaseUrlRef:
        if isinstance(value, str) and not re.match(HTTPS_URL_PATTERN, value):
            raise ValueError(f"must be an https:// URL without query, or {{parameter: Name}}; got {value!r}")
        return value

    @field_validator("params")
    @classmethod
    def _param_names(cls, value: dict[str, ParamSpec]) -> dict[str, ParamSpec]:
        for name in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", name):
                raise ValueError(f"param name {name!r}: letters, digits and _ only")
        return value

    @model_validator(mode="after")
    def _templates_name_declared_values(self) -> ProviderSpec:
        problems = []
        for where, request in self._requests():
            problems += self._check_request(where, request)
        if self.result is not None and "{" in self.result.file_name:
            problems += self._check_text("result.fileName", self.result.file_name, "result.fileName")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def job_type(self) -> str:
        return TYPE_PREFIX + self.name

    @property
    def template_parameters(self) -> tuple[str, ...]:
        """The template parameters this spec names (its base URL's and its secret's), in that order."""
        names = [self.base_url.parameter] if isinstance(self.base_url, BaseUrlRef) else []
        if self.auth.secret.parameter is not None:
            names.append(self.auth.secret.parameter)
        return tuple(names)

    @property
    def tracking_params(self) -> frozenset[str]:
        """The params a job started elsewhere must still give: those the status and result requests need."""
        needed: set[str] = set()
        requests = [self.status] + ([self.result.request] if self.result and self.result.request else [])
        for request in requests:
            texts = [request.path, *request.headers.values()]
            texts += [text for _, text in walk_strings(request.query)] + [t for _, t in walk_strings(request.body)]
            for text in texts:
                needed.update(h.param for h in placeholders(text) if h.param and not h.optional)
        return frozenset(name for name in needed if self.params[name].default is None)

    def _requests(self) -> list[tuple[str, RequestSpec]]:
        found: list[tuple[str, RequestSpec]] = [("status", self.status)]
        if self.start is not None:
            found.insert(0, ("start", self.start))
        if self.result is not None and self.result.request is not None:
            found.append(("result.request", self.result.request))
        return found

    def _check_request(self, where: str, request: RequestSpec) -> list[str]:
        problems = self._check_text(f"{where}.path", request.path, where)
        for name, text in request.headers.items():
            problems += self._check_text(f"{where}.headers.{name}", text, where)
        for section, template in (("query", request.query), ("body", request.body)):
            for path, text in walk_strings(template):
                location = f"{where}.{section}" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
                problems += self._check_text(location, text, where, allow_optional=True)
        return problems

    def _check_text(self, where: str, text: str, context: str, *, allow_optional: bool = False) -> list[str]:
        try:
            found = placeholders(text)
        except ValueError as exc:
            return [f"{where}: {exc}"]
        whole = whole_placeholder(text) if allow_optional else None
        problems = []
        for holder in found:
            if holder.answer is not None:
                problems += self._check_answer(where, holder, allowed=context == "result.request")
            elif holder.builtin is not None:
                problems += self._check_builtin(where, holder, context)
            else:
                problems += self._check_param(where, holder, whole=holder == whole)
        return problems

    @staticmethod
    def _check_answer(where: str, holder: Placeholder, *, allowed: bool) -> list[str]:
        if not allowed:
            return [f"{where}: {holder.text} (a field of the last status answer) is only known to result.request"]
        if holder.optional:
            return [f"{where}: {holder.text}: an answer field is never optional; drop the '?'"]
        try:
            parse_selector(str(holder.answer))
        except SelectorSyntaxError as exc:
            return [f"{where}: {exc}"]
        return []

    @staticmethod
    def _check_builtin(where: str, holder: Placeholder, context: str) -> list[str]:
        name = str(holder.builtin)
        if name not in BUILTINS_BY_CONTEXT[context]:
            known = {
                "providerJobId": "is not known before the job is started",
                "idempotencyKey": "is only known when starting a job",
                "extension": "is only known to result.fileName",
            }[name]
            return [f"{where}: {{{name}}} {known}"]
        return [f"{where}: {{{name}?}} is never absent; drop the '?'"] if holder.optional else []

    def _check_param(self, where: str, holder: Placeholder, *, whole: bool) -> list[str]:
        declared = self.params.get(str(holder.param))
        if declared is None:
            listed = ", ".join(sorted(self.params)) or "none declared"
            return [f"{where}: {holder.text} is not a declared param (params: {listed})"]
        if holder.optional and not whole:
            return [f"{where}: {holder.text} may only be a whole value of a body or query field"]
        if not holder.optional and not declared.required and declared.default is None:
            return [
                f"{where}: params.{holder.param} is optional; write {{params.{holder.param}?}} to drop the field "
                "when absent, or make the param required"
            ]
        return []


# Which built-in values each template may use: the idempotency key exists when a job is started, the provider's
# job id afterwards, the extension the download names (Content-Disposition) only for the result's file name.
BUILTINS_BY_CONTEXT: dict[str, frozenset[str]] = {
    "start": frozenset({"idempotencyKey"}),
    "status": frozenset({"providerJobId"}),
    "result.request": frozenset({"providerJobId"}),
    "result.fileName": frozenset({"providerJobId", "extension"}),
}


__all__ = [
    "BUILTINS",
    "RESERVED_HEADERS",
    "STATES",
    "TYPE_PREFIX",
    "Auth",
    "BaseUrlRef",
    "BasicAuth",
    "BearerAuth",
    "ErrorSelectors",
    "HeaderAuth",
    "ParamSpec",
    "ProgressSpec",
    "ProviderSpec",
    "RequestSpec",
    "ResultSpec",
    "Rule",
    "SecretRef",
    "StartSpec",
    "StateField",
    "StateMapping",
    "StatusSpec",
    "UnknownPolicy",
]
