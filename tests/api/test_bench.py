"""``smsgw bench --api`` runs end to end (tiny counts; figures are reported, never judged)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_api_bench_runs_and_reports() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "smsgw.api.bench", "--requests", "20", "--batches", "2",
         "--batch-size", "10", "--e2e-batches", "1", "--concurrency", "4", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["single"]["statuses"] == {"202": 20}
    assert figures["batch"]["statuses"] == {"202": 2}
    assert figures["single"]["requests_per_second"] > 0
    assert figures["batch"]["messages_per_second"] > 0
    e2e = figures["end_to_end"]
    assert e2e["messages"] == 10
    assert e2e["submitted_per_second"] > 0 and e2e["receipted_per_second"] > 0
