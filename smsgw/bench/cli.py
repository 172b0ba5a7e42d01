"""``smsgw bench``: run one or more benchmarks and print their figures.

Each benchmark is a module with ``main(argv) -> int``; this only chooses which to run.
"""

from __future__ import annotations

import argparse
import importlib

BENCHES = {
    "codec": ("smsgw.bench.codec", "smpp_codec encode+decode vs python-smpplib"),
    "queue": ("smsgw.bench.queue", "queue backends: enqueue, lease+ack, latency"),
    "raw": ("smsgw.bench.raw", "one SMPP client session blasting the simulator"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="smsgw bench",
        description="Benchmarks. They print medians of repeated runs; they never fail on speed.",
    )
    for name, (_, text) in BENCHES.items():
        parser.add_argument(f"--{name}", action="store_true", help=text)
    parser.add_argument("--all", action="store_true", help="every benchmark above")
    args = parser.parse_args(argv)
    chosen = [name for name in BENCHES if args.all or getattr(args, name)]
    if not chosen:
        parser.error("choose at least one benchmark (or --all)")
    status = 0
    for name in chosen:
        module = importlib.import_module(BENCHES[name][0])
        status = module.main([]) or status
    return status
