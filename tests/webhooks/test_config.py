"""``[webhooks]`` in the configuration file."""

from __future__ import annotations

import pytest

from smsgw.config import ConfigError, WebhooksConfig, parse_config

PROVIDER = """
[[providers]]
name = "p1"
host = "127.0.0.1"
system_id = "sys"
password = "pw"
"""


def parse(text: str, environ: dict[str, str] | None = None) -> WebhooksConfig:
    return parse_config(PROVIDER + text, source="test.toml", environ=environ or {}).webhooks


def test_defaults_without_a_section() -> None:
    config = parse("")
    assert config == WebhooksConfig()
    assert config.secret is None and config.retry_period == 86_400.0


def test_every_key_with_env_secrets_and_durations() -> None:
    config = parse(
        """
[webhooks]
secret = "${HOOK_SECRET}"
timeout = "2s"
retry_period = "6h"
max_attempts = 20
backoff_initial = "500ms"
backoff_max = "10m"
backoff_multiplier = 3.0
jitter = 0.5
concurrency = 8
batch_size = 50
poll_interval = "250ms"

[[webhooks.secrets]]
prefix = "https://a.example/"
secret = "${A_SECRET}"

[[webhooks.secrets]]
prefix = "https://a.example/special/"
secret = "special"
""",
        {"HOOK_SECRET": "global", "A_SECRET": "client-a"},
    )
    assert (config.timeout, config.retry_period, config.backoff_initial) == (2.0, 21_600.0, 0.5)
    assert (config.backoff_max, config.backoff_multiplier, config.jitter) == (600.0, 3.0, 0.5)
    assert (config.max_attempts, config.concurrency, config.batch_size) == (20, 8, 50)
    assert config.poll_interval == 0.25
    assert config.secret_for("https://a.example/hook") == "client-a"
    assert config.secret_for("https://a.example/special/x") == "special"  # longest prefix wins
    assert config.secret_for("https://b.example/hook") == "global"
    assert "client-a" not in repr(config) and "global" not in repr(config)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[webhooks]\ntimeout = "0s"', "webhooks.timeout"),
        ("[webhooks]\nconcurrency = 0", "webhooks.concurrency"),
        ("[webhooks]\njitter = 1.5", "webhooks.jitter"),
        ('[webhooks]\nbackoff_initial = "1h"\nbackoff_max = "1m"', "backoff_max: must be at least"),
        ('[webhooks]\nsecret = ""', "webhooks.secret"),
        ('[[webhooks.secrets]]\nprefix = "ftp://x"\nsecret = "s"', "webhooks.secrets[0].prefix"),
        ("[webhooks]\nretries = 3", "retries"),
        ('[webhooks]\nsecret = "${MISSING}"', "MISSING"),
    ],
)
def test_bad_values_are_reported_with_their_path(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse(text)
