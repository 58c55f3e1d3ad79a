"""The `jobtracker` commands that talk to a stack: submit, jobs, show, watch, results."""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import secrets
import shlex
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
from rich.console import Console
from tracker import catalogue

from jobtracker.client.config import TRUE, resolve
from jobtracker.client.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_JOB_FAILED,
    EXIT_NOT_FINISHED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CliError,
)
from jobtracker.client.target import Target, connect

JOB_TYPES = catalogue.BATCH_TYPES  # the types whose rows come in a file
# What `submit` creates: the file types above and the types started from params (exports, spec types).
SUBMIT_TYPES = (*catalogue.BATCH_TYPES, *catalogue.OPERATION_TYPES)
TRACKABLE = tuple(catalogue.TRACKABLE)
TRACK_TYPE = next(t.name for t in catalogue.TYPES if t.kind is catalogue.Kind.TRACK)
INBOX_PREFIX = {name: prefix for prefix, name in catalogue.INBOX_PREFIXES.items()}
STATES = ("PENDING", "RUNNING", "COMPLETED", "FAILED")
INTAKE_WAIT_SECONDS = 300.0


# -- shared options and error handling ------------------------------------------------------------
def target_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--stack/--local and their overrides, --debug; the command receives `target_flags` (a dict)."""
    options = [
        click.option(
            "--stack", metavar="NAME", help="Deployed stack: read its CloudFormation outputs. [env JOBTRACKER_STACK]"
        ),
        click.option(
            "--local",
            is_flag=True,
            default=False,
            help="The offline stack of `jobtracker local up`. [env JOBTRACKER_LOCAL=1]",
        ),
        click.option(
            "--profile", metavar="NAME", help="AWS profile (default: boto3's chain). [env JOBTRACKER_PROFILE]"
        ),
        click.option("--region", metavar="REGION", help="AWS region of the stack. [env JOBTRACKER_REGION]"),
        click.option(
            "--api-url",
            metavar="URL",
            help="REST API base URL (default: output ApiUrl, or http://127.0.0.1:8000 with --local).",
        ),
        click.option(
            "--aws-endpoint",
            metavar="URL",
            help="With --local: the emulated AWS endpoint (default http://127.0.0.1:5000).",
        ),
        click.option("--inbox-bucket", metavar="NAME", help="Override the inbox bucket (output InboxBucketName)."),
        click.option(
            "--results-bucket", metavar="NAME", help="Override the results bucket (output ResultsBucketName)."
        ),
        click.option(
            "--debug", is_flag=True, default=False, help="Show HTTP calls and tracebacks. [env JOBTRACKER_DEBUG=1]"
        ),
    ]
    keys = ("stack", "local", "profile", "region", "api_url", "aws_endpoint", "inbox_bucket", "results_bucket")

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        debug = bool(kwargs.pop("debug")) or os.environ.get("JOBTRACKER_DEBUG", "").lower() in TRUE
        flags = {key: kwargs.pop(key) for key in keys}
        logger = logging.getLogger("jobtracker.client")
        handler = _StderrHandler()
        if debug:
            logger.addHandler(handler)
            logger.setLevel(logging.DEBUG)
        try:
            return fn(target_flags=flags, **kwargs)
        except Interrupt as exc:
            click.echo(exc.message, err=True)
            sys.exit(EXIT_INTERRUPTED)
        except CliError as exc:
            _fail(exc, debug)
        except KeyboardInterrupt:
            _fail(CliError("interrupted", EXIT_INTERRUPTED), debug)
        except Exception as exc:
            _fail(_translate(exc), debug)
        finally:
            if debug:
                logger.removeHandler(handler)
                logger.setLevel(logging.NOTSET)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


class _StderrHandler(logging.Handler):
    """--debug: each HTTP call as one `debug:` line on the stderr of the moment."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"debug: {record.getMessage()}", err=True)


