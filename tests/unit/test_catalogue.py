"""The job-type catalogue (tracker/catalogue.py): every list is derived from it, and no other deployed
module (nor the command line) spells a job type, so adding a provider stays one package + its catalogue
entries + its simulator (README, "Adding a provider")."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest
from tracker import catalogue
from tracker.budget import Budgets
from tracker.catalogue import Kind, ParamsError
from tracker.ingest import RowRules
from tracker.scheduling import Limits

from jobtracker.bench.memory import MemorySlotStore
from jobtracker.local.settings import template_settings

REPO = Path(__file__).resolve().parents[2]
TRACKER = REPO / "layers" / "shared" / "python" / "tracker"

SETTINGS = template_settings(
    {"KeboolaStacks": "https://connection.keboola.com,https://connection.eu-central-1.keboola.com"}
)


# --- what each kind declares --------------------------------------------------------------------------


@pytest.mark.parametrize("entry", catalogue.TYPES, ids=lambda t: t.name)
def test_each_type_declares_what_its_kind_needs(entry: catalogue.JobType) -> None:
    assert entry.label
    if entry.kind is Kind.BATCH:
        assert isinstance(entry.rules, RowRules) and entry.inbox_prefix and entry.inbox_prefix.endswith("/")
        assert entry.params is None and entry.connect is not None and entry.budget is not None
    elif entry.kind is Kind.OPERATION:
        # A built-in operation's params are a model; a spec type's are declared by its spec.
        assert (entry.params is None) == (entry.spec is not None) and entry.rules is None and entry.inbox_prefix is None
        assert entry.connect is not None and entry.budget is not None
    else:
        assert entry.params is catalogue.TrackParams and entry.connect is None and entry.budget is None
    if entry.provider:
        assert (TRACKER / "providers" / entry.provider / "__init__.py").is_file()


def test_which_provider_serves_which_type() -> None:
    from tracker.providers import fullstory, keboola

    built_in = [t for t in catalogue.TYPES if t.spec is None]
    served = {t.name: (t.provider, t.connect, t.budget.name if t.budget else None) for t in built_in}
    assert served == {
        "fullstory.users": ("fullstory", fullstory.users_import, "fullstory"),
        "fullstory.events": ("fullstory", fullstory.events_import, "fullstory"),
        "fullstory.segment_export": ("fullstory", fullstory.segment_export, "fullstory-exports"),
        "keboola.table_export": ("keboola", keboola.table_export, "keboola"),
        "track": ("", None, None),
    }
    # Every shipped spec is a type of its own, served by the spec provider, with a budget of its own.
    specs = {t.name: (t.provider, t.spec, t.budget.name if t.budget else None) for t in catalogue.TYPES if t.spec}
    assert specs == {
        "http:databricks": ("spec", "databricks", "http:databricks"),
        "http:dbt_cloud": ("spec", "dbt_cloud", "http:dbt_cloud"),
        "http:fullstory_export": ("spec", "fullstory_export", "http:fullstory_export"),
    }
    assert {
        "fullstory.users": "fullstory.users",
        "fullstory.events": "fullstory.events",
        "fullstory.operation": "fullstory.segment_export",
        "keboola.storage": "keboola.table_export",
        **{name: name for name in specs},
    } == catalogue.TRACKABLE


def test_the_derived_lists() -> None:
    assert tuple(t.name for t in catalogue.TYPES) == catalogue.NAMES
    assert len(set(catalogue.NAMES)) == len(catalogue.NAMES)
    assert set(catalogue.BATCH_TYPES) | set(catalogue.OPERATION_TYPES) | {"track"} == set(catalogue.NAMES)
    assert sorted(catalogue.INBOX_PREFIXES.values()) == sorted(catalogue.BATCH_TYPES)
    assert set(catalogue.TRACKABLE.values()) == set(catalogue.BATCH_TYPES) | set(catalogue.OPERATION_TYPES)
    prefixes = list(catalogue.INBOX_PREFIXES)
    assert not any(a != b and a.startswith(b) for a in prefixes for b in prefixes)  # one type per upload


def test_lookups() -> None:
    for name in catalogue.BATCH_TYPES:
        prefix = catalogue.get(name).inbox_prefix
        assert catalogue.type_for_key(f"{prefix}2026/file.csv") == name
        assert catalogue.row_rules(name) is catalogue.get(name).rules
    assert catalogue.type_for_key("elsewhere/file.csv") is None
    assert [catalogue.is_operation(n) for n in catalogue.NAMES] == [
        t.kind is Kind.OPERATION for t in catalogue.TYPES
    ]
    assert [n for n in catalogue.NAMES if catalogue.is_track(n)] == ["track"]
    assert not catalogue.is_operation("unknown") and not catalogue.is_track("unknown")
    assert catalogue.label("unknown") == "unknown"  # an upload outside every prefix shows as itself


def test_unknown_job_type() -> None:
    with pytest.raises(ValueError, match="unknown job type"):
        catalogue.row_rules("keboola.tables")
    with pytest.raises(ValueError, match="have no rows"):
        catalogue.row_rules(catalogue.OPERATION_TYPES[0])
    with pytest.raises(ValueError, match="no provider serves"):
        catalogue.provider_for("track", SETTINGS)


def test_budgets_are_one_per_family_sized_by_the_settings() -> None:
    assert catalogue.budget_limits(SETTINGS) == {
        "fullstory": Limits(SETTINGS.org_in_flight_budget, SETTINGS.org_operations_budget),
        "fullstory-exports": Limits(SETTINGS.export_in_flight_budget),
        "keboola": Limits(SETTINGS.keboola_in_flight_budget),
        # a spec type's budget is its spec's inFlight
        "http:databricks": Limits(20),
        "http:dbt_cloud": Limits(10),
        "http:fullstory_export": Limits(10),
    }
    off = dataclasses.replace(SETTINGS, export_in_flight_budget=0)
    budgets = Budgets(catalogue.budget_limits(off), lambda family: MemorySlotStore())
    users, events = (budgets.for_type(name) for name in catalogue.BATCH_TYPES)
    assert users is not None and users is events  # FullStory's batch imports share one budget
    assert budgets.for_type("fullstory.segment_export") is None  # a limit of 0 turns a budget off
    assert budgets.for_type("keboola.table_export") is not None
    assert budgets.for_type("track") is None and budgets.for_type("unknown") is None


# --- params of a job that is one provider task ---------------------------------------------------------


def test_operation_params_are_checked_and_bound() -> None:
    export = {"segmentId": "s", "format": "csv"}
    task, params = catalogue.task_params("fullstory.segment_export", export, None, None, SETTINGS)
    assert (task, params) == ("fullstory.segment_export", export)
    task, params = catalogue.task_params("keboola.table_export", {"tableId": "in.c-main.users"}, None, None, SETTINGS)
    assert params == {"tableId": "in.c-main.users", "stack": "https://connection.keboola.com"}  # the first stack
    _, params = catalogue.task_params(
        "keboola.table_export",
        {"tableId": "t", "stack": "connection.eu-central-1.keboola.com"},
        None,
        None,
        SETTINGS,
    )
    assert params["stack"] == "https://connection.eu-central-1.keboola.com"


@pytest.mark.parametrize(
    ("job_type", "params", "provider", "provider_job_id", "code", "message"),
    [
        ("fullstory.segment_export", {}, None, None, "invalid_request", "needs params.segmentId"),
        ("fullstory.segment_export", {"segmentId": 5}, None, None, "invalid_request", "needs params.segmentId"),
        ("keboola.table_export", {"tableId": "  "}, None, None, "invalid_request", "needs params.tableId"),
        ("keboola.table_export", {"tableId": "t", "stack": "https://evil.example.com"}, None, None,
         "stack_not_allowed", "not one of this tracker's stacks"),
        ("fullstory.segment_export", {"segmentId": "s"}, "fullstory.operation", "1", "invalid_request",
         "takes 'params'"),
        ("track", None, "fullstory.users", None, "invalid_request", "needs 'provider' and 'providerJobId'"),
        ("track", {"x": 1}, "fullstory.users", "1", "invalid_request", "takes no 'params'"),
        ("track", None, "nobody", "1", "invalid_request", "track needs provider"),
        ("fullstory.users", None, None, None, "invalid_request", "take 'requests' or 'source'"),
    ],
)  # fmt: skip
def test_params_that_do_not_fit_are_a_400(job_type, params, provider, provider_job_id, code, message) -> None:
    with pytest.raises(ParamsError) as refused:
        catalogue.task_params(job_type, params, provider, provider_job_id, SETTINGS)
    assert refused.value.code == code and message in refused.value.message


@pytest.mark.parametrize(
    ("provider", "task_type"), sorted((p, t) for p, t in catalogue.TRACKABLE.items() if not catalogue.get(t).spec)
)
def test_track_runs_as_the_tracked_providers_type(provider: str, task_type: str) -> None:
    task, params = catalogue.task_params("track", None, provider, "job-1", SETTINGS)
    assert task == task_type
    bound = {"stack": "https://connection.keboola.com"} if catalogue.get(task_type).bind else {}
    assert params == {"provider": provider, "providerJobId": "job-1", **bound}


def test_spec_types_take_the_params_their_spec_declares() -> None:
    task, params = catalogue.task_params("http:databricks", {"job_id": 101}, None, None, SETTINGS)
    assert (task, params) == ("http:databricks", {"job_id": 101})
    _, params = catalogue.task_params("http:fullstory_export", {"segmentId": "everyone"}, None, None, SETTINGS)
    assert params["timeRange"] == {"start": "", "end": ""} and params["format"] == "FORMAT_CSV"  # defaults
    with pytest.raises(ParamsError) as refused:
        catalogue.task_params("http:dbt_cloud", {"job_id": "201", "acount_id": 1}, None, None, SETTINGS)
    message = refused.value.message
    assert refused.value.code == "invalid_request"
    assert "params.account_id is required" in message and "params.job_id: Input should be a valid integer" in message
    assert "params.acount_id is not a param of http:dbt_cloud" in message
    with pytest.raises(ParamsError, match="takes 'params', not provider"):
        catalogue.task_params("http:databricks", {"job_id": 1}, "http:databricks", "9", SETTINGS)


def test_track_of_a_spec_type_keeps_the_params_its_status_request_needs() -> None:
    task, params = catalogue.task_params("track", None, "http:databricks", "880000000001", SETTINGS)
    assert (task, params) == ("http:databricks", {"provider": "http:databricks", "providerJobId": "880000000001"})
    task, params = catalogue.task_params("track", {"account_id": 70403}, "http:dbt_cloud", "300000001", SETTINGS)
    assert params["params"] == {"account_id": 70403}  # job_id is not needed to follow a run
    with pytest.raises(ParamsError, match=r"params\.account_id is required"):
        catalogue.task_params("track", None, "http:dbt_cloud", "300000001", SETTINGS)


# --- no job type spelled anywhere else -----------------------------------------------------------------

# What is scanned: the deployed code (the shared layer and every function) and the command line
# (cli.py, client/, and the offline runtime `jobtracker local` starts). Left out, and why:
# - tests: they name the types they exercise;
# - src/jobtracker/simulators/: each is a claim about one real service and speaks its vocabulary;
# - src/jobtracker/bench/: it measures named types on purpose (its data are FullStory users);
# - src/jobtracker/demo.py: `make demo DEMO=all` submits one sample job of each type, with that type's
#   own sample params (its single-job demo takes the type from the catalogue);
# - docstrings and comments: prose for people, like the README.
# A provider's own package may name its own types (none does today: they name endpoints).
SCANNED = [
    *sorted(TRACKER.rglob("*.py")),
    *sorted((REPO / "functions").rglob("*.py")),
    REPO / "src" / "jobtracker" / "cli.py",
    *sorted((REPO / "src" / "jobtracker" / "client").rglob("*.py")),
    *sorted((REPO / "src" / "jobtracker" / "local").rglob("*.py")),
]


def _spellings() -> dict[str, str]:
    """Every spelling of a job type -> the provider that may use it in its own package ('' for none)."""
    spelled = {}
    for entry in catalogue.TYPES:
        for word in (entry.name, entry.track_as, entry.inbox_prefix):
            if word:
                spelled[word] = entry.provider
    return spelled


def _string_constants(tree: ast.AST) -> list[ast.Constant]:
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def _spelled_in(source: str, own_provider: str | None = None) -> list[tuple[int, str]]:
    """(line, spelling) of every job type spelled in the string literals of `source`. "track" is also
    an English word: only the bare literal counts; the dotted names and the prefixes count anywhere
    inside a string (a message, an f-string, a key). A provider's package may spell its own types."""
    spelled = _spellings()
    inside = re.compile("|".join(rf"(?<![\w.]){re.escape(w)}(?![\w])" for w in spelled if "." in w or "/" in w))
    found = []
    for node in _string_constants(ast.parse(source)):
        words = {m.group() for m in inside.finditer(node.value)} | ({node.value} & {"track"})
        found += [(node.lineno, w) for w in sorted(words) if not (own_provider and spelled[w] == own_provider)]
    return found


def test_no_job_type_is_spelled_outside_the_catalogue() -> None:
    found = []
    for path in SCANNED:
        if path == TRACKER / "catalogue.py":
            continue
        own = path.relative_to(TRACKER).parts[1] if path.is_relative_to(TRACKER / "providers") else None
        found += [f"{path.relative_to(REPO)}:{line} {word!r}" for line, word in _spelled_in(path.read_text(), own)]
    assert len(SCANNED) > 40 and not found, "job types spelled outside tracker/catalogue.py:\n" + "\n".join(found)


def test_the_scan_sees_a_job_type_wherever_code_spells_it() -> None:
    source = (
        '"""fullstory.users in a docstring is prose."""\n'
        'def f(x, t):\n'
        '    """So is track here, and inbox/users/."""\n'
        '    m = f"{x} is not a keboola.table_export job"\n'
        '    if t == "track" or t.startswith("inbox/events/"):\n'
        '        return "track it", {"keboola.storage": 1}\n'
    )
    assert _spelled_in(source) == [
        (4, "keboola.table_export"),
        (5, "track"),
        (5, "inbox/events/"),
        (6, "keboola.storage"),
    ]
    assert _spelled_in(source, own_provider="keboola") == [(5, "track"), (5, "inbox/events/")]
