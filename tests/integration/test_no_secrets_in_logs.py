"""Personal data and secrets never reach the logs: a full run (upload, API, rejects, provider errors,
a failure) is captured at DEBUG and searched for the API key and every property value."""

from __future__ import annotations

import json
import logging

from jobtracker.simulators.fullstory import SimulatorConfig
from tests.integration.helpers import ndjson, upload_and_wait

API_KEY = "fs-key-Sup3rS3cret-7f3a"
SECRET_VALUES = [
    "alice.private@example.com",
    "Alice Secretname",
    "blood-type-AB-negative",
    "IBAN-CZ6508000000192000145399",
]


def test_a_full_run_logs_neither_the_api_key_nor_property_values(offline, capfd, caplog):
    # Everything the tracker logs (its Powertools loggers at DEBUG, to stdout) plus every other logger at
    # INFO, as in Lambda. botocore's own DEBUG wire dumps are excluded: nobody runs them in production,
    # and they print request bodies by design.
    caplog.set_level(logging.INFO)
    rows = [
        {
            "uid": "u1",
            "display_name": SECRET_VALUES[1],
            "email": SECRET_VALUES[0],
            "properties": {"medical": SECRET_VALUES[2], "bank": SECRET_VALUES[3]},
        },
        {"uid": "u2", "email": "not-an-email", "properties": {"medical": SECRET_VALUES[2]}},  # provider error
        {"uid": "u3", "properties": {"bad name": SECRET_VALUES[3]}},  # rejected locally
    ]
    sim = SimulatorConfig(api_key=API_KEY, polls_to_complete=1)
    with offline(sim=sim, api=True, LogLevel="DEBUG") as session:
        job = upload_and_wait(session, "inbox/users/private.ndjson", ndjson(rows))
        assert (job["imported"], job["providerErrors"], job["rejected"]) == (1, 1, 1)
        # the same rows once more with the key revoked, so error paths log too
        session.simulator.config.api_key = "another-key"
        failed = upload_and_wait(session, "inbox/users/private-2.ndjson", ndjson(rows[:1]))
        assert failed["error"]["code"] == "unauthorized"
    out, err = capfd.readouterr()
    logs = (
        out
        + err
        + "\n".join(r.getMessage() + json.dumps(getattr(r, "__dict__", {}), default=str) for r in caplog.records)
    )
    assert "upload taken in" in logs  # the capture really saw the handlers' logs
    assert API_KEY not in logs
    for value in SECRET_VALUES:
        assert value not in logs, f"a property value leaked into the logs: {value}"
