"""Templates: request paths, query values, headers and JSON bodies filled from a job's params.

Placeholders are ``{params.NAME}``, ``{idempotencyKey}`` (when starting a job: the tracker's key for this
start, the same when a start is retried), ``{providerJobId}`` (afterwards), in the request that fetches a
result ``{answer.SELECTOR}`` (a field of the job's last status answer, e.g.
``{answer.results.searchExportId}``) and in the result's file name ``{extension}`` (the extension of the
file name the download names, e.g. ``.csv.gz``); ``{{`` and ``}}`` are literal braces.

A string that is exactly one placeholder keeps the value's JSON type (``job_id: "{params.job_id}"`` sends
an integer); ``{params.NAME?}`` is allowed only there and drops the enclosing field (or list item) when the
job has no such param. Inside a longer string the value is written as text, which only scalars can be.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from tracker.providers.spec.selectors import SelectorMissError, parse_selector

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_NAME = re.compile(
    r"^(?:params\.(?P<param>[A-Za-z_][A-Za-z0-9_]*)|answer\.(?P<answer>[A-Za-z0-9_.\[\]-]+)"
    r"|(?P<builtin>providerJobId|idempotencyKey|extension))(?P<optional>\?)?$"
)
BUILTINS = ("providerJobId", "idempotencyKey", "extension")
_ABSENT = object()


class TemplateSyntaxError(ValueError):
    """A template names something that does not exist or uses ``{...?}`` where it cannot."""


@dataclass(frozen=True, slots=True)
class Placeholder:
    param: str | None  # params.NAME -> NAME
    builtin: str | None  # providerJobId | jobId | idempotencyKey
    optional: bool
    answer: str | None = None  # answer.SELECTOR -> SELECTOR (a field of the last status answer)

    @property
    def text(self) -> str:
        if self.param:
            name = f"params.{self.param}"
        elif self.answer:
            name = f"answer.{self.answer}"
        else:
            name = str(self.builtin)
        return "{" + name + ("?" if self.optional else "") + "}"


@dataclass(frozen=True, slots=True)
class TemplateValues:
    """What a template may be filled with for one request."""

    params: Mapping[str, Any]
    provider_job_id: str | None = None
    idempotency_key: str | None = None
    answer: Any = None  # the job's last status answer (decoded JSON), for {answer.SELECTOR}
    extension: str | None = None  # of the file name the download names, for {extension}

    def builtin(self, name: str) -> Any:
        return {
            "providerJobId": self.provider_job_id,
            "idempotencyKey": self.idempotency_key,
            "extension": self.extension,
        }[name]


class TemplateValueError(LookupError):
    """A request cannot be filled: ``missing`` names every absent value (``params.job_id``, ``providerJobId``),
    ``unwritable`` every object or list placed inside a longer string."""

    def __init__(self, missing: list[str], unwritable: list[str] | None = None) -> None:
        self.missing = sorted(set(missing))
        self.unwritable = sorted(set(unwritable or []))
        parts = []
        if self.missing:
            parts.append("missing " + ", ".join(self.missing))
        if self.unwritable:
            parts.append("cannot be written inside text (an object or list): " + ", ".join(self.unwritable))
        super().__init__("; ".join(parts))


def placeholders(text: str) -> list[Placeholder]:
    """Every placeholder in one string; raises TemplateSyntaxError for an unknown name."""
    found = []
    for match in _PLACEHOLDER.finditer(text):
        inner = match.group(1)
        if inner is None:
            continue
        parsed = _NAME.match(inner.strip())
        if not parsed:
            raise TemplateSyntaxError(
                f"unknown placeholder {{{inner}}} in {text!r}; use {{params.NAME}}, {{answer.SELECTOR}}, "
                + ", ".join("{" + b + "}" for b in BUILTINS)
            )
        found.append(
            Placeholder(
                parsed.group("param"), parsed.group("builtin"), bool(parsed.group("optional")), parsed.group("answer")
            )
        )
    return found


def whole_placeholder(text: str) -> Placeholder | None:
    """The placeholder when the string is nothing but one placeholder, else None."""
    match = _PLACEHOLDER.fullmatch(text.strip())
    if not match or match.group(1) is None:
        return None
    return placeholders(text.strip())[0]


def walk_strings(template: Any) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(path, string) for every string in a JSON template, keys excluded."""
    if isinstance(template, str):
        yield (), template
    elif isinstance(template, dict):
        for key, value in template.items():
            for path, text in walk_strings(value):
                yield (key, *path), text
    elif isinstance(template, list):
        for index, value in enumerate(template):
            for path, text in walk_strings(value):
                yield (index, *path), text


def render_text(
    text: str, values: TemplateValues, *, url_encode: bool = False, value_filter: Callable[[str], str] | None = None
) -> str:
    """Fill a path or a header-like string: every value is written as text (URL-encoded, or passed through
    ``value_filter``, e.g. to keep a file name free of path separators)."""
    missing: list[str] = []
    unwritable: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        holder = placeholders(token)[0]
        value = _lookup(holder, values)
        if value is _ABSENT:
            missing.append(holder.text.strip("{}?"))
            return ""
        if not isinstance(value, (str, int, float)):
            unwritable.append(holder.text.strip("{}?"))
            return ""
        text_value = ("true" if value else "false") if isinstance(value, bool) else str(value)
        if value_filter is not None:
            text_value = value_filter(text_value)
        return quote(text_value, safe="") if url_encode else text_value

    rendered = _PLACEHOLDER.sub(substitute, text)
    if missing or unwritable:
        raise TemplateValueError(missing, unwritable)
    return rendered


def render_json(template: Any, values: TemplateValues) -> Any:
    """Fill a JSON template (body or query map); whole placeholders keep their type, ``?`` ones may vanish."""
    problems = TemplateValueError([], [])
    rendered = _render(template, values, problems)
    if problems.missing or problems.unwritable:
        raise TemplateValueError(problems.missing, problems.unwritable)
    return None if rendered is _ABSENT else rendered


def _render(template: Any, values: TemplateValues, problems: TemplateValueError) -> Any:
    if isinstance(template, dict):
        out = {}
        for key, value in template.items():
            filled = _render(value, values, problems)
            if filled is not _ABSENT:
                out[key] = filled
        return out
    if isinstance(template, list):
        return [item for item in (_render(v, values, problems) for v in template) if item is not _ABSENT]
    if not isinstance(template, str):
        return template
    holder = whole_placeholder(template)
    if holder is not None:
        value = _lookup(holder, values)
        if value is _ABSENT:
            if not holder.optional:
                problems.missing.append(holder.text.strip("{}?"))
            return _ABSENT
        return value
    try:
        return render_text(template, values)
    except TemplateValueError as exc:
        problems.missing.extend(exc.missing)
        problems.unwritable.extend(exc.unwritable)
        return _ABSENT


def _lookup(holder: Placeholder, values: TemplateValues) -> Any:
    if holder.param is not None:
        value = values.params.get(holder.param)
        return _ABSENT if value is None else value
    if holder.answer is not None:
        try:
            value = parse_selector(holder.answer).find(values.answer)
        except SelectorMissError:
            return _ABSENT
        return _ABSENT if value is None else value
    value = values.builtin(str(holder.builtin))
    return _ABSENT if value is None else value
