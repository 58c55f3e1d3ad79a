"""Errors the command line reports as one line on stderr, and its exit codes (README: Command line)."""

from __future__ import annotations

EXIT_OK = 0  # the command worked; for submit/watch: the job ended COMPLETED
EXIT_JOB_FAILED = 1  # submit/watch: the job ended FAILED
EXIT_USAGE = 2  # bad arguments, options or configuration
EXIT_UNREACHABLE = 3  # the stack could not be found or reached (credentials, region, network, AWS errors)
EXIT_API = 4  # the API refused the request (unknown job, invalid input) or failed
EXIT_NOT_FINISHED = 5  # the job has not finished: results asked too early, or --timeout reached while watching
EXIT_INTERRUPTED = 130  # Ctrl-C: watching stopped, the job goes on
EXIT_INTERNAL = 70  # a bug in the command line itself (run with --debug)


class CliError(Exception):
    """A problem to show as `error: <message>` with this exit code."""

    def __init__(
        self, message: str, exit_code: int = EXIT_API, *, hint: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.hint = hint
        self.status = status  # the API's HTTP status, when the API answered

    @property
    def transient(self) -> bool:
        """Worth retrying while watching: no answer at all, throttled, or a server-side failure."""
        if self.status is None:
            return self.exit_code == EXIT_UNREACHABLE
        return self.status == 429 or self.status >= 500

    def line(self) -> str:
        return f"error: {self.message}" + (f" ({self.hint})" if self.hint else "")
