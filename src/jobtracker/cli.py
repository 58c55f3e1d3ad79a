"""`jobtracker` command line: submit and follow jobs on a stack, simulators, the offline stack, the demo."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
from tracker import catalogue

from jobtracker.client.commands import COMMANDS
from jobtracker.client.errors import EXIT_INTERRUPTED

DEFAULT_BATCH_TYPE = catalogue.BATCH_TYPES[0]  # what the shipped sample (samples/users.csv) holds


class _Cli(click.Group):
    """Usage errors as one line (`error: ...`), exit code 2, as every other error of the command line."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as exc:
            command = " ".join(["jobtracker", *(exc.ctx.command_path.split()[1:] if exc.ctx else [])])
            click.echo(f"error: {_one_line(exc.format_message())} (see: {command} --help)", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"error: {_one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except (click.Abort, KeyboardInterrupt):
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(0)


def _one_line(message: str) -> str:
    return " ".join(message.split())


@click.group(cls=_Cli)
def main() -> None:
    """Event-driven job tracker for provider batch APIs (FullStory first).

    Talk to a stack: submit, watch, jobs, show, results, cancel, retry (with --stack NAME or --local).
    Offline: local up, demo, simulate.
    """


for _command in COMMANDS:
    main.add_command(_command)


@main.group()
def simulate() -> None:
    """Provider simulators on 127.0.0.1 (not deployed)."""


def _tls_options(command: Any) -> Any:
    """--tls and --tls-dir, the same for every simulator."""
    command = click.option(
        "--tls-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="With --tls: write cert.pem and key.pem here (default: a temporary directory removed on exit).",
    )(command)
    return click.option(
        "--tls",
        is_flag=True,
        help="Serve HTTPS with a fresh self-signed certificate for 127.0.0.1 and localhost; its path is printed "
        "(trust it: curl --cacert PATH, REQUESTS_CA_BUNDLE=PATH).",
    )(command)


@simulate.command("fullstory")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8900, show_default=True, type=int)
@click.option("--api-key", default=None, help="Accept only this key (default: any non-empty key).")
@click.option(
    "--processing-seconds",
    default=5.0,
    show_default=True,
    type=float,
    help="Wall-clock time a batch job stays PROCESSING.",
)
@click.option(
    "--polls-to-complete",
    default=None,
    type=int,
    help="Finish a job after this many status polls instead of after --processing-seconds.",
)
@click.option("--page-size", default=1000, show_default=True, type=int)
@click.option(
    "--running-limit",
    default=100,
    show_default=True,
    type=click.IntRange(1),
    help="Batches processed at once (per org); later ones are accepted and wait, PROCESSING.",
)
@click.option(
    "--in-progress-limit",
    default=200,
    show_default=True,
    type=int,
    help="Answer 429 to new batches once this many are in progress (waiting or running).",
)
@click.option(
    "--operations-limit",
    default=500_000,
    show_default=True,
    type=int,
    help="Answer 429 to new batches once the batches in progress hold this many requests.",
)
@click.option("--retry-after", default=1, show_default=True, type=int, help="Retry-After seconds on 429.")
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="SPEC",
    help="Inject failures, repeatable: 429:0.3, 429-bare:0.2, 500:0.1, reset:0.05, slow:2s, malformed:0.05, "
    "stuck, repeat-token; KIND@TARGET limits it to submit, status, pages (batch imports) or export, operation, "
    "results, download (segment exports); :Nx hits only the first N.",
)
@click.option("--fault-seed", default=None, type=int, help="Seed of the fault dice, for repeatable runs.")
@_tls_options
def simulate_fullstory(
    host: str,
    port: int,
    api_key: str | None,
    processing_seconds: float,
    polls_to_complete: int | None,
    page_size: int,
    running_limit: int,
    in_progress_limit: int,
    operations_limit: int,
    retry_after: int,
    faults: tuple[str, ...],
    fault_seed: int | None,
    tls: bool,
    tls_dir: Path | None,
) -> None:
    """FullStory v2 users/events batch import API and segment exports."""
    from jobtracker.simulators.fullstory import SimulatorConfig, parse_fault, serve

    try:
        parsed = tuple(parse_fault(spec) for spec in faults)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fault") from None
    serve(
        SimulatorConfig(
            api_key=api_key,
            polls_to_complete=polls_to_complete,
            processing_seconds=processing_seconds,
            page_size=page_size,
            running_limit=running_limit,
            in_progress_limit=in_progress_limit,
            operations_limit=operations_limit,
            retry_after_seconds=retry_after,
            faults=parsed,
            fault_seed=fault_seed,
        ),
        host=host,
        port=port,
        tls=tls,
        tls_dir=tls_dir,
    )


