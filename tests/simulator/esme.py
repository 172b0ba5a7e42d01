"""A small raw ESME for the simulator's tests: a Trio TCP stream, the codec's Framer, no logic.

Tests drive it PDU by PDU so they can check exactly what the simulator sends and when. Every
read is bounded (``READ_TIMEOUT``, on the test's clock), so a missing answer fails the test
instead of hanging it.
"""

from __future__ import annotations

from collections import deque

import attrs
import trio

from smpp_codec import (
    NEED_DATA,
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    DecodeError,
    DeliverSm,
    Framer,
    Pdu,
    Request,
    Response,
    encode,
)
from smsgw.simulator import Simulator, SimulatorConfig

#: Longest wait for one PDU (seconds on the test's clock: instant under MockClock autojump).
READ_TIMEOUT = 10.0

Bind = type[BindTransmitter] | type[BindReceiver] | type[BindTransceiver]


class Closed(Exception):
    """The simulator closed the connection."""


class RawEsme:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.framer = Framer()
        self._seq = 0
        #: PDUs that arrived while :meth:`request` waited for a response (deliver_sm...).
        self.inbox: deque[Pdu] = deque()

    @classmethod
    async def connect(cls, port: int) -> RawEsme:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    def seq(self) -> int:
        self._seq += 1
        return self._seq

    async def send(self, pdu: Pdu) -> None:
        await self.stream.send_all(encode(pdu))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def recv(self, timeout: float = READ_TIMEOUT) -> Pdu:
        """The next PDU from the socket; raises :class:`Closed` at end of stream and the codec's
        DecodeError for bytes that are not a PDU."""
        with trio.fail_after(timeout):
            while True:
                pdu = self.framer.next_pdu()
                if pdu is not NEED_DATA:
                    return pdu
                data = await self.stream.receive_some(65536)
                if not data:
                    raise Closed(f"closed with {self.framer.buffered} octets of a PDU pending")
                self.framer.feed(data)

    async def recv_nothing(self, wait: float) -> None:
        """Assert that no PDU arrives within ``wait`` seconds (the connection stays open)."""
        with trio.move_on_after(wait):
            pdu = await self.recv(timeout=wait + 1)
            raise AssertionError(f"expected nothing, got {pdu!r}")

    async def next(self, timeout: float = READ_TIMEOUT) -> Pdu:
        """The next PDU, from the inbox first."""
        if self.inbox:
            return self.inbox.popleft()
        return await self.recv(timeout)

    async def request(self, pdu: Request, timeout: float = READ_TIMEOUT) -> Response:
        """Send ``pdu`` and wait for the response with its sequence number; other PDUs that
        arrive meanwhile go to :attr:`inbox`."""
        await self.send(pdu)
        while True:
            got = await self.recv(timeout)
            if isinstance(got, Response) and got.sequence_number == pdu.sequence_number:
                return got
            self.inbox.append(got)

    async def bind(
        self, cls: Bind = BindTransceiver, system_id: str = "esme", password: str = "pw"
    ) -> Response:
        return await self.request(cls(sequence_number=self.seq(), system_id=system_id,
                                      password=password))

    async def deliver(self, timeout: float = READ_TIMEOUT) -> DeliverSm:
        """The next deliver_sm (answered by the caller)."""
        pdu = await self.next(timeout)
        assert isinstance(pdu, DeliverSm), pdu
        return pdu

    async def ack(self, pdu: Request, status: int = 0) -> None:
        await self.send(pdu.response(status))

    async def until_closed(self, timeout: float = READ_TIMEOUT) -> list[Pdu]:
        """Read until the simulator closes the connection; the PDUs read before."""
        pdus = []
        with trio.fail_after(timeout):
            while True:
                try:
                    pdus.append(await self.recv(timeout))
                except Closed:
                    return pdus

    async def aclose(self) -> None:
        await self.stream.aclose()


@attrs.frozen
class Running:
    sim: Simulator
    port: int

    async def esme(self) -> RawEsme:
        return await RawEsme.connect(self.port)

    async def bound(
        self, cls: Bind = BindTransceiver, system_id: str = "esme", password: str = "pw"
    ) -> RawEsme:
        esme = await self.esme()
        resp = await esme.bind(cls, system_id, password)
        assert resp.command_status == 0, resp
        return esme


async def serve(nursery: trio.Nursery, config: SimulatorConfig | None = None) -> Running:
    sim = Simulator(config or SimulatorConfig(seed=1))
    port = await nursery.start(sim.serve)
    return Running(sim, port)


__all__ = ["READ_TIMEOUT", "Closed", "DecodeError", "RawEsme", "Running", "serve"]
