"""``smsgw bench``: run one or more benchmarks and print their figures.

Each benchmark is a module with ``main(argv) -> int``; this only chooses which to run. With no
flag it runs the gateway end to end; options it does not know are passed on to the chosen
benchmark (``smsgw bench --gateway --count 5000``).
"""

from __future__ import annotations

import argparse
import importlib

BENCHES = {
    "gateway": ("smsgw.bench.gateway", "the whole gateway end to end against the simulator"),
    "instances": (
        "smsgw.bench.instances",
        "several gateway processes on one Redis queue, end to end",
    ),
    "codec": ("smsgw.bench.codec", "smpp_codec encode+decode vs python-smpplib"),
    "queue": ("smsgw.bench.queue", "queue backends: enqueue, lease+ack, latency"),
    "raw": ("smsgw.bench.raw", "one SMPP client session blasting the simulator"),
    "api": ("smsgw.api.bench", "the HTTP API: single, batch, end to end (vs Kannel)"),
    "webhooks": ("smsgw.bench.webhooks", "the webhook deliverer draining a full outbox"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="smsgw bench",
        add_help=False,  # --help with one benchmark chosen is that benchmark's help
        description="Benchmarks. They print medians of repeated runs; they never fail on speed. "
        "Options not listed here go to the chosen benchmark (see smsgw bench --NAME --help).",
    )
    parser.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    for name, (_, text) in BENCHES.items():
        parser.add_argument(f"--{name}", action="store_true", help=text)
    parser.add_argument("--all", action="store_true", help="every benchmark above")
    args, rest = parser.parse_known_args(argv)
    chosen = [name for name in BENCHES if args.all or getattr(args, name)]
    if args.help:
        if len(chosen) != 1:
            parser.print_help()
            return 0
        rest = ["--help", *rest]
    chosen = chosen or ["gateway"]
    if rest and len(chosen) > 1:
        parser.error(f"options {rest} can only go to one benchmark at a time")
    status = 0
    for name in chosen:
        module = importlib.import_module(BENCHES[name][0])
        status = module.main(rest) or status
    return status