class Interrupt(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _fail(error: CliError, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    click.echo(error.line(), err=True)
    sys.exit(error.exit_code)


def _translate(exc: Exception) -> CliError:
    import botocore.exceptions as be

    if isinstance(exc, be.EndpointConnectionError):
        url = urlsplit(str(exc.kwargs.get("endpoint_url") or ""))
        return CliError(
            f"cannot reach the AWS endpoint {url.scheme}://{url.netloc}",
            EXIT_UNREACHABLE,
            hint="with --local: is `jobtracker local up` running? see --aws-endpoint",
        )
    if isinstance(exc, (be.NoCredentialsError, be.PartialCredentialsError)):
        return CliError("no AWS credentials found", EXIT_UNREACHABLE, hint="configure the AWS CLI or pass --profile")
    if isinstance(exc, be.NoRegionError):
        return CliError("no AWS region", EXIT_USAGE, hint="pass --region or set AWS_REGION")
    if isinstance(exc, be.ClientError):
        error = exc.response.get("Error", {})
        return CliError(
            f"AWS refused {exc.operation_name}: {error.get('Code')}: {error.get('Message')}", EXIT_UNREACHABLE
        )
    if isinstance(exc, be.BotoCoreError):
        return CliError(f"AWS call failed: {exc}", EXIT_UNREACHABLE)
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return CliError(f"{exc.strerror or exc}{where}", EXIT_USAGE)
    return CliError(f"unexpected {type(exc).__name__}: {exc}", EXIT_INTERNAL, hint="run with --debug for details")


def _target(flags: dict[str, Any]) -> Target:
    return connect(resolve(flags))


def _console(piped_width: int = 160) -> Console:
    """Piped output is not cut to 80 columns: tables keep their columns for grep and logs."""
    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS") or piped_width)
    return Console(highlight=False, width=width)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def _again(target: Target, command: str) -> str:
    return shlex.join(["jobtracker", *command.split(), *target.settings.target_flags()])


# -- watching ---------------------------------------------------------------------------------------
def _watch(target: Target, job_id: str, *, as_json: bool, interval: float | None, timeout: float | None) -> int:
    from jobtracker.client.views import print_outcome
    from jobtracker.client.watch import Interrupted, WatchTimeout, watch_job

    console = _console(piped_width=100)
    interval = interval if interval is not None else (0.5 if target.local else 2.0)
    try:
        job = watch_job(
            lambda: target.api.get_job(job_id),
            console=console,
            interval=interval,
            timeout=timeout,
            title=f"jobtracker · {target.label}",
            live=not as_json,
        )
    except Interrupted as exc:
        state = (exc.job or {}).get("state", "unknown")
        raise Interrupt(
            f"stopped watching; job {job_id} goes on ({state}). Resume with: {_again(target, f'watch {job_id}')}"
        ) from None
    except WatchTimeout as exc:
        state = (exc.job or {}).get("state", "unknown")
        raise CliError(
            f"job {job_id} is still {state} after {exc.seconds:.0f}s (--timeout)",
            EXIT_NOT_FINISHED,
            hint=f"resume with: {_again(target, f'watch {job_id}')}",
        ) from None
    if as_json:
        _echo_json(job)
    else:
        print_outcome(console, job, results_hint=_again(target, f"results {job_id}"))
    return EXIT_OK if job.get("state") == "COMPLETED" else EXIT_JOB_FAILED


def watch_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--timeout", type=click.FloatRange(min=0), default=None, help="Stop watching after this many seconds (exit 5)."
    )(fn)
    fn = click.option(
        "--interval", type=click.FloatRange(min=0.1), default=None, help="Seconds between polls (default 2; 0.5 local)."
    )(fn)
    return click.option("--json", "as_json", is_flag=True, help="No live display: print the final job as JSON.")(fn)


# -- commands ----------------------------------------------------------------------------------------
def _params(pairs: tuple[str, ...]) -> dict[str, Any]:
    """--param NAME=VALUE, repeatable: VALUE is read as JSON when it is JSON (101, true, {"a": 1}, "101"),
    else as text, so --param job_id=101 sends a number and --param 'branch="101"' the text."""
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise CliError(f"--param {pair!r} is not NAME=VALUE", EXIT_USAGE)
        try:
            params[name.strip()] = json.loads(value)
        except ValueError:
            params[name.strip()] = value
    return params


def param_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--param",
        "param_pairs",
        multiple=True,
        metavar="NAME=VALUE",
        help="A param of the job (repeatable); VALUE is JSON when it parses (101, true, [\"a\"]), else text.",
    )(fn)


