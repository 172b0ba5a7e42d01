"""Kannel, the peer of ``smsgw bench --api``'s end-to-end phase.

Kannel (bearerbox + smsbox, Debian's ``kannel`` package) is the established open-source SMS
gateway, written in C. When its programs are on ``PATH``, the benchmark gives it the same work as
the gateway's end-to-end phase, on the same simulator, right after it:

- messages come in over HTTP (its ``sendsms`` interface, one message a request: it has no batch
  API) from the same load generator;
- it sends them over two SMPP connections with a window of 64 each (``max-pending-submits``),
  as the gateway does in the benchmark;
- it calls back for two status changes of each message (``dlr-mask`` 27: the SMSC accepted or
  rejected it, then delivered or failed), as the gateway's webhooks do with ``statuses``
  ``submitted`` and the final ones; a receiver in this process counts the callbacks.

"All done" is from the first request until the last callback (when the count stops growing
for :data:`QUIET` seconds or reaches two per message). Differences that favour Kannel, printed
with the figure: its queue is a store file that is not synced to disk at every message (the
gateway's queue is, with ``synchronous = FULL``), and its callbacks are plain GETs (the
gateway's webhooks are signed JSON POSTs). One that does not: Kannel does not keep a receipt
that arrives before the ``submit_sm_resp`` of its message was processed (the simulator sends
receipts at once, sometimes on the other connection first); those are counted as lost (its
status page's "DLR: N queued").
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

import attrs
import h11
import httpx
import trio

from smsgw.testing.ports import free_port

__all__ = [
    "QUIET",
    "Kannel",
    "available",
    "kannel_conf",
    "open_kannel",
    "serve_counter",
    "unmatched_receipts",
]

#: Seconds without a new callback after which the last one is taken as the end.
QUIET = 3.0
#: The longest Kannel may take to bind its connections and open its HTTP interface.
START_TIMEOUT = 30.0
#: ``dlr-mask``: delivered (1), failed (2), accepted by the SMSC (8), rejected by it (16).
DLR_MASK = 27
#: Callbacks per message with that mask when all goes well: the acceptance and the final one.
CALLBACKS_PER_MESSAGE = 2


def available() -> bool:
    """Whether Kannel's ``bearerbox`` and ``smsbox`` are on ``PATH``."""
    return shutil.which("bearerbox") is not None and shutil.which("smsbox") is not None


@attrs.frozen
class Ports:
    admin: int
    smsbox: int
    sendsms: int


def kannel_conf(state: Path, ports: Ports, smsc_port: int, *, connections: int, window: int) -> str:
    """A ``kannel.conf``: one SMPP account on 127.0.0.1:``smsc_port`` bound ``connections``
    times as a transceiver, the store file and logs in ``state``."""
    smsc = f"""
group = smsc
smsc = smpp
smsc-id = sim
host = 127.0.0.1
port = {smsc_port}
transceiver-mode = true
smsc-username = bench
smsc-password = bench
system-type = "bench"
max-pending-submits = {window}
"""
    return f"""\
group = core
admin-port = {ports.admin}
admin-password = bench
status-password = bench
smsbox-port = {ports.smsbox}
box-allow-ip = "127.0.0.1"
admin-allow-ip = "127.0.0.1"
log-level = 2
log-file = "{state / "bearerbox.log"}"
store-type = file
store-location = "{state / "kannel.store"}"
dlr-storage = internal
{smsc * connections}
group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {ports.smsbox}
sendsms-port = {ports.sendsms}
log-level = 2
log-file = "{state / "smsbox.log"}"

group = sendsms-user
username = bench
password = bench
"""


