"""``smsgw bench --api``: the HTTP API under many concurrent clients.

Processes: this one runs the servers (first the bare HTTP servers, then the gateway with its
API); the SMSC simulator (receipts at once) runs in a child process, the webhook receiver of the
end-to-end phase in another, and the load generator in another (``--drive``,
:mod:`smsgw.api.bench_client`: pre-built requests over keep-alive connections, cheap enough
that it does not measure itself). On a small machine all of them share the cores: the figures
are for that, and say so.

Figures printed (medians of ``--repeats`` runs, with the load average before and after):

- bare server: a hello-world ASGI app on the API's HTTP server (:mod:`smsgw.asgi_server`),
  answering the same requests: the ceiling of the HTTP stack on this machine;
- bare hypercorn: the same app on hypercorn's Trio worker (with the settings the API had on it),
  the peer: the ratio of the two is printed;
- single-message submissions: accepted requests/s, p50/p99 latency;
- batch submissions: accepted messages/s, p50/p99 latency per batch;
- end to end, with webhooks: batches whose every message asks for its status webhooks (a
  receiver in another child process answers them): from the first request to the last message
  submitted to the SMSC, to the last delivery receipt, and to the last webhook delivered, in
  messages/s (and webhooks/s); then the same again with the receiver taking batches of up to
  ``--webhook-batch`` events per request (``[[webhooks.batching]]``, set by a reload).

- Kannel (the peer), when its ``bearerbox`` and ``smsbox`` are on ``PATH``: the end-to-end
  phase's messages through it, on the same simulator (:mod:`smsgw.bench.kannel`); the ratio of
  the two "all done" figures is printed.

It reports; it never fails on speed. The issue's targets (single >= 2,000 requests/s, batch
>= 10,000 messages/s, end to end >= 3,000 messages/s) are printed next to the figures.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import resource
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from smsgw.asgi import ASGIApp, Receive, Scope, Send, lifespan
from smsgw.asgi_server import ServerSettings, serve
from smsgw.bench import kannel
from smsgw.bench.gateway import ServerProcess, Setup, SimulatorProcess, config_text
from smsgw.bench.report import print_table
from smsgw.config import GatewayConfig, WebhookBatching, parse_config
from smsgw.gateway import Gateway
from smsgw.model import NotificationState
from smsgw.testing.ports import free_port

from .auth import hash_key
from .bench_client import build_request, load
from .server import bound_port, serve_api

__all__ = ["main"]

BODY = {"to": "+4915112345678", "from": "ACME", "text": "benchmark message"}
#: The longest the end-to-end phase waits for the last receipt.
E2E_TIMEOUT = 300.0
#: The longest one load run may take (a server that stops answering must not hang the bench).
DRIVE_TIMEOUT = 600.0

#: ``[queue] max_depth`` of the bench's gateways.
QUEUE_DEPTH = 10_000_000

#: The statuses whose changes the end-to-end phase's webhooks report.
E2E_STATUSES = ["submitted", "delivered", "undelivered", "expired", "rejected", "failed"]

TARGETS = {
    "single": ">= 2,000 requests/s",
    "batch": ">= 10,000 messages/s",
    "e2e": ">= 3,000 messages/s",
}


# --- the client process ---------------------------------------------------------------------


def _request_body(mode: str, size: int, callback_url: str | None = None) -> bytes:
    body = BODY if callback_url is None else {**BODY, "callback_url": callback_url}
    value: object = {"messages": [body] * size} if mode == "batch" else body
    return json.dumps(value, separators=(",", ":")).encode()


@attrs.frozen
class LoadRun:
    """One load run: ``count`` requests (single messages, batches of ``size``, ``hello``: a
    single message's request to the bare server, or ``get``: ``url`` itself, Kannel's
    one-message URL) over ``concurrency`` connections; with ``callback_url`` every message
    asks for its status webhooks there."""

    url: str
    key: str
    mode: str
    count: int
    size: int
    concurrency: int
    callback_url: str | None = None

    def arguments(self) -> list[str]:
        """Its command line (after ``-m smsgw.api.bench``). Values go as ``--name=value``: a
        random key may begin with ``-``."""
        args = [
            f"--drive={self.url}", f"--key={self.key}", f"--mode={self.mode}",
            f"--requests={self.count}", f"--batch-size={self.size}",
            f"--concurrency={self.concurrency}",
        ]  # fmt: skip
        if self.callback_url is not None:
            args.append(f"--callback-url={self.callback_url}")
        return args

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> LoadRun:
        return cls(
            args.drive,
            args.key,
            args.mode,
            args.requests,
            args.batch_size,
            args.concurrency,
            args.callback_url,
        )


async def drive(run: LoadRun) -> dict[str, Any]:
    """Make ``run`` (in the client process); the figures."""
    parts = urlsplit(run.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    if run.mode == "get":  # the peer's one-message URL, as it is
        request = build_request(host, port, f"{parts.path}?{parts.query}", {}, b"", "GET")
    else:
        path = parts.path + ("/messages/batch" if run.mode == "batch" else "/messages")
        headers = {"Authorization": f"Bearer {run.key}", "Content-Type": "application/json"}
        body = _request_body(run.mode, run.size, run.callback_url)
        request = build_request(host, port, path, headers, body)
    cpu = time.process_time()
    figures = await load(host, port, request, count=run.count, concurrency=run.concurrency)
    figures["client_cpu_per_request"] = (time.process_time() - cpu) / run.count
    figures["messages_per_second"] = figures["requests_per_second"] * (
        run.size if run.mode == "batch" else 1
    )
    return figures


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


async def _client_process(run: LoadRun) -> dict[str, Any]:
    """``run`` in a child process; its figures, with the CPU time per request this process
    (the server: all its threads) spent meanwhile."""
    server_cpu = _cpu_seconds(resource.RUSAGE_SELF)
    args = [sys.executable, "-m", "smsgw.api.bench", *run.arguments()]
    with trio.fail_after(DRIVE_TIMEOUT):
        result = await trio.run_process(args, capture_stdout=True, capture_stderr=True)
    figures: dict[str, Any] = json.loads(result.stdout)
    elapsed_cpu = _cpu_seconds(resource.RUSAGE_SELF) - server_cpu
    figures["server_cpu_per_request"] = elapsed_cpu / run.count
    return figures


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over ``runs``; statuses summed."""
    statuses: dict[str, int] = {}
    for run in runs:
        for status, n in run["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    names = (
        "requests_per_second",
        "messages_per_second",
        "p50",
        "p99",
        "server_cpu_per_request",
        "client_cpu_per_request",
    )
    return {
        **{name: statistics.median(run[name] for run in runs) for name in names},
        "runs": len(runs),
        "statuses": statuses,
    }


