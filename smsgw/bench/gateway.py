"""``smsgw bench`` (``--gateway``): the whole gateway, end to end, against an SMSC.

The gateway runs in this process on the embedded backend (SQLite queue and database in a
temporary directory, durable settings), receipts on; the SMSC is a simulator in a child process
(so each gets a core, as in production) or any SMSC given with ``--smsc host:port``. A run
submits ``--count`` messages through :meth:`Gateway.submit` (batches of :data:`SUBMIT_BATCH`
from :data:`SUBMITTERS` concurrent clients) while the gateway sends them, and reports:

- accepted/s: messages durably accepted by ``submit`` per second;
- submitted/s: messages the SMSC accepted (submit_sm_resp OK) per second, from the first submit;
- receipted/s: messages whose delivery receipt was processed per second: the end-to-end rate;
- p50/p99 latency from acceptance (the ``queued`` event) to the ``submitted`` event (written when
  the submit_sm_resp arrives), from the gateway's own event history, over a sample of messages.
  Under full load every message is accepted at once, so this includes the wait in the queue; a
  separate run at a light steady rate (``--light-rate``) gives the pipeline's own latency;
- how long the SMSC waited for the answers to its receipts, p50/p99, from the gateway's
  ``smsgw_inbound_answer_seconds`` (bucket bounds: "at most"). With the SMSC's window of
  unanswered receipts per connection, this caps the receipts it can send (docs/operations.md);
- CPU seconds per 1,000 messages (``resource.getrusage``: this process, all threads, i.e. the
  gateway and its SQLite worker threads; not the simulator), and of that the Trio thread's own
  share (``time.thread_time``; the rest is the SQLite worker threads), and the peak RSS of this
  process;
- the cores the gateway process kept busy (its CPU seconds per second of the run): Python runs
  one thread at a time, so a figure near 1 on a machine with more cores says the process, not
  the machine, is the limit;
- the simulator's CPU seconds per 1,000 messages (its child process, from ``/proc``; not shown
  with ``--smsc``), the other part of the machine's budget.

A second run sends to a simulator that allows ``--tps`` submissions per second and throttles 1%
of them at random (``ESME_RTHROTTLED``), with the provider configured at that rate: the figure
is the sustained rate (between 10% and 90% of the run) as a percentage of the allowed rate.

Each figure is the median of ``--runs`` runs. ``--profile`` adds one run under cProfile and
prints the hot spots of the gateway (the main thread: the SQLite worker threads are not seen).
Benchmarks report; they never fail on speed.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO, TypeVar

import attrs
import trio

from .raw import _loadavg, _process_cpu, _read_port
from .report import print_table

if TYPE_CHECKING:
    from smsgw.gateway import Gateway
    from smsgw.messages import GatewayStats

#: End to end, embedded backend, receipts on (issue 5).
TARGET_RATE = 3_000
#: Sustained share of the SMSC's allowed rate with 1% throttling (issue 5).
TARGET_SHARE = 0.90

SUBMIT_BATCH = 100
SUBMITTERS = 4
PROGRESS_INTERVAL = 0.1
#: Messages whose event history gives the latency figures.
LATENCY_SAMPLE = 2_000
TEXT = "benchmark message, 40 characters long..."


# --- configuration --------------------------------------------------------------------------


@attrs.frozen
class Setup:
    """How the gateway is configured for a run (command-line options)."""

    host: str
    port: int
    system_id: str = "bench"
    password: str = "bench"
    connections: int = 2
    window: int = 64
    consumers: int = 4
    lease_batch: int = 64
    #: The provider's rate (its contracted TPS); the unthrottled run sets a very high one.
    rate: float = 1_000_000.0
    #: A Redis queue (``smsgw bench --instances``) instead of the embedded one: its URL, the
    #: key prefix the instances share, and this instance's name.
    redis_url: str | None = None
    redis_prefix: str = "smsgw-bench"
    instance_id: str | None = None


def config_text(setup: Setup, state_dir: Path) -> str:
    instance = "" if setup.instance_id is None else f'instance_id = "{setup.instance_id}"\n'
    redis = (
        ""
        if setup.redis_url is None
        else f'backend = "redis"\n\n[queue.redis]\nurl = "{setup.redis_url}"\n'
        f'prefix = "{setup.redis_prefix}"\n'
    )
    return f"""\
