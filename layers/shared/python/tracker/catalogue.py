"""The job-type catalogue: every job type the tracker runs, declared once.

A job type has a kind:

* ``batch``: rows from a file (an inbox upload, a ``source`` or inline ``requests`` of ``POST /jobs``),
  checked against the provider's row rules and split into provider batch imports;
* ``operation``: one provider job started from the request's ``params`` that produces a file (an export);
* ``track``: a provider job someone else started, followed to its end (``provider`` + ``providerJobId``).

Besides the built-in providers, every shipped provider spec (``specs/<name>.yaml``, an asynchronous HTTP
job API declared in data: tracker.providers.spec) is a job type ``http:<name>`` of kind operation, with
its own in-flight budget sized by the spec's ``inFlight``; ``track`` follows its jobs too.

Every other list is derived from ``TYPES``: the API body's ``type`` and ``provider`` values, the CLI's
``--type`` choices, the inbox prefixes of intake, the in-flight budgets and their sizes, the provider a
task runs against, the labels of report.html. Adding a provider is one package under
tracker/providers/, entries here and its simulator under src/jobtracker/simulators/ (README, "Adding a
provider"); tests/unit/test_catalogue.py keeps job-type names out of every other deployed module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tracker.errors import ProviderRejectedError
from tracker.ingest import RowRules
from tracker.providers import fullstory, keboola
from tracker.providers.spec import shipped
from tracker.scheduling import Limits

if TYPE_CHECKING:
    from tracker.config import Settings
    from tracker.providers.base import BatchProvider, OperationProvider

    ProviderFactory = Callable[[Settings, dict[str, Any] | None], BatchProvider | OperationProvider]


class Kind(StrEnum):
    BATCH = "batch"
    OPERATION = "operation"
    TRACK = "track"


@dataclass(frozen=True, slots=True)
class BudgetFamily:
    """One in-flight budget (tracker.budget): the provider jobs that count against one provider limit.
    ``name`` keys the budget's item in the jobs table; ``limit`` reads its size from the settings (0: off);
    ``operations``, when the provider also caps the rows in flight, reads that cap."""

    name: str
    limit: Callable[[Settings], int]
    operations: Callable[[Settings], int] | None = None


@dataclass(frozen=True, slots=True)
class JobType:
    name: str  # the API's and the job record's `type`
    kind: Kind
    label: str  # for people: report.html, CLI help
    provider: str = ""  # the provider package under tracker/providers/
    connect: ProviderFactory | None = None  # builds the provider one task talks to (settings, job params)
    budget: BudgetFamily | None = None
    inbox_prefix: str | None = None  # batch: an upload under this key prefix of the inbox is a job of this type
    rules: RowRules | None = None  # batch: what one request must be
    params: type[BaseModel] | None = None  # operation: what the request's params must be
    # operation: params fixed from the settings when the job is created (e.g. the Keboola stack), so
    # every later task talks to the same place.
    bind: Callable[[dict[str, Any], Settings], dict[str, Any]] | None = None
    track_as: str | None = None  # `track` with provider=<track_as> follows a provider job of this type
    spec: str | None = None  # a spec type: the shipped provider spec that declares it (tracker.providers.spec)


# FullStory answers 429 once 500,000 individual operations (rows) are in progress, whatever the batch count.
FULLSTORY_BATCHES = BudgetFamily("fullstory", lambda s: s.org_in_flight_budget, lambda s: s.org_operations_budget)
FULLSTORY_EXPORTS = BudgetFamily("fullstory-exports", lambda s: s.export_in_flight_budget)
KEBOOLA_JOBS = BudgetFamily("keboola", lambda s: s.keboola_in_flight_budget)

_PROVIDER_TYPES = (
    JobType(
        "fullstory.users",
        Kind.BATCH,
        "FullStory users import",
        provider="fullstory",
        connect=fullstory.users_import,
        budget=FULLSTORY_BATCHES,
        inbox_prefix="inbox/users/",
        rules=fullstory.USER_RULES,
        track_as="fullstory.users",
    ),
    JobType(
        "fullstory.events",
        Kind.BATCH,
        "FullStory events import",
        provider="fullstory",
        connect=fullstory.events_import,
        budget=FULLSTORY_BATCHES,
        inbox_prefix="inbox/events/",
        rules=fullstory.EVENT_RULES,
        track_as="fullstory.events",
    ),
    JobType(
        "fullstory.segment_export",
        Kind.OPERATION,
        "FullStory segment export",
        provider="fullstory",
        connect=fullstory.segment_export,
        budget=FULLSTORY_EXPORTS,
        params=fullstory.SegmentExportParams,
        track_as="fullstory.operation",
    ),
    JobType(
        "keboola.table_export",
        Kind.OPERATION,
        "Keboola table export",
        provider="keboola",
        connect=keboola.table_export,
        budget=KEBOOLA_JOBS,
        params=keboola.TableExportParams,
        bind=keboola.bind_stack,
        track_as="keboola.storage",
    ),
)



def _connect_spec(name: str) -> ProviderFactory:
    def connect(settings: Settings, params: dict[str, Any] | None = None) -> OperationProvider:
        from tracker.providers.spec.provider import connect as connect_spec

        return connect_spec(shipped.spec(name), settings, params)

    return connect


def _spec_type(facts: shipped.SpecFacts) -> JobType:
    size = facts.in_flight
    return JobType(
        facts.job_type,
        Kind.OPERATION,
        facts.title,
        provider="spec",  # the package tracker/providers/spec/, driven by the spec named below
        connect=_connect_spec(facts.name),
        budget=BudgetFamily(facts.job_type, lambda _settings: size),
        track_as=facts.job_type,
        spec=facts.name,
    )


_SPEC_TYPES = tuple(_spec_type(facts) for facts in shipped.facts())

#: The `provider` values of a `track` request -> the job type whose provider follows the job.
TRACKABLE: dict[str, str] = {t.track_as: t.name for t in (*_PROVIDER_TYPES, *_SPEC_TYPES) if t.track_as}


class TrackParams(BaseModel):
    """What `track` needs: which kind of provider job, and its id at the provider."""

    model_config = ConfigDict(extra="forbid")
    provider: Literal[tuple(TRACKABLE)]  # type: ignore[valid-type]
    providerJobId: str = Field(min_length=1, max_length=256)  # the API's field name


TYPES: tuple[JobType, ...] = (
    *_PROVIDER_TYPES,
    *_SPEC_TYPES,
    JobType("track", Kind.TRACK, "tracked provider job", params=TrackParams),
)

_BY_NAME = {t.name: t for t in TYPES}
NAMES: tuple[str, ...] = tuple(_BY_NAME)
BATCH_TYPES: tuple[str, ...] = tuple(t.name for t in TYPES if t.kind is Kind.BATCH)
OPERATION_TYPES: tuple[str, ...] = tuple(t.name for t in TYPES if t.kind is Kind.OPERATION)
INBOX_PREFIXES: dict[str, str] = {t.inbox_prefix: t.name for t in TYPES if t.inbox_prefix}
BUDGET_FAMILIES: tuple[BudgetFamily, ...] = tuple(dict.fromkeys(t.budget for t in TYPES if t.budget))


class ParamsError(ValueError):
    """The request's params (or provider/providerJobId) do not fit the job type: a 400 with ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def get(name: str) -> JobType:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown job type {name!r}; expected one of {', '.join(NAMES)}") from None


