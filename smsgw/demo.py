"""``smsgw demo``: the whole gateway on one machine, no Redis and no configuration needed.

It starts two SMSC simulators (``primary`` and ``backup``, two providers of one route) and the
gateway on its embedded defaults in a temporary directory, then:

1. sends a GSM 7-bit message and a 3-part Unicode (UCS-2) message: both delivered by
   ``primary``;
2. sends one to a number ``primary`` rejects as invalid (``ESME_RINVDSTADR``, the simulator's
   ``reject_destinations``): a permanent error, so the message fails at once;
3. takes ``primary`` offline and sends one more: it fails over to ``backup`` and is delivered;
4. has ``backup`` send a mobile-originated message (MO) to the gateway;

and prints each message's journey (every status event, its time offset and reason) and final
status, then the MO. It exits 0 when everything reached the expected final state, 1 otherwise
(saying what did not), all within :data:`DEMO_TIMEOUT` seconds.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import attrs
import trio

from smpp_codec.constants import CommandStatus

from .config import GatewayConfig, parse_config
from .model import FINAL_STATUSES, MessageStatus

if TYPE_CHECKING:
    from .gateway import Gateway
    from .messages import MessageView, SubmitRequest
    from .simulator import Simulator

#: The whole demo, start to finish (it normally takes a few seconds).
DEMO_TIMEOUT = 20.0
#: How long the gateway may take to bind to both simulators.
BIND_TIMEOUT = 5.0
POLL_INTERVAL = 0.05

#: A number the primary simulator answers ESME_RINVDSTADR for.
INVALID_PREFIX = "999"
SENDER = "smsgw"
MO_SOURCE = "4917600000001"
MO_DESTINATION = "smsgw"
MO_TEXT = "Hi smsgw, this is a reply from a phone."


def demo_config_text(state_dir: Path, primary_port: int, backup_port: int) -> str:
    """The gateway configuration the demo runs with: a normal TOML file (printed with -v)."""
    return f"""\
[gateway]
state_dir = "{state_dir.as_posix()}"
drain_grace = "2s"

[api]
port = 0

[[providers]]
name = "primary"
host = "127.0.0.1"
port = {primary_port}
system_id = "demo"
password = "demo"
request_timeout = "2s"
reconnect = {{ initial = "200ms", max = "1s" }}

[[providers]]
name = "backup"
host = "127.0.0.1"
port = {backup_port}
system_id = "demo"
password = "demo"
request_timeout = "2s"
reconnect = {{ initial = "200ms", max = "1s" }}

[[routes]]
name = "everything"
providers = ["primary", "backup"]

