"""Starts the whole offline world together: the provider simulators (FullStory, Keboola, Databricks, dbt
Cloud), the offline stack, REST API, AWS endpoint.

The stack may talk to any FullStory- or Keboola-compatible endpoint instead of its own simulator (a
staging proxy, a recorded replay, the real API from a laptop): ``fullstory_url`` / ``keboola_url`` go
into the ``FullStoryBaseUrl`` / ``KeboolaStacks`` parameters, the key / token into the secrets the stack
creates, and the simulator that is replaced is not started.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any

from jobtracker.local.api_gateway import OfflineApiServer, routes_from_template
from jobtracker.local.stack import LOCAL_API_KEY, LOCAL_KEBOOLA_TOKEN, OfflineStack
from jobtracker.simulators.databricks import DatabricksConfig, DatabricksSimulator
from jobtracker.simulators.dbt_cloud import DbtCloudConfig, DbtCloudSimulator
from jobtracker.simulators.fullstory import FullStorySimulator, SimulatorConfig
from jobtracker.simulators.keboola import KeboolaSimulator, KeboolaSimulatorConfig

_UNSET = object()


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
    # Another FullStory-compatible endpoint in place of the simulator (not started then); its key is
    # stack_api_key (default: the offline demo key).
    fullstory_url: str | None = None
    # Another Keboola-compatible stack in place of the Keboola simulator (not started then), and the token
    # the stack's Keboola secret holds (default: the Keboola simulator's, else an offline demo token).
    keboola_url: str | None = None
    keboola_token: str | None = None
    databricks_config: DatabricksConfig | None = None
    dbt_cloud_config: DbtCloudConfig | None = None
    stack: OfflineStack = field(init=False, default=None)  # type: ignore[assignment]
    simulator: FullStorySimulator | None = field(init=False, default=None)  # None with fullstory_url
    keboola: KeboolaSimulator | None = field(init=False, default=None)  # None with keboola_url
    databricks: DatabricksSimulator = field(init=False, default=None)  # type: ignore[assignment]
    dbt_cloud: DbtCloudSimulator = field(init=False, default=None)  # type: ignore[assignment]
    api: OfflineApiServer | None = field(init=False, default=None)
    aws_endpoint: str | None = field(init=False, default=None)
    _moto_server: Any = field(init=False, default=None)
    _saved_emulator_host: Any = field(init=False, default=_UNSET)

    def __enter__(self) -> OfflineSession:
        # Powertools warns on every invocation that publishes no metric; offline that is noise.
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        config = self.simulator_config or SimulatorConfig(processing_seconds=0.0, polls_to_complete=2)
        if config.api_key is None:
            config.api_key = LOCAL_API_KEY
        keboola_config = self.keboola_config or KeboolaSimulatorConfig()
        try:
            if self.fullstory_url is None:
                self.simulator = FullStorySimulator(config, port=self.simulator_port).start()
            if self.keboola_url is None:
                self.keboola = self._start_keboola()
            self.databricks = DatabricksSimulator(self.databricks_config).start()
            self.dbt_cloud = DbtCloudSimulator(self.dbt_cloud_config).start()
            fullstory_url = self.simulator.base_url if self.simulator else str(self.fullstory_url)
            # Jobs of spec types (http:<name>) reach only these hosts; plain http to the simulators on
            # 127.0.0.1 is the offline stack's own setting (tracker.providers.spec.hosts).
            http_hosts = [url.split("://", 1)[1].split("/", 1)[0] for url in (
                fullstory_url, self.databricks.base_url, self.dbt_cloud.base_url
            )]
            params = {
                "FullStoryBaseUrl": fullstory_url,
                "DatabricksHost": self.databricks.base_url,
                "DbtCloudUrl": self.dbt_cloud.base_url,
                "HttpJobHosts": ",".join(http_hosts),
                "LogLevel": "WARNING",
                # Offline every principal of the local account is an admin (uploads through the emulated
                # endpoint carry no principal); pass AdminPrincipals to try the per-caller model.
                "AdminPrincipals": "arn:aws:iam::123456789012:",
                "KeboolaStacks": self.keboola.base_url if self.keboola else self.keboola_url,
                **self.parameters,
            }
            fullstory_key = self.stack_api_key or (config.api_key if self.simulator else LOCAL_API_KEY)
            keboola_token = self.keboola_token or (keboola_config.token if self.keboola else None)
            if self.aws_port is not None:
                # First, so the stack's functions reach S3 through it and presign URLs that point at it.
                from moto.server import ThreadedMotoServer

                self._moto_server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.aws_port, verbose=False)
                self._moto_server.start()
                host, port = self._moto_server.get_host_and_port()
                self.aws_endpoint = f"http://{host}:{port}"
            self.stack = OfflineStack(
                parameters=params,
                api_key=fullstory_key,
                # Each secret holds its own provider's credential: a FullStory key never reaches a Keboola stack.
                secrets={
                    "FullStoryApiKeySecretArn": fullstory_key,
                    "KeboolaTokenSecretArn": keboola_token or LOCAL_KEBOOLA_TOKEN,
                },
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

    def _start_keboola(self) -> KeboolaSimulator:
        """The Keboola simulator and its file storage, reachable by the tracker in this process the way
        Keboola's is in AWS. S3 (backend aws): the export's files go into the one offline S3 (moto), where
        the tracker's own buckets are; in AWS too both are buckets of one S3, and a process-wide
        AWS_ENDPOINT_URL_S3 here would also take the tracker's own S3 calls away from moto. Any outside
        S3 client reaches them at the emulated AWS endpoint (``aws_port``). GCS (gcp): Google's standard
        STORAGE_EMULATOR_HOST points at the simulator; Azure: the SAS connection string names it."""
        config = self.keboola_config or KeboolaSimulatorConfig()
        if config.backend == "aws" and config.s3_client is None:
            import functools

            import boto3

            # Made on first use, once the stack's moto is running.
            config.s3_client = functools.cache(lambda: boto3.client("s3", region_name="us-east-1"))
        keboola = KeboolaSimulator(config).start()
        if config.backend == "gcp":
            self._saved_emulator_host = os.environ.get("STORAGE_EMULATOR_HOST")
            os.environ["STORAGE_EMULATOR_HOST"] = keboola.base_url
        return keboola

    def __exit__(self, *exc: object) -> None:
        if self.api is not None:
            self.api.stop()
        if getattr(self, "stack", None) is not None:
            self.stack.stop()
        if self._moto_server is not None:
            self._moto_server.stop()
        self._stop_simulators()
        if self._saved_emulator_host is not _UNSET:
            if self._saved_emulator_host is None:
                os.environ.pop("STORAGE_EMULATOR_HOST", None)
            else:
                os.environ["STORAGE_EMULATOR_HOST"] = self._saved_emulator_host

    def _stop_simulators(self) -> None:
        for simulator in (self.simulator, self.keboola, self.databricks, self.dbt_cloud):
            if simulator is not None:
                simulator.stop()
