"""``smsgw simulator``: run the SMSC simulator from the command line.

Options come from an optional TOML file (``--config``), then the flags, which win. Every field
of :class:`SimulatorConfig` (and of its ``[receipts]`` and ``[faults]`` parts) has a flag.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from typing import Any, TextIO

import trio

from .config import config_from_mapping, read_config_file
from .control import ControlApi
from .server import Simulator, tls_context
from .values import ConfigError, optional_seconds

DESCRIPTION = """\
An SMPP 3.4 SMSC simulator: point any ESME at it. It accepts binds (any credentials, or the
--account list), answers every PDU an SMSC receives, sends delivery receipts for submissions
that ask for them, and injects faults on demand. It prints where it listens, a stats line
every --stats-interval, and a final stats line when stopped with Ctrl-C (SIGINT) or SIGTERM.

Durations take a unit: 250ms, 1.5s, 2m (a bare number is seconds). Fractions are 0..1 or a
percentage (1%). Statuses are names (ESME_RTHROTTLED) or numbers (0x58).
With --control-port, a small HTTP API changes faults and sends MOs while it runs:
  curl -s localhost:8775/stats
  curl -s -X PATCH localhost:8775/faults -d '{"throttle_fraction": 0.1}'
  curl -s -X POST localhost:8775/mo \\
       -d '{"source_addr": "4917600000", "destination_addr": "1234", "text": "hi"}'