# --- the server side ------------------------------------------------------------------------


def _answering(status: int, body: bytes = b"", content_type: bytes | None = None) -> ASGIApp:
    """An ASGI app that reads each request whole and answers it ``status`` with ``body``."""
    # No Content-Length on a 204 (RFC 9110 forbids it there): an empty body needs none.
    headers = [(b"content-length", b"%d" % len(body))] if body else []
    if content_type is not None:
        headers.append((b"content-type", content_type))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body", False):
            pass
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


#: The bare server's app: what the API answers a single message, without the API.
_hello = _answering(
    202, b'{"id":"0","status":"queued","parts":1,"encoding":"gsm7"}', b"application/json"
)


def _hypercorn_config() -> HypercornConfig:
    """Hypercorn with the limits of the API's own server (as the API ran on it), for the peer."""
    limits = ServerSettings()
    hc = HypercornConfig()
    hc.bind = ["127.0.0.1:0"]
    hc.accesslog = None
    hc.errorlog = logging.getLogger("smsgw.api.bench.hypercorn")
    hc.keep_alive_timeout = limits.timeout
    hc.read_timeout = round(limits.timeout)  # hypercorn takes whole seconds here
    hc.include_server_header = False
    hc.h11_max_incomplete_size = limits.max_head
    hc.backlog = limits.backlog
    return hc