def find(name: str | None) -> JobType | None:
    return _BY_NAME.get(name or "")


def label(name: str | None) -> str:
    """For people; an unknown type (e.g. an upload outside every inbox prefix) shows as itself."""
    entry = find(name)
    return entry.label if entry else str(name or "")


def is_operation(task_type: str) -> bool:
    entry = find(task_type)
    return entry is not None and entry.kind is Kind.OPERATION


def is_track(job_type: str) -> bool:
    entry = find(job_type)
    return entry is not None and entry.kind is Kind.TRACK


def type_for_key(key: str) -> str | None:
    """The batch type of an inbox upload, from its key's prefix; None outside every prefix."""
    return next((name for prefix, name in INBOX_PREFIXES.items() if key.startswith(prefix)), None)


def row_rules(job_type: str) -> RowRules:
    rules = get(job_type).rules
    if rules is None:
        raise ValueError(f"{job_type} jobs have no rows (they are not one of {', '.join(BATCH_TYPES)})")
    return rules


def budget_family(task_type: str) -> str | None:
    entry = find(task_type)
    return entry.budget.name if entry and entry.budget else None


def budget_limits(settings: Settings) -> dict[str, Limits]:
    """Each budget family's limits from the settings (0 slots turns that budget off)."""
    return {
        family.name: Limits(family.limit(settings), family.operations(settings) if family.operations else None)
        for family in BUDGET_FAMILIES
    }