See docs/simulator.md for every option.
"""

#: flag -> (path in the config mapping, help). Values stay strings: the config converts them.
_OPTIONS: list[tuple[str, tuple[str, ...], str, dict[str, Any]]] = [
    # server
    ("--host", ("host",), "address to listen on (default 127.0.0.1)", {}),
    ("--port", ("port",), "TCP port (default 0: a free one, printed at start)", {}),
    ("--system-id", ("system_id",), "the SMSC's system_id in bind responses (smsgw-sim)", {}),
    ("--account", ("accounts",), "allowed ESME account as system_id:password; repeat for "
     "several (default: any credentials are accepted)", {"action": "append"}),
    ("--id-format", ("id_format",), "message ids: hex, decimal or uuid (default hex)",
     {"choices": ["hex", "decimal", "uuid"]}),
    ("--seed", ("seed",), "seed of every random choice, for reproducible runs", {"type": int}),
    ("--enquire-link-interval", ("enquire_link_interval",),
     "send enquire_link to bound ESMEs this often (default off)", {}),
    ("--response-timeout", ("response_timeout",),
     "time the ESME has to answer our deliver_sm/enquire_link (10s)", {}),
    ("--bind-timeout", ("bind_timeout",), "close connections not bound by then (30s; off)", {}),
    ("--idle-timeout", ("idle_timeout",), "close connections silent that long (default off)", {}),
    ("--deliver-window", ("deliver_window",),
     "most unanswered deliver_sm per connection (10)", {}),
    ("--mo-attempts", ("mo_attempts",),
     "times an MO part not answered ESME_ROK is sent at most (1: never again)", {}),
    ("--mo-retry-delay", ("mo_retry_delay",),
     "time before an MO part is sent again (10s)", {}),
    ("--reject-destinations", ("reject_destinations",),
     "comma-separated destination prefixes answered ESME_RINVDSTADR", {}),
    ("--max-messages", ("max_messages",),
     "messages remembered for query/cancel/replace_sm (100000)", {}),
    ("--tls-cert", ("tls_cert",),
     "serve SMPP over TLS with this certificate (PEM; with --tls-key)", {}),
    ("--tls-key", ("tls_key",), "the certificate's private key (PEM)", {}),
    ("--max-binds", ("max_binds",),
     "most sessions one system_id may have bound at once (no limit)", {}),
    # receipts
    ("--receipt-delay", ("receipts", "delay"), "time from submission to receipt (0s)", {}),
    ("--receipt-jitter", ("receipts", "jitter"), "plus up to this much at random (0s)", {}),
    ("--receipt-mix", ("receipts", "outcomes"),
     "outcome weights, e.g. DELIVRD=90,UNDELIV=5,EXPIRED=3,REJECTD=2 (DELIVRD=1)", {}),
    ("--receipt-err", ("receipts", "err"),
     "receipt err code per outcome, e.g. UNDELIV=001,REJECTD=003", {}),
    ("--receipt-before-response", ("receipts", "before_response"),
     "fraction of receipts sent before their submit_sm_resp (0)", {}),
    ("--receipt-id-form", ("receipts", "id_form"),
     "message id in receipts: as_sent, decimal or hex (as_sent)",
     {"choices": ["as_sent", "decimal", "hex"]}),
    ("--receipt-queue-limit", ("receipts", "queue_limit"),
     "receipts kept waiting for a receiver before the oldest are dropped (100000)", {}),
    ("--receipt-attempts", ("receipts", "attempts"),
     "times a receipt is sent at most; a failed one is sent again (1: never)", {}),
    ("--receipt-retry-delay", ("receipts", "retry_delay"),
     "wait before a failed receipt is sent again (10s)", {}),
    # faults
    ("--latency", ("faults", "latency"), "hold every response back this long", {}),
    ("--latency-jitter", ("faults", "latency_jitter"), "plus up to this much at random", {}),
    ("--throttle", ("faults", "throttle_fraction"), "fraction of submissions throttled", {}),
    ("--throttle-status", ("faults", "throttle_status"),
     "status of a throttled submission (ESME_RTHROTTLED)", {}),
    ("--temporary-errors", ("faults", "temporary_error_fraction"),
     "fraction of submissions answered with a temporary error", {}),
    ("--temporary-error-statuses", ("faults", "temporary_error_statuses"),
     "comma-separated statuses to pick from (ESME_RSYSERR)", {}),
    ("--permanent-errors", ("faults", "permanent_error_fraction"),
     "fraction of submissions (submit_multi: destinations) refused permanently", {}),
    ("--permanent-error-statuses", ("faults", "permanent_error_statuses"),
     "comma-separated statuses to pick from (ESME_RINVDSTADR)", {}),
    ("--max-window", ("faults", "max_window"),
     "most submissions held by latency per connection; beyond: ESME_RTHROTTLED", {}),
    ("--tps-limit", ("faults", "tps_limit"),
     "submissions per second per system_id; beyond: ESME_RTHROTTLED", {}),
    ("--drop-responses", ("faults", "drop_response_fraction"),
     "fraction of submissions never answered", {}),
    ("--disconnect-after-pdus", ("faults", "disconnect_after_pdus"),
     "drop each connection on its Nth PDU", {}),
    ("--disconnect-fraction", ("faults", "disconnect_fraction"),
     "fraction of PDUs on bound connections that drop the connection", {}),
    ("--refuse-binds", ("faults", "refuse_binds"), "refuse the first N binds", {}),
    ("--refuse-binds-for", ("faults", "refuse_binds_for"),
     "refuse every bind for this long after start", {}),
    ("--refuse-bind-status", ("faults", "refuse_bind_status"),
     "status of a refused bind (ESME_RBINDFAIL)", {}),
    ("--garbage", ("faults", "garbage_fraction"), "fraction of submissions answered with garbage",
     {}),
    ("--garbage-mode", ("faults", "garbage_mode"),
     "stream: random bytes then close; pdu: an unknown command before the answer",
     {"choices": ["stream", "pdu"]}),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smsgw simulator",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", metavar="FILE", help="TOML file (see examples/simulator.toml)")
    groups = {
        "server": parser.add_argument_group("server"),
        "receipts": parser.add_argument_group("delivery receipts"),
        "faults": parser.add_argument_group("fault injection (all off by default)"),
    }
    for flag, path, help_text, extra in _OPTIONS:
        group = groups.get(path[0], groups["server"]) if len(path) > 1 else groups["server"]
        if "choices" not in extra:
            extra = {"metavar": _metavar(path[-1]), **extra}
        group.add_argument(flag, dest=".".join(path), help=help_text, **extra)
    groups["receipts"].add_argument(
        "--no-receipts", dest="receipts.enabled", action="store_const", const=False,
        help="never send delivery receipts",
    )
    groups["receipts"].add_argument(
        "--receipt-form", dest="receipt_form", choices=["text", "tlv", "both"],
        help="what a receipt carries: text, TLVs or both (both)",
    )
    run = parser.add_argument_group("running")
    run.add_argument("--stats-interval", metavar="DURATION",
                     help="print a stats line this often (default off)")
    run.add_argument("--control-port", type=int, metavar="PORT",
                     help="serve the HTTP control API on this port of --host (0: a free one)")
    return parser


def _metavar(name: str) -> str:
    if name.endswith(("fraction", "before_response")):
        return "FRACTION"
    if name.endswith("statuses"):
        return "STATUS,..."
    if name.endswith("status"):
        return "STATUS"
    durations = ("delay", "jitter", "latency", "latency_jitter", "refuse_binds_for")
    if name in durations or name.endswith(("interval", "timeout")):
        return "DURATION"
    if name in ("outcomes", "err"):
        return "OUTCOME=VALUE,..."
    if name == "accounts":
        return "ID:PASSWORD"
    if name == "host":
        return "ADDRESS"
    if name == "system_id":
        return "SYSTEM-ID"
    if name == "reject_destinations":
        return "PREFIX,..."
    if name in ("tls_cert", "tls_key"):
        return "FILE"
    return "N"


def _mapping(args: argparse.Namespace, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` (a parsed TOML file) with the flags given laid over it."""
    data: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in vars(args).items():
        if key in ("config", "stats_interval", "control_port", "receipt_form"):
            continue
        *sections, name = key.split(".")
        target = data
        for section in sections:
            target = target.setdefault(section, {})
        target[name] = value
    form = getattr(args, "receipt_form", None)
    if form is not None:
        receipts = data.setdefault("receipts", {})
        receipts["text"] = form in ("text", "both")
        receipts["tlvs"] = form in ("tlv", "both")
    return data


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        base: dict[str, Any] = {}
        if getattr(args, "config", None):
            base = read_config_file(args.config)
        config = config_from_mapping(_mapping(args, base))
        tls_context(config)  # the certificate and key load (checked here: exit 2)
        stats_interval = optional_seconds(getattr(args, "stats_interval", None))
    except ConfigError as exc:
        print(f"smsgw simulator: {exc}", file=sys.stderr)
        return 2
    control_port: int | None = getattr(args, "control_port", None)
    failed: list[BaseException] = []
    try:
        trio.run(_run, Simulator(config), stats_interval, control_port, sys.stdout)
    except* OSError as group:  # the port is taken, the address is not ours...
        failed.extend(group.exceptions)
    for error in failed:
        print(f"smsgw simulator: cannot listen: {error}", file=sys.stderr)
    return 1 if failed else 0


