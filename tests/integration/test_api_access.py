"""API authentication and who sees which job: SigV4 required (offline too), callers see their own jobs,
admins (AdminPrincipals) see all, other people's jobs answer 404."""

from __future__ import annotations

import json

import urllib3

from tests.integration.helpers import sigv4_headers, users

HTTP = urllib3.PoolManager(retries=False, timeout=10)


def signed(session, method, path, body=None, key="AKIDALICE"):
    url = session.api.base_url + path
    data = json.dumps(body).encode() if body is not None else None
    response = HTTP.request(method, url, body=data, headers=sigv4_headers(method, url, data, key))
    return response.status, json.loads(response.data) if response.data else None


def test_unsigned_and_badly_signed_requests_are_refused(offline):
    with offline(api=True, allow_unsigned=False) as session:
        response = HTTP.request("GET", session.api.base_url + "/jobs")
        assert response.status == 403
        assert json.loads(response.data)["code"] == "missing_authentication"
        forged = HTTP.request(
            "GET", session.api.base_url + "/jobs", headers={"Authorization": "AWS4-HMAC-SHA256 nonsense"}
        )
        assert forged.status == 403
        status, page = signed(session, "GET", "/jobs")
        assert (status, page["jobs"]) == (200, [])


def test_callers_see_only_their_own_jobs_and_admins_see_all(offline):
    admin_prefix = "arn:aws:iam::123456789012:user/AKIDADMIN"
    with offline(api=True, allow_unsigned=False, AdminPrincipals=admin_prefix) as session:
        status, alices = signed(
            session, "POST", "/jobs", {"type": "fullstory.users", "requests": users(1)}, "AKIDALICE"
        )
        assert status == 202
        status, bobs = signed(session, "POST", "/jobs", {"type": "fullstory.users", "requests": users(1)}, "AKIDBOB")
        assert status == 202
        session.stack.wait_for_job(alices["id"])
        session.stack.wait_for_job(bobs["id"])

        assert [j["id"] for j in signed(session, "GET", "/jobs", key="AKIDALICE")[1]["jobs"]] == [alices["id"]]
        assert [j["id"] for j in signed(session, "GET", "/jobs?state=COMPLETED", key="AKIDBOB")[1]["jobs"]] == [
            bobs["id"]
        ]
        assert signed(session, "GET", f"/jobs/{bobs['id']}", key="AKIDALICE")[0] == 404
        assert signed(session, "GET", f"/jobs/{bobs['id']}/results", key="AKIDALICE")[0] == 404
        assert signed(session, "GET", f"/jobs/{bobs['id']}", key="AKIDBOB")[0] == 200

        everything = signed(session, "GET", "/jobs", key="AKIDADMIN")[1]["jobs"]
        assert {j["id"] for j in everything} == {alices["id"], bobs["id"]}
        assert signed(session, "GET", f"/jobs/{alices['id']}", key="AKIDADMIN")[0] == 200


def test_the_same_idempotency_key_from_two_callers_makes_two_jobs(offline):
    with offline(api=True, allow_unsigned=False) as session:
        body = {"type": "fullstory.users", "requests": users(1)}
        url_key = {"Idempotency-Key": "nightly"}
        first = _signed_with_headers(session, body, "AKIDALICE", url_key)
        second = _signed_with_headers(session, body, "AKIDBOB", url_key)
        assert first["id"] != second["id"]


def _signed_with_headers(session, body, key, headers):
    url = session.api.base_url + "/jobs"
    data = json.dumps(body).encode()
    response = HTTP.request("POST", url, body=data, headers=sigv4_headers("POST", url, data, key, headers))
    assert response.status == 202
    return json.loads(response.data)
