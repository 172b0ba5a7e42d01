"""The ``smsgw`` command.

Each subcommand lives in its own module and is imported only when used, so ``smsgw --help``
stays fast and a broken optional part cannot stop the others.
"""

from __future__ import annotations

import importlib
import sys

from . import __version__

#: subcommand -> (module with ``main(argv) -> int``, one-line help). Modules that serve several
#: commands (``CLIENT_MODULES``) get the command name as their first argument.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("smsgw.daemon", "run the gateway (SIGTERM drains, SIGHUP reloads)"),
    "demo": ("smsgw.demo", "see it work: two simulators, a few messages and their journeys"),
    "check-config": ("smsgw.check_config", "check a configuration file and report every problem"),
    "send": ("smsgw.client_cli", "submit a message through the HTTP API"),
    "status": ("smsgw.client_cli", "show a message's status and history (HTTP API)"),
    "dlq": ("smsgw.client_cli", "list or replay dead-lettered messages (HTTP API)"),
    "simulator": ("smsgw.simulator.cli", "run the SMSC simulator (an SMPP 3.4 server)"),
    "bench": ("smsgw.bench.cli", "run benchmarks (gateway, codec, queue, raw SMPP session)"),
}

CLIENT_MODULES = {"smsgw.client_cli"}

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
    module_name = COMMANDS[name][0]
    module = importlib.import_module(module_name)
    result: int = module.main(args if module_name in CLIENT_MODULES else rest)
    return result


if __name__ == "__main__":
    sys.exit(main())