[retry]
max_attempts = 3
initial_delay = "500ms"
"""


@attrs.frozen
class Scenario:
    """One message of the demo and what must become of it."""

    title: str
    request: SubmitRequest
    expect: MessageStatus
    #: The provider that must have taken it in the end (None: any).
    provider: str | None = None
    parts: int = 1


def scenarios() -> tuple[list[Scenario], Scenario]:
    """The messages sent while ``primary`` is up, and the one sent once it is down."""
    from .messages import SubmitRequest

    first = [
        Scenario(
            "GSM 7-bit text",
            SubmitRequest(
                to="+4915112345678", source=SENDER, text="Hello from smsgw! Your code is 4821."
            ),
            MessageStatus.DELIVERED,
            provider="primary",
        ),
        Scenario(
            "Unicode text, 3 parts",
            SubmitRequest(
                to="+380501234567",
                source=SENDER,
                text=(
                    "Привет из smsgw! Это длинное сообщение в UCS-2: кириллица, emoji 📨 и ещё "
                    "немного текста, чтобы получилось ровно три части SMS. Каждая часть "
                    "вмещает 67 символов."
                ),
            ),
            MessageStatus.DELIVERED,
            provider="primary",
            parts=3,
        ),
        Scenario(
            "permanent error (a number primary calls invalid)",
            SubmitRequest(to=f"+{INVALID_PREFIX}0000000", source=SENDER, text="Anyone there?"),
            MessageStatus.FAILED,
            provider="primary",
        ),
    ]
    failover = Scenario(
        "failover (primary is offline: the route's next provider takes it)",
        SubmitRequest(to="+447700900123", source=SENDER, text="Sent through the backup SMSC."),
        MessageStatus.DELIVERED,
        provider="backup",
    )
    return first, failover


# --- printing -------------------------------------------------------------------------------


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S.%f")[:-3]


def format_journey(number: int, scenario: Scenario, view: MessageView | None) -> list[str]:
    """The printed story of one message: header, every event, final status and verdict."""
    request = scenario.request
    lines = [f"{number}. {scenario.title}: {request.source} -> {request.to}"]
    if view is None:
        return [*lines, "   not found in the gateway's database", ""]
    preview = request.text or ""
    if len(preview) > 60:
        preview = preview[:57] + "..."
    parts = f"{len(view.parts)} part{'s' if len(view.parts) != 1 else ''}"
    lines.append(f"   id {view.id}, {parts}: {preview!r}")
    multipart = len(view.parts) > 1
    for event in view.events:
        if event.part_number is not None and not multipart:
            continue  # a single part's events repeat the message's
        offset = f"+{event.at - view.created_at:.3f}s"
        who = "" if event.part_number is None else f"part {event.part_number}: "
        note = "" if event.applied else "  (recorded; the status stays)"
        lines.append(f"   {offset:>9}  {event.status.value:<11} {who}{event.reason}{note}")
    verdict = check(scenario, view)
    via = f" via {view.provider}" if view.provider else ""
    lines.append(
        f"   final: {view.status.value}{via}"
        + ("" if verdict is None else f"  <-- UNEXPECTED: {verdict}")
    )
    lines.append("")
    return lines


def check(scenario: Scenario, view: MessageView | None) -> str | None:
    """What is wrong with how ``view`` ended, or None when it is as expected."""
    if view is None:
        return "the message is unknown to the gateway"
    problems = []
    if view.status is not scenario.expect:
        problems.append(f"expected {scenario.expect.value}, got {view.status.value}")
    if scenario.provider is not None and view.provider != scenario.provider:
        problems.append(f"expected provider {scenario.provider}, got {view.provider}")
    if len(view.parts) != scenario.parts:
        problems.append(f"expected {scenario.parts} parts, got {len(view.parts)}")
    return "; ".join(problems) or None


# --- running --------------------------------------------------------------------------------


async def _wait_final(
    gateway: Gateway, ids: Sequence[str], views: dict[str, MessageView | None]
) -> None:
    """Poll until every message is final, keeping the latest views in ``views`` (so that the
    caller, who owns the timeout, can still report them when it expires)."""
    while True:
        for message_id in ids:
            views[message_id] = await gateway.message(message_id)
        if all(v is not None and v.status in FINAL_STATUSES for v in views.values()):
            return
        await trio.sleep(POLL_INTERVAL)


async def _wait_bound(sims: Sequence[Simulator]) -> None:
    while not all(sim.stats.sessions for sim in sims):
        await trio.sleep(POLL_INTERVAL)


async def _serve(
    sim: Simulator, scope: trio.CancelScope, *, task_status: trio.TaskStatus[int]
) -> None:
    """Serve ``sim`` until ``scope`` is cancelled (how the demo takes a simulator offline)."""
    with scope:
        await sim.serve(task_status=task_status)


class Demo:
    """The demo's state, so whatever happened can be reported even after a timeout."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.results: list[tuple[Scenario, str, MessageView | None]] = []
        self.problems: list[str] = []

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    async def run(self, state_dir: Path, *, verbose: bool) -> None:
        import trio_asyncio

        from .gateway import Gateway
        from .simulator import ReceiptConfig, Simulator, SimulatorConfig

        receipts = ReceiptConfig(delay=0.2, jitter=0.3)
        primary = Simulator(
            SimulatorConfig(
                system_id="primary",
                seed=1,
                receipts=receipts,
                reject_destinations=(INVALID_PREFIX, "+" + INVALID_PREFIX),
            )
        )
        backup = Simulator(SimulatorConfig(system_id="backup", seed=2, receipts=receipts))
        primary_scope = trio.CancelScope()
        async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
            primary_port = await nursery.start(_serve, primary, primary_scope)
            backup_port = await nursery.start(backup.serve)
            text = demo_config_text(state_dir, primary_port, backup_port)
            config: GatewayConfig = parse_config(text, source="demo", environ={})
            self.say(
                f"Two simulated SMSCs: primary on 127.0.0.1:{primary_port}, backup on "
                f"127.0.0.1:{backup_port}; gateway state in {state_dir}"
            )
            if verbose:
                self.say("\n" + text)
            gateway = Gateway(config)
            await nursery.start(gateway.run)
            with trio.move_on_after(BIND_TIMEOUT):
                await _wait_bound([primary, backup])
            if not (primary.stats.sessions and backup.stats.sessions):
                self.problems.append(f"the gateway did not bind to both within {BIND_TIMEOUT}s")
                await gateway.drain(0.0)
                nursery.cancel_scope.cancel()
                return
            self.say("Gateway bound to both. Sending...\n")

            first, failover = scenarios()
            await self._send(gateway, first)

            self.say("Taking primary offline...\n")
            primary_scope.cancel()
            await self._send(gateway, [failover])

            await self._mo(backup)
            await gateway.drain(2.0)
            nursery.cancel_scope.cancel()
        # Read once the gateway has stopped: the database is the gateway's while it runs.
        await self.show_stored_inbound(config.database_path)

    async def _send(self, gateway: Gateway, batch: list[Scenario]) -> None:
        from .messages import Accepted

        answers = await gateway.submit([s.request for s in batch])
        ids = []
        for scenario, answer in zip(batch, answers, strict=True):
            if not isinstance(answer, Accepted):
                self.problems.append(f"{scenario.title}: the gateway rejected it: {answer.errors}")
                return
            ids.append(answer.id)
        views: dict[str, MessageView | None] = dict.fromkeys(ids)
        try:
            await _wait_final(gateway, ids, views)
        finally:
            # Also on timeout: report what each message reached.
            for scenario, message_id in zip(batch, ids, strict=True):
                view = views[message_id]
                self.results.append((scenario, message_id, view))
                number = len(self.results)
                for line in format_journey(number, scenario, view):
                    self.say(line)
                verdict = check(scenario, view)
                if verdict is not None:
                    self.problems.append(f"{number}. {scenario.title}: {verdict}")

    async def _mo(self, sim: Simulator) -> None:
        self.say(f"{len(self.results) + 1}. inbound message (MO): {MO_SOURCE} -> {MO_DESTINATION}")
        result = await sim.send_mo(
            source_addr=MO_SOURCE, destination_addr=MO_DESTINATION, text=MO_TEXT, timeout=5.0
        )
        answers = ", ".join(_status_name(s) for s in result.statuses)
        self.say(
            f"   backup delivered it in {result.parts} part(s); the gateway answered {answers}"
        )
        if not result.ok:
            self.problems.append(f"MO: the gateway answered {answers}, expected ESME_ROK")

    async def show_stored_inbound(self, database: Path) -> None:
        """The MO as the gateway stored it (read after the gateway stopped)."""
        from .storage import open_store

        async with open_store(database) as store:
            page = await store.list_inbound(limit=10)
        found = [m for m in page.items if m.source == MO_SOURCE]
        if not found:
            self.problems.append("MO: the gateway did not store it")
            self.say("   NOT stored by the gateway")
        for message in found:
            self.say(
                f"   stored: {message.id} from {message.source} to {message.destination} via "
                f"{message.provider}, {message.parts} part(s): {message.text!r}"
            )
            if message.text != MO_TEXT:
                self.problems.append(f"MO: stored text {message.text!r}, sent {MO_TEXT!r}")
        self.say("")