[gateway]
state_dir = "{state_dir.as_posix()}"
drain_grace = "5s"
log_level = "warning"
{instance}
[api]
port = 0

[queue]
consumers = {setup.consumers}
lease_batch = {setup.lease_batch}
{redis}
[[providers]]
name = "smsc"
host = "{setup.host}"
port = {setup.port}
system_id = "{setup.system_id}"
password = "{setup.password}"
connections = {setup.connections}
window = {setup.window}
request_timeout = "10s"
rate = {{ per_second = {setup.rate} }}
"""


# --- one run --------------------------------------------------------------------------------


@attrs.frozen
class RunResult:
    count: int
    accepted_rate: float
    submitted_rate: float
    receipted_rate: float
    #: Submitted/s between 10% and 90% of the submissions (the steady state).
    sustained_rate: float
    p50: float
    p99: float
    cpu_per_1000: float
    #: Of ``cpu_per_1000``, the Trio thread's (the rest: the SQLite worker threads).
    trio_cpu_per_1000: float
    #: CPU seconds of this process per second of the run: the cores it kept busy.
    cores: float
    #: The SMSC's CPU seconds per 1,000 messages, when it is a child process (NaN otherwise).
    peer_cpu_per_1000: float
    failed: int
    #: The run hit its time limit before every message was receipted (figures are partial).
    timed_out: bool
    #: Seconds the SMSC waited for the answers to its receipts, p50 and p99: the upper bounds
    #: of their ``smsgw_inbound_answer_seconds`` buckets ("at most"); NaN without receipts.
    receipt_answer_p50: float = math.nan
    receipt_answer_p99: float = math.nan


@attrs.define
class _Sample:
    at: float
    submitted: int
    receipted: int


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _crossing(samples: Sequence[_Sample], target: float, start: float) -> float | None:
    """Seconds from ``start`` until ``submitted`` reached ``target`` (interpolated)."""
    previous: _Sample | None = None
    for sample in samples:
        if sample.submitted >= target:
            if previous is None or sample.submitted == previous.submitted:
                return sample.at - start
            share = (target - previous.submitted) / (sample.submitted - previous.submitted)
            return previous.at + share * (sample.at - previous.at) - start
        previous = sample
    return None


class Progress:
    """A one-line progress bar on stderr (a line every few seconds when it is not a terminal)."""

    def __init__(self, label: str, total: int, stream: TextIO = sys.stderr) -> None:
        self.label = label
        self.total = total
        self.stream = stream
        self.tty = stream.isatty()
        self._last_line = -math.inf

    def show(self, elapsed: float, submitted: int, receipted: int) -> None:
        if not self.tty and elapsed - self._last_line < 2.0:
            return
        self._last_line = elapsed
        width = 30
        filled = int(width * min(1.0, receipted / self.total)) if self.total else width
        bar = "#" * filled + "." * (width - filled)
        rate = submitted / elapsed if elapsed > 0 else 0.0
        text = (
            f"{self.label} [{bar}] submitted {submitted:,}/{self.total:,} "
            f"receipted {receipted:,} {rate:,.0f}/s {elapsed:5.1f}s"
        )
        self.stream.write(("\r" + text) if self.tty else (text + "\n"))
        self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


async def _latencies(gateway: Gateway, ids: Sequence[str]) -> list[float]:
    """Seconds from each sampled message's ``queued`` event to its first ``submitted`` one."""
    from smsgw.model import MessageStatus

    step = max(1, len(ids) // LATENCY_SAMPLE)
    out = []
    for message_id in ids[::step]:
        view = await gateway.message(message_id)
        if view is None:
            continue
        queued = next((e.at for e in view.events if e.status is MessageStatus.QUEUED), None)
        submitted = next((e.at for e in view.events if e.status is MessageStatus.SUBMITTED), None)
        if queued is not None and submitted is not None:
            out.append(submitted - queued)
    return out


def _counts(stats: GatewayStats) -> tuple[int, int, int]:
    return stats.submitted, stats.receipts, stats.failed


async def one_run(
    setup: Setup,
    *,
    count: int,
    time_limit: float,
    label: str,
    receipts: bool = True,
    pace: float | None = None,
    progress: bool = True,
    peer: int | None = None,
) -> RunResult:
    """Start a gateway on a fresh state directory and push ``count`` messages through it: as
    fast as :data:`SUBMITTERS` clients can, or one by one at ``pace`` messages per second.
    ``peer``: the process id of the SMSC, when it runs on this machine (its CPU is measured)."""
    import trio_asyncio

    from smsgw.config import parse_config
    from smsgw.gateway import Gateway
    from smsgw.messages import Accepted, SubmitRequest
    from smsgw.metrics import bucket_quantile

    bar = Progress(label, count) if progress else None
    request = SubmitRequest(to="46700000000", source="bench", text=TEXT, receipt=receipts)
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-") as tmp:
        config = parse_config(config_text(setup, Path(tmp)), source="bench", environ={})
        gateway = Gateway(config)
        async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
            await nursery.start(gateway.run)
            ids: list[str] = []
            accepted_at: float | None = None
            samples: list[_Sample] = []
            start = trio.current_time()
            cpu_start = _cpu_seconds()
            trio_cpu_start = time.thread_time()
            peer_cpu_start = _process_cpu(peer) if peer is not None else None
            left = count
            batch = 1 if pace is not None else SUBMIT_BATCH

            async def submitter() -> None:
                nonlocal left
                while left > 0:
                    size = min(batch, left)
                    left -= size
                    answers = await gateway.submit([request] * size)
                    ids.extend(a.id for a in answers if isinstance(a, Accepted))
                    if pace is not None:
                        await trio.sleep(1 / pace)

            async def submit_all() -> None:
                nonlocal accepted_at
                async with trio.open_nursery() as submitters:
                    for _ in range(1 if pace is not None else SUBMITTERS):
                        submitters.start_soon(submitter)
                accepted_at = trio.current_time()

            timed_out = True
            with trio.move_on_after(time_limit):
                nursery.start_soon(submit_all)
                while True:
                    await trio.sleep(PROGRESS_INTERVAL)
                    submitted, receipted, failed = _counts(gateway.stats())
                    now = trio.current_time()
                    samples.append(_Sample(now, submitted, receipted))
                    if bar is not None:
                        bar.show(now - start, submitted, receipted)
                    settled = (receipted if receipts else submitted) + failed
                    if accepted_at is not None and settled >= len(ids):
                        timed_out = False
                        break
            elapsed = trio.current_time() - start
            cpu = _cpu_seconds() - cpu_start
            trio_cpu = time.thread_time() - trio_cpu_start
            peer_cpu_end = _process_cpu(peer) if peer is not None else None
            peer_cpu = (
                peer_cpu_end - peer_cpu_start
                if peer_cpu_start is not None and peer_cpu_end is not None
                else math.nan
            )
            if bar is not None:
                bar.done()
            submitted, receipted, failed = _counts(gateway.stats())
            total = len(ids)
            all_submitted = _crossing(samples, total, start) if total else None
            low = _crossing(samples, 0.1 * total, start)
            high = _crossing(samples, 0.9 * total, start)
            sustained = (
                0.8 * total / (high - low)
                if low is not None and high is not None and high > low
                else submitted / elapsed
            )
            latencies = await _latencies(gateway, ids)
            answers = gateway.metrics.inbound_answer_buckets("receipt")
            with trio.move_on_after(30):
                await gateway.drain(5.0)
            nursery.cancel_scope.cancel()
    accepted_for = (accepted_at - start) if accepted_at is not None else elapsed
    return RunResult(
        count=total,
        accepted_rate=total / accepted_for if accepted_for > 0 else 0.0,
        submitted_rate=submitted / (all_submitted or elapsed),
        receipted_rate=receipted / elapsed,
        sustained_rate=sustained,
        p50=_percentile(latencies, 0.50),
        p99=_percentile(latencies, 0.99),
        cpu_per_1000=cpu / max(1, submitted) * 1000,
        trio_cpu_per_1000=trio_cpu / max(1, submitted) * 1000,
        cores=cpu / elapsed if elapsed > 0 else math.nan,
        peer_cpu_per_1000=peer_cpu / max(1, submitted) * 1000,
        failed=failed,
        timed_out=timed_out,
        receipt_answer_p50=bucket_quantile(answers, 0.50),
        receipt_answer_p99=bucket_quantile(answers, 0.99),
    )


# --- the simulator child process ------------------------------------------------------------


async def _serve_simulator(tps: float | None, throttle: float) -> None:
    """Child process: a simulator (receipts at once), its port on stdout, until stdin closes."""
    from smsgw.simulator import Faults, ReceiptConfig, Simulator, SimulatorConfig

    faults = Faults(tps_limit=tps, throttle_fraction=throttle)
    sim = Simulator(SimulatorConfig(seed=1, receipts=ReceiptConfig(delay=0.0), faults=faults))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve)
        print(port, flush=True)
        await trio.to_thread.run_sync(sys.stdin.buffer.read, abandon_on_cancel=True)
        nursery.cancel_scope.cancel()


