"""Starts the whole offline world together: FullStory simulator, offline stack, REST API, AWS endpoint."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from jobtracker.local.api_gateway import OfflineApiServer, routes_from_template
from jobtracker.local.stack import LOCAL_API_KEY, OfflineStack
from jobtracker.simulators.fullstory import FullStorySimulator, SimulatorConfig
from jobtracker.simulators.keboola import KeboolaSimulator, KeboolaSimulatorConfig


@dataclass
class OfflineSession:
    """`with OfflineSession(...) as s:` gives s.stack, s.simulator, s.api (optional), s.aws_endpoint."""

    parameters: dict[str, Any] = field(default_factory=dict)
    simulator_config: SimulatorConfig | None = None
    simulator_port: int = 0
    api_port: int | None = None
    aws_port: int | None = None
    # The key the stack's secret holds; defaults to the simulator's, set another to test a revoked key.
    stack_api_key: str | None = None
    # 0 makes the ASL's Retry intervals instant (tests); 1 keeps them as written.
    retry_time_scale: float = 1.0
    # The local-dev switch: let unsigned requests (plain curl) into the offline API.
    allow_unsigned: bool = False
    keboola_config: KeboolaSimulatorConfig | None = None
    stack: OfflineStack = field(init=False, default=None)  # type: ignore[assignment]
    simulator: FullStorySimulator = field(init=False)
    keboola: KeboolaSimulator = field(init=False)
    api: OfflineApiServer | None = field(init=False, default=None)
    aws_endpoint: str | None = field(init=False, default=None)
    _moto_server: Any = field(init=False, default=None)

    def __enter__(self) -> OfflineSession:
        # Powertools warns on every invocation that publishes no metric; offline that is noise.
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        config = self.simulator_config or SimulatorConfig(processing_seconds=0.0, polls_to_complete=2)
        if config.api_key is None:
            config.api_key = LOCAL_API_KEY
        self.simulator = FullStorySimulator(config, port=self.simulator_port).start()
        self.keboola = KeboolaSimulator(self.keboola_config or KeboolaSimulatorConfig()).start()
        params = {
            "FullStoryBaseUrl": self.simulator.base_url,
            "LogLevel": "WARNING",
            # Offline every principal of the local account is an admin (uploads through the emulated
            # endpoint carry no principal); pass AdminPrincipals to try the per-caller model.
            "AdminPrincipals": "arn:aws:iam::123456789012:",
            "KeboolaStacks": self.keboola.base_url,
            **self.parameters,
        }
        try:
            if self.aws_port is not None:
                # First, so the stack's functions reach S3 through it and presign URLs that point at it.
                from moto.server import ThreadedMotoServer

                self._moto_server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.aws_port, verbose=False)
                self._moto_server.start()
                host, port = self._moto_server.get_host_and_port()
                self.aws_endpoint = f"http://{host}:{port}"
            self.stack = OfflineStack(
                parameters=params,
                api_key=self.stack_api_key or config.api_key,
                retry_time_scale=self.retry_time_scale,
                aws_endpoint=self.aws_endpoint,
            )
            self.stack.start()
            if self.api_port is not None:
                assert self.stack.lambdas is not None
                self.api = OfflineApiServer(
                    self.stack.lambdas,
                    routes_from_template(self.stack.functions),
                    port=self.api_port,
                    allow_unsigned=self.allow_unsigned,
                ).start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.api is not None:
            self.api.stop()
        if getattr(self, "stack", None) is not None:
            self.stack.stop()
        if self._moto_server is not None:
            self._moto_server.stop()
        self.simulator.stop()
        self.keboola.stop()
