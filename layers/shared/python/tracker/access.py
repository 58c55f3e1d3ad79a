"""Who may see which job (the API's access model).

Every job records its owner: the IAM principal's unique id (an IAM user's `AIDA...`, or a role's
`AROA...` so that every session of a role shares its jobs) taken from the API caller or from the S3
event's `principalId`. A caller sees the jobs it owns; a caller whose ARN starts with one of the stack's
`AdminPrincipals` prefixes sees every job. Jobs of other owners answer 404, not 403, so ids of other
people's jobs cannot be probed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
