"""``smsgw bench --api`` runs end to end (tiny counts; figures are reported, never judged)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from smsgw.api.bench import LoadRun, _kannel, _parser, report
from smsgw.bench import kannel
from smsgw.testing.ports import free_port


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
    # Webhooks on: each message's status changes to submitted and delivered (as Kannel's
    # callbacks) were POSTed to the receiver, and the phase ended only once all were.
    assert e2e["webhooks"] >= 2 * 10
    assert e2e["webhooks_per_second"] > 0 and e2e["done_per_second"] > 0
    assert e2e["cpu_per_message"] > 0
    # Again with the webhooks batched (the default --webhook-batch): the same webhooks, all.
    batched = figures["end_to_end_batched"]
    assert batched["messages"] == 10 and batched["webhooks"] >= 2 * 10
    assert batched["done_per_second"] > 0
    assert figures["webhook_batch"] == 100
    assert len(figures["load_average"]["before"]) == 3
    peer = figures["kannel"]
    if kannel.available():  # the same messages through Kannel, on the same simulator
        assert peer["messages"] == 10 and peer["accepted"]["statuses"] == {"202": 10}
        # Two callbacks a message, but for receipts Kannel could not match (it keeps none
        # that comes before its submit_sm_resp was processed).
        assert peer["callbacks"] + peer["receipts_lost"] == 2 * 10
        assert peer["done_per_second"] > 0  # (its CPU for 10 messages may be under a tick)
    else:
        assert peer is None

    report(figures)  # the table printed without --json
    out = capsys.readouterr().out
    for text in ("bare server", "bare hypercorn", "x the requests/s of hypercorn",
                 "API alone", ">= 2,000 requests/s", ">= 10,000 messages/s",
                 ">= 3,000 messages/s", "load average", "client:", "simulator:", "receiver:",
                 "webhooks delivered"):  # fmt: skip
        assert text in out, text
    if kannel.available():
        assert "Kannel (the peer): all done" in out and "x Kannel's messages/s" in out
    report({**figures, "kannel": None})  # where Kannel is not installed
    assert "Kannel (the peer) is not installed" in capsys.readouterr().out
    report({**figures, "kannel": {"error": "RuntimeError: no bind"}})
    assert "Kannel (the peer) did not run (RuntimeError: no bind): no ratio" in (
        capsys.readouterr().out
    )


async def test_a_kannel_that_cannot_bind_is_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing listens at the SMSC's address: Kannel never binds, and the bench reports that
    instead of losing the gateway's figures (without Kannel installed: no peer, None)."""
    monkeypatch.setattr(kannel, "START_TIMEOUT", 2.0)
    args = _parser().parse_args(["--e2e-batches", "1", "--batch-size", "10"])
    with trio.fail_after(30):
        result = await _kannel(free_port(), args)  # nothing listens there
    if kannel.available():
        assert result is not None
        assert result["error"].startswith("RuntimeError: Kannel's SMPP connections were not bound")
    else:
        assert result is None


def test_a_load_run_gets_its_key_even_when_the_key_begins_with_a_dash() -> None:
    # secrets.token_urlsafe draws "-" as a first character once in 64 keys.
    args = _parser().parse_args(
        LoadRun("http://127.0.0.1:1/api/v1", "-kBz", "batch", 3, 10, 2, "http://h/x").arguments()
    )
    assert (args.drive, args.key, args.mode) == ("http://127.0.0.1:1/api/v1", "-kBz", "batch")
    assert (args.requests, args.batch_size, args.concurrency) == (3, 10, 2)
    assert args.callback_url == "http://h/x"


STATUS = """Kannel bearerbox version `1.4.5'.

Status: running, uptime 0d 0h 2m 10s

SMS: received 0 (0 queued), sent 2000 (0 queued), store size 0
DLR: received 3992, sent 0
DLR: inbound (66.53,30.73,30.73) msg/sec, outbound (0.00,0.00,0.00) msg/sec
DLR: 8 queued, using internal storage
"""


def test_kannel_status_page_gives_the_receipts_it_could_not_match() -> None:
    assert kannel.unmatched_receipts(STATUS) == 8
    with pytest.raises(ValueError, match="DLR: N queued"):
        kannel.unmatched_receipts("Status: running\n")


def test_kannel_conf_binds_the_account_as_often_as_asked(tmp_path: Path) -> None:
    ports = kannel.Ports(admin=13000, smsbox=13001, sendsms=13013)
    conf = kannel.kannel_conf(tmp_path, ports, 2775, connections=3, window=64)
    assert conf.count("group = smsc\n") == 3
    assert conf.count("port = 2775\n") == 3 and conf.count("max-pending-submits = 64") == 3
    assert "admin-port = 13000" in conf and "sendsms-port = 13013" in conf
    assert f'store-location = "{tmp_path / "kannel.store"}"' in conf


async def test_kannel_callback_receiver_counts_requests(nursery: trio.Nursery) -> None:
    counter = kannel.Counter()
    port = await nursery.start(kannel.serve_counter, counter)
    async with httpx.AsyncClient(trust_env=False) as client:
        for status in (8, 1):
            response = await client.get(f"http://127.0.0.1:{port}/status?status={status}")
            assert response.status_code == 200
    assert counter.count == 2 and counter.last > 0
