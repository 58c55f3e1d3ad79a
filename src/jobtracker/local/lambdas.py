"""Runs the project's real Lambda handlers in process.

Step Functions tasks reach them through moto's interpreter, whose `lambda:invoke` goes through a boto3
client of the default session: a `before-call.lambda.Invoke` hook answers that call by running the
handler here and returning its result, or its exception as FunctionError with `errorType` = the
exception's class name, exactly as the Lambda service reports it, so the ASL's Retry/Catch by error
name run for real. No Docker, no second definition of what a function is.
"""

from __future__ import annotations

import importlib.util
import io
import json
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote

from botocore.awsrequest import AWSResponse
from botocore.response import StreamingBody

from jobtracker.local.callers import Caller, acting_as


@dataclass
class FunctionSpec:
    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    timeout: int
    memory: int
    environment: dict[str, str]
    events: dict[str, Any]


class LambdaContext:
    """The attributes of the Lambda runtime's context object that handlers and Powertools read."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn
        self.memory_limit_in_mb = spec.memory
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.name}"
        self.log_stream_name = "offline"
        self._deadline = time.monotonic() + spec.timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class InvocationRecord:
    function: str
    error_type: str | None
    seconds: float


@dataclass
class LambdaRuntime:
    functions: dict[str, FunctionSpec]
    scope: str = ""  # the stack run these functions belong to (the caller of their AWS calls)
    _modules: dict[str, ModuleType] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    invocations: list[InvocationRecord] = field(default_factory=list)
    # Test hook: called before every invocation with (function logical id, event); may raise.
    before_invoke: Callable[[str, dict[str, Any]], None] | None = None

    def by_name_or_arn(self, name: str) -> FunctionSpec:
        for spec in self.functions.values():
            if name in (spec.name, spec.arn, spec.logical_id) or name.startswith(spec.arn + ":"):
                return spec
        raise KeyError(f"no function {name!r} in template.yaml")

    def handler(self, spec: FunctionSpec) -> Callable[[dict[str, Any], Any], Any]:
        with self._lock:
            module = self._modules.get(spec.logical_id)
            if module is None:
                module_name, _, _ = spec.handler.rpartition(".")
                path = spec.code_dir / f"{module_name.replace('.', '/')}.py"
                import_spec = importlib.util.spec_from_file_location(f"offline_{spec.logical_id}_{module_name}", path)
                if import_spec is None or import_spec.loader is None:
                    raise ImportError(f"cannot load handler module {path}")
                module = importlib.util.module_from_spec(import_spec)
                import_spec.loader.exec_module(module)
                self._modules[spec.logical_id] = module
        return getattr(module, spec.handler.rpartition(".")[2])

    def invoke(self, name: str, event: dict[str, Any]) -> Any:
        """Call a handler the way Lambda would; exceptions propagate to the caller."""
        spec = self.by_name_or_arn(name)
        started = time.monotonic()
        error_type = None
        try:
            if self.before_invoke:
                self.before_invoke(spec.logical_id, event)
            handler = self.handler(spec)
            with acting_as(Caller(self.scope, spec.logical_id)):
                return handler(event, LambdaContext(spec))
        except Exception as exc:
            error_type = type(exc).__name__
            raise
        finally:
            with self._lock:
                self.invocations.append(InvocationRecord(spec.logical_id, error_type, time.monotonic() - started))

    # -- botocore hook --------------------------------------------------------------------------
    def on_lambda_invoke(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        name = unquote(params["url_path"].split("/functions/", 1)[1].split("/", 1)[0])
        body = params.get("body") or b"{}"
        event = json.loads(body.decode() if isinstance(body, bytes) else body)
        parsed: dict[str, Any] = {"StatusCode": 200, "ExecutedVersion": "$LATEST"}
        try:
            result = self.invoke(name, event)
            payload = json.dumps(result).encode()
        except Exception as exc:
            payload = json.dumps(
                {
                    "errorType": type(exc).__name__,
                    "errorMessage": str(exc),
                    "stackTrace": traceback.format_tb(exc.__traceback__)[-5:],
                }
            ).encode()
            parsed["FunctionError"] = "Unhandled"
        parsed["Payload"] = StreamingBody(io.BytesIO(payload), len(payload))
        return AWSResponse("", 200, {}, None), parsed