@simulate.command("keboola")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8901, show_default=True, type=int)
@click.option("--token", default=None, help="Accept only this X-StorageApi-Token (default: any non-empty token).")
@click.option(
    "--processing-seconds", default=5.0, show_default=True, type=float, help="Wall-clock time a job stays processing."
)
@click.option(
    "--polls-to-complete", default=None, type=int, help="Finish a job on this status poll instead of by wall clock."
)
@click.option("--download-ttl", default=300.0, show_default=True, type=float, help="Seconds a file URL stays valid.")
@click.option(
    "--backend",
    type=click.Choice(["aws", "azure", "gcp"]),
    default="aws",
    show_default=True,
    help="The stack's file storage: S3 (served on --s3-port), Azure Blob Storage or GCS (on --port).",
)
@click.option(
    "--s3-port",
    default=8902,
    show_default=True,
    type=int,
    help="The S3 file storage's port (any S3 client reaches it with AWS_ENDPOINT_URL_S3=http://127.0.0.1:PORT).",
)
@click.option("--unsliced", is_flag=True, help="Export tables as one file instead of slices and a manifest.")
@click.option(
    "--credentials-ttl",
    default=3600.0,
    show_default=True,
    type=float,
    help="Seconds the file storage credentials of a file detail stay valid.",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="SPEC",
    help="As for fullstory, plus maintenance[:rate] (503 with Retry-After); repeatable.",
)
@click.option("--fault-seed", default=None, type=int, help="Seed of the fault dice, for repeatable runs.")
@_tls_options
def simulate_keboola(
    host: str,
    port: int,
    token: str | None,
    processing_seconds: float,
    polls_to_complete: int | None,
    download_ttl: float,
    backend: str,
    s3_port: int,
    unsliced: bool,
    credentials_ttl: float,
    faults: tuple[str, ...],
    fault_seed: int | None,
    tls: bool,
    tls_dir: Path | None,
) -> None:
    """Keboola Storage API: table export-async, storage jobs, files (demo table in.c-main.users). Exports are
    headerless and sliced, as on Keboola's Snowflake and Redshift backends."""
    from jobtracker.simulators.keboola import KeboolaSimulatorConfig, parse_keboola_fault, serve

    try:
        parsed = tuple(parse_keboola_fault(spec) for spec in faults)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fault") from None
    serve(
        KeboolaSimulatorConfig(
            token=token,
            polls_to_complete=polls_to_complete,
            processing_seconds=processing_seconds,
            download_ttl_seconds=download_ttl,
            backend=backend,
            sliced=not unsliced,
            credentials_ttl_seconds=credentials_ttl,
            faults=parsed,
            fault_seed=fault_seed,
        ),
        host=host,
        port=port,
        tls=tls,
        tls_dir=tls_dir,
        s3_port=s3_port if backend == "aws" else None,
    )


def _fault_options(kinds_help: str) -> Any:
    """--fault (repeatable) and --fault-seed, in the shared grammar (jobtracker.simulators.faults)."""

    def add(command: Any) -> Any:
        command = click.option(
            "--fault-seed", default=None, type=int, help="Seed of the fault dice, for repeatable runs."
        )(command)
        return click.option("--fault", "faults", multiple=True, metavar="SPEC", help=kinds_help)(command)

    return add