@attrs.define
class Kannel:
    """A running Kannel: its ``sendsms`` port, its two processes and its status page."""

    ports: Ports
    bearerbox: trio.Process
    smsbox: trio.Process | None = None

    def sendsms_url(self, callback: str) -> str:
        """The URL of one message whose status callbacks go to ``callback`` (Kannel fills in
        ``%d``, the status bit)."""
        dlr = quote(f"{callback}?status=%d", safe="")
        return (
            f"http://127.0.0.1:{self.ports.sendsms}/cgi-bin/sendsms?username=bench"
            f"&password=bench&to=4915112345678&from=ACME&text=benchmark+message"
            f"&dlr-mask={DLR_MASK}&dlr-url={dlr}"
        )

    async def status(self) -> str:
        """Bearerbox's status page (text)."""
        url = f"http://127.0.0.1:{self.ports.admin}/status.txt?password=bench"
        async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
            return (await client.get(url)).text

    async def unmatched_receipts(self) -> int:
        """Receipts Kannel could not match to a message."""
        return unmatched_receipts(await self.status())

    def cpu_seconds(self) -> float:
        """CPU time both processes have used so far."""
        return sum(_cpu_seconds(p.pid) for p in (self.bearerbox, self.smsbox) if p is not None)


def unmatched_receipts(status: str) -> int:
    """Receipts not matched to a message, from bearerbox's status page ("DLR: N queued"): with
    internal storage, a receipt that found no message waits there."""
    for line in status.splitlines():
        if line.startswith("DLR:") and line.rstrip().endswith("storage"):
            return int(line.split()[1])
    raise ValueError("no 'DLR: N queued, using ... storage' line on Kannel's status page")


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it holds; ``RuntimeError`` naming ``what`` after the start bound."""
    with trio.move_on_after(START_TIMEOUT):
        while True:
            try:
                if await check():
                    return
            except (OSError, httpx.HTTPError):
                pass  # not up yet
            await trio.sleep(0.1)
    raise RuntimeError(f"{what} within {START_TIMEOUT:g}s")


async def _stop(proc: trio.Process) -> None:
    with trio.move_on_after(10, shield=True):
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await proc.wait()
    if proc.returncode is None:
        proc.kill()


@asynccontextmanager
async def open_kannel(
    smsc_port: int, *, connections: int = 2, window: int = 64
) -> AsyncIterator[Kannel]:
    """Kannel bound to the SMSC at 127.0.0.1:``smsc_port``, its HTTP interface open; stopped
    (SIGTERM) when the block ends. Its logs stay in a temporary directory removed then."""
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-kannel-") as tmp:
        state = Path(tmp)
        ports = Ports(free_port(), free_port(), free_port())
        conf = state / "kannel.conf"
        conf.write_text(
            kannel_conf(state, ports, smsc_port, connections=connections, window=window)
        )
        with (state / "console.log").open("wb") as out:

            async def start(program: str) -> trio.Process:
                return await trio.lowlevel.open_process(
                    [program, "-v", "4", str(conf)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                )

            kannel = Kannel(ports, await start("bearerbox"))
            try:

                async def bound() -> bool:
                    return (await kannel.status()).count("(online ") >= connections

                await _until(bound, "Kannel's SMPP connections were not bound")
                kannel.smsbox = await start("smsbox")

                async def listening() -> bool:
                    stream = await trio.open_tcp_stream("127.0.0.1", ports.sendsms)
                    await stream.aclose()
                    boxes = (await kannel.status()).partition("Box connections:")[2]
                    return "smsbox:" in boxes

                await _until(listening, "Kannel's smsbox did not open its HTTP interface")
                yield kannel
            finally:
                for proc in (kannel.smsbox, kannel.bearerbox):
                    if proc is not None:
                        await _stop(proc)


# --- the callback receiver ------------------------------------------------------------------


@attrs.define
class Counter:
    """Requests answered, and when the last came (``time.perf_counter()``)."""

    count: int = 0
    last: float = 0.0


async def serve_counter(
    counter: Counter, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """An HTTP/1.1 server on 127.0.0.1 (port reported through ``task_status``) answering every
    request 200 with an empty body and counting it, until cancelled."""

    async def answer(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)
                if not data:
                    return
            elif isinstance(event, h11.EndOfMessage):
                counter.count += 1
                counter.last = time.perf_counter()  # wall-clock: measuring elapsed time
                ok = h11.Response(status_code=200, headers=[("Content-Length", "0")])
                await stream.send_all(conn.send(ok) + conn.send(h11.EndOfMessage()))
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1", backlog=1024)
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(answer, listeners)
