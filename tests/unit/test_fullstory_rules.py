"""FullStory's request rules (tracker/providers/fullstory/rules.py) for users and events, through the
core's make_row/validate_request and readers: every documented limit at and past its edge."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from tracker.ingest import InputFormat, Rejected, Row, make_row, read_requests, validate_request
from tracker.providers.fullstory import EVENT_RULES as EVENTS
from tracker.providers.fullstory import USER_RULES as USERS
from tracker.providers.fullstory.limits import (
    MAX_DISPLAY_NAME_CHARS,
    MAX_EMAIL_CHARS,
    MAX_PROPERTIES,
    MAX_PROPERTY_NAME_CHARS,
    MAX_PROPERTY_VALUE_BYTES,
    MAX_UID_CHARS,
)


def props(n: int) -> dict:
    return {f"p{i}": i for i in range(n)}


def sized_string(total_json_bytes: int, char: str = "x") -> str:
    """A string whose JSON encoding (quotes included) is exactly `total_json_bytes` UTF-8 bytes."""
    width = len(char.encode())
    assert (total_json_bytes - 2) % width == 0
    return char * ((total_json_bytes - 2) // width)


LIMIT = MAX_PROPERTY_VALUE_BYTES
USER_CASES: list[tuple[str, Any, str | None]] = [
    # anonymous / identity fields
    ("uid only", {"uid": "u"}, None),
    ("email only (anonymous)", {"email": "a@example.com"}, None),
    ("display_name only", {"display_name": "Ann"}, None),
    ("properties only", {"properties": {"a": 1}}, None),
    ("fullstory id", {"id": "123"}, None),
    ("schema allowed", {"uid": "u", "schema": {"properties": {"a": "str"}}}, None),
    ("nulls are absent", {"uid": None, "email": "e", "display_name": None, "properties": None}, None),
    ("empty request", {}, "empty_request"),
    ("only nulls", {"uid": None}, "empty_request"),
    ("only schema", {"schema": {}}, "empty_request"),
    ("unknown field", {"uid": "u", "name": "x"}, "unknown_field"),
    ("uid not a string", {"uid": 5}, "invalid_type"),
    ("email not a string", {"email": ["a"]}, "invalid_type"),
    ("id not a string", {"id": 5}, "invalid_type"),
    ("display_name bool", {"display_name": True}, "invalid_type"),
    ("schema not object", {"uid": "u", "schema": "x"}, "invalid_type"),
    # lengths
    ("uid at limit", {"uid": "u" * MAX_UID_CHARS}, None),
    ("uid over", {"uid": "u" * (MAX_UID_CHARS + 1)}, "value_too_long"),
    ("uid multibyte at limit", {"uid": "ü" * MAX_UID_CHARS}, None),
    ("display_name at limit", {"display_name": "d" * MAX_DISPLAY_NAME_CHARS}, None),
    ("display_name over", {"display_name": "d" * (MAX_DISPLAY_NAME_CHARS + 1)}, "value_too_long"),
    ("email at limit", {"email": "e" * MAX_EMAIL_CHARS}, None),
    ("email over", {"email": "e" * (MAX_EMAIL_CHARS + 1)}, "value_too_long"),
    # properties: type and count
    ("properties list", {"properties": [1]}, "invalid_type"),
    ("properties string", {"properties": "a=1"}, "invalid_type"),
    ("empty properties", {"uid": "u", "properties": {}}, None),
    ("500 properties", {"properties": props(MAX_PROPERTIES)}, None),
    ("501 properties", {"properties": props(MAX_PROPERTIES + 1)}, "too_many_properties"),
    ("500 with nested keys", {"properties": {"a": props(MAX_PROPERTIES - 1)}}, None),
    ("501 with nested keys", {"properties": {"a": props(MAX_PROPERTIES)}}, "too_many_properties"),
    ("501 deep nested", {"properties": {"a": {"b": props(MAX_PROPERTIES - 1)}}}, "too_many_properties"),
    # property names
    ("name single letter", {"properties": {"a": 1}}, None),
    ("name with digits/underscore", {"properties": {"A_b9_": 1}}, None),
    ("name starts with digit", {"properties": {"1a": 1}}, "invalid_property_name"),
    ("name starts with underscore", {"properties": {"_a": 1}}, "invalid_property_name"),
    ("name with dash", {"properties": {"a-b": 1}}, "invalid_property_name"),
    ("name with space", {"properties": {"a b": 1}}, "invalid_property_name"),
    ("name with dot", {"properties": {"a.b": 1}}, "invalid_property_name"),
    ("name non-ascii letter", {"properties": {"é": 1}}, "invalid_property_name"),
    ("name empty", {"properties": {"": 1}}, "invalid_property_name"),
    ("name trailing newline", {"properties": {"a\n": 1}}, "invalid_property_name"),
    ("nested name invalid", {"properties": {"a": {"b-c": 1}}}, "invalid_property_name"),
    ("nested names valid", {"properties": {"a": {"b": {"c": 1}}}}, None),
    ("name at 512", {"properties": {"n" * MAX_PROPERTY_NAME_CHARS: 1}}, None),
    ("name at 513", {"properties": {"n" * (MAX_PROPERTY_NAME_CHARS + 1): 1}}, "property_name_too_long"),
    ("dotted path at 512", {"properties": {"a" * 255: {"b" * 256: 1}}}, None),
    ("dotted path at 513", {"properties": {"a" * 256: {"b" * 256: 1}}}, "property_name_too_long"),
    ("names in arrays are not properties", {"properties": {"a": [{"not-a-name": 1}]}}, None),
    # property value size (compact UTF-8 JSON)
    ("value at limit", {"properties": {"s": sized_string(LIMIT)}}, None),
    ("value over", {"properties": {"s": sized_string(LIMIT + 1)}}, "property_value_too_large"),
    ("multibyte value at limit", {"properties": {"s": sized_string(LIMIT, "é")}}, None),
    ("multibyte value over", {"properties": {"s": sized_string(LIMIT + 2, "é")}}, "property_value_too_large"),
    ("4-byte chars at limit", {"properties": {"s": sized_string(LIMIT - 2, "😀") + "x"}}, None),
    ("escaped chars count", {"properties": {"s": "\n" * ((LIMIT - 2) // 2 + 1)}}, "property_value_too_large"),
    ("nested leaf over", {"properties": {"a": {"s": sized_string(LIMIT + 1)}}}, "property_value_too_large"),
    (
        "nested leaves each under",
        {"properties": {"a": {"s": sized_string(LIMIT), "t": sized_string(LIMIT)}}},
        None,
    ),
    ("array value at limit", {"properties": {"l": ["x" * (LIMIT - 4)]}}, None),
    ("array value over", {"properties": {"l": ["x" * (LIMIT - 3)]}}, "property_value_too_large"),
    ("many values under", {"properties": {f"p{i}": sized_string(LIMIT) for i in range(3)}}, None),
    # encoding
    ("unpaired surrogate", {"uid": "\ud800"}, "invalid_utf8"),
    ("infinite float", {"properties": {"f": float("inf")}}, "invalid_json"),
    (
        "request over line limit",
        {"properties": {f"p{i}": sized_string(LIMIT) for i in range(130)}},
        "request_too_large",
    ),
]


@pytest.mark.parametrize(("request_", "code"), [c[1:] for c in USER_CASES], ids=[c[0] for c in USER_CASES])
def test_users_validation(request_: Any, code: str | None) -> None:
    problem = validate_request(USERS, request_)
    assert (problem[0] if problem else None) == code, problem
    if problem:
        assert problem[1].endswith(".") and problem[1][0].isupper()


TS = "2022-03-15T14:23:23Z"
EVENT_CASES: list[tuple[str, Any, str | None]] = [
    ("minimal", {"name": "Signed Up"}, None),
    (
        "full",
        {
            "name": "Order",
            "timestamp": TS,
            "user": {"uid": "u1"},
            "context": {
                "browser": {"url": "https://x"},
                "device": {"screen_width": 3},
                "mobile": {},
                "location": {},
            },
            "properties": {"total": 9.5, "items": [1, 2], "meta": {"source": "web"}},
            "schema": {"properties": {"total": "real"}},
        },
        None,
    ),
    ("session id", {"name": "n", "session": {"id": "1:2"}}, None),
    ("most recent with user", {"name": "n", "user": {"id": "9"}, "session": {"use_most_recent": True}}, None),
    ("most recent false", {"name": "n", "session": {"use_most_recent": False}}, None),
    ("missing name", {"timestamp": TS}, "missing_field"),
    ("null name", {"name": None}, "missing_field"),
    ("empty name", {"name": ""}, "empty_field"),
    ("blank name", {"name": "  "}, "empty_field"),
    ("name not string", {"name": 5}, "invalid_type"),
    ("unknown field", {"name": "n", "uid": "u"}, "unknown_field"),
    ("shared per request", {"name": "n", "shared": {}}, "unknown_field"),
    # timestamps
    # timestamps: RFC 3339 date-time with Z or an offset (the spec's example), nothing else of ISO 8601
    ("ts offset", {"name": "n", "timestamp": "2022-03-15T14:23:23.123+05:30"}, None),
    ("ts negative offset", {"name": "n", "timestamp": "2022-03-15T14:23:23-08:00"}, None),
    ("ts lower-case t and z", {"name": "n", "timestamp": "2022-03-15t14:23:23.5z"}, None),
    ("ts nanoseconds", {"name": "n", "timestamp": "2022-03-15T14:23:23.123456789Z"}, None),
    ("ts date only", {"name": "n", "timestamp": "2022-03-15"}, "invalid_timestamp"),
    ("ts naive", {"name": "n", "timestamp": "2022-03-15T14:23:23"}, "invalid_timestamp"),
    ("ts no seconds", {"name": "n", "timestamp": "2022-03-15T14:23Z"}, "invalid_timestamp"),
    ("ts basic format", {"name": "n", "timestamp": "20220315T142323Z"}, "invalid_timestamp"),
    ("ts basic format naive", {"name": "n", "timestamp": "20220315T142323"}, "invalid_timestamp"),
    ("ts week date", {"name": "n", "timestamp": "2022-W11-2"}, "invalid_timestamp"),
    ("ts week date time", {"name": "n", "timestamp": "2022-W11-2T14:23:23Z"}, "invalid_timestamp"),
    ("ts ordinal date", {"name": "n", "timestamp": "2022-074"}, "invalid_timestamp"),
    ("ts offset without colon", {"name": "n", "timestamp": "2022-03-15T14:23:23+0530"}, "invalid_timestamp"),
    ("ts offset out of range", {"name": "n", "timestamp": "2022-03-15T14:23:23+24:00"}, "invalid_timestamp"),
    ("ts hour 24", {"name": "n", "timestamp": "2022-03-15T24:00:00Z"}, "invalid_timestamp"),
    ("ts wide digits", {"name": "n", "timestamp": "\uff12\uff10\uff12\uff12-03-15T14:23:23Z"}, "invalid_timestamp"),
    ("ts space separator", {"name": "n", "timestamp": "2022-03-15 14:23:23Z"}, "invalid_timestamp"),
    ("ts other separator", {"name": "n", "timestamp": "2022-03-15x14:23:23"}, "invalid_timestamp"),
    ("ts garbage", {"name": "n", "timestamp": "yesterday"}, "invalid_timestamp"),
    ("ts invalid date", {"name": "n", "timestamp": "2022-02-30T00:00:00Z"}, "invalid_timestamp"),
    ("ts empty", {"name": "n", "timestamp": ""}, "invalid_timestamp"),
    ("ts epoch number", {"name": "n", "timestamp": 1647354203}, "invalid_type"),
    # nested objects
    ("user not object", {"name": "n", "user": "u1"}, "invalid_type"),
    ("user unknown key", {"name": "n", "user": {"email": "x"}}, "unknown_field"),
    ("user uid at limit", {"name": "n", "user": {"uid": "u" * MAX_UID_CHARS}}, None),
    ("user uid over", {"name": "n", "user": {"uid": "u" * (MAX_UID_CHARS + 1)}}, "value_too_long"),
    ("user uid type", {"name": "n", "user": {"uid": 1}}, "invalid_type"),
    ("session not object", {"name": "n", "session": "1:2"}, "invalid_type"),
    ("session unknown key", {"name": "n", "session": {"uid": "x"}}, "unknown_field"),
    (
        "session id with user",
        {"name": "n", "session": {"id": "1:2"}, "user": {"uid": "u"}},
        "conflicting_fields",
    ),
    ("most recent without user", {"name": "n", "session": {"use_most_recent": True}}, "missing_field"),
    (
        "most recent not bool",
        {"name": "n", "user": {"uid": "u"}, "session": {"use_most_recent": "yes"}},
        "invalid_type",
    ),
    ("context not object", {"name": "n", "context": []}, "invalid_type"),
    ("context unknown key", {"name": "n", "context": {"web": {}}}, "unknown_field"),
    ("context browser not object", {"name": "n", "context": {"browser": "chrome"}}, "invalid_type"),
    ("schema not object", {"name": "n", "schema": []}, "invalid_type"),
    # properties follow the users rules
    ("properties not object", {"name": "n", "properties": [1]}, "invalid_type"),
    ("props 500", {"name": "n", "properties": props(MAX_PROPERTIES)}, None),
    ("props 501", {"name": "n", "properties": props(MAX_PROPERTIES + 1)}, "too_many_properties"),
    ("props bad name", {"name": "n", "properties": {"9x": 1}}, "invalid_property_name"),
    (
        "props value over",
        {"name": "n", "properties": {"s": sized_string(LIMIT + 1)}},
        "property_value_too_large",
    ),
]


@pytest.mark.parametrize(("request_", "code"), [c[1:] for c in EVENT_CASES], ids=[c[0] for c in EVENT_CASES])
def test_events_validation(request_: Any, code: str | None) -> None:
    problem = validate_request(EVENTS, request_)
    assert (problem[0] if problem else None) == code, problem


@pytest.mark.parametrize("request_", [[], "x", None, 5])
def test_non_object_request(request_: Any) -> None:
    assert validate_request(USERS, request_) == ("invalid_type", "A request must be a JSON object.")


def test_reasons_name_fields_but_never_values() -> None:
    secret = "s3cr3t-VALUE"
    cases = [
        {"uid": secret * 30},
        {"email": secret * 20},
        {"properties": {"pw": secret * 1000}},
        {"properties": {"pw": {"inner": secret * 1000}}},
        {"uid": "u", "properties": {"bad-name": secret}},
    ]
    reasons = [validate_request(USERS, c) for c in cases]
    reasons.append(validate_request(EVENTS, {"name": "n", "timestamp": secret}))
    for problem in reasons:
        assert problem is not None
        assert secret not in problem[1]
    assert "'pw'" in reasons[2][1] and str(LIMIT) in reasons[2][1]  # type: ignore[index]
    assert "'pw.inner'" in reasons[3][1]  # type: ignore[index]
    assert "'bad-name'" in reasons[4][1]  # type: ignore[index]
    assert "'uid'" in reasons[0][1] and str(MAX_UID_CHARS) in reasons[0][1]  # type: ignore[index]


def test_make_row_encodes_compactly() -> None:
    row = make_row(USERS, {"uid": "ü", "properties": {"a": [1, 2.5, None]}}, line=7)
    assert row == Row(
        7,
        {"uid": "ü", "properties": {"a": [1, 2.5, None]}},
        '{"uid":"ü","properties":{"a":[1,2.5,null]}}'.encode(),
    )
    rejected = make_row(USERS, {"uid": "\udc80"}, line=3)
    assert isinstance(rejected, Rejected) and rejected.code == "invalid_utf8"
    json.dumps(rejected.source, ensure_ascii=False).encode()


def test_reader_and_validate_request_agree() -> None:
    for _, request_, code in USER_CASES[:40]:
        if not isinstance(request_, dict):
            continue
        items = list(read_requests(io.BytesIO(json.dumps(request_).encode()), InputFormat("ndjson", False), USERS))
        got = items[0].code if isinstance(items[0], Rejected) else None
        assert got == code


@pytest.mark.parametrize(
    ("timestamp", "named"),
    [
        ("2022-03-15", "a date without a time"),
        ("2022-W11-2", "week or ordinal date"),
        ("20220315T142323", "basic format"),
        ("2022-03-15T14:23:23", "without 'Z' or a UTC offset"),
        ("2022-03-15 14:23:23Z", "space instead of 'T'"),
        ("2022-02-30T00:00:00Z", "not a valid date and time"),
    ],
)
def test_a_refused_timestamp_says_which_form_it_is_and_what_is_expected(timestamp: str, named: str) -> None:
    code, reason = validate_request(EVENTS, {"name": "n", "timestamp": timestamp}) or ("", "")
    assert code == "invalid_timestamp"
    assert named in reason and "RFC 3339" in reason and "2022-03-15T14:23:23Z" in reason