@click.command()
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@click.option(
    "--type",
    "job_type",
    required=True,
    type=click.Choice(SUBMIT_TYPES),
    help="What the rows of FILE are, or the job to start from --param (an export, a spec type http:<name>).",
)
@param_option
@click.option(
    "--via-api",
    is_flag=True,
    help="Upload through the API (POST /uploads: presigned URLs into your own prefix, no S3 rights needed) and "
    "create the job with POST /jobs (source), instead of an upload to the inbox.",
)
@click.option("--no-watch", is_flag=True, help="Print the job id once the job exists; do not watch it.")
@watch_options
@target_options
def submit(
    target_flags: dict[str, Any],
    file: Path | None,
    job_type: str,
    param_pairs: tuple[str, ...],
    via_api: bool,
    no_watch: bool,
    as_json: bool,
    interval: float | None,
    timeout: float | None,
) -> None:
    """Start a job and watch it to the end: upload FILE (CSV, NDJSON or JSON, optionally .gz) of rows, or
    start a job of another type from its params (e.g. --type http:databricks --param job_id=101).

    Exit code: 0 COMPLETED, 1 FAILED, 5 --timeout reached, 130 Ctrl-C (the job goes on).
    """
    if job_type not in JOB_TYPES:
        if file is not None or via_api:
            raise CliError(f"{job_type} jobs start from --param, not from a FILE", EXIT_USAGE)
        body = {"type": job_type, "params": _params(param_pairs)}
        _create_and_watch(target_flags, body, no_watch=no_watch, as_json=as_json, interval=interval, timeout=timeout)
        return
    if file is None:
        raise CliError(f"{job_type} jobs need a FILE of rows", EXIT_USAGE)
    if param_pairs:
        raise CliError(f"{job_type} jobs take their rows from FILE, not --param", EXIT_USAGE)
    target = _target(target_flags)
    console = Console(stderr=True, highlight=False)
    target.api.list_jobs(limit=1)  # fail fast, before uploading, if the API is unreachable or refuses us
    size = file.stat().st_size
    if via_api:
        upload = target.api.create_upload(job_type=job_type, filename=_upload_name(file.name), size=size)
        _upload_presigned(file, size, upload, console)
        console.print(f"uploaded {file.name} ({_size(size)}) to {upload['source']}", soft_wrap=True)
        job = target.api.create_job(upload["createJob"], idempotency_key=f"cli-{uuid.uuid4()}")
        job_id = job["id"]
    else:
        bucket = target.require_inbox()
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        key = f"{INBOX_PREFIX[job_type]}{stamp}/{file.name}"
        uri = f"s3://{bucket}/{key}"
        _upload(target, file, bucket, key, size, console)
        console.print(f"uploaded {file.name} ({_size(size)}) to {uri}", soft_wrap=True)
        job_id = _wait_for_intake(target, uri, console)
    watching = {"no_watch": no_watch, "as_json": as_json, "interval": interval, "timeout": timeout}
    _watch_created(target, job_id, job_type, console, **watching)


@click.command()
@click.option(
    "--provider", required=True, type=click.Choice(TRACKABLE), help="Whose job it is (a spec type: http:<name>)."
)
@click.option("--provider-job-id", required=True, metavar="ID", help="The job's id at the provider.")
@param_option
@click.option("--no-watch", is_flag=True, help="Print the job id once the job exists; do not watch it.")
@watch_options
@target_options
def track(
    target_flags: dict[str, Any],
    provider: str,
    provider_job_id: str,
    param_pairs: tuple[str, ...],
    no_watch: bool,
    as_json: bool,
    interval: float | None,
    timeout: float | None,
) -> None:
    """Follow a provider job started elsewhere to its end, with the same results and notification as the jobs
    the tracker starts (a spec type's status request may need --param, e.g. dbt Cloud's account_id).

    Exit code: 0 COMPLETED, 1 FAILED, 5 --timeout reached, 130 Ctrl-C (the job goes on).
    """
    body: dict[str, Any] = {"type": TRACK_TYPE, "provider": provider, "providerJobId": provider_job_id}
    if param_pairs:
        body["params"] = _params(param_pairs)
    _create_and_watch(target_flags, body, no_watch=no_watch, as_json=as_json, interval=interval, timeout=timeout)