class ServerProcess:
    """``async with ServerProcess(args) as port:`` a server in a child process that prints its
    port on a line of its own and serves until its standard input closes."""

    def __init__(self, args: Sequence[str]) -> None:
        self.args = list(args)
        self.proc: trio.Process | None = None

    async def __aenter__(self) -> int:
        self.proc = await trio.lowlevel.open_process(
            self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.proc.stdout is not None
        return await _read_port(self.proc.stdout)

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    async def __aexit__(self, *exc: object) -> None:
        proc = self.proc
        assert proc is not None
        with trio.move_on_after(10, shield=True):
            if proc.stdin is not None:
                await proc.stdin.aclose()
            with trio.move_on_after(5):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


class SimulatorProcess(ServerProcess):
    """``async with SimulatorProcess(...) as port:`` a simulator in a child process."""

    def __init__(self, *, tps: float | None = None, throttle: float = 0.0) -> None:
        args = [sys.executable, "-m", "smsgw.bench.gateway", "--serve-simulator"]
        if tps is not None:
            args += ["--sim-tps", str(tps)]
        if throttle:
            args += ["--sim-throttle", str(throttle)]
        super().__init__(args)


# --- the benchmark --------------------------------------------------------------------------


_R = TypeVar("_R")


def median_of(results: Sequence[_R], key: Callable[[_R], float]) -> float:
    """The median of ``key`` over the runs that have a figure for it (NaN: none has)."""
    values = [key(r) for r in results if not math.isnan(key(r))]
    return statistics.median(values) if values else math.nan


class _Run(Protocol):
    """What :func:`print_incomplete` reads of a run's result."""

    @property
    def timed_out(self) -> bool: ...
    @property
    def failed(self) -> int: ...
    @property
    def count(self) -> int: ...


def print_incomplete(runs: Sequence[_Run]) -> None:
    """A note under the table for each run that hit its time limit or failed messages."""
    for r in runs:
        if r.timed_out or r.failed:
            print(
                f"  note: a run {'hit its time limit' if r.timed_out else 'completed'} with "
                f"{r.failed} failed messages of {r.count:,}: its figures count what was done"
            )


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def _ms(seconds: float) -> str:
    return "?" if math.isnan(seconds) else f"{seconds * 1000:,.1f} ms"


async def _main_runs(args: argparse.Namespace, setup: Setup, peer: int | None) -> list[RunResult]:
    results = []
    for n in range(args.runs):
        results.append(
            await one_run(
                setup,
                count=args.count,
                time_limit=args.time_limit,
                label=f"run {n + 1}",
                peer=peer,
            )
        )
    return results


async def _throttled_runs(args: argparse.Namespace, setup: Setup) -> list[RunResult]:
    count = int(args.tps * args.throttle_seconds)
    results = []
    async with SimulatorProcess(tps=args.tps, throttle=0.01) as port:
        throttled = attrs.evolve(setup, port=port, host="127.0.0.1", rate=args.tps)
        for n in range(args.runs):
            results.append(
                await one_run(
                    throttled,
                    count=count,
                    time_limit=args.throttle_seconds * 3,
                    label=f"throttled {n + 1}",
                )
            )
    return results


async def _profile(args: argparse.Namespace, setup: Setup) -> str:
    """One run under cProfile (this thread: the Trio loop and everything in it)."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        await one_run(
            setup, count=min(args.count, 10_000), time_limit=args.time_limit, label="profile"
        )
    finally:
        profiler.disable()
    profiler.dump_stats(args.profile)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(r"smsgw|smpp_codec", 30)
    return out.getvalue()


@attrs.frozen
class BenchResults:
    main: list[RunResult]
    #: One run at a light, steady load (``--light-rate``): the pipeline's own latency.
    light: RunResult
    throttled: list[RunResult]
    where: str
    profile: str | None


async def _bench(args: argparse.Namespace) -> BenchResults:
    base = dict(
        connections=args.connections,
        window=args.window,
        consumers=args.consumers,
        lease_batch=args.lease_batch,
    )
    profile = None

    async def on(setup: Setup, peer: int | None) -> tuple[list[RunResult], RunResult]:
        nonlocal profile
        main = await _main_runs(args, setup, peer)
        light = await one_run(
            setup,
            count=int(args.light_rate * args.light_seconds),
            time_limit=args.light_seconds * 3,
            label="light load",
            pace=args.light_rate,
        )
        if args.profile:
            profile = await _profile(args, setup)
        return main, light

    if args.smsc is not None:
        host, _, port = args.smsc.rpartition(":")
        setup = Setup(host, int(port), args.system_id, args.password, **base)
        main, light = await on(setup, None)
        where = f"the SMSC at {args.smsc}"
    else:
        simulator = SimulatorProcess()
        async with simulator as port:
            setup = Setup("127.0.0.1", port, **base)
            main, light = await on(setup, simulator.pid)
        where = "the simulator in a child process"
    throttled = [] if args.no_throttled else await _throttled_runs(args, setup)
    return BenchResults(main, light, throttled, where, profile)


def report(args: argparse.Namespace, results: BenchResults) -> None:
    main, light, throttled = results.main, results.light, results.throttled
    rows: list[tuple[str, ...]] = [("figure", "median", "runs", "target")]
    e2e = median_of(main, lambda r: r.receipted_rate)
    rows += [
        (
            "accepted/s",
            f"{median_of(main, lambda r: r.accepted_rate):,.0f}",
            " ".join(f"{r.accepted_rate:,.0f}" for r in main),
            "",
        ),
        (
            "submitted/s",
            f"{median_of(main, lambda r: r.submitted_rate):,.0f}",
            " ".join(f"{r.submitted_rate:,.0f}" for r in main),
            "",
        ),
        (
            "receipted/s (end to end)",
            f"{e2e:,.0f}",
            " ".join(f"{r.receipted_rate:,.0f}" for r in main),
            f">= {TARGET_RATE:,} {_verdict(e2e >= TARGET_RATE)}",
        ),
        (
            "latency accepted -> submit_sm_resp p50, full load",
            _ms(median_of(main, lambda r: r.p50)),
            " ".join(_ms(r.p50) for r in main),
            "",
        ),
        (
            "latency accepted -> submit_sm_resp p99, full load",
            _ms(median_of(main, lambda r: r.p99)),
            " ".join(_ms(r.p99) for r in main),
            "",
        ),
        (
            "receipts answered within, p50 / p99, full load",
            f"{_ms(median_of(main, lambda r: r.receipt_answer_p50))} / "
            f"{_ms(median_of(main, lambda r: r.receipt_answer_p99))}",
            " ".join(
                f"{_ms(r.receipt_answer_p50)}/{_ms(r.receipt_answer_p99)}" for r in main
            ),
            "",
        ),
        (
            f"latency p50 / p99 at {args.light_rate:,.0f} msg/s",
            f"{_ms(light.p50)} / {_ms(light.p99)}",
            "",
            "",
        ),
        (
            "CPU seconds per 1,000 messages",
            f"{median_of(main, lambda r: r.cpu_per_1000):.3f}",
            " ".join(f"{r.cpu_per_1000:.3f}" for r in main),
            "",
        ),
        (
            "  of which the Trio thread",
            f"{median_of(main, lambda r: r.trio_cpu_per_1000):.3f}",
            " ".join(f"{r.trio_cpu_per_1000:.3f}" for r in main),
            "",
        ),
        (
            f"cores busy in the gateway process (of {os.cpu_count() or '?'})",
            f"{median_of(main, lambda r: r.cores):.2f}",
            " ".join(f"{r.cores:.2f}" for r in main),
            "",
        ),
    ]
    peer = median_of(main, lambda r: r.peer_cpu_per_1000)
    if not math.isnan(peer):
        rows.append(
            (
                "simulator CPU seconds per 1,000 messages",
                f"{peer:.3f}",
                " ".join(f"{r.peer_cpu_per_1000:.3f}" for r in main),
                "",
            )
        )
    if throttled:
        share = median_of(throttled, lambda r: r.sustained_rate) / args.tps
        rows.append(
            (
                f"sustained, 1% throttled, {args.tps:,.0f}/s allowed",
                f"{share:.1%} ({share * args.tps:,.0f}/s)",
                " ".join(f"{r.sustained_rate / args.tps:.1%}" for r in throttled),
                f">= {TARGET_SHARE:.0%} {_verdict(share >= TARGET_SHARE)}",
            )
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    rows.append(("peak RSS of this process", f"{rss:,.0f} MiB", "", ""))
    print_table(
        f"gateway end to end: {args.count:,} messages per run, receipts on, embedded backend, "
        f"against {results.where} (load average before: {args.load})",
        rows,
    )
    print(
        "  Full load: every message is accepted at once, so its latency includes the wait in\n"
        "  the queue; the light-load figure is the pipeline's own latency."
    )
    print_incomplete([*main, light, *throttled])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="smsgw bench --gateway",
        description=(
            "The whole gateway end to end (embedded backend, receipts on) against the simulator "
            "in a child process or --smsc; medians of --runs runs. Reports, never fails."
        ),
    )
    parser.add_argument("--count", type=int, default=20_000, help="messages per run (20000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure, median (3)")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per run (60)")
    parser.add_argument("--smsc", metavar="HOST:PORT", help="an SMSC instead of the simulator")
    parser.add_argument("--system-id", default="bench", help="for --smsc (bench)")
    parser.add_argument("--password", default="bench", help="for --smsc (bench)")
    parser.add_argument("--connections", type=int, default=2, help="SMPP connections (2)")
    parser.add_argument("--window", type=int, default=64, help="window per connection (64)")
    parser.add_argument("--consumers", type=int, default=4, help="queue consumers (4)")
    parser.add_argument("--lease-batch", type=int, default=64, help="messages per lease (64)")
    parser.add_argument(
        "--tps", type=float, default=1_000.0, help="the throttled SMSC's allowed rate (1000/s)"
    )
    parser.add_argument(
        "--throttle-seconds",
        type=float,
        default=8.0,
        help="length of a throttled run at the allowed rate (8)",
    )
    parser.add_argument(
        "--light-rate", type=float, default=100.0, help="rate of the light-load run (100/s)"
    )
    parser.add_argument(
        "--light-seconds", type=float, default=3.0, help="length of the light-load run (3)"
    )
    parser.add_argument("--no-throttled", action="store_true", help="skip the throttled run")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="also profile one run (cProfile, main thread) into FILE and print the hot spots",
    )
    parser.add_argument("--serve-simulator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sim-tps", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--sim-throttle", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_simulator:
        trio.run(_serve_simulator, args.sim_tps, args.sim_throttle)
        return 0
    from smsgw import logs
    from smsgw.config import LogLevel

    logs.configure(level=LogLevel.ERROR)
    args.load = _loadavg()
    started = time.perf_counter()  # wall-clock: reporting the bench's own duration
    results = trio.run(_bench, args)
    report(args, results)
    if results.profile is not None:
        print(f"\nprofile of one run (saved in {args.profile}):")
        print(results.profile)
    print(f"  (the bench took {time.perf_counter() - started:.0f}s)")  # wall-clock
    return 0


if __name__ == "__main__":
    sys.exit(main())
