"""``smsgw bench --api`` runs end to end (tiny counts; figures are reported, never judged)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from smsgw.api.bench import LoadRun, _parser, report


def test_api_bench_runs_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "smsgw.api.bench", "--requests", "20", "--batches", "2",
         "--batch-size", "10", "--e2e-batches", "1", "--concurrency", "4", "--repeats", "2",
         "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    # Every request of every run answered 2xx (statuses are summed over the 2 runs).
    assert figures["bare_server"]["statuses"] == {"202": 40}
    assert figures["bare_hypercorn"]["statuses"] == {"202": 40}
    for phase in (figures["api_alone"], figures):
        assert phase["single"]["statuses"] == {"202": 40}
        assert phase["batch"]["statuses"] == {"202": 4}
        assert phase["single"]["runs"] == 2
        assert phase["single"]["requests_per_second"] > 0
        assert phase["batch"]["messages_per_second"] > 0
        assert phase["batch"]["messages_per_second"] > phase["batch"]["requests_per_second"]
        assert phase["single"]["server_cpu_per_request"] > 0
        assert phase["single"]["client_cpu_per_request"] > 0
        assert 0 < phase["single"]["p50"] <= phase["single"]["p99"]
    e2e = figures["end_to_end"]
    assert e2e["messages"] == 10
    assert e2e["submitted_per_second"] > 0 and e2e["receipted_per_second"] > 0
    # Webhooks on: each message's status changes (submitting, submitted, delivered) were
    # POSTed to the receiver, and the phase ended only once all were.
    assert e2e["webhooks"] >= 3 * 10
    assert e2e["webhooks_per_second"] > 0 and e2e["done_per_second"] > 0
    assert len(figures["load_average"]["before"]) == 3

    report(figures)  # the table printed without --json
    out = capsys.readouterr().out
    for text in ("bare server", "bare hypercorn", "x the requests/s of hypercorn",
                 "API alone", ">= 2,000 requests/s", ">= 10,000 messages/s",
                 ">= 3,000 messages/s", "load average", "client:", "simulator:", "receiver:",
                 "webhooks delivered"):  # fmt: skip
        assert text in out, text


def test_a_load_run_gets_its_key_even_when_the_key_begins_with_a_dash() -> None:
    # secrets.token_urlsafe draws "-" as a first character once in 64 keys.
    args = _parser().parse_args(
        LoadRun("http://127.0.0.1:1/api/v1", "-kBz", "batch", 3, 10, 2, "http://h/x").arguments()
    )
    assert (args.drive, args.key, args.mode) == ("http://127.0.0.1:1/api/v1", "-kBz", "batch")
    assert (args.requests, args.batch_size, args.concurrency) == (3, 10, 2)
    assert args.callback_url == "http://h/x"