def _create_and_watch(
    target_flags: dict[str, Any],
    body: dict[str, Any],
    *,
    no_watch: bool,
    as_json: bool,
    interval: float | None,
    timeout: float | None,
) -> None:
    target = _target(target_flags)
    console = Console(stderr=True, highlight=False)
    job = target.api.create_job(body, idempotency_key=f"cli-{uuid.uuid4()}")
    label = str(body.get("provider") or body["type"])
    watching = {"no_watch": no_watch, "as_json": as_json, "interval": interval, "timeout": timeout}
    _watch_created(target, job["id"], label, console, **watching)


def _watch_created(
    target: Target,
    job_id: str,
    label: str,
    console: Console,
    *,
    no_watch: bool,
    as_json: bool,
    interval: float | None,
    timeout: float | None,
) -> None:
    console.print(f"job [bold]{job_id}[/] ({label}); Ctrl-C stops watching, not the job", soft_wrap=True)
    if no_watch:
        if as_json:
            _echo_json(target.api.get_job(job_id))
        else:
            click.echo(job_id)
        return
    sys.exit(_watch(target, job_id, as_json=as_json, interval=interval, timeout=timeout))


def _upload(target: Target, file: Path, bucket: str, key: str, size: int, console: Console) -> None:
    from boto3.s3.transfer import TransferConfig
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    s3 = target.s3()
    config = TransferConfig(multipart_threshold=16 * 1024 * 1024)
    if size < 4 * 1024 * 1024 or not console.is_terminal:
        s3.upload_file(str(file), bucket, key, Config=config)
        return
    with Progress(
        "uploading", BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console, transient=True
    ) as progress:
        task = progress.add_task("upload", total=size)
        s3.upload_file(str(file), bucket, key, Config=config, Callback=lambda sent: progress.advance(task, sent))


def _upload_name(name: str) -> str:
    """The file's name as POST /uploads takes it (letters, digits, `.`, `_`, `-`); the extension stays."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", name).lstrip("._-") or "upload"


def _upload_presigned(file: Path, size: int, upload: dict[str, Any], console: Console) -> None:
    """PUT the file to the URLs POST /uploads gave: in one request, or part by part, then complete the
    multipart upload (or abort it when a part fails, so no parts are left behind)."""
    import urllib3
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    http = urllib3.PoolManager(
        retries=urllib3.Retry(total=3, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504), allowed_methods=None),
        timeout=urllib3.Timeout(connect=10, read=300),
    )

    def send(method: str, url: str, body: bytes, content_type: str) -> Any:
        response = http.request(method, url, body=body, headers={"Content-Type": content_type})
        # S3 may answer CompleteMultipartUpload 200 with an <Error> body (S3 API reference).
        if response.status >= 300 or b"<Error>" in response.data[:512]:
            detail = response.data[:300].decode("utf-8", "replace").strip()
            raise CliError(f"upload of {file.name} failed ({method} {response.status}): {detail}", EXIT_UNREACHABLE)
        return response

    octets = "application/octet-stream"
    with (
        Progress(
            "uploading", BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console, transient=True,
            disable=not console.is_terminal,
        ) as progress,
        open(file, "rb") as source,
    ):  # fmt: skip
        task = progress.add_task("upload", total=size)
        if "url" in upload:
            send("PUT", upload["url"], source.read(), octets)
            progress.advance(task, size)
            return
        etags = []
        try:
            for part in upload["parts"]:
                data = source.read(upload["partSize"])
                etags.append((part["partNumber"], send("PUT", part["url"], data, octets).headers["ETag"]))
                progress.advance(task, len(data))
            parts = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>" for n, etag in etags)
            xml = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
            send("POST", upload["completeUrl"], xml, "application/xml")
        except BaseException:
            http.request("DELETE", upload["abortUrl"])
            raise


def _wait_for_intake(target: Target, uri: str, console: Console) -> str:
    """An upload's job id comes from the S3 event (version/sequencer): find the job by its source."""
    deadline = time.monotonic() + INTAKE_WAIT_SECONDS
    delay = 0.2 if target.local else 1.0
    with console.status("waiting for the intake to take the upload in…"):
        while True:
            token = None
            for _page in range(2):
                page = target.api.list_jobs(limit=50, next_token=token)
                for job in page.get("jobs") or []:
                    if (job.get("operationParams") or {}).get("source") == uri:
                        return str(job["id"])
                token = page.get("nextToken")
                if not token:
                    break
            if time.monotonic() > deadline:
                raise CliError(
                    f"{uri} has not become a job after {INTAKE_WAIT_SECONDS:.0f}s",
                    EXIT_NOT_FINISHED,
                    hint="is the inbox notification set up? check the intake queue and its dead-letter queue",
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 5.0)


