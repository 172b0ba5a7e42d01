"""The ``smsgw`` command.

Each subcommand lives in its own module and is imported only when used, so ``smsgw --help``
stays fast and a broken optional part cannot stop the others.
"""

from __future__ import annotations

import importlib
import sys

from . import __version__

#: subcommand -> (module with ``main(argv) -> int``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("smsgw.daemon", "run the gateway (SIGTERM drains, SIGHUP reloads)"),
    "demo": ("smsgw.demo", "see it work: two simulators, a few messages and their journeys"),
    "check-config": ("smsgw.check_config", "check a configuration file and report every problem"),
    "simulator": ("smsgw.simulator.cli", "run the SMSC simulator (an SMPP 3.4 server)"),
    "bench": ("smsgw.bench.cli", "run benchmarks (gateway, codec, queue, raw SMPP session)"),
}

USAGE = """\
usage: smsgw COMMAND [ARGS...]

An SMS gateway over SMPP 3.4.

commands:
{commands}

`smsgw COMMAND --help` explains each command.
"""


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = "\n".join(f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items())
    return USAGE.format(commands=lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if args[0] in ("-V", "--version", "version"):
        print(f"smsgw {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"smsgw: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    result: int = module.main(rest)
    return result


if __name__ == "__main__":
    sys.exit(main())