def _status_name(status: int | None) -> str:
    if status is None:
        return "nothing (timeout)"
    try:
        return CommandStatus(status).name
    except ValueError:
        return f"0x{status:08X}"


async def run_demo(out: TextIO, *, verbose: bool = False, timeout: float = DEMO_TIMEOUT) -> int:
    """Run the demo, printing to ``out``; the exit code."""
    demo = Demo(out)
    with tempfile.TemporaryDirectory(prefix="smsgw-demo-") as tmp:
        try:
            with trio.fail_after(timeout):
                await demo.run(Path(tmp), verbose=verbose)
        except trio.TooSlowError:
            demo.problems.append(f"the demo did not finish within {timeout:g}s")
    if demo.problems:
        demo.say("The demo did NOT go as expected:")
        for problem in demo.problems:
            demo.say(f"  - {problem}")
        return 1
    demo.say(f"All {len(demo.results)} messages and the MO ended as expected.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="smsgw demo",
        description=(
            "Run the gateway against two SMSC simulators in a temporary directory (no Redis, no "
            "configuration): send a few messages, receive one, print every message's journey."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print the config and logs")
    args = parser.parse_args(argv)
    from . import logs
    from .config import LogLevel

    logs.configure(level=LogLevel.INFO if args.verbose else LogLevel.ERROR)
    logging.captureWarnings(True)
    return trio.run(lambda: run_demo(sys.stdout, verbose=args.verbose))


if __name__ == "__main__":
    sys.exit(main())