async def _bare(key: str, args: argparse.Namespace, *, peer: bool) -> dict[str, Any]:
    """The hello app on the API's server (or with ``peer``, on hypercorn), driven like the
    single phase."""
    async with trio.open_nursery() as nursery:
        app: Any = _hello  # hypercorn's types want its own scope TypedDicts
        if peer:
            binds: list[str] = await nursery.start(hypercorn_serve, app, _hypercorn_config())
        else:
            binds = await nursery.start(serve, app, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{bound_port(binds)}/api/v1"
        runs = [
            await _client_process(LoadRun(url, key, "hello", args.requests, 1, args.concurrency))
            for _ in range(args.repeats)
        ]
        nursery.cancel_scope.cancel()
    return _median(runs)


async def _counts(gateway: Gateway) -> tuple[int, int, int, int]:
    """Messages that reached the SMSC, receipts recorded, webhooks delivered (the gateway's
    counters) and webhooks waiting (the outbox's pending rows, over their partial index).
    Polled every few milliseconds, so nothing here walks a table: ``Store.counts()``, which
    does, took the store's connection from the writer long enough to slow down what this
    phase measures."""
    stats = gateway.stats()
    assert gateway.webhooks is not None
    waiting = (await gateway.store.notification_counts())[NotificationState.PENDING]
    return stats.submitted, stats.receipts, gateway.webhooks.stats().delivered, waiting


async def _drained(gateway: Gateway) -> None:
    """Until the earlier phases' messages are sent and receipted (every message of the bench
    asks for a receipt), at most E2E_TIMEOUT. Their receipts must not be counted as the
    end-to-end phase's: an empty queue is not enough, the last receipts come after it."""
    with trio.move_on_after(E2E_TIMEOUT):
        while True:
            depth = await gateway.queue_depth()
            stats = gateway.stats()
            sent = depth.ready + depth.delayed + depth.leased == 0
            if sent and stats.receipts >= stats.segments_submitted:
                return
            await trio.sleep(0.1)


async def _end_to_end(
    gateway: Gateway, url: str, key: str, args: argparse.Namespace
) -> dict[str, float]:
    """Batches through the API, every message asking for its status webhooks (a receiver in a
    child process answers them): from the first request until every message is submitted,
    receipted, and every webhook delivered."""
    # The earlier phases' messages are sent first: this phase measures its own only.
    await _drained(gateway)
    submitted0, delivered0, hooks0, _ = await _counts(gateway)
    total = args.e2e_batches * args.batch_size
    # The receiver of smsgw bench --webhooks: h11, 204 at once (a client's receiver runs on
    # its own machine; this one should take as little of the shared cores as it can).
    receiver = [sys.executable, "-m", "smsgw.bench.webhooks", "--serve-receiver"]
    async with ServerProcess(receiver) as port:
        cpu = _cpu_seconds(resource.RUSAGE_SELF)
        start = time.perf_counter()  # wall-clock
        hooked = LoadRun(
            url,
            key,
            "batch",
            args.e2e_batches,
            args.batch_size,
            args.batch_concurrency,
            callback_url=f"http://127.0.0.1:{port}/hook",
        )
        await _client_process(hooked)
        submitted_at = delivered_at = hooked_at = None
        with trio.move_on_after(E2E_TIMEOUT):
            while hooked_at is None:
                submitted, delivered, hooks, waiting = await _counts(gateway)
                now = time.perf_counter()  # wall-clock
                if submitted_at is None and submitted - submitted0 >= total:
                    submitted_at = now
                if delivered_at is None and delivered - delivered0 >= total:
                    delivered_at = now
                    submitted_at = submitted_at or now
                if delivered_at is not None and waiting == 0:
                    hooked_at = now
                await trio.sleep(0.05)
        cpu = _cpu_seconds(resource.RUSAGE_SELF) - cpu
    hooks = (await _counts(gateway))[2] - hooks0

    def rate(count: float, at: float | None) -> float:
        return count / (at - start) if at else 0.0

    return {
        "messages": total,
        "submitted_per_second": rate(total, submitted_at),
        "receipted_per_second": rate(total, delivered_at),
        "webhooks": hooks,
        "webhooks_per_second": rate(hooks, hooked_at),
        "done_per_second": rate(total, hooked_at),
        "cpu_per_message": cpu / total,
    }


async def _kannel(smsc_port: int, args: argparse.Namespace) -> dict[str, Any] | None:
    """The end-to-end phase's messages through Kannel (:mod:`smsgw.bench.kannel`) on the same
    simulator: from the first request until its last status callback. None when Kannel is not
    installed; ``{"error": ...}`` when it would not run (the gateway's figures stand)."""
    if not kannel.available():
        return None
    failure: list[str] = []
    try:
        return await _kannel_run(smsc_port, args)
    except* (RuntimeError, OSError, ValueError, httpx.HTTPError) as group:
        failure += [f"{type(exc).__name__}: {exc}" for exc in group.exceptions]
    return {"error": "; ".join(failure)}


async def _kannel_run(smsc_port: int, args: argparse.Namespace) -> dict[str, Any]:
    total = args.e2e_batches * args.batch_size
    counter = kannel.Counter()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(kannel.serve_counter, counter)
        async with kannel.open_kannel(smsc_port) as peer:
            cpu = peer.cpu_seconds()
            start = time.perf_counter()  # wall-clock
            url = peer.sendsms_url(f"http://127.0.0.1:{port}/status")
            accepted = await _client_process(LoadRun(url, "", "get", total, 1, args.concurrency))
            expected = kannel.CALLBACKS_PER_MESSAGE * total
            with trio.move_on_after(E2E_TIMEOUT):
                while counter.count < expected:
                    quiet = time.perf_counter() - max(counter.last, start)  # wall-clock
                    if quiet >= kannel.QUIET:
                        break  # the rest is not coming (receipts Kannel could not match)
                    await trio.sleep(0.05)
            seconds = max(counter.last, start) - start
            cpu = peer.cpu_seconds() - cpu
            lost = await peer.unmatched_receipts()
        nursery.cancel_scope.cancel()
    return {
        "messages": total,
        "accepted": accepted,
        "callbacks": counter.count,
        "callbacks_per_second": counter.count / seconds if seconds else 0.0,
        "done_per_second": total / seconds if seconds else 0.0,
        "receipts_lost": lost,
        "cpu_per_message": cpu / total,
    }


def _config(state: str, smsc_port: int, key: str) -> GatewayConfig:
    text = config_text(Setup(host="127.0.0.1", port=smsc_port), Path(state))
    # Every phase's messages fit in the queue: this measures acceptance, not backpressure.
    text = text.replace("[queue]\n", f"[queue]\nmax_depth = {QUEUE_DEPTH}\n", 1)
    # Webhooks for the changes Kannel calls back for (its dlr-mask 27): accepted by the SMSC,
    # and the final state. Not "submitting", the gateway's own step before the SMSC answers.
    text += f"\n[webhooks]\nstatuses = {json.dumps(E2E_STATUSES)}\n"
    text += f'\n[[api.keys]]\nname = "bench"\nsha256 = "{hash_key(key)}"\nscopes = ["send"]\n'
    return parse_config(text, source="bench", environ={})


async def _api(
    config: GatewayConfig, key: str, args: argparse.Namespace, *, end_to_end: bool
) -> dict[str, Any]:
    """The single and batch phases against a gateway with its API; with ``end_to_end`` its
    provider is the simulator (bound: the messages are sent meanwhile) and the end-to-end
    phase follows, else nothing listens at the provider's address (the API alone)."""
    gateway = Gateway(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run)
        port = await nursery.start(functools.partial(serve_api, gateway, config))
        url = f"http://127.0.0.1:{port}/api/v1"
        if end_to_end:
            with trio.fail_after(30):
                while not any(h.bound for h in gateway.providers.snapshot().values()):
                    await trio.sleep(0.05)
        single_run = LoadRun(url, key, "single", args.requests, 1, args.concurrency)
        batch_run = LoadRun(
            url, key, "batch", args.batches, args.batch_size, args.batch_concurrency
        )
        single = [await _client_process(single_run) for _ in range(args.repeats)]
        batch = [await _client_process(batch_run) for _ in range(args.repeats)]
        results = {"single": _median(single), "batch": _median(batch)}
        if end_to_end:
            results["end_to_end"] = await _end_to_end(gateway, url, key, args)
            if args.webhook_batch:
                # Again, with the receiver taking batches (a reload, as an operator would).
                most = args.webhook_batch
                batching = WebhookBatching(prefix="http://127.0.0.1:", max_events=most)
                webhooks = attrs.evolve(config.webhooks, batching=(batching,))
                await gateway.reload(attrs.evolve(config, webhooks=webhooks))
                results["end_to_end_batched"] = await _end_to_end(gateway, url, key, args)
            await gateway.drain(5.0)
        nursery.cancel_scope.cancel()
    return results


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    key = secrets.token_urlsafe(24)
    load_before = os.getloadavg()
    bare = await _bare(key, args, peer=False)
    peer = await _bare(key, args, peer=True)
    with tempfile.TemporaryDirectory(prefix="smsgw-api-bench-") as state:
        alone = await _api(_config(state, free_port(), key), key, args, end_to_end=False)
    with tempfile.TemporaryDirectory(prefix="smsgw-api-bench-") as state:
        async with SimulatorProcess() as sim_port:
            running = await _api(_config(state, sim_port, key), key, args, end_to_end=True)
            peer_e2e = await _kannel(sim_port, args)
    return {
        "bare_server": bare,
        "bare_hypercorn": peer,
        "api_alone": alone,
        **running,
        "kannel": peer_e2e,
        "webhook_batch": args.webhook_batch,
        "load_average": {"before": load_before[:3], "after": os.getloadavg()[:3]},
        "cpus": os.cpu_count(),
        "processes": {
            "server": "(this process) the bare servers, then each gateway with its API "
            "(smsgw.asgi_server)",
            "simulator": "SMSC simulator, child process (last phases only)",
            "receiver": "webhook receiver (h11, answers 204), child process (end to end only)",
            "kannel": "Kannel's bearerbox and smsbox, child processes, and their callback "
            "receiver in this process (the peer, last)",
            "client": "load generator (smsgw.api.bench_client), one child process per run",
        },
    }


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _cpu(figures: dict[str, Any]) -> str:
    server = figures["server_cpu_per_request"] * 1e6
    client = figures["client_cpu_per_request"] * 1e6
    return f"{server:,.0f} / {client:,.0f} us"


def _row(what: str, figures: dict[str, Any], unit: str, target: str = "") -> tuple[str, ...]:
    figure = f"{figures[f'{unit}_per_second']:,.0f} {unit}/s"
    return (what, figure, _ms(figures["p50"]), _ms(figures["p99"]), _cpu(figures), target)


def report(results: dict[str, Any]) -> None:
    bare, peer = results["bare_server"], results["bare_hypercorn"]
    alone, single = results["api_alone"], results["single"]
    batch, e2e = results["batch"], results["end_to_end"]
    print_table(
        f"HTTP API, medians of {single['runs']} runs on {results['cpus']} CPUs "
        "(server, client and simulator in separate processes)",
        [
            ("what", "figure", "p50", "p99", "CPU/request: server / client", "target"),
            _row("bare server (the ceiling)", bare, "requests"),
            _row("bare hypercorn (the peer)", peer, "requests"),
            _row("API alone: single messages", alone["single"], "requests", TARGETS["single"]),
            _row("API alone: batches", alone["batch"], "messages", TARGETS["batch"]),
            _row("sending: single messages", single, "requests", TARGETS["single"]),
            _row("sending: batches", batch, "messages", TARGETS["batch"]),
            ("end to end: submitted", f"{e2e['submitted_per_second']:,.0f} messages/s",
             "", "", "", ""),
            ("end to end: receipted", f"{e2e['receipted_per_second']:,.0f} messages/s",
             "", "", "", ""),
            ("end to end: webhooks delivered",
             f"{e2e['webhooks_per_second']:,.0f} webhooks/s ({e2e['webhooks']:,})",
             "", "", "", ""),
            ("end to end: all done", f"{e2e['done_per_second']:,.0f} messages/s",
             "", "", f"{e2e['cpu_per_message'] * 1e6:,.0f} us/message", TARGETS["e2e"]),
            *_batched_rows(results.get("end_to_end_batched"), results["webhook_batch"]),
            *_kannel_rows(results["kannel"]),
        ],
    )  # fmt: skip
    before, after = results["load_average"]["before"], results["load_average"]["after"]
    print(
        f"  load average before {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}, "
        f"after {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}"
    )
    ratio = bare["requests_per_second"] / peer["requests_per_second"]
    print(f"  the API's server answers {ratio:.1f}x the requests/s of hypercorn (bare, same app)")
    _kannel_notes(e2e, results["kannel"])
    for role, what in results["processes"].items():
        print(f"  {role}: {what}")
    print(
        "  API alone: no provider bound (nothing is sent); sending: the simulator is bound and "
        "the gateway sends the messages while they arrive"
    )
    refused = {
        k: v
        for part in (bare, peer, alone["single"], alone["batch"], single, batch)
        for k, v in part["statuses"].items()
        if not k.startswith("2")
    }
    if refused:
        print(f"  answers other than 2xx: {refused}")


def _batched_rows(e2e: dict[str, Any] | None, most: int) -> list[tuple[str, ...]]:
    if e2e is None:
        return []
    return [
        (
            f"end to end, webhooks batched ({most} at most): webhooks delivered",
            f"{e2e['webhooks_per_second']:,.0f} webhooks/s ({e2e['webhooks']:,})",
            "",
            "",
            "",
            "",
        ),
        (
            f"end to end, webhooks batched ({most} at most): all done",
            f"{e2e['done_per_second']:,.0f} messages/s",
            "",
            "",
            f"{e2e['cpu_per_message'] * 1e6:,.0f} us/message",
            TARGETS["e2e"],
        ),
    ]


def _kannel_rows(peer: dict[str, Any] | None) -> list[tuple[str, ...]]:
    if peer is None or "error" in peer:
        return []
    accepted = peer["accepted"]
    return [
        (
            "Kannel (the peer): accepted",
            f"{accepted['requests_per_second']:,.0f} requests/s",
            _ms(accepted["p50"]),
            _ms(accepted["p99"]),
            "",
            "",
        ),
        (
            "Kannel (the peer): all done",
            f"{peer['done_per_second']:,.0f} messages/s",
            "",
            "",
            f"{peer['cpu_per_message'] * 1e6:,.0f} us/message",
            "",
        ),
    ]


def _kannel_notes(e2e: dict[str, Any], peer: dict[str, Any] | None) -> None:
    if peer is None:
        print("  Kannel (the peer) is not installed (Debian: apt install kannel): no ratio")
        return
    if "error" in peer:
        print(f"  Kannel (the peer) did not run ({peer['error']}): no ratio")
        return
    ratio = e2e["done_per_second"] / peer["done_per_second"] if peer["done_per_second"] else 0
    print(
        f"  end to end, all done: the gateway does {ratio:.2f}x Kannel's messages/s (same "
        "simulator and machine, one run each; Kannel takes one message a request, the gateway "
        f"batches); Kannel: {peer['callbacks']:,} callbacks of {2 * peer['messages']:,}, "
        f"{peer['receipts_lost']:,} receipts lost (they came before their submit_sm_resp was "
        "processed); its store file is not synced at each message, the gateway's queue is"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smsgw bench --api",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=6000, help="single-message requests")
    parser.add_argument("--batches", type=int, default=40, help="batch requests")
    parser.add_argument("--batch-size", type=int, default=500, help="messages per batch")
    parser.add_argument("--e2e-batches", type=int, default=20, help="batches of the end-to-end run")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="client connections for single messages"
    )
    parser.add_argument(
        "--batch-concurrency", type=int, default=4, help="client connections for batches"
    )
    parser.add_argument(
        "--webhook-batch",
        type=int,
        default=100,
        help="run the end-to-end phase again with the receiver taking up to this many events "
        "per webhook request ([[webhooks.batching]]); 0: not",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (median printed)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--drive", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument(
        "--mode", choices=["single", "batch", "hello", "get"], help=argparse.SUPPRESS
    )
    parser.add_argument("--callback-url", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.drive:  # the client process
        figures = trio.run(drive, LoadRun.from_arguments(args))
        print(json.dumps(figures))
        return 0
    # The gateway without a provider logs every failed connect: not news in a benchmark.
    logging.basicConfig(level=logging.ERROR)
    results = trio.run(_bench, args)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
