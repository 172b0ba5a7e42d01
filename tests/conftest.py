"""Shared test configuration.

Hypothesis profiles are chosen with the ``HYPOTHESIS_PROFILE`` environment variable:

- ``dev`` (default): quick, for the edit-test loop;
- ``ci``: more examples, no deadline (CI machines are shared and noisy);
- ``fuzz``: a long fuzz run (``nox -s fuzz``); ``SMSGW_FUZZ_EXAMPLES`` sets its budget per test.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "ci",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("SMSGW_FUZZ_EXAMPLES", "20000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


#: The variables through which a shell names a forward proxy (any case).
_PROXY_VARIABLES = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy"})


def pytest_configure(config: pytest.Config) -> None:
    """Tests talk to 127.0.0.1 only: a proxy named in the developer's or CI's environment must
    not catch their HTTP (the webhook pool and httpx both honour it, and so do the processes
    tests start). Removed before any fixture runs; tests of proxies set their own."""
    for name in list(os.environ):
        if name.lower() in _PROXY_VARIABLES:
            del os.environ[name]
