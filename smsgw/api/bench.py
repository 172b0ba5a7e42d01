"""``smsgw bench --api``: the HTTP API under many concurrent clients.

The gateway and its API run in this process, the simulator (receipts at once) in a child
process, and the clients in another child process (``--drive``), so that the client's own HTTP
work does not eat the server's CPU. Figures printed:

- single-message submissions: accepted requests/s, p50/p99 latency;
- batch submissions: accepted messages/s, p50/p99 latency per batch;
- end to end: from the first batch request to the last message submitted to the SMSC, and to
  the last delivery receipt, in messages/s.

It reports; it never fails on speed. The issue's targets (single >= 2,000 requests/s, batch
>= 10,000 messages/s, end to end >= 3,000 messages/s) are printed next to the figures.
"""

from __future__ import annotations

import argparse
import functools
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from smsgw.bench.gateway import Setup, SimulatorProcess, config_text
from smsgw.bench.report import print_table
from smsgw.config import parse_config
from smsgw.gateway import Gateway
from smsgw.model import MessageStatus

from .auth import hash_key
from .server import serve_api

__all__ = ["main"]

BODY = {"to": "+4915112345678", "from": "ACME", "text": "benchmark message"}
#: The longest the end-to-end phase waits for the last receipt.
E2E_TIMEOUT = 300.0


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


# --- the client process ---------------------------------------------------------------------


async def drive(
    url: str, key: str, mode: str, count: int, size: int, concurrency: int
) -> dict[str, Any]:
    """Send ``count`` requests (single messages, or batches of ``size``) over ``concurrency``
    connections; the figures as a dict."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    path = "/messages" if mode == "single" else "/messages/batch"
    body: dict[str, Any] = BODY if mode == "single" else {"messages": [BODY] * size}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=60.0
    ) as client:
        todo = iter(range(count))

        async def worker() -> None:
            for _ in todo:
                start = time.perf_counter()  # wall-clock: measuring elapsed time
                response = await client.post(path, json=body)
                latencies.append(time.perf_counter() - start)  # wall-clock
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        start = time.perf_counter()  # wall-clock
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
        elapsed = time.perf_counter() - start  # wall-clock
    accepted = statuses.get(202, 0)
    return {
        "seconds": elapsed,
        "requests_per_second": accepted / elapsed,
        "messages_per_second": accepted * (1 if mode == "single" else size) / elapsed,
        "p50": statistics.median(latencies) if latencies else 0.0,
        "p99": _percentile(latencies, 0.99),
        "statuses": {str(k): v for k, v in statuses.items()},
    }


async def _client_process(
    url: str, key: str, mode: str, count: int, size: int, concurrency: int
) -> dict[str, Any]:
    args = [
        sys.executable, "-m", "smsgw.api.bench", "--drive", url, "--key", key, "--mode", mode,
        "--requests", str(count), "--batch-size", str(size), "--concurrency", str(concurrency),
    ]  # fmt: skip
    result = await trio.run_process(args, capture_stdout=True, stderr=subprocess.DEVNULL)
    figures: dict[str, Any] = json.loads(result.stdout)
    return figures


# --- the server side ------------------------------------------------------------------------


async def _delivered(gateway: Gateway) -> tuple[int, int]:
    """(messages that reached the SMSC, messages delivered) according to the database."""
    counts = (await gateway.store.counts()).messages
    delivered = counts[MessageStatus.DELIVERED]
    return counts[MessageStatus.SUBMITTED] + delivered, delivered


async def _end_to_end(
    gateway: Gateway, url: str, key: str, args: argparse.Namespace
) -> dict[str, float]:
    before_submitted, before_delivered = await _delivered(gateway)
    total = args.e2e_batches * args.batch_size
    start = time.perf_counter()  # wall-clock
    await _client_process(url, key, "batch", args.e2e_batches, args.batch_size, args.concurrency)
    submitted_at = delivered_at = None
    with trio.move_on_after(E2E_TIMEOUT):
        while delivered_at is None:
            submitted, delivered = await _delivered(gateway)
            now = time.perf_counter()  # wall-clock
            if submitted_at is None and submitted - before_submitted >= total:
                submitted_at = now
            if delivered - before_delivered >= total:
                delivered_at = now
                submitted_at = submitted_at or now
            await trio.sleep(0.05)
    return {
        "messages": total,
        "submitted_per_second": total / (submitted_at - start) if submitted_at else 0.0,
        "receipted_per_second": total / (delivered_at - start) if delivered_at else 0.0,
    }


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    key = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="smsgw-api-bench-") as state:
        async with SimulatorProcess() as sim_port:
            text = config_text(Setup(host="127.0.0.1", port=sim_port), Path(state))
            text += (
                f'\n[[api.keys]]\nname = "bench"\nsha256 = "{hash_key(key)}"\n'
                'scopes = ["send", "read"]\n'
            )
            config = parse_config(text, source="bench", environ={})
            gateway = Gateway(config)
            async with trio.open_nursery() as nursery:
                await nursery.start(gateway.run)
                port = await nursery.start(functools.partial(serve_api, gateway, config))
                url = f"http://127.0.0.1:{port}/api/v1"
                with trio.fail_after(30):
                    while not any(h.bound for h in gateway.providers.snapshot().values()):
                        await trio.sleep(0.05)
                c = args.concurrency
                single = await _client_process(url, key, "single", args.requests, 1, c)
                batch = await _client_process(url, key, "batch", args.batches, args.batch_size, c)
                e2e = await _end_to_end(gateway, url, key, args)
                await gateway.drain(5.0)
                nursery.cancel_scope.cancel()
    return {"single": single, "batch": batch, "end_to_end": e2e}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def report(results: dict[str, Any]) -> None:
    single, batch, e2e = results["single"], results["batch"], results["end_to_end"]
    print_table(
        "HTTP API (gateway + API in one process, clients and simulator in others)",
        [
            ("what", "figure", "p50", "p99", "target"),
            ("single messages", f"{single['requests_per_second']:,.0f} requests/s",
             _ms(single["p50"]), _ms(single["p99"]), ">= 2,000 requests/s"),
            ("batches", f"{batch['messages_per_second']:,.0f} messages/s",
             _ms(batch["p50"]), _ms(batch["p99"]), ">= 10,000 messages/s"),
            ("end to end: submitted", f"{e2e['submitted_per_second']:,.0f} messages/s", "", "", ""),
            ("end to end: receipted", f"{e2e['receipted_per_second']:,.0f} messages/s", "", "",
             ">= 3,000 messages/s"),
        ],
    )  # fmt: skip
    refused = {k: v for part in (single, batch) for k, v in part["statuses"].items() if k != "202"}
    if refused:
        print(f"  answers other than 202: {refused}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smsgw bench --api",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=5000, help="single-message requests")
    parser.add_argument("--batches", type=int, default=40, help="batch requests")
    parser.add_argument("--batch-size", type=int, default=500, help="messages per batch")
    parser.add_argument("--e2e-batches", type=int, default=20, help="batches of the end-to-end run")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent client connections")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--drive", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["single", "batch"], help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.drive:  # the client process
        figures = trio.run(
            drive, args.drive, args.key, args.mode, args.requests, args.batch_size, args.concurrency
        )
        print(json.dumps(figures))
        return 0
    results = trio.run(_bench, args)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
