"""Named errors. Handlers let these escape so the state machine retries or catches them by name
(a Lambda error's `errorType` is the exception's class name)."""

from __future__ import annotations


class TrackerError(Exception):
    """Base error with a stable snake_case code for job records, API answers and notifications."""

    code = "internal_error"
    # For an error a provider answered: its HTTP status and its own error code ("" when the body was not the
    # provider's error format, e.g. a proxy's HTML page). None/"" for everything else.
    status: int | None = None
    provider_code: str = ""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code

    def answered(self, status: int, provider_code: str) -> TrackerError:
        """This error with the provider's answer that caused it (status and the provider's own error code)."""
        self.status, self.provider_code = status, provider_code
        return self

    def __str__(self) -> str:
        # Lambda reports str(exc) as errorMessage; the ASL's failure handler reads the code back from it.
        return f"[{self.code}] {self.message}"


class ProviderTransientError(TrackerError):
    """5xx, connection reset, read timeout, malformed answer: safe to retry (submits carry an Idempotency-Key)."""

    code = "provider_unavailable"
    # The provider stored this failure under the request's Idempotency-Key (FullStory's own 500): the retry
    # must carry a new key, since the old one can only replay the failure.
    burns_key: bool = False


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
