"""Which stack the command line talks to: flags > environment > config file > defaults.

    flag              environment                 config key      default
    --stack           JOBTRACKER_STACK            stack
    --local           JOBTRACKER_LOCAL=1          local = true
    --profile         JOBTRACKER_PROFILE          profile         boto3's chain (AWS_PROFILE, ...)
    --region          JOBTRACKER_REGION           region          boto3's chain (AWS_REGION, ...)
    --api-url         JOBTRACKER_API_URL          api_url         stack output ApiUrl
    --aws-endpoint    JOBTRACKER_AWS_ENDPOINT     aws_endpoint    (used with --local only)
    --inbox-bucket    JOBTRACKER_INBOX_BUCKET     inbox_bucket    stack output InboxBucketName
    --results-bucket  JOBTRACKER_RESULTS_BUCKET   results_bucket  stack output ResultsBucketName

With --local the defaults are those of `jobtracker local up`: API http://127.0.0.1:8000, AWS endpoint
http://127.0.0.1:5000, buckets jobtracker-local-inboxbucket and jobtracker-local-resultsbucket.

The config file is $JOBTRACKER_CONFIG, else $XDG_CONFIG_HOME/jobtracker/config.toml, else
~/.config/jobtracker/config.toml (TOML, top-level keys as above). --stack and --local choose the target
at the highest level that names one; naming both at one level is an error.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobtracker.client.errors import EXIT_USAGE, CliError

KEYS = ("stack", "local", "profile", "region", "api_url", "aws_endpoint", "inbox_bucket", "results_bucket")
LOCAL_API_URL = "http://127.0.0.1:8000"
LOCAL_AWS_ENDPOINT = "http://127.0.0.1:5000"
# `jobtracker local up` names resources <stack name>-<logical id>, the stack being "jobtracker-local".
LOCAL_INBOX_BUCKET = "jobtracker-local-inboxbucket"
LOCAL_RESULTS_BUCKET = "jobtracker-local-resultsbucket"
TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


@dataclass
class Settings:
    mode: str  # "local" (jobtracker local up) or "aws" (a deployed stack)
    stack: str | None = None
    profile: str | None = None
    region: str | None = None
    api_url: str | None = None
    aws_endpoint: str | None = None
    inbox_bucket: str | None = None
    results_bucket: str | None = None
    origin: dict[str, str] = field(default_factory=dict)  # key -> "flag" | "env" | "config" | "default"

    def target_flags(self) -> list[str]:
        """The flags that name this target again, for a hint such as `jobtracker watch ID --local`."""
        flags: list[str] = []
        if self.mode == "local":
            flags.append("--local")
            if self.origin.get("api_url") == "flag":
                flags += ["--api-url", str(self.api_url)]
            if self.origin.get("aws_endpoint") == "flag":
                flags += ["--aws-endpoint", str(self.aws_endpoint)]
        else:
            if self.stack and self.origin.get("stack") == "flag":
                flags += ["--stack", self.stack]
            elif not self.stack and self.origin.get("api_url") == "flag":
                flags += ["--api-url", str(self.api_url)]
            for key in ("profile", "region"):
                if self.origin.get(key) == "flag":
                    flags += [f"--{key}", str(getattr(self, key))]
        for key in ("inbox_bucket", "results_bucket"):
            if self.origin.get(key) == "flag":
                flags += ["--" + key.replace("_", "-"), str(getattr(self, key))]
        return flags


def config_path(env: Mapping[str, str]) -> Path:
    if env.get("JOBTRACKER_CONFIG"):
        return Path(env["JOBTRACKER_CONFIG"]).expanduser()
    base = Path(env["XDG_CONFIG_HOME"]).expanduser() if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "jobtracker" / "config.toml"


def load_config_file(path: Path, *, required: bool = False) -> dict[str, Any]:
    if not path.exists():
        if required:
            raise CliError(f"config file {path} does not exist (set by JOBTRACKER_CONFIG)", EXIT_USAGE)
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CliError(f"config file {path} cannot be read: {exc}", EXIT_USAGE) from exc
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise CliError(
            f"config file {path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(KEYS)})", EXIT_USAGE
        )
    for key, value in data.items():
        expected = bool if key == "local" else str
        if not isinstance(value, expected):
            raise CliError(f"config file {path}: {key} must be a {expected.__name__}", EXIT_USAGE)
    return data


def _env_values(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in KEYS:
        raw = env.get("JOBTRACKER_" + key.upper())
        if raw is None:
            continue
        if key == "local":
            lowered = raw.strip().lower()
            if lowered not in TRUE | FALSE:
                raise CliError(f"JOBTRACKER_LOCAL must be 1/true or 0/false, not {raw!r}", EXIT_USAGE)
            values[key] = lowered in TRUE
        elif raw:
            values[key] = raw
    return values


def resolve(flags: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Settings:
    """flags: the command's options (None or False when not given)."""
    env = os.environ if env is None else env
    path = config_path(env)
    levels = [
        ("flag", {k: v for k, v in flags.items() if k in KEYS and v not in (None, False, "")}),
        ("env", _env_values(env)),
        ("config", load_config_file(path, required=bool(env.get("JOBTRACKER_CONFIG")))),
    ]
    mode = None
    for origin, values in levels:
        local, stack = bool(values.get("local")), values.get("stack")
        if local and stack:
            where = {"flag": "--stack and --local", "env": "JOBTRACKER_STACK and JOBTRACKER_LOCAL"}.get(
                origin, f"both stack and local in {path}"
            )
            raise CliError(f"{where} name two targets; choose one", EXIT_USAGE)
        if local or stack:
            mode = "local" if local else "aws"
            break
    settings = Settings(mode=mode or "aws")
    for key in KEYS:
        if key == "local":
            continue
        for origin, values in levels:
            if values.get(key) not in (None, ""):
                setattr(settings, key, values[key])
                settings.origin[key] = origin
                break
    if settings.mode == "local":
        settings.stack = None
        for key, default in (
            ("api_url", LOCAL_API_URL),
            ("aws_endpoint", LOCAL_AWS_ENDPOINT),
            ("inbox_bucket", LOCAL_INBOX_BUCKET),
            ("results_bucket", LOCAL_RESULTS_BUCKET),
        ):
            if getattr(settings, key) is None:
                setattr(settings, key, default)
                settings.origin[key] = "default"
    elif mode is None and not settings.api_url:
        raise CliError(
            "no stack chosen: pass --stack NAME (a deployed stack) or --local (jobtracker local up)",
            EXIT_USAGE,
            hint=f'or set JOBTRACKER_STACK / JOBTRACKER_LOCAL=1, or stack = "..." in {path}',
        )
    for key in ("api_url", "aws_endpoint"):
        value = getattr(settings, key)
        if value is not None:
            if not value.startswith(("http://", "https://")):
                raise CliError(f"{key.replace('_', '-')} must be an http(s) URL, not {value!r}", EXIT_USAGE)
            setattr(settings, key, value.rstrip("/"))
    return settings