@click.command()
@click.argument("job_id", metavar="ID")
@watch_options
@target_options
def watch(
    target_flags: dict[str, Any], job_id: str, as_json: bool, interval: float | None, timeout: float | None
) -> None:
    """Watch job ID live until it ends. Exit code: 0 COMPLETED, 1 FAILED, 5 --timeout, 130 Ctrl-C."""
    target = _target(target_flags)
    target.api.get_job(job_id)  # one clear error for an unknown id, before the live display starts
    sys.exit(_watch(target, job_id, as_json=as_json, interval=interval, timeout=timeout))


@click.command("jobs")
@click.option("--state", type=click.Choice(STATES), default=None, help="Only jobs in this state.")
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@click.option("--next-token", default=None, metavar="TOKEN", help="Continue a previous listing.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's answer as JSON.")
@target_options
def jobs(target_flags: dict[str, Any], state: str | None, limit: int, next_token: str | None, as_json: bool) -> None:
    """List jobs, newest first."""
    from jobtracker.client.views import jobs_table

    target = _target(target_flags)
    page = target.api.list_jobs(state=state, limit=limit, next_token=next_token)
    if as_json:
        _echo_json(page)
        return
    console = _console()
    found = page.get("jobs") or []
    if not found:
        console.print(f"no {state + ' ' if state else ''}jobs on the {target.label}", soft_wrap=True)
        return
    console.print(jobs_table(found, width=console.width))
    if page.get("nextToken"):
        more = f"jobs --limit {limit}" + (f" --state {state}" if state else "")
        console.print(f"more: {_again(target, more)} --next-token {page['nextToken']}", soft_wrap=True)


@click.command()
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the job (GET /jobs/{id}) as JSON.")
@target_options
def show(target_flags: dict[str, Any], job_id: str, as_json: bool) -> None:
    """One job with its batches."""
    from jobtracker.client.views import job_panel

    target = _target(target_flags)
    job = target.api.get_job(job_id)
    if as_json:
        _echo_json(job)
        return
    _console().print(job_panel(job))


