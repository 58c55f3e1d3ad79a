"""The one notification per job: JSON body, `state` and `type` message attributes for subscription filters."""

from __future__ import annotations

import json
from typing import Any

from tracker import aws


def publish_job_notification(topic_arn: str, message: dict[str, Any], *, sns: Any = None) -> str:
    subject = f"jobtracker {message['type']} job {message['state']}"[:100]
    response = (sns or aws.client("sns")).publish(
        TopicArn=topic_arn,
        Subject=subject,
        Message=json.dumps(message, separators=(",", ":")),
        MessageAttributes={
            "state": {"DataType": "String", "StringValue": message["state"]},
            "type": {"DataType": "String", "StringValue": message["type"]},
        },
    )
    return str(response["MessageId"])