def _parse_faults(specs: tuple[str, ...]) -> tuple[Any, ...]:
    from jobtracker.simulators.faults import parse_fault

    try:
        return tuple(parse_fault(spec) for spec in specs)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fault") from None


def _job_api_simulator_options(port: int, token_help: str, polls_help: str) -> Any:
    """--host, --port, --token, --polls-per-phase and --retry-after, the same for the Databricks and dbt Cloud
    simulators (each names its own default port and what a phase is)."""

    def add(command: Any) -> Any:
        for option in reversed(
            (
                click.option("--host", default="127.0.0.1", show_default=True),
                click.option("--port", default=port, show_default=True, type=int),
                click.option("--token", default=None, help=token_help),
                click.option(
                    "--polls-per-phase", default=1, show_default=True, type=click.IntRange(0, 1000), help=polls_help
                ),
                click.option(
                    "--retry-after", default=1, show_default=True, type=int, help="Retry-After seconds on 429."
                ),
            )
        ):
            command = option(command)
        return command

    return add


@simulate.command("databricks")
@_job_api_simulator_options(
    8904,
    "Accept only this bearer token (default: any non-empty token).",
    "runs/get answers spent in PENDING and in RUNNING before the run ends.",
)
@click.option(
    "--missing-run-status",
    type=click.Choice(["400", "404"]),
    default="400",
    show_default=True,
    help="How runs/get answers an unknown run: 400 INVALID_PARAMETER_VALUE (as the service) or 404.",
)
@_fault_options(
    "Inject failures, repeatable: 429:0.3, 500@status:0.1, reset@submit:1x, slow:2s, malformed:0.05, stuck; "
    "targets submit (run-now), status (runs/get), pages (jobs/list)."
)
@_tls_options
def simulate_databricks(
    host: str,
    port: int,
    token: str | None,
    polls_per_phase: int,
    missing_run_status: str,
    retry_after: int,
    faults: tuple[str, ...],
    fault_seed: int | None,
    tls: bool,
    tls_dir: Path | None,
) -> None:
    """Databricks Jobs API 2.2/2.1: run-now, runs/get, jobs/list (jobs 101-107, one per outcome)."""
    from jobtracker.simulators.databricks import DatabricksConfig, serve

    config = DatabricksConfig(
        token=token,
        pending_polls=polls_per_phase,
        running_polls=polls_per_phase,
        missing_run_status=int(missing_run_status),
        retry_after_seconds=retry_after,
        faults=_parse_faults(faults),
        fault_seed=fault_seed,
    )
    click.echo("jobs: " + ", ".join(f"{j.job_id} {j.outcome}" for j in config.jobs), err=True)
    serve(config, host=host, port=port, tls=tls, tls_dir=tls_dir)


@simulate.command("dbt-cloud")
@_job_api_simulator_options(
    8905,
    "Accept only this token (default: any non-empty token).",
    "Retrieve Run answers spent in Queued, Starting and Running before the run ends.",
)
@_fault_options(
    "Inject failures, repeatable: 429:0.3, 500@status:0.1, reset@submit:1x, slow:2s, malformed:0.05, stuck; "
    "targets submit (trigger run), status (retrieve run), results (run artifacts)."
)
@_tls_options
def simulate_dbt_cloud(
    host: str,
    port: int,
    token: str | None,
    polls_per_phase: int,
    retry_after: int,
    faults: tuple[str, ...],
    fault_seed: int | None,
    tls: bool,
    tls_dir: Path | None,
) -> None:
    """dbt Cloud API v2: trigger job run, retrieve run, run artifacts (account 70403, jobs 201-203)."""
    from jobtracker.simulators.dbt_cloud import DbtCloudConfig, serve

    config = DbtCloudConfig(
        token=token,
        queued_polls=polls_per_phase,
        starting_polls=polls_per_phase,
        running_polls=polls_per_phase,
        retry_after_seconds=retry_after,
        faults=_parse_faults(faults),
        fault_seed=fault_seed,
    )
    click.echo(
        f"account {config.account_id}; jobs: " + ", ".join(f"{j.job_id} {j.outcome}" for j in config.jobs), err=True
    )
    serve(config, host=host, port=port, tls=tls, tls_dir=tls_dir)