@click.command()
@click.argument("job_id", metavar="ID")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for the files (default: ./<job id>).",
)
@click.option("--json", "as_json", is_flag=True, help="Print {jobId, state, dir, files: {name: path}} as JSON.")
@target_options
def results(target_flags: dict[str, Any], job_id: str, out_dir: Path | None, as_json: bool) -> None:
    """Download a finished job's files: imports, errors, rejected, manifest.json and report.html."""
    target = _target(target_flags)
    answer = target.api.get_results(job_id)
    state = answer.get("state")
    if state not in ("COMPLETED", "FAILED"):
        raise CliError(
            f"job {job_id} is {state}: its results are written when it finishes",
            EXIT_NOT_FINISHED,
            hint=f"wait with: {_again(target, f'watch {job_id}')}",
        )
    files: dict[str, str] = {k: v for k, v in (answer.get("files") or {}).items() if v}
    out = out_dir or Path(job_id)
    out.mkdir(parents=True, exist_ok=True)
    saved: dict[str, Path] = {}
    for name, url in sorted(files.items()):
        from jobtracker.client.target import bucket_and_key

        dest = out / Path(bucket_and_key(url)[1]).name
        target.download_url(url, dest)
        saved[name] = dest
    notes = []
    if "report" not in saved:
        report = _download_report(target, job_id, files.get("manifest"), out)
        if isinstance(report, Path):
            saved["report"] = report
        else:
            notes.append(report)
    if as_json:
        _echo_json({"jobId": job_id, "state": state, "dir": str(out), "files": {k: str(v) for k, v in saved.items()}})
    else:
        console = _console()
        console.print(f"job {job_id} {state}: {len(saved)} files in {out}/", soft_wrap=True)
        for _name, path in sorted(saved.items(), key=lambda item: item[1].name):
            console.print(f"  {path}  ({_size(path.stat().st_size)})", soft_wrap=True)
    for note in notes:
        click.echo(f"warning: {note}", err=True)


def _download_report(target: Target, job_id: str, manifest_url: str | None, out: Path) -> Path | str:
    """report.html sits beside manifest.json; when the API lists none (finalize writes it best effort), it is
    looked for in S3 there."""
    from jobtracker.client.target import bucket_and_key

    if manifest_url:
        bucket, manifest_key = bucket_and_key(manifest_url)
        key = manifest_key.rsplit("/", 1)[0] + "/report.html"
    else:
        bucket, key = target.results_bucket or "", f"results/{job_id}/report.html"
    bucket = target.results_bucket or bucket
    if not bucket:
        return "report.html skipped: results bucket unknown (pass --results-bucket)"
    import botocore.exceptions

    dest = out / "report.html"
    try:
        target.s3().download_file(bucket, key, str(dest))
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("404", "NoSuchKey"):
            return f"report.html not found in s3://{bucket}/{key} (jobs finished before reports existed have none)"
        return f"report.html not downloaded from s3://{bucket}/{key}: {code}"
    return dest


@click.command()
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the cancelled job as JSON.")
@target_options
def cancel(target_flags: dict[str, Any], job_id: str, as_json: bool) -> None:
    """Cancel job ID: its execution stops, it ends FAILED with code `cancelled`; what was imported stays."""
    from jobtracker.client.views import print_outcome

    target = _target(target_flags)
    job = target.api.cancel_job(job_id)
    if as_json:
        _echo_json(job)
        return
    print_outcome(_console(), job, results_hint=_again(target, f"results {job_id}"))


@click.command()
@click.argument("job_id", metavar="ID")
@click.option("--no-watch", is_flag=True, help="Start the retry and return; do not watch it.")
@watch_options
@target_options
def retry(
    target_flags: dict[str, Any],
    job_id: str,
    no_watch: bool,
    as_json: bool,
    interval: float | None,
    timeout: float | None,
) -> None:
    """Run the unfinished batches of FAILED job ID again (accepted ones are polled, not re-sent), then watch.

    Exit code: 0 COMPLETED, 1 FAILED, 4 the job cannot be retried, 5 --timeout, 130 Ctrl-C.
    """
    target = _target(target_flags)
    job = target.api.retry_job(job_id)
    again = [b for b in job.get("batches") or [] if b.get("state") in ("PENDING", "RUNNING")]
    Console(stderr=True, highlight=False).print(
        f"job [bold]{job_id}[/] is {job.get('state')} again: {len(again)} of {len(job.get('batches') or [])} "
        "batches to finish; Ctrl-C stops watching, not the job",
        soft_wrap=True,
    )
    if no_watch:
        if as_json:
            _echo_json(job)
        else:
            click.echo(job_id)
        return
    sys.exit(_watch(target, job_id, as_json=as_json, interval=interval, timeout=timeout))


def _size(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} bytes"


COMMANDS = (submit, track, watch, jobs, show, results, cancel, retry)
