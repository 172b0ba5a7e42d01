"""``smsgw bench --webhooks``: the webhook deliverer draining a full outbox.

A real store (a SQLite file in a temporary directory, the gateway's durable settings) is filled
once with ``--count`` pending status notifications; each run copies that file, starts
:meth:`WebhookDeliverer.run` on the copy and times it until every row is recorded delivered.
The receiver is a small HTTP server (h11 on Trio) in a child process that answers every request
``204`` at once; its CPU is not counted in the deliverer's (it is printed apart).

Two HTTP clients are measured in the same run, one after the other on identical copies, under
the same deliverer: ``httpx`` (an ``httpx.AsyncClient`` used as the deliverer used it before
issue 6: status line only, so a new connection per request) and the deliverer's own keep-alive
pool (:mod:`smsgw.webhook_http`, h11 on Trio); then the pool again with the receiver taking
batches of up to ``--batch`` events per request (``[[webhooks.batching]]``: a receiver that
was down and comes back to a backlog). For each: deliveries per second and CPU
milliseconds per delivery of this process (all threads: the deliverer and the store's SQLite
threads), of which the Trio thread's, and the receiver process's; medians of ``--runs``, and
the ratios. CPU per delivery is the steadier figure on a shared machine. ``--profile FILE``
adds one run of the pool under cProfile and prints the hot spots. It reports; it never fails on
speed.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import os
import pstats
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs
import h11
import httpx
import trio

from smsgw.config import MAX_EVENTS_PER_REQUEST, WebhookBatching, WebhooksConfig
from smsgw.model import NewNotification, NotificationKind, NotificationState
from smsgw.storage import open_store
from smsgw.webhook_http import DeliveryFailed, HttpPool
from smsgw.webhooks import WebhookClient, WebhookDeliverer

from .gateway import ServerProcess
from .raw import _loadavg
from .report import print_table

__all__ = ["main"]

#: The longest one drain may take (a deliverer that stops delivering must not hang the bench).
DRAIN_TIMEOUT = 600.0
#: Rows written to the outbox per store call while filling it.
FILL_BATCH = 500
#: How often the drain checks whether it is done.
CHECK_INTERVAL = 0.01


# --- the receiver (child process) -----------------------------------------------------------


async def _answer(stream: trio.SocketStream) -> None:
    """One connection: answer each request 204 (keep-alive) until the client closes."""
    conn = h11.Connection(h11.SERVER)
    async with stream:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    return
                conn.receive_data(bytes(data))
            elif isinstance(event, h11.EndOfMessage):
                reply = conn.send(h11.Response(status_code=204, headers=[]))
                assert reply is not None
                try:
                    await stream.send_all(reply + (conn.send(h11.EndOfMessage()) or b""))
                except trio.BrokenResourceError:
                    return
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return


async def _serve_receiver() -> None:
    """Child process: the receiver, its port on stdout, until stdin closes."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1", backlog=1024)
    print(listeners[0].socket.getsockname()[1], flush=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, _answer, listeners)
        await trio.to_thread.run_sync(sys.stdin.buffer.read, abandon_on_cancel=True)
        nursery.cancel_scope.cancel()


# --- the clients compared -------------------------------------------------------------------