async def _run(
    sim: Simulator, stats_interval: float | None, control_port: int | None, out: TextIO
) -> None:
    say: Callable[[str], None] = lambda line: print(line, file=out, flush=True)  # noqa: E731
    host = sim.config.host
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(sim.serve)
            over = ", over TLS" if sim.config.tls_cert is not None else ""
            say(f"smsgw simulator listening on {host}:{port} (SMPP 3.4{over})")
            if control_port is not None:
                api_port = await nursery.start(ControlApi(sim).serve, host, control_port)
                say(f"control API on http://{host}:{api_port}/ (stats, faults, mo)")
            if stats_interval:
                nursery.start_soon(_print_stats, sim, stats_interval, say)
            async for signum in signals:
                say(f"stopping ({signal.Signals(signum).name}): unbinding every session")
                break
            # As an SMSC going down for maintenance: each session gets an unbind first.
            if not await sim.stop(grace=sim.config.response_timeout + 1.0):
                say("stopping: not every session answered its unbind in time")
            nursery.cancel_scope.cancel()
    say(f"final stats: {sim.stats.line()}")


async def _print_stats(sim: Simulator, interval: float, say: Callable[[str], None]) -> None:
    while True:
        await trio.sleep(interval)
        say(f"stats: {sim.stats.line()}")


if __name__ == "__main__":
    sys.exit(main())
