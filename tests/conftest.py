"""Shared test configuration.

Hypothesis profiles are chosen with the ``HYPOTHESIS_PROFILE`` environment variable:

- ``dev`` (default): quick, for the edit-test loop;
- ``ci``: more examples, no deadline (CI machines are shared and noisy);
- ``fuzz``: a long fuzz run (``nox -s fuzz``); ``SMSGW_FUZZ_EXAMPLES`` sets its budget per test.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test CA (``ca.pem``) and a server certificate it signed for 127.0.0.1 and localhost
    (``server.pem``, ``server.key``), made with the openssl command line."""
    d = tmp_path_factory.mktemp("tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=smsgw test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=CA:FALSE\n"
        "authorityKeyIdentifier=keyid\n"
        "extendedKeyUsage=serverAuth\n"
    )
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip
    return d


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real redis-server (AOF on) for the whole session; tests keep apart by key prefix."""
    from smsgw.testing.redis import RedisServer

    with RedisServer.start(tmp_path_factory.mktemp("redis"), appendonly=True) as server:
        yield server
