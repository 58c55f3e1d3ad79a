"""`jobtracker` command line: simulators, the offline stack and the demo."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import click


@click.group()
def main() -> None:
    """Event-driven job tracker for provider batch APIs (FullStory first)."""


@main.group()
def simulate() -> None:
    """Provider simulators on 127.0.0.1 (not deployed)."""


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
    "--in-progress-limit",
    default=200,
    show_default=True,
    type=int,
    help="Answer 429 to new batches while this many are PROCESSING.",
)
@click.option("--retry-after", default=1, show_default=True, type=int, help="Retry-After seconds on 429.")
def simulate_fullstory(
    host: str,
    port: int,
    api_key: str | None,
    processing_seconds: float,
    polls_to_complete: int | None,
    page_size: int,
    in_progress_limit: int,
    retry_after: int,
) -> None:
    """FullStory v2 users/events batch import API."""
    from jobtracker.simulators.fullstory import SimulatorConfig, serve

    serve(
        SimulatorConfig(
            api_key=api_key,
            polls_to_complete=polls_to_complete,
            processing_seconds=processing_seconds,
            page_size=page_size,
            in_progress_limit=in_progress_limit,
            retry_after_seconds=retry_after,
        ),
        host=host,
        port=port,
    )


@main.group()
def local() -> None:
    """The offline stack (moto + simulator + the real handlers and ASL)."""


@local.command("up")
@click.option("--api-port", default=8000, show_default=True, type=int, help="REST API on 127.0.0.1.")
@click.option("--aws-port", default=5000, show_default=True, type=int, help="Emulated AWS endpoint on 127.0.0.1.")
@click.option("--simulator-port", default=8900, show_default=True, type=int)
@click.option("--processing-seconds", default=5.0, show_default=True, type=float)
@click.option("--poll-seconds", default=2, show_default=True, type=int, help="First wait between status polls.")
def local_up(api_port: int, aws_port: int, simulator_port: int, processing_seconds: float, poll_seconds: int) -> None:
    """Run the stack until Ctrl-C: curl the API, or `aws --endpoint-url` to upload into the inbox."""
    from jobtracker.local.session import OfflineSession
    from jobtracker.simulators.fullstory import SimulatorConfig

    session = OfflineSession(
        parameters={"PollMinSeconds": poll_seconds, "PollMaxSeconds": max(poll_seconds, 10), "LogLevel": "INFO"},
        simulator_config=SimulatorConfig(polls_to_complete=None, processing_seconds=processing_seconds),
        simulator_port=simulator_port,
        api_port=api_port,
        aws_port=aws_port,
    )
    with session:
        stack = session.stack
        click.echo(f"REST API        {session.api.base_url if session.api else '-'}")
        click.echo(f"AWS endpoint    {session.aws_endpoint}   (any credentials; region us-east-1)")
        click.echo(f"FullStory sim   {session.simulator.base_url}")
        click.echo(f"inbox bucket    {stack.inbox_bucket}")
        click.echo(f"results bucket  {stack.results_bucket}")
        click.echo(f"jobs table      {stack.output('JobsTable')}")
        click.echo(
            f"upload:  aws --endpoint-url {session.aws_endpoint} s3 cp users.csv s3://{stack.inbox_bucket}/inbox/users/"
        )
        click.echo(f"watch:   curl -s {session.api.base_url if session.api else ''}/jobs")
        click.echo("Ctrl-C stops.", err=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            click.echo("stopping", err=True)


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
    type=click.Choice(["fullstory.users", "fullstory.events"]),
    default="fullstory.users",
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
def demo(file: Path | None, job_type: str, out_dir: Path, batch_rows: int) -> None:
    """Run one job end to end offline and watch it; exit 0 only if COMPLETED with exact accounting."""
    from jobtracker.demo import SAMPLE, run_demo

    sys.exit(run_demo(file=file or SAMPLE, job_type=job_type, out_dir=out_dir, batch_rows=batch_rows))


if __name__ == "__main__":
    main()
