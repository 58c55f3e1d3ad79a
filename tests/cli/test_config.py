"""Config precedence: flags > environment > config file > defaults."""

from __future__ import annotations

import pytest

from jobtracker.client.config import LOCAL_API_URL, resolve
from jobtracker.client.errors import CliError


def _env(tmp_path, text=None, **values):
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    if text is not None:
        (tmp_path / "jobtracker").mkdir(exist_ok=True)
        (tmp_path / "jobtracker" / "config.toml").write_text(text)
    env.update({f"JOBTRACKER_{k.upper()}": v for k, v in values.items()})
    return env


def test_flags_beat_env_beat_the_config_file(tmp_path):
    env = _env(
        tmp_path, 'stack = "from-file"\nregion = "eu-west-1"\nprofile = "file"\n', stack="from-env", region="us-west-2"
    )
    settings = resolve({"region": "ap-south-1"}, env)
    assert (settings.mode, settings.stack, settings.region, settings.profile) == (
        "aws", "from-env", "ap-south-1", "file"
    )  # fmt: skip
    assert settings.origin == {"stack": "env", "region": "flag", "profile": "config"}


def test_local_from_a_flag_beats_a_stack_from_env_and_takes_local_defaults(tmp_path):
    settings = resolve({"local": True}, _env(tmp_path, stack="prod"))
    assert settings.mode == "local"
    assert settings.stack is None
    assert settings.api_url == LOCAL_API_URL
    assert settings.aws_endpoint == "http://127.0.0.1:5000"
    assert settings.inbox_bucket == "jobtracker-local-inboxbucket"
    assert settings.target_flags() == ["--local"]


def test_env_local_and_overrides(tmp_path):
    env = _env(tmp_path, "local = true\n", api_url="http://127.0.0.1:9000/")
    settings = resolve({}, env)
    assert (settings.mode, settings.api_url) == ("local", "http://127.0.0.1:9000")


def test_a_stack_flag_beats_local_from_the_config_file(tmp_path):
    settings = resolve({"stack": "prod", "profile": "ops"}, _env(tmp_path, "local = true\n"))
    assert (settings.mode, settings.stack) == ("aws", "prod")
    assert settings.target_flags() == ["--stack", "prod", "--profile", "ops"]


@pytest.mark.parametrize(
    ("flags", "env", "text", "message"),
    [
        ({"stack": "a", "local": True}, {}, None, "--stack and --local name two targets"),
        ({}, {"local": "maybe"}, None, "JOBTRACKER_LOCAL must be 1/true or 0/false"),
        ({}, {}, "colour = 'blue'\n", "unknown key(s) colour"),
        ({}, {}, "stack = [\n", "cannot be read"),
        ({}, {}, "local = 'yes'\n", "local must be a bool"),
        ({}, {}, None, "no stack chosen"),
    ],
)
def test_configuration_errors_are_usage_errors(tmp_path, flags, env, text, message):
    with pytest.raises(CliError) as raised:
        resolve(flags, _env(tmp_path, text, **env))
    assert raised.value.exit_code == 2
    assert message in raised.value.message


def test_jobtracker_config_points_at_another_file(tmp_path):
    other = tmp_path / "other.toml"
    other.write_text('stack = "elsewhere"\n')
    assert resolve({}, {"JOBTRACKER_CONFIG": str(other)}).stack == "elsewhere"
    with pytest.raises(CliError, match="does not exist"):
        resolve({}, {"JOBTRACKER_CONFIG": str(tmp_path / "missing.toml")})
