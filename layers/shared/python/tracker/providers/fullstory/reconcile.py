"""Which sent rows FullStory listed, and how: the reconciliation of one batch import.

FullStory reports a finished batch twice: the status counts (``imports``, ``errors``) and the listings
(``/imports``, ``/errors``). Neither names the row of the request each record came from, and they need
not agree with the rows sent: the users import is an **upsert** (FullStory's own example, seed 002 "Asynchronous
Workflows", answers a status of 104 imports while the imports listing holds 103 records), and a listing can
end early (a repeated ``next_page_token``). So each sent row is matched to what was listed:

* an error record echoes the request that failed (``user`` / ``event``, specs/fullstory "FailedUserImport",
  "FailedEventsImport"): it is matched to the first unmatched sent row with the same content, else (users)
  the same ``uid``, else (events) the same name/user/session;
* users: a row whose ``uid`` has an import record is imported -- every row of that uid, since the upsert
  folds them into one record; rows without a ``uid`` (anonymous users) are matched by count, in order;
* events: when the import records are as many as the rows left, every row left is imported (by position);
  otherwise each record is matched to a row with the same name/user/session, in order;
* every other row is **unlisted**: named by the caller one by one, never a reason to fail the job.

Pure code: the caller reads the batch body and the listing parts and writes the results.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

_ERROR_ITEM_KEY = {"users": "user", "events": "event"}


@dataclass
class Reconciliation:
    """The fate of each sent row of one batch, and what the listings held."""

    rows: int = 0
    imported: int = 0  # rows listed as imported (every row of an upserted uid)
    provider_errors: int = 0  # rows listed as errors
    unlisted: list[int] = field(default_factory=list)  # positions (0-based) of rows listed neither way
    listed_imports: int = 0  # import records listed
    listed_errors: int = 0  # error records listed
    unmatched_imports: int = 0  # import records that match no sent row
    unmatched_errors: int = 0  # error records that match no sent row (each still counts as one error record)


def _digest(value: Any) -> bytes:
    return hashlib.blake2b(
        json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(), digest_size=16
    ).digest()


def _uid(request: Any) -> str | None:
    uid = request.get("uid") if isinstance(request, dict) else None
    return uid if isinstance(uid, str) else None


def _event_signature(event: Any) -> tuple[Any, ...]:
    """What an event import record keeps of its request whatever FullStory adds (an id, a default timestamp,
    the shared context): its name and who it happened to."""
    if not isinstance(event, dict):
        return (None, None, None)
    user = event.get("user") if isinstance(event.get("user"), dict) else {}
    session = event.get("session") if isinstance(event.get("session"), dict) else {}
    return (event.get("name"), user.get("uid") or user.get("id"), session.get("id"))


class _Rows:
    """The sent rows still unmatched, findable by content and by a second key."""

    def __init__(self) -> None:
        self.by_digest: dict[bytes, deque[int]] = defaultdict(deque)
        self.by_key: dict[Any, deque[int]] = defaultdict(deque)
        self.fate: list[str | None] = []
        self.keys: list[Any] = []

    def add(self, digest: bytes, key: Any) -> None:
        position = len(self.fate)
        self.fate.append(None)
        self.keys.append(key)
        if digest:  # b"": nothing will be looked up by content
            self.by_digest[digest].append(position)
        self.by_key[key].append(position)

    def take(self, digest: bytes, key: Any) -> int | None:
        """The first unmatched row with this content, else with this key; None when there is none."""
        for queue in (self.by_digest.get(digest), self.by_key.get(key)):
            while queue:
                position = queue.popleft()
                if self.fate[position] is None:
                    return position
        return None


def reconcile(
    kind: str,
    sent: Iterable[dict[str, Any]],
    imports: Iterable[dict[str, Any]],
    errors: Iterable[dict[str, Any]],
) -> Reconciliation:
    """Match the rows sent in one batch (``kind``: users or events) to its listed imports and errors."""
    users = kind == "users"
    item_key = _ERROR_ITEM_KEY[kind]
    # Errors are few, so they are read first: without any, no row needs hashing by content.
    echoes = [record.get(item_key) if isinstance(record, dict) else None for record in errors]
    rows = _Rows()
    for request in sent:
        rows.add(_digest(request) if echoes else b"", _uid(request) if users else _event_signature(request))
    result = Reconciliation(rows=len(rows.fate), listed_errors=len(echoes))

    for echoed in echoes:
        key = _uid(echoed) if users else _event_signature(echoed)
        position = rows.take(_digest(echoed), key)
        if position is None:
            result.unmatched_errors += 1
        else:
            rows.fate[position] = "error"
            result.provider_errors += 1

    imported_uids: set[str] = set()
    anonymous = 0
    signatures: Counter[tuple[Any, ...]] = Counter()
    for record in imports:
        result.listed_imports += 1
        if users:
            uid = _uid(record)
            if uid is None:
                anonymous += 1
            else:
                imported_uids.add(uid)
        else:
            signatures[_event_signature(record)] += 1

    left = [position for position, fate in enumerate(rows.fate) if fate is None]
    if users:
        matched_uids: set[str] = set()
        for position in left:
            uid = rows.keys[position]
            if uid is not None and uid in imported_uids:
                rows.fate[position] = "imported"
                matched_uids.add(uid)
            elif uid is None and anonymous:
                rows.fate[position] = "imported"
                anonymous -= 1
        result.unmatched_imports = len(imported_uids - matched_uids) + anonymous
    elif result.listed_imports >= len(left):
        for position in left:
            rows.fate[position] = "imported"
        result.unmatched_imports = result.listed_imports - len(left)
    else:
        for position in left:
            signature = rows.keys[position]
            if signatures[signature] > 0:
                signatures[signature] -= 1
                rows.fate[position] = "imported"
        result.unmatched_imports = sum(signatures.values())

    for position, fate in enumerate(rows.fate):
        if fate == "imported":
            result.imported += 1
        elif fate is None:
            result.unlisted.append(position)
    return result
