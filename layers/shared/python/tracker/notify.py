"""The one notification per job: JSON body, `state` and `type` message attributes for subscription filters,
and `warnings` (the codes of the job's warnings, e.g. unlisted_rows) when a finished job carries any."""

from __future__ import annotations

import json
from typing import Any

from tracker import aws


def publish_job_notification(topic_arn: str, message: dict[str, Any], *, sns: Any = None) -> str:
    subject = f"jobtracker {message['type']} job {message['state']}"[:100]
    attributes = {
        "state": {"DataType": "String", "StringValue": message["state"]},
        "type": {"DataType": "String", "StringValue": message["type"]},
    }
    codes = sorted({str(w.get("code")) for w in message.get("warnings") or [] if isinstance(w, dict)})
    if codes:
        attributes["warnings"] = {"DataType": "String.Array", "StringValue": json.dumps(codes)}
    response = (sns or aws.client("sns")).publish(
        TopicArn=topic_arn,
        Subject=subject,
        Message=json.dumps(message, separators=(",", ":")),
        MessageAttributes=attributes,
    )
    return str(response["MessageId"])
