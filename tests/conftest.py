"""Shared test configuration.

Hypothesis profiles are chosen with the ``HYPOTHESIS_PROFILE`` environment variable:

- ``dev`` (default): quick, for the edit-test loop;
- ``ci``: more examples, no deadline (CI machines are shared and noisy);
- ``fuzz``: a long fuzz run (``nox -s fuzz``); ``SMSGW_FUZZ_EXAMPLES`` sets its budget per test.
"""

from __future__ import annotations

import os

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