def provider_for(
    task_type: str, settings: Settings, params: dict[str, Any] | None = None
) -> BatchProvider | OperationProvider:
    """The provider one task of ``task_type`` talks to (params: the job's, e.g. its Keboola stack)."""
    entry = find(task_type)
    if entry is None or entry.connect is None:
        raise ValueError(f"no provider serves job type {task_type!r}")
    return entry.connect(settings, params)


def task_params(
    job_type: str,
    params: dict[str, Any] | None,
    provider: str | None,
    provider_job_id: str | None,
    settings: Settings,
) -> tuple[str, dict[str, Any]]:
    """For a job that is one provider task (an operation, or `track`): the task type it runs as and the
    params stored with the job. Raises ParamsError when the request does not fit the type."""
    entry = get(job_type)
    if entry.kind is Kind.BATCH:
        raise ParamsError("invalid_request", f"{job_type} jobs take 'requests' or 'source', not params/provider")
    if entry.kind is Kind.TRACK:
        if not provider or not provider_job_id:
            raise ParamsError("invalid_request", "track needs 'provider' and 'providerJobId'")
        _validated(entry, {"provider": provider, "providerJobId": provider_job_id})
        task = get(TRACKABLE[provider])
        tracked = {"provider": provider, "providerJobId": provider_job_id}
        if task.spec is not None:  # the status request of a spec may need params (dbt Cloud's account_id)
            given = _spec_params(task, params, tracking=True)
            return task.name, {**tracked, "params": given} if given else tracked
        if params:
            raise ParamsError("invalid_request", f"track of {provider} takes no 'params'")
        return task.name, {**tracked, **_bound(task, {}, settings)}
    if provider or provider_job_id:
        raise ParamsError("invalid_request", f"{job_type} takes 'params', not provider/providerJobId")
    given = dict(params or {})
    if entry.spec is not None:
        return entry.name, _spec_params(entry, given, tracking=False)
    _validated(entry, given)
    return entry.name, {**given, **_bound(entry, given, settings)}


def _spec_params(entry: JobType, params: dict[str, Any] | None, *, tracking: bool) -> dict[str, Any]:
    """A spec type's params checked by the spec (every bad one named), with its defaults filled in."""
    from tracker.providers.spec.evaluate import SpecParamsError, validate_params

    spec = shipped.spec(str(entry.spec))
    if not tracking and spec.start is None:
        raise ParamsError(
            "invalid_request",
            f"{entry.name} only follows jobs started elsewhere: use type track, provider {entry.name}",
        )
    try:
        checked = validate_params(spec, params, tracking=tracking)
    except SpecParamsError as exc:
        raise ParamsError("invalid_request", exc.message) from None
    # A started job keeps the params it runs with, defaults included; a tracked one only those given (its
    # status requests fill in the defaults again).
    return {k: v for k, v in checked.items() if k in (params or {})} if tracking else checked


def _validated(entry: JobType, values: dict[str, Any]) -> None:
    if entry.params is None:
        return
    try:
        entry.params.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        field = where if entry.kind is Kind.TRACK else f"params.{where}"
        raise ParamsError("invalid_request", f"{entry.name} needs {field}: {first['msg']}") from None


def _bound(entry: JobType, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
    if entry.bind is None:
        return {}
    try:
        return entry.bind(params, settings)
    except ProviderRejectedError as exc:
        raise ParamsError(exc.code, exc.message) from exc