@main.group()
def providers() -> None:
    """Provider specs: asynchronous HTTP job APIs declared in data (specs/*.yaml, job type http:<name>)."""


@providers.command("schema")
def providers_schema() -> None:
    """Print the JSON Schema of a provider spec."""
    import json

    from tracker.providers.spec.model import ProviderSpec

    schema = ProviderSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "jobtracker provider spec"
    click.echo(json.dumps(schema, indent=2, sort_keys=True))


@providers.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
def providers_validate(files: tuple[Path, ...]) -> None:
    """Validate spec files; every problem is printed as FILE:LINE: FIELD: MESSAGE (exit 1 if any)."""
    from tracker.providers.spec.loader import SpecError

    from jobtracker.specs import read_spec_file

    failed = False
    for path in files:
        try:
            spec = read_spec_file(path)
        except SpecError as exc:
            failed = True
            for problem in exc.problems:
                click.echo(str(problem), err=True)
            continue
        click.echo(f"{path}: ok ({spec.job_type})")
    if failed:
        sys.exit(1)


@providers.command("bundle")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write it (default: the shared layer's tracker/providers/spec/specs.json).",
)
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if the bundle differs from specs/*.yaml.")
def providers_bundle(out: Path | None, check: bool) -> None:
    """Validate specs/*.yaml and write the JSON bundle the functions read (Lambda has no YAML parser)."""
    from tracker.providers.spec.loader import SpecError
    from tracker.providers.spec.shipped import BUNDLE_PATH

    from jobtracker.specs import bundle_text

    target = out or BUNDLE_PATH
    try:
        text, count = bundle_text()
    except SpecError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        sys.exit(1)
    if check:
        current = target.read_text(encoding="utf-8") if target.is_file() else ""
        if current != text:
            click.echo(f"{target} is out of date: run `make specs`", err=True)
            sys.exit(1)
        click.echo(f"{target}: up to date ({count} specs)")
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    click.echo(f"{target}: {count} specs")


def _in_flight(limits: Any) -> str:
    """A budget's limits in one cell: jobs in flight, and the rows in them when the provider counts rows."""
    return f"{limits.slots}/{limits.operations:,}rows" if limits.operations else str(limits.slots)


@providers.command("list")
def providers_list() -> None:
    """Every job type the tracker runs, built-in and from specs, with its provider and in-flight budget
    (at the template's defaults)."""
    from tracker import catalogue

    from jobtracker.local.settings import template_settings

    limits = catalogue.budget_limits(template_settings())
    rows = [
        (
            entry.name,
            entry.kind.value,
            f"spec {entry.spec}" if entry.spec else (entry.provider or "-"),
            _in_flight(limits[entry.budget.name]) if entry.budget else "-",
            entry.label,
        )
        for entry in catalogue.TYPES
    ]
    header = ("TYPE", "KIND", "PROVIDER", "IN-FLIGHT", "TITLE")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(4)]
    for row in (header, *rows):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)) + "  " + row[4])


def _endpoint_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An http(s) base URL (scheme and host, optionally a port), without a trailing slash."""
    if value is None:
        return None
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise click.BadParameter(f"{value!r} is not a base URL like https://api.fullstory.com or http://127.0.0.1:8900")
    return f"{parts.scheme}://{parts.netloc}"


def _secret_file(path: Path | None, option: str) -> str | None:
    """A key or token kept in a file (never on the command line, where `ps` and shell history show it)."""
    if path is None:
        return None
    secret = path.read_text(encoding="utf-8").strip()
    if not secret or "\n" in secret:
        raise click.BadParameter(f"{path} must hold one non-empty line", param_hint=option)
    return secret


@main.group()
def local() -> None:
    """The offline stack (moto + simulator + the real handlers and ASL)."""


@local.command("up")
@click.option("--api-port", default=8000, show_default=True, type=int, help="REST API on 127.0.0.1.")
@click.option("--aws-port", default=5000, show_default=True, type=int, help="Emulated AWS endpoint on 127.0.0.1.")
@click.option("--simulator-port", default=8900, show_default=True, type=int)
@click.option("--processing-seconds", default=5.0, show_default=True, type=float)
@click.option("--poll-seconds", default=2, show_default=True, type=int, help="First wait between status polls.")
@click.option(
    "--batch-rows", default=None, type=click.IntRange(1, 50_000), help="Rows per batch (default: the template's)."
)
@click.option(
    "--allow-unsigned",
    is_flag=True,
    help="Local-dev switch: let unsigned requests (plain curl) into the API; by default, as in AWS, only SigV4.",
)
@click.option(
    "--keboola-backend",
    type=click.Choice(["aws", "azure", "gcp"]),
    default="aws",
    show_default=True,
    help="The Keboola simulator's file storage: S3 (in the offline S3, at the AWS endpoint), Azure Blob or GCS.",
)
@click.option(
    "--fullstory-url",
    callback=_endpoint_url,
    default=None,
    metavar="URL",
    help="Talk to this FullStory-compatible endpoint (a staging proxy, a recorded replay, https://api.fullstory.com) "
    "instead of starting the simulator.",
)
@click.option(
    "--fullstory-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="File holding the FullStory API key the stack sends (default: the offline demo key).",
)
@click.option(
    "--keboola-url",
    callback=_endpoint_url,
    default=None,
    metavar="URL",
    help="Talk to this Keboola stack (e.g. https://connection.keboola.com) instead of starting the simulator.",
)
@click.option(
    "--keboola-token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="File holding the Keboola Storage API token the stack sends (default: an offline demo token).",
)
def local_up(
    api_port: int,
    aws_port: int,
    simulator_port: int,
    processing_seconds: float,
    poll_seconds: int,
    batch_rows: int | None,
    allow_unsigned: bool,
    keboola_backend: str,
    fullstory_url: str | None,
    fullstory_key_file: Path | None,
    keboola_url: str | None,
    keboola_token_file: Path | None,
) -> None:
    """Run the stack until Ctrl-C: `jobtracker submit FILE --local`, curl the API, or `aws --endpoint-url`.

    With --fullstory-url / --keboola-url the stack talks to that endpoint instead of its own simulator (which
    is then not started); the key / token file's content goes into the stack's secret.
    """
    from jobtracker.local.session import OfflineSession
    from jobtracker.simulators.fullstory import SimulatorConfig
    from jobtracker.simulators.keboola import KeboolaSimulatorConfig

    parameters: dict[str, Any] = {
        "PollMinSeconds": poll_seconds,
        "PollMaxSeconds": max(poll_seconds, 10),
        "LogLevel": "INFO",
    }
    if batch_rows:
        parameters["MaxBatchRequests"] = batch_rows
    fullstory_key = _secret_file(fullstory_key_file, "--fullstory-key-file")
    session = OfflineSession(
        parameters=parameters,
        # Given a key file and no URL, the simulator accepts that key only (try a key before pointing at the API).
        simulator_config=SimulatorConfig(
            polls_to_complete=None, processing_seconds=processing_seconds, api_key=fullstory_key
        ),
        simulator_port=simulator_port,
        api_port=api_port,
        aws_port=aws_port,
        allow_unsigned=allow_unsigned,
        keboola_config=KeboolaSimulatorConfig(backend=keboola_backend),
        fullstory_url=fullstory_url,
        stack_api_key=fullstory_key,
        keboola_url=keboola_url,
        keboola_token=_secret_file(keboola_token_file, "--keboola-token-file"),
    )
    try:
        session.__enter__()
    except ValueError as exc:  # e.g. a URL the template's parameter refuses
        raise click.UsageError(str(exc)) from None
    try:
        stack = session.stack
        click.echo(f"REST API        {session.api.base_url if session.api else '-'}")
        click.echo(f"AWS endpoint    {session.aws_endpoint}   (any credentials; region us-east-1)")
        if session.simulator is not None:
            click.echo(f"FullStory sim   {session.simulator.base_url}")
        else:
            click.echo(f"FullStory       {fullstory_url}   (not the simulator)")
        if session.keboola is not None:
            click.echo(f"Keboola sim     {session.keboola.base_url}   (file storage: {keboola_backend})")
            if keboola_backend == "aws":  # the export's slices are in the offline S3, beside the tracker's buckets
                click.echo(f"Keboola files   AWS_ENDPOINT_URL_S3={session.aws_endpoint}   (e.g. for kbcstorage)")
            elif keboola_backend == "gcp":
                click.echo(f"Keboola files   STORAGE_EMULATOR_HOST={session.keboola.base_url}")
        else:
            click.echo(f"Keboola         {keboola_url}   (not the simulator)")
        click.echo(f"Databricks sim  {session.databricks.base_url}   (jobs 101-107)")
        click.echo(f"dbt Cloud sim   {session.dbt_cloud.base_url}   (account {session.dbt_cloud.config.account_id})")
        click.echo(f"inbox bucket    {stack.inbox_bucket}")
        click.echo(f"results bucket  {stack.results_bucket}")
        click.echo(f"jobs table      {stack.output('JobsTable')}")
        click.echo(
            f"upload:  aws --endpoint-url {session.aws_endpoint} s3 cp users.csv "
            f"s3://{stack.inbox_bucket}/{catalogue.get(DEFAULT_BATCH_TYPE).inbox_prefix}"
        )
        api_url = session.api.base_url if session.api else ""
        if allow_unsigned:
            click.echo(f"watch:   curl -s {api_url}/jobs")
        else:
            click.echo(
                f"watch:   awscurl --service execute-api {api_url}/jobs   (or restart with --allow-unsigned for curl)"
            )
        click.echo(f"submit:  jobtracker submit users.csv --type {DEFAULT_BATCH_TYPE} --local")
        spec_type = next((t.name for t in catalogue.TYPES if t.spec == "databricks"), None)
        if spec_type:
            click.echo(f"         jobtracker submit --type {spec_type} --param job_id=101 --local")
        click.echo("Ctrl-C stops.", err=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            click.echo("stopping", err=True)
    finally:
        session.__exit__()


@main.command()
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Input file (default: samples/users.csv).",
)
@click.option(
    "--type",
    "job_type",
    type=click.Choice(catalogue.BATCH_TYPES),
    default=DEFAULT_BATCH_TYPE,
    show_default=True,
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-results"),
    show_default=True,
    help="Where the result files are copied.",
)
@click.option("--batch-rows", default=500, show_default=True, type=int, help="Rows per batch (to show several).")
@click.option(
    "--all",
    "all_types",
    is_flag=True,
    help="One job of every type at once (imports, exports, track): make demo DEMO=all.",
)
def demo(file: Path | None, job_type: str, out_dir: Path, batch_rows: int, all_types: bool) -> None:
    """Run one job end to end offline and watch it; exit 0 only if COMPLETED with exact accounting."""
    from jobtracker.demo import SAMPLE, run_demo, run_demo_all

    if all_types:
        sys.exit(run_demo_all(out_dir=out_dir))
    sys.exit(run_demo(file=file or SAMPLE, job_type=job_type, out_dir=out_dir, batch_rows=batch_rows))


if __name__ == "__main__":
    main()
