"""``smsgw bench --webhooks`` runs end to end on a tiny outbox (a real store, the receiver in a
child process) and prints its table; the figures themselves are not judged."""

from __future__ import annotations

import pytest

from smsgw.bench.cli import main


def test_the_webhook_bench_runs_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--webhooks", "--count", "40", "--runs", "1", "--concurrency", "4"]) == 0
    out = capsys.readouterr().out
    assert "Webhook deliveries: 40 rows, concurrency 4, batches of up to 100" in out
    rows = (
        "httpx client (as before)",
        "webhook_http pool (now)",
        "the pool, batched requests",
        "ratio now / before",
        "ratio batched / one a request",
    )
    for row in rows:
        assert row in out
