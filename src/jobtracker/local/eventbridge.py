"""EventBridge offline, for the one kind of event the stack listens to: Step Functions' execution status
changes, delivered to the functions whose `EventBridgeRule` events in template.yaml match them.

moto's Step Functions emits no events, so a watcher follows the stack's executions (ListExecutions) and,
for every status an execution reaches, builds the event Step Functions sends to EventBridge ("Step
Functions Execution Status Change", Step Functions Developer Guide, "Automating Step Functions event
delivery with EventBridge": source aws.states, detail executionArn, stateMachineArn, name, status,
startDate, stopDate (epoch milliseconds), input, output, error, cause), matches it against each rule's
pattern with moto's own EventBridge pattern matcher, and invokes the target function as EventBridge does:
asynchronously, so the function's EventInvokeConfig applies (Lambda retries a failed asynchronous
invocation MaximumRetryAttempts times, default 2, then sends a record of it to the OnFailure
destination; Lambda Developer Guide, "Capturing records of Lambda asynchronous invocations").
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jobtracker.local.lambdas import FunctionSpec, LambdaRuntime

log = logging.getLogger("jobtracker.offline")
DETAIL_TYPE = "Step Functions Execution Status Change"
LAMBDA_ASYNC_RETRIES = 2  # Lambda's default MaximumRetryAttempts for asynchronous invocations


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: dict[str, Any]
    target: FunctionSpec
    retries: int  # the target's EventInvokeConfig.MaximumRetryAttempts
    on_failure_queue_arn: str | None  # its EventInvokeConfig DestinationConfig.OnFailure (SQS)


def rules_from_template(functions: dict[str, FunctionSpec], invoke_configs: dict[str, dict[str, Any]]) -> list[Rule]:
    """Every `EventBridgeRule` event of a function in template.yaml (resolved), with its target's
    asynchronous-invocation settings."""
    rules = []
    for spec in functions.values():
        config = invoke_configs.get(spec.logical_id) or {}
        on_failure = (config.get("DestinationConfig") or {}).get("OnFailure") or {}
        for name, event in spec.events.items():
            if event["Type"] != "EventBridgeRule":
                continue
            rules.append(
                Rule(
                    name=f"{spec.logical_id}{name}",
                    pattern=event["Properties"]["Pattern"],
                    target=spec,
                    retries=int(config.get("MaximumRetryAttempts", LAMBDA_ASYNC_RETRIES)),
                    on_failure_queue_arn=on_failure.get("Destination") if on_failure.get("Type") == "SQS" else None,
                )
            )
    return rules


class ExecutionEvents:
    """Follows the executions of `machine_arns` and delivers their status changes to the matching rules."""

    def __init__(
        self,
        *,
        client: Callable[[str], Any],
        lambdas: LambdaRuntime,
        machine_arns: list[str],
        rules: list[Rule],
        region: str,
        account: str,
        errors: list[str],
    ) -> None:
        from moto.events.models import EventPattern

        self._client = client
        self._lambdas = lambdas
        self._machines = machine_arns
        self._rules = [(rule, EventPattern.load(json.dumps(rule.pattern))) for rule in rules]
        self._region = region
        self._account = account
        self._errors = errors
        self._seen: dict[str, str] = {}  # execution ARN -> the last status an event was sent for
        self._deliveries = ThreadPoolExecutor(max_workers=4, thread_name_prefix="offline-eventbridge")
        self.delivered: list[dict[str, Any]] = []  # every event a rule matched, in order

    def run(self, stop: threading.Event, interval: float = 0.05, give_up_after: int = 100) -> None:
        sfn = self._client("stepfunctions")
        failures = 0
        while not stop.is_set():
            try:
                self._sweep(sfn)
                failures = 0
            except Exception as exc:
                # moto's Step Functions can fail a read of an execution that is being created or stopped in
                # another thread (e.g. a status not set yet); the next sweep reads it whole. Only an error
                # that lasts (about 5 s of sweeps) means the emulation broke.
                failures += 1
                if stop.is_set():
                    return
                if failures >= give_up_after:
                    self._errors.append(f"execution events: {exc!r}")
                    return
                log.debug("execution events: sweep failed, trying again", exc_info=True)
            stop.wait(interval)

    def close(self) -> None:
        self._deliveries.shutdown(wait=True)

    def _sweep(self, sfn: Any) -> None:
        for machine in self._machines:
            for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=machine):
                for execution in page["executions"]:
                    arn, status = execution["executionArn"], execution["status"]
                    if self._seen.get(arn) == status:
                        continue
                    described = sfn.describe_execution(executionArn=arn)
                    if arn not in self._seen and described["status"] != "RUNNING":
                        self._emit({**described, "status": "RUNNING", "stopDate": None})  # it started first
                    self._seen[arn] = described["status"]
                    self._emit(described)

    def _emit(self, execution: dict[str, Any]) -> None:
        event = self.status_change(execution)
        for rule, pattern in self._rules:
            if pattern.matches_event(event):
                self.delivered.append(event)
                self._deliveries.submit(self._invoke_async, rule, event)

    def status_change(self, execution: dict[str, Any]) -> dict[str, Any]:
        def millis(moment: datetime | None) -> int | None:
            return int(moment.timestamp() * 1000) if moment else None

        detail = {
            "executionArn": execution["executionArn"],
            "stateMachineArn": execution["stateMachineArn"],
            "name": execution["name"],
            "status": execution["status"],
            "startDate": millis(execution.get("startDate")),
            "stopDate": millis(execution.get("stopDate")),
            "input": execution.get("input"),
            "output": execution.get("output"),
            "error": execution.get("error"),
            "cause": execution.get("cause"),
        }
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": DETAIL_TYPE,
            "source": "aws.states",
            "account": self._account,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self._region,
            "resources": [execution["executionArn"]],
            "detail": detail,
        }

    def _invoke_async(self, rule: Rule, event: dict[str, Any]) -> None:
        error: Exception | None = None
        for _attempt in range(1 + rule.retries):
            try:
                self._lambdas.invoke(rule.target.logical_id, event)
                return
            except Exception as exc:
                error = exc
                log.warning("%s failed on %s: %r", rule.target.logical_id, event["detail"]["name"], exc)
        self._errors.append(f"{rule.target.logical_id} (async, {1 + rule.retries} attempts): {error!r}")
        if rule.on_failure_queue_arn:
            self._send_failure_record(rule, event, error)

    def _send_failure_record(self, rule: Rule, event: dict[str, Any], error: Exception | None) -> None:
        sqs = self._client("sqs")
        record = {
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(),
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": f"{rule.target.arn}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 1 + rule.retries,
            },
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": {"errorType": type(error).__name__, "errorMessage": str(error)},
        }
        queue_url = sqs.get_queue_url(QueueName=rule.on_failure_queue_arn.rsplit(":", 1)[1])["QueueUrl"]
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(record))
