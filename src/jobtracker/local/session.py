"""Starts the whole offline world together: the provider simulators (FullStory, Keboola, Databricks, dbt
Cloud), the offline stack, REST API, AWS endpoint."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from jobtracker.local.api_gateway import OfflineApiServer, routes_from_template
from jobtracker.local.stack import LOCAL_API_KEY, OfflineStack
from jobtracker.simulators.databricks import DatabricksConfig, DatabricksSimulator
from jobtracker.simulators.dbt_cloud import DbtCloudConfig, DbtCloudSimulator
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
    databricks_config: DatabricksConfig | None = None
    dbt_cloud_config: DbtCloudConfig | None = None
    stack: OfflineStack = field(init=False)
    simulator: FullStorySimulator = field(init=False)
    keboola: KeboolaSimulator = field(init=False)
    databricks: DatabricksSimulator = field(init=False)
    dbt_cloud: DbtCloudSimulator = field(init=False)
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
        self.databricks = DatabricksSimulator(self.databricks_config).start()
        self.dbt_cloud = DbtCloudSimulator(self.dbt_cloud_config).start()
        # Jobs of spec types (http:<name>) reach only the simulators' hosts (plain http: the offline stack
        # allows it to 127.0.0.1, tracker.providers.spec.hosts).
        http_hosts = [sim.base_url.split("://", 1)[1] for sim in (self.simulator, self.databricks, self.dbt_cloud)]
        params = {
            "FullStoryBaseUrl": self.simulator.base_url,
            "DatabricksHost": self.databricks.base_url,
            "DbtCloudUrl": self.dbt_cloud.base_url,
            "HttpJobHosts": ",".join(http_hosts),
            "LogLevel": "WARNING",
            # Offline every principal of the local account is an admin (uploads through the emulated
            # endpoint carry no principal); pass AdminPrincipals to try the per-caller model.
            "AdminPrincipals": "arn:aws:iam::123456789012:",
            "KeboolaStacks": self.keboola.base_url,
            **self.parameters,
        }
        self.stack = OfflineStack(
            parameters=params, api_key=self.stack_api_key or config.api_key, retry_time_scale=self.retry_time_scale
        )
        try:
            self.stack.start()
            if self.api_port is not None:
                assert self.stack.lambdas is not None
                self.api = OfflineApiServer(
                    self.stack.lambdas,
                    routes_from_template(self.stack.functions),
                    port=self.api_port,
                    allow_unsigned=self.allow_unsigned,
                ).start()
            if self.aws_port is not None:
                from moto.server import ThreadedMotoServer

                self._moto_server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.aws_port, verbose=False)
                self._moto_server.start()
                host, port = self._moto_server.get_host_and_port()
                self.aws_endpoint = f"http://{host}:{port}"
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._moto_server is not None:
            self._moto_server.stop()
        if self.api is not None:
            self.api.stop()
        self.stack.stop()
        self.simulator.stop()
        self.keboola.stop()
        self.databricks.stop()
        self.dbt_cloud.stop()
