"""Who may see which job (the API's access model).

Every job records its owner: the IAM principal's unique id (an IAM user's `AIDA...`, or a role's
`AROA...` so that every session of a role shares its jobs) taken from the API caller or from the S3
event's `principalId`. A caller sees the jobs it owns; a caller whose ARN starts with one of the stack's
`AdminPrincipals` prefixes sees every job. Jobs of other owners answer 404, not 403, so ids of other
people's jobs cannot be probed.

Files come in through the caller's own prefix of the inbox bucket, `uploads/<owner>/` (POST /uploads
hands out presigned URLs there, so a caller needs no S3 rights), and `POST /jobs {"source"}` takes only
an object under that prefix: nobody can make the tracker read, and send back as results, a file someone
else staged. AdminPrincipals may name any object of the inbox bucket (they see every job anyway; e.g. to
take in a file an operator copied into the bucket). The prefix is outside `inbox/`, so an upload there
starts nothing by itself: the job is created by POST /jobs, owned by its caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

UPLOADS_PREFIX = "uploads/"  # template.yaml's inbox lifecycle rule expires it (tests/contract/test_aws_limits.py)


@dataclass(frozen=True, slots=True)
class Caller:
    arn: str
    owner: str
    admin: bool

    def creator_token(self) -> dict[str, str]:
        return {"id": self.arn, "description": f"API caller {self.arn}"}


def owner_id(principal: str | None) -> str:
    """`AWS:AIDAEXAMPLE` -> `AIDAEXAMPLE`; `AROAEXAMPLE:session` -> `AROAEXAMPLE`; an ARN stays itself."""
    if not principal:
        return "unknown"
    if principal.startswith("arn:"):
        return principal
    principal = principal.removeprefix("AWS:")
    return principal.split(":", 1)[0] or "unknown"


def caller_from_identity(identity: dict[str, Any], admin_prefixes: tuple[str, ...]) -> Caller:
    """From API Gateway's requestContext.identity (AWS_IAM authorization filled it in)."""
    arn = identity.get("userArn") or identity.get("caller") or "anonymous"
    unique = identity.get("user") or identity.get("caller") or arn
    return Caller(arn=arn, owner=owner_id(unique), admin=any(p and arn.startswith(p) for p in admin_prefixes))


def can_see(caller: Caller, job: dict[str, Any]) -> bool:
    return caller.admin or job.get("ownerId") == caller.owner


def upload_prefix(caller: Caller) -> str:
    """The caller's own key prefix in the inbox bucket (the owner id quoted, so no two owners share one)."""
    return f"{UPLOADS_PREFIX}{quote(caller.owner, safe='')}/"


def may_read_source(caller: Caller, key: str) -> bool:
    """Whether `POST /jobs {"source"}` may take this key of the inbox bucket for this caller."""
    return caller.admin or key.startswith(upload_prefix(caller))
