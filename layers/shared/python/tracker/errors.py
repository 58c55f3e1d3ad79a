"""Named errors. Handlers let these escape so the state machine retries or catches them by name
(a Lambda error's `errorType` is the exception's class name)."""

from __future__ import annotations


class TrackerError(Exception):
    """Base error with a stable snake_case code for job records, API answers and notifications."""

    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code

    def __str__(self) -> str:
        # Lambda reports str(exc) as errorMessage; the ASL's failure handler reads the code back from it.
        return f"[{self.code}] {self.message}"


class ProviderTransientError(TrackerError):
    """5xx, connection reset, read timeout, malformed answer: safe to retry (submits carry an Idempotency-Key)."""

    code = "provider_unavailable"


class ProviderThrottledError(TrackerError):
    """429 where the caller cannot turn it into a state-machine wait (e.g. mid-way through paging results)."""

    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderAuthError(TrackerError):
    """401/403: retrying cannot help; the job ends FAILED."""

    code = "unauthorized"


class ProviderRejectedError(TrackerError):
    """4xx other than auth and throttling: the provider refuses the request itself."""

    code = "provider_rejected"


class JobNotFoundError(TrackerError):
    code = "not_found"
