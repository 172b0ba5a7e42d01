"""``smsgw check-config``: validate a configuration file without starting anything.

Prints ``OK`` and a one-line summary (exit 0), or every problem, one per line (exit 1), so it
fits in a deployment script or a pre-commit hook before ``systemctl reload``. A valid file may
also get ``note:`` lines (:func:`advice`): settings that work but are probably not meant.
"""

from __future__ import annotations

import argparse
import sys

from .config import ConfigError, GatewayConfig, QueueBackend, load_config

DEFAULT_PATH = "gateway.toml"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def summary(config: GatewayConfig) -> str:
    """``2 providers (a, b), 3 routes, queue embedded``."""
    names = [p.name for p in config.providers]
    if config.routes:
        routing = _plural(len(config.routes), "route")
    else:
        routing = "no routes (every message to " + " then ".join(names) + ")"
    providers = _plural(len(names), "provider")
    return f"{providers} ({', '.join(names)}), {routing}, queue {config.queue.backend.value}"


def advice(config: GatewayConfig) -> list[str]:
    """Valid settings that are probably not what the operator wants, each naming its key
    (printed by ``check-config``, logged as warnings when the gateway starts)."""
    notes = []
    if config.queue.backend is QueueBackend.REDIS and config.gateway.instance_id is None:
        notes.append(
            "gateway.instance_id: not set, with a Redis queue: every start gets a new name"
            " (hostname-pid), so receipts other instances relay to this one while it is down"
            " are missed after a restart; give each instance a fixed one"
        )
    redis = config.queue.redis
    if config.queue.backend is QueueBackend.REDIS and redis is not None and redis.share_limits:
        for i, provider in enumerate(config.providers):
            if provider.connections == 1:
                notes.append(
                    f"providers[{i}].connections: 1, which the instances of the Redis queue"
                    " share (queue.redis.share_limits): one instance at a time binds it, and"
                    " the others cannot send through it; give it at least one connection per"
                    " instance if the SMSC allows"
                )
    return notes


def print_ok(path: str, config: GatewayConfig) -> None:
    """What a check of a valid file prints: ``OK``, the summary, then the notes."""
    print(f"OK: {path}: {summary(config)}")
    for note in advice(config):
        print(f"note: {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="smsgw check-config",
        description="Check a gateway configuration file and report every problem in it.",
    )
    parser.add_argument("-c", "--config", help=f"the configuration file (default: {DEFAULT_PATH})")
    parser.add_argument("path", nargs="?", help="the configuration file, as with -c")
    args = parser.parse_args(argv)
    if args.config is not None and args.path is not None:
        parser.error("give the file once: -c PATH or PATH")
    path = args.config or args.path or DEFAULT_PATH
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    print_ok(path, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
