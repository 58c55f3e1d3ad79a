"""The whole stack on one machine: moto for AWS (S3, DynamoDB, SQS, SNS, Secrets Manager, Step Functions
running the real ASL), the real handlers in process, built from template.yaml.

    with OfflineStack(parameters={"FullStoryBaseUrl": sim.base_url}) as stack:
        stack.upload("inbox/users/people.csv", data)
        job = stack.wait_for_job(job_id)
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import boto3

from jobtracker.local.callers import Caller, acting_as, current_caller
from jobtracker.local.lambdas import FunctionSpec, LambdaRuntime
from jobtracker.local.template import Resolver, function_environment, load_template, substitute_definition

REGION = "us-east-1"
ACCOUNT = "123456789012"
REPO_ROOT = Path(__file__).resolve().parents[3]
LOCAL_API_KEY = "offline-demo-key"
LOCAL_KEBOOLA_TOKEN = "offline-demo-token"
# Settings the offline stack gives its functions in place of the template's, and why: its simulators
# listen on 127.0.0.1 over plain HTTP, which a deployed stack never allows (template.yaml fixes it to false).
OFFLINE_ENVIRONMENT = {"HTTP_JOB_PLAIN_HTTP_LOOPBACK": "true"}

# Types the offline stack deliberately does not emulate, and why.
NOT_EMULATED = {
    "AWS::S3::BucketPolicy": "moto does not enforce bucket policies",
    "AWS::SQS::QueuePolicy": "moto delivers S3 notifications without a queue policy",
    "AWS::SNS::Subscription": "e-mail is not sent offline; the stack records published messages",
    "AWS::Serverless::LayerVersion": "the layer package is installed into the local environment",
    "AWS::Serverless::Api": "served by the offline API server (jobtracker.local.api_gateway)",
    "AWS::Logs::LogGroup": "handlers log to the local process",
    "AWS::CloudWatch::Alarm": "no CloudWatch metrics offline",
    "AWS::KMS::Key": "moto's SNS does not encrypt; the key only matters to CloudWatch in AWS",
    "AWS::IAM::Role": "moto enforces no IAM; jobtracker.local.iam checks calls against the rendered roles",
    "AWS::ApiGateway::Account": "an API Gateway account setting (logs role); the offline API logs locally",
}

# Called with each stack once its resources exist, before anything runs (jobtracker.local.iam watches
# stacks this way to check their calls against their roles).
STARTED: list[Callable[[OfflineStack], None]] = []
_RUNS = itertools.count(1)


class OfflineStack:
    def __init__(
        self,
        *,
        parameters: dict[str, Any] | None = None,
        stack_name: str = "jobtracker-local",
        api_key: str = LOCAL_API_KEY,
        secrets: Mapping[str, str] | None = None,
        root: Path = REPO_ROOT,
        pump_sqs: bool = True,
        retry_time_scale: float = 1.0,
        aws_endpoint: str | None = None,
    ) -> None:
        self.root = root
        self.stack_name = stack_name
        self.scope = f"{stack_name}#{next(_RUNS)}"  # this run of the stack; names repeat from run to run
        self.api_key = api_key
        # What each secret the stack creates holds, by the template parameter it stands in for (e.g.
        # KeboolaTokenSecretArn); a secret not named here holds api_key.
        self.secrets = dict(secrets or {})
        self.template = load_template(root / "template.yaml")
        self._parameter_overrides = {k: str(v) for k, v in (parameters or {}).items()}
        self.physical: dict[str, dict[str, Any]] = {}
        self.functions: dict[str, FunctionSpec] = {}
        self.lambdas: LambdaRuntime | None = None
        self._mock: Any = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pump_sqs = pump_sqs
        self._retry_time_scale = retry_time_scale
        self._restore_retry_clock: Callable[[], None] | None = None
        self._restore_dynamodb: Callable[[], None] | None = None
        self._restore_map_failures: Callable[[], None] | None = None
        # The emulated AWS endpoint (`jobtracker local up`), when one serves this stack: the functions reach
        # S3 through it (AWS_ENDPOINT_URL_S3), so the URLs they presign point at it and download.
        self.aws_endpoint = aws_endpoint
        self.invoke_configs: dict[str, dict[str, Any]] = {}  # function -> its resolved EventInvokeConfig
        self.execution_events: Any = None  # jobtracker.local.eventbridge.ExecutionEvents once started
        self._saved_env: dict[str, str | None] = {}
        self.pump_errors: list[str] = []  # the emulation itself broke: waits stop at once
        self.function_errors: list[str] = []  # a handler raised on an SQS message (retried, then DLQ)
        self._notifications: list[dict[str, Any]] = []
        self._tap_url = ""

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> OfflineStack:
        from moto import mock_aws

        for name, value in {
            "AWS_ACCESS_KEY_ID": "offline",
            "AWS_SECRET_ACCESS_KEY": "offline",
            "AWS_SESSION_TOKEN": "offline",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }.items():
            self._set_env(name, value)
        if self.aws_endpoint:
            self._set_env("AWS_ENDPOINT_URL_S3", self.aws_endpoint)
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._mock.start()
        if self._retry_time_scale != 1.0:
            self._restore_retry_clock = _scale_retry_intervals(self._retry_time_scale)
        self._restore_dynamodb = _atomic_dynamodb_writes()
        from jobtracker.local.map_failures import honour_tolerated_failures

        self._restore_map_failures = honour_tolerated_failures()
        boto3.setup_default_session(region_name=REGION)
        self.resolver = Resolver(
            self.template,
            self._parameter_overrides,
            {
                "AWS::Region": REGION,
                "AWS::AccountId": ACCOUNT,
                "AWS::StackName": self.stack_name,
                "AWS::Partition": "aws",
                "AWS::URLSuffix": "amazonaws.com",
            },
            self._lookup,
        )
        for logical_id in self.template["Resources"]:
            self._ensure(logical_id)
        self._tap_topic()
        self._configure_runtime()
        self.lambdas = LambdaRuntime(self.functions, scope=self.scope)
        for listener in STARTED:
            listener(self)
        boto3.DEFAULT_SESSION.events.register("before-call.lambda.Invoke", self.lambdas.on_lambda_invoke)
        if self._pump_sqs:
            for spec in self.functions.values():
                for event in spec.events.values():
                    if event["Type"] == "SQS":
                        self._start_thread(self._pump, spec, event["Properties"]["Queue"])
        self._start_execution_events()
        return self

    def _start_execution_events(self) -> None:
        """EventBridge offline: execution status changes to the template's rules (jobtracker.local.eventbridge)."""
        from jobtracker.local.eventbridge import ExecutionEvents, rules_from_template

        assert self.lambdas is not None
        rules = rules_from_template(self.functions, self.invoke_configs)
        machines = [
            self.physical[logical_id]["Arn"]
            for logical_id, resource in self.template["Resources"].items()
            if resource["Type"] == "AWS::Serverless::StateMachine" and self.physical.get(logical_id)
        ]
        if not rules or not machines:
            return
        self.execution_events = ExecutionEvents(
            client=self.client,
            lambdas=self.lambdas,
            machine_arns=machines,
            rules=rules,
            region=REGION,
            account=ACCOUNT,
            errors=self.function_errors,
        )
        self._start_thread(self.execution_events.run, self._stop)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        if self.execution_events is not None:
            self.execution_events.close()  # deliveries under way finish against the live mock
        self._stop_executions()
        if self._mock is not None:
            self._mock.stop()
            self._mock = None
        if self._restore_retry_clock is not None:
            self._restore_retry_clock()
            self._restore_retry_clock = None
        if self._restore_dynamodb is not None:
            self._restore_dynamodb()
            self._restore_dynamodb = None
        if self._restore_map_failures is not None:
            self._restore_map_failures()
            self._restore_map_failures = None
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def _stop_executions(self) -> None:
        """Stop what still runs, so no execution outlives its stack and writes into the next one's state
        (moto's backends are process-wide; a test that reuses a job id would see it)."""
        if self._mock is None or "JobStateMachine" not in self.physical:
            return
        sfn = self.client("stepfunctions")
        try:
            running = sfn.list_executions(stateMachineArn=self.output("JobStateMachine"), statusFilter="RUNNING")
            for execution in running.get("executions", []):
                with contextlib.suppress(Exception):
                    sfn.stop_execution(executionArn=execution["executionArn"])
        except Exception:  # best effort while tearing down
            logging.getLogger("jobtracker.offline").debug("could not stop executions", exc_info=True)
        if self.lambdas is not None:
            with contextlib.suppress(Exception):
                boto3.DEFAULT_SESSION.events.unregister("before-call.lambda.Invoke", self.lambdas.on_lambda_invoke)

    def __enter__(self) -> OfflineStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what users and tests need ---------------------------------------------------------
    def output(self, logical_id: str, attribute: str | None = None) -> Any:
        return self._lookup(logical_id, attribute)

    @property
    def inbox_bucket(self) -> str:
        return self.output("InboxBucket")

    @property
    def results_bucket(self) -> str:
        return self.output("ResultsBucket")

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION)

    def upload(self, key: str, body: bytes) -> None:
        self.client("s3").put_object(Bucket=self.inbox_bucket, Key=key, Body=body)

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        assert self.lambdas is not None
        return self.lambdas.invoke(logical_id, event)

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        from tracker import wiring

        return wiring.store().get_job(job_id)

    def list_batches(self, job_id: str) -> list[dict[str, Any]]:
        from tracker import wiring

        return sorted(wiring.store().list_batches(job_id), key=lambda b: int(b["index"]))

    def jobs(self) -> list[dict[str, Any]]:
        from tracker import wiring

        jobs, _ = wiring.store().list_jobs(limit=200)
        return jobs

    def wait_until(self, predicate: Callable[[], Any], *, timeout: float = 60, what: str = "condition") -> Any:
        """Wait for a state the stack reaches by itself; the deadline only guards against a hang."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if self.pump_errors:
                raise RuntimeError(f"intake pump failed: {self.pump_errors[-1]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.02)

    def wait_for_job(self, job_id: str, *, timeout: float = 120) -> dict[str, Any]:
        """Wait until the job is terminal and its notification went out."""

        def finished() -> dict[str, Any] | None:
            job = self.get_job(job_id)
            return job if job and job["state"] in ("COMPLETED", "FAILED") and job.get("notifiedAt") else None

        return self.wait_until(finished, timeout=timeout, what=f"job {job_id} to finish")

    def wait_for_execution(self, job_id: str, *, timeout: float = 60) -> dict[str, Any]:
        """Wait until the job's current execution (its runId) has ended; its description."""
        sfn = self.client("stepfunctions")

        def ended() -> dict[str, Any] | None:
            arn = (self.get_job(job_id) or {}).get("runId")
            if not arn:
                return None
            try:
                described = sfn.describe_execution(executionArn=arn)
            except sfn.exceptions.ExecutionDoesNotExist:
                return None
            return described if described["status"] != "RUNNING" else None

        return self.wait_until(ended, timeout=timeout, what=f"execution of {job_id} to end")

    def notifications(self) -> list[dict[str, Any]]:
        """Every message published to the jobs topic so far: {"message": body, "attributes": {...}, "subject"}.

        Offline nothing is e-mailed; a queue subscribed to the topic at start keeps what was published,
        through moto's real SNS -> SQS delivery (attributes included).
        """
        sqs = self.client("sqs")
        while True:
            received = sqs.receive_message(QueueUrl=self._tap_url, MaxNumberOfMessages=10).get("Messages", [])
            if not received:
                return list(self._notifications)
            for message in received:
                envelope = json.loads(message["Body"])
                self._notifications.append(
                    {
                        "message": json.loads(envelope["Message"]),
                        "subject": envelope.get("Subject"),
                        "attributes": {k: v["Value"] for k, v in envelope.get("MessageAttributes", {}).items()},
                    }
                )
                sqs.delete_message(QueueUrl=self._tap_url, ReceiptHandle=message["ReceiptHandle"])

    def _tap_topic(self) -> None:
        sqs = self.client("sqs")
        self._tap_url = sqs.create_queue(QueueName=f"{self.stack_name}-notification-tap")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self._tap_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.client("sns").subscribe(TopicArn=self.output("JobsTopic"), Protocol="sqs", Endpoint=arn)

    # -- building resources from template.yaml ---------------------------------------------
    def _lookup(self, logical_id: str, attribute: str | None) -> Any:
        values = self._ensure(logical_id)
        key = attribute or "Ref"
        if key not in values:
            raise KeyError(f"{logical_id} has no attribute {key} offline")
        return values[key]

    def _ensure(self, logical_id: str) -> dict[str, Any]:
        if logical_id in self.physical:
            return self.physical[logical_id]
        resource = self.template["Resources"][logical_id]
        if "Condition" in resource and not self.resolver.condition(resource["Condition"]):
            self.physical[logical_id] = {}
            return self.physical[logical_id]
        for dependency in _as_list(resource.get("DependsOn")):
            self._ensure(dependency)
        kind = resource["Type"]
        props = resource.get("Properties", {})
        name = f"{self.stack_name}-{logical_id}"
        builder = getattr(self, "_build_" + kind.replace("::", "_"), None)
        if builder is None:
            if kind not in NOT_EMULATED:
                raise NotImplementedError(f"offline stack cannot build {kind} ({logical_id}); add a builder")
            values: dict[str, Any] = {"Ref": name, "Arn": f"arn:aws:offline:::{name}"}
        else:
            values = builder(logical_id, name, props)
        self.physical[logical_id] = values
        return values

    def _build_AWS_S3_Bucket(self, logical_id: str, name: str, props: dict[str, Any]) -> dict[str, Any]:
        bucket = name.lower()
        values = {"Ref": bucket, "Arn": f"arn:aws:s3:::{bucket}"}
        self.physical[logical_id] = values  # the notification below may resolve this bucket's own name
        s3 = self.client("s3")
        s3.create_bucket(Bucket=bucket)
        if self.resolver.resolve(props.get("VersioningConfiguration", {})).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        notifications = self.resolver.resolve(props.get("NotificationConfiguration", {}))
        queue_configs = [
            {
                "QueueArn": cfg["Queue"],
                "Events": [cfg["Event"]],
                **({"Filter": {"Key": {"FilterRules": cfg["Filter"]["S3Key"]["Rules"]}}} if "Filter" in cfg else {}),
            }
            for cfg in notifications.get("QueueConfigurations", [])
        ]
        if queue_configs:
            s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration={"QueueConfigurations": queue_configs}
            )
        return values

    def _build_AWS_DynamoDB_Table(self, logical_id: str, name: str, props: dict[str, Any]) -> dict[str, Any]:
        props = self.resolver.resolve(props)
        ddb = self.client("dynamodb")
        kwargs: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if props.get("GlobalSecondaryIndexes"):
            kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        arn = ddb.create_table(**kwargs)["TableDescription"]["TableArn"]
        ttl = props.get("TimeToLiveSpecification")
        if ttl:
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
        return {"Ref": name, "Arn": arn}

    def _build_AWS_SQS_Queue(self, logical_id: str, name: str, props: dict[str, Any]) -> dict[str, Any]:
        props = self.resolver.resolve(props)
        attributes = {}
        if "VisibilityTimeout" in props:
            attributes["VisibilityTimeout"] = str(props["VisibilityTimeout"])
        if "MessageRetentionPeriod" in props:
            attributes["MessageRetentionPeriod"] = str(props["MessageRetentionPeriod"])
        if "RedrivePolicy" in props:
            attributes["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
        sqs = self.client("sqs")
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return {"Ref": url, "Arn": arn, "QueueName": name, "QueueUrl": url}

    def _build_AWS_SNS_Topic(self, logical_id: str, name: str, props: dict[str, Any]) -> dict[str, Any]:
        arn = self.client("sns").create_topic(Name=name)["TopicArn"]
        return {"Ref": arn, "TopicName": name, "TopicArn": arn}

    def _build_AWS_SecretsManager_Secret(self, logical_id: str, name: str, props: dict[str, Any]) -> dict[str, Any]:
        # Offline the stack fills the secret itself with the credential the endpoint it talks to expects.
        value = self.secrets.get(self._secret_parameter(logical_id) or "", self.api_key)
        arn = self.client("secretsmanager").create_secret(Name=name, SecretString=value)["ARN"]
        return {"Ref": arn, "Id": arn}

    def _secret_parameter(self, logical_id: str) -> str | None:
        """The parameter a created secret stands in for: the template creates it under a condition
        ``!Equals [!Ref <parameter>, ""]`` (the secret ARN parameter left empty)."""
        condition = self.template["Resources"][logical_id].get("Condition")
        test = self.template.get("Conditions", {}).get(condition, {}).get("Fn::Equals") if condition else None
        if isinstance(test, list) and len(test) == 2 and test[1] == "" and isinstance(test[0], dict):
            return test[0].get("Ref")
        return None

    def _build_AWS_Serverless_Function(self, logical_id: str, name: str, props: dict[str, Any]) -> dict[str, Any]:
        arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        values = {"Ref": name, "Arn": arn}
        self.physical[logical_id] = values
        globals_ = self.template.get("Globals", {}).get("Function", {})
        env = function_environment(self.template, self.resolver, logical_id)
        events = {}
        for event_name, event in props.get("Events", {}).items():
            resolved = {"Type": event["Type"], "Properties": self.resolver.resolve(event.get("Properties", {}))}
            events[event_name] = resolved
        self.invoke_configs[logical_id] = self.resolver.resolve(props.get("EventInvokeConfig", {}))
        self.functions[logical_id] = FunctionSpec(
            logical_id=logical_id,
            name=name,
            arn=arn,
            code_dir=self.root / props["CodeUri"],
            handler=props["Handler"],
            timeout=int(props.get("Timeout", globals_.get("Timeout", 3))),
            memory=int(props.get("MemorySize", globals_.get("MemorySize", 128))),
            environment=env,
            events=events,
        )
        return values

    def _build_AWS_Serverless_StateMachine(self, logical_id: str, name: str, props: dict[str, Any]) -> dict[str, Any]:
        machine_name = self.resolver.resolve(props.get("Name", name))
        definition = substitute_definition(
            (self.root / props["DefinitionUri"]).read_text(encoding="utf-8"),
            self.resolver.resolve(props.get("DefinitionSubstitutions", {})),
        )
        arn = self.client("stepfunctions").create_state_machine(
            name=machine_name,
            definition=definition,
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/{name}-role",
            type=props.get("Type", "STANDARD"),
        )["stateMachineArn"]
        return {"Ref": arn, "Arn": arn, "Name": machine_name}

    # -- runtime -----------------------------------------------------------------------------
    def _configure_runtime(self) -> None:
        """One process hosts every function, so their environments must agree; template.yaml keeps
        shared settings in Globals, and this check keeps it that way."""
        merged: dict[str, str] = {}
        for spec in self.functions.values():
            for key, value in spec.environment.items():
                if merged.get(key, value) != value:
                    raise ValueError(f"functions disagree on environment variable {key}; keep it in Globals")
                merged[key] = value
        merged.update(OFFLINE_ENVIRONMENT)
        merged.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
        merged.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
        for key, value in merged.items():
            self._set_env(key, value)
        logging.getLogger("jobtracker").setLevel(logging.WARNING)
        from aws_lambda_powertools.utilities import parameters
        from tracker import wiring

        parameters.clear_caches()
        _per_function_parameter_caches()
        wiring.reset()
        # Handler modules share one Powertools Logger per process; in Lambda each container reads
        # POWERTOOLS_LOG_LEVEL when it starts, so apply this stack's level to the shared logger.
        from tracker.observability import logger

        logger.setLevel(merged.get("POWERTOOLS_LOG_LEVEL", "INFO"))

    def _set_env(self, name: str, value: str) -> None:
        if name not in self._saved_env:
            self._saved_env[name] = os.environ.get(name)
        os.environ[name] = value

    def _start_thread(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name=f"offline-{target.__name__}")
        thread.start()
        self._threads.append(thread)

    def _pump(self, spec: FunctionSpec, queue_arn: str) -> None:
        """Lambda's SQS event source: receive, invoke with an SQS event, delete what succeeded."""
        sqs = self.client("sqs")
        queue_name = queue_arn.rsplit(":", 1)[1]
        queue_url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
        # A failed message stays invisible for the queue's visibility timeout, then comes back. Offline a
        # queue that redrives to a dead-letter queue gets it back after 1 s, so its retries reach the DLQ
        # without the wait; a queue without one (a DLQ) keeps AWS's wait: a message its function cannot
        # take stays there for an operator instead of coming back every second.
        redrives = "RedrivePolicy" in sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
        assert self.lambdas is not None
        # Lambda polls and deletes with the function's own role; the rest here is emulation.
        as_function = Caller(self.scope, spec.logical_id)
        while not self._stop.is_set():
            try:
                with acting_as(as_function):
                    received = sqs.receive_message(
                        QueueUrl=queue_url, MaxNumberOfMessages=1, AttributeNames=["All"], WaitTimeSeconds=0
                    ).get("Messages", [])
            except Exception as exc:  # the mock may be stopping
                if not self._stop.is_set():
                    self.pump_errors.append(f"receive failed: {exc!r}")
                return
            if not received:
                self._stop.wait(0.02)
                continue
            for message in received:
                event = {"Records": [_sqs_record(message, queue_arn)]}
                try:
                    response = self.lambdas.invoke(spec.logical_id, event) or {}
                    failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
                except Exception as exc:
                    # As in AWS: the message comes back, and after maxReceiveCount goes to the DLQ.
                    self.function_errors.append(f"{spec.logical_id}: {exc!r}")
                    logging.getLogger("jobtracker.offline").warning("%s failed: %r", spec.logical_id, exc)
                    failed = {message["MessageId"]}
                if message["MessageId"] in failed:
                    if redrives:
                        sqs.change_message_visibility(
                            QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=1
                        )
                else:
                    with acting_as(as_function):
                        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def _sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {},
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


def _per_function_parameter_caches() -> None:
    """In AWS each function caches the secrets it reads (Powertools Parameters) in its own execution
    environment; here all functions share one process, so one function's cached secret would spare
    another its own read, and that read's permission would never be exercised. One secrets provider
    per calling function (the provider Powertools' get_secret uses) keeps the caches apart."""
    from aws_lambda_powertools.utilities.parameters import SecretsProvider
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    DEFAULT_PROVIDERS["secrets"] = _PerCaller(SecretsProvider)


class _PerCaller:
    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._instances: dict[Any, Any] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        caller = current_caller()
        with self._lock:
            instance = self._instances.get(caller)
            if instance is None:
                instance = self._instances[caller] = self._make()
        return getattr(instance, name)


def _atomic_dynamodb_writes() -> Callable[[], None]:
    """DynamoDB applies a conditional write atomically and serves reads while items change; moto's backend,
    called from several threads (the Map's children run in parallel here), checks a condition and writes
    in two steps, and a query can iterate an item another thread is updating ("dictionary changed size
    during iteration"). One lock around its item operations restores what the tracker relies on."""
    from moto.dynamodb.responses import DynamoHandler

    lock = threading.RLock()
    original = DynamoHandler.call_action

    # The whole request (backend call and the serialization of live items into the answer) under one lock.
    def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(self, *args, **kwargs)

    DynamoHandler.call_action = locked  # type: ignore[method-assign]

    def restore() -> None:
        DynamoHandler.call_action = original  # type: ignore[method-assign]

    return restore


def _scale_retry_intervals(scale: float) -> Callable[[], None]:
    """Compress the ASL's Retry intervals in moto's interpreter (virtual time for tests: the retries,
    their count and their order are real; only the waiting between them shrinks). Returns the undo."""
    import types

    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    real_time = retrier_decl.time
    retrier_decl.time = types.SimpleNamespace(sleep=lambda seconds: real_time.sleep(seconds * scale))

    def restore() -> None:
        retrier_decl.time = real_time

    return restore


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)
