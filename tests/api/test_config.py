"""``[api]`` and ``[[api.keys]]`` in the configuration file."""

from __future__ import annotations

import pytest

from smsgw.api import hash_key
from smsgw.config import ApiScope, ConfigError, parse_config

PROVIDER = """
[[providers]]
name = "a"
host = "127.0.0.1"
port = 2775
system_id = "a"
password = "p"
"""
H1, H2 = hash_key("one"), hash_key("two")


def parse(text: str) -> object:
    return parse_config(PROVIDER + text, source="test.toml", environ={"H": H1})


def test_keys_and_limits() -> None:
    config = parse_config(
        PROVIDER
        + f"""
[api]
max_batch = 50
max_body_size = 4096
max_parts = 3
idempotency_window = "1h"

[[api.keys]]
name = "shop"
sha256 = "${{H}}"
scopes = ["send", "read"]
rate_per_second = 2.5
callback_url = "https://shop.example/cb"

[[api.keys]]
name = "ops"
sha256 = "{H2}"
scopes = ["admin"]
""",
        source="test.toml",
        environ={"H": H1},
    )
    api = config.api
    assert (api.max_batch, api.max_body_size, api.max_parts) == (50, 4096, 3)
    assert api.idempotency_window == 3600.0
    shop, ops = api.keys
    assert shop.sha256 == H1 and shop.scopes == (ApiScope.SEND, ApiScope.READ)
    assert shop.effective_burst == 3 and ops.effective_burst is None
    assert "sha256" not in repr(shop)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[[api.keys]]\nname = "x"\nsha256 = "abc"\nscopes = ["send"]', "api.keys[0].sha256"),
        (f'[[api.keys]]\nname = "x"\nsha256 = "{H1}"\nscopes = []', "api.keys[0].scopes"),
        (f'[[api.keys]]\nname = "x"\nsha256 = "{H1}"\nscopes = ["root"]', "api.keys[0].scopes[0]"),
        (f'[[api.keys]]\nname = "x y"\nsha256 = "{H1}"\nscopes = ["send"]', "api.keys[0].name"),
        (
            f'[[api.keys]]\nname = "x"\nsha256 = "{H1}"\nscopes = ["send"]\ncallback_url = "x"',
            "api.keys[0].callback_url",
        ),
        (
            f'[[api.keys]]\nname = "x"\nsha256 = "{H1}"\nscopes = ["send"]\n'
            f'[[api.keys]]\nname = "x"\nsha256 = "{H2}"\nscopes = ["send"]',
            "api.keys[1].name",
        ),
        (
            f'[[api.keys]]\nname = "x"\nsha256 = "{H1}"\nscopes = ["send"]\n'
            f'[[api.keys]]\nname = "y"\nsha256 = "{H1}"\nscopes = ["send"]',
            "api.keys[1].sha256",
        ),
        ("[api]\nmax_batch = 0", "api.max_batch"),
        ("[api]\nmax_body_size = 10", "api.max_body_size"),
        ("[api]\nmax_parts = 300", "api.max_parts"),
    ],
)
def test_problems_are_named(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as failure:
        parse(text)
    assert f"{problem}:" in str(failure.value)
    assert H1 not in str(failure.value)  # a hash is never quoted back
