"""Reconciliation of one batch import (tracker.providers.fullstory.reconcile): which rows sent FullStory's
listings name as imported or as errors, and which they leave unlisted."""

from __future__ import annotations

from tracker.providers.fullstory.reconcile import reconcile


def users(*uids: str | None) -> list[dict]:
    return [{"uid": uid} if uid is not None else {"properties": {"anonymous": True}} for uid in uids]


def test_every_row_listed_is_imported_or_an_error_and_nothing_is_unlisted():
    sent = users("a", "b", "c")
    result = reconcile("users", sent, [{"id": "1", "uid": "a"}, {"id": "2", "uid": "c"}], [{"user": {"uid": "b"}}])
    assert (result.rows, result.imported, result.provider_errors, result.unlisted) == (3, 2, 1, [])
    assert (result.listed_imports, result.listed_errors, result.unmatched_imports) == (2, 1, 0)


def test_an_upserted_uid_is_one_record_and_every_row_of_it_is_imported():
    """Seed 002: 104 imports reported, 103 records listed."""
    sent = users(*[f"u{i}" for i in range(103)], "u7")
    result = reconcile("users", sent, [{"uid": f"u{i}"} for i in range(103)], [])
    assert (result.imported, result.listed_imports, result.unlisted) == (104, 103, [])


def test_rows_not_listed_are_named_by_position():
    result = reconcile("users", users("a", "b", "c", "d"), [{"uid": "a"}, {"uid": "c"}], [])
    assert (result.imported, result.unlisted) == (2, [1, 3])


def test_one_row_of_a_uid_refused_and_another_imported_are_told_apart_by_the_request_the_error_echoes():
    sent = [{"uid": "a", "email": "ok@x.io"}, {"uid": "a", "email": "not-an-email"}]
    result = reconcile("users", sent, [{"uid": "a", "email": "ok@x.io"}], [{"user": sent[1], "code": "invalid_email"}])
    assert (result.imported, result.provider_errors, result.unlisted) == (1, 1, [])


def test_anonymous_users_are_matched_by_count_in_order():
    result = reconcile("users", users(None, "a", None, None), [{"uid": "a"}, {"id": "9"}, {"id": "8"}], [])
    assert (result.imported, result.unlisted) == (3, [3])


def test_records_that_match_no_row_are_counted_not_invented_into_rows():
    result = reconcile("users", users("a"), [{"uid": "a"}, {"uid": "zz"}], [{"user": {"uid": "qq"}}])
    assert (result.imported, result.provider_errors, result.unmatched_imports, result.unmatched_errors) == (1, 0, 1, 1)


def test_events_are_matched_by_position_when_the_counts_allow():
    sent = [{"name": "a"}, {"name": "b"}, {"name": "c"}]
    imports = [{"name": "a", "id": "1"}, {"name": "c", "id": "3", "timestamp": "2026-01-01T00:00:00Z"}]
    result = reconcile("events", sent, imports, [{"event": {"name": "b"}, "code": "bad"}])
    assert (result.imported, result.provider_errors, result.unlisted) == (2, 1, [])


def test_events_fewer_records_than_rows_are_matched_by_name_user_and_session():
    sent = [
        {"name": "click", "user": {"uid": "u1"}},
        {"name": "click", "user": {"uid": "u2"}},
        {"name": "buy", "user": {"uid": "u1"}},
    ]
    imports = [{"name": "buy", "user": {"uid": "u1", "id": "7"}}, {"name": "click", "user": {"uid": "u2"}}]
    result = reconcile("events", sent, imports, [])
    assert (result.imported, result.unlisted) == (2, [0])