class HttpxClient:
    """The deliverer's HTTP seam over ``httpx.AsyncClient``: how requests went before issue 6
    (kept here only as the benchmark's baseline)."""

    def __init__(self, config: WebhooksConfig) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout),
            limits=httpx.Limits(max_connections=config.concurrency),
            follow_redirects=False,
            trust_env=False,  # direct, like the pool here, whatever the environment says
        )

    async def post(self, target: str, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> int:
        try:
            async with self._client.stream(
                "POST", target, content=body, headers=list(headers)
            ) as response:
                return response.status_code
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        await self._client.aclose()


def _new_pool(config: WebhooksConfig) -> WebhookClient:
    return HttpPool(max_connections=config.concurrency, proxies={})  # direct, whatever the env


#: The variants, in the order they run: name -> (the client's factory, batched requests?).
VARIANTS: dict[str, tuple[Callable[[WebhooksConfig], WebhookClient], bool]] = {
    "httpx client (as before)": (HttpxClient, False),
    "webhook_http pool (now)": (_new_pool, False),
    "the pool, batched requests": (_new_pool, True),
}


# --- one drain ------------------------------------------------------------------------------


@attrs.frozen
class Drain:
    deliveries: int
    seconds: float
    cpu_seconds: float  # this process, all threads
    trio_cpu_seconds: float  # of which the Trio thread (the rest: SQLite's threads)
    receiver_cpu_seconds: float  # the receiver's process (NaN where /proc is not there)

    @property
    def rate(self) -> float:
        return self.deliveries / self.seconds

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu_seconds / self.deliveries

    @property
    def trio_cpu_ms(self) -> float:
        return 1000 * self.trio_cpu_seconds / self.deliveries

    @property
    def receiver_cpu_ms(self) -> float:
        return 1000 * self.receiver_cpu_seconds / self.deliveries


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _process_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of another process, from Linux's /proc; NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _fill(path: Path, url: str, count: int) -> None:
    body = (
        '{"event":"status","message_id":"01JD0000000000000000000%05d","client_ref":"order-%d",'
        '"status":"delivered","previous":"submitted","reason":"receipt DELIVRD",'
        '"at":1732800000.125}'
    )
    async with open_store(path) as store:
        for start in range(0, count, FILL_BATCH):
            await store.enqueue_notifications(
                [
                    NewNotification(
                        kind=NotificationKind.STATUS,
                        target=url,
                        body=body % (i, i),
                        subject=f"m{i}",
                    )
                    for i in range(start, min(start + FILL_BATCH, count))
                ]
            )


async def _drain(
    path: Path, config: WebhooksConfig, client: WebhookClient, count: int, receiver: int
) -> Drain:
    """Deliver the ``count`` rows of the outbox in ``path`` to the receiver (process id
    ``receiver``)."""
    async with open_store(path) as store:
        deliverer = WebhookDeliverer(store, config, client=client)
        cpu, trio_cpu = _cpu_seconds(), time.thread_time()
        receiver_cpu = _process_cpu_seconds(receiver)
        start = trio.current_time()
        with trio.fail_after(DRAIN_TIMEOUT):
            async with trio.open_nursery() as nursery:
                await nursery.start(deliverer.run)
                while deliverer.stats().delivered < count:
                    await trio.sleep(CHECK_INTERVAL)
                seconds = trio.current_time() - start
                cpu, trio_cpu = _cpu_seconds() - cpu, time.thread_time() - trio_cpu
                receiver_cpu = _process_cpu_seconds(receiver) - receiver_cpu
                nursery.cancel_scope.cancel()
        states = await store.notification_counts()
        if states[NotificationState.DELIVERED] != count:
            raise RuntimeError(f"expected {count} delivered, the store says {dict(states)}")
        return Drain(count, seconds, cpu, trio_cpu, receiver_cpu)


async def _bench(args: argparse.Namespace) -> dict[str, list[Drain]]:
    single = WebhooksConfig(secret="bench-secret", concurrency=args.concurrency)
    batching = WebhookBatching(prefix="http://127.0.0.1:", max_events=args.batch)
    batched = attrs.evolve(single, batching=(batching,))
    results: dict[str, list[Drain]] = {name: [] for name in VARIANTS}
    receiver = [sys.executable, "-m", "smsgw.bench.webhooks", "--serve-receiver"]
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-webhooks-") as tmp:
        full = Path(tmp) / "full.sqlite3"
        server = ServerProcess(receiver)
        async with server as port:
            assert server.proc is not None
            pid = server.proc.pid
            await _fill(full, f"http://127.0.0.1:{port}/hook", args.count)
            for run in range(args.runs):
                for name, (factory, batches) in VARIANTS.items():
                    config = batched if batches else single
                    copy = Path(tmp) / f"run-{run}.sqlite3"
                    shutil.copyfile(full, copy)
                    client = factory(config)
                    try:
                        drain = await _drain(copy, config, client, args.count, pid)
                    finally:
                        await client.aclose()
                    results[name].append(drain)
                    copy.unlink()
                    print(
                        f"run {run + 1} {name}: {drain.rate:,.0f}/s, {drain.cpu_ms:.3f} CPU-ms",
                        file=sys.stderr,
                    )
            if args.profile:
                copy = Path(tmp) / "profile.sqlite3"
                shutil.copyfile(full, copy)
                client = _new_pool(single)
                profiler = cProfile.Profile()
                profiler.enable()
                try:
                    await _drain(copy, single, client, args.count, pid)
                finally:
                    profiler.disable()
                    await client.aclose()
                profiler.dump_stats(args.profile)
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
                print(out.getvalue())
    return results


def report(results: dict[str, list[Drain]], args: argparse.Namespace, load: str) -> None:
    def median(drains: list[Drain], figure: Callable[[Drain], float]) -> float:
        return statistics.median(figure(d) for d in drains)

    rows = [("client", "deliveries/s", "CPU-ms/delivery", "of which Trio", "receiver CPU-ms")]
    figures = {}
    for name, drains in results.items():
        rate = median(drains, lambda d: d.rate)
        cpu = median(drains, lambda d: d.cpu_ms)
        figures[name] = (rate, cpu)
        trio_cpu = median(drains, lambda d: d.trio_cpu_ms)
        receiver = median(drains, lambda d: d.receiver_cpu_ms)
        rows.append(
            (name, f"{rate:>10,.0f}", f"{cpu:>8.3f}", f"{trio_cpu:>8.3f}", f"{receiver:>8.3f}")
        )
    (old_rate, old_cpu), (new_rate, new_cpu), (batch_rate, batch_cpu) = figures.values()
    ratios = (f"{new_rate / old_rate:>9.1f}x", f"{new_cpu / old_cpu:>8.2f}x")
    rows.append(("ratio now / before", *ratios, "", ""))
    ratios = (f"{batch_rate / new_rate:>9.1f}x", f"{batch_cpu / new_cpu:>8.2f}x")
    rows.append(("ratio batched / one a request", *ratios, "", ""))
    print_table(
        f"Webhook deliveries: {args.count:,} rows, concurrency {args.concurrency}, "
        f"batches of up to {args.batch}, "
        f"medians of {args.runs} run(s); load average {load}",
        rows,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smsgw bench --webhooks", description=__doc__)
    parser.add_argument("--count", type=int, default=20_000, help="notifications per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--concurrency", type=int, default=16, help="[webhooks] concurrency")
    parser.add_argument(
        "--batch", type=int, default=100, help="events per request at most, batched variant"
    )
    parser.add_argument("--profile", metavar="FILE", help="add a cProfile run, saved in FILE")
    parser.add_argument("--serve-receiver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_receiver:
        trio.run(_serve_receiver)
        return 0
    if args.count < 1 or args.runs < 1 or not 1 <= args.batch <= MAX_EVENTS_PER_REQUEST:
        parser.error(
            f"--count and --runs must be at least 1, --batch from 1 to {MAX_EVENTS_PER_REQUEST}"
        )
    before = _loadavg()
    results = trio.run(_bench, args)
    report(results, args, f"{before} -> {_loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
