"""A scripted SMSC for client tests: the test says what it reads and what it answers.

Written with the codec only (framer + encode), not with the session core, so the client's core
is checked against an independent peer.
"""

from __future__ import annotations

from typing import TypeVar

import trio
import trio.testing

from smpp_codec import NEED_DATA, Framer, Pdu, encode

P = TypeVar("P", bound=Pdu)


class FakeSmsc:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.framer = Framer()
        self.seq = 1000

    async def read(self, timeout: float = 60.0) -> Pdu | None:
        """The next PDU from the client, or None at end of stream."""
        with trio.fail_after(timeout):
            while (pdu := self.framer.next_pdu()) is NEED_DATA:
                data = await self.stream.receive_some(65536)
                if not data:
                    return None
                self.framer.feed(data)
        return pdu

    async def expect(self, cls: type[P], timeout: float = 60.0) -> P:
        pdu = await self.read(timeout)
        assert isinstance(pdu, cls), f"expected {cls.__name__}, got {pdu!r}"
        return pdu

    async def send(self, *pdus: Pdu) -> None:
        await self.stream.send_all(b"".join(encode(p) for p in pdus))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    async def at_eof(self, timeout: float = 60.0) -> bool:
        """True when the client closed its side (nothing more arrives)."""
        with trio.fail_after(timeout):
            while True:
                try:
                    data = await self.stream.receive_some(65536)
                except trio.BrokenResourceError:
                    return True
                if not data:
                    return True
                self.framer.feed(data)


def stream_pair() -> tuple[trio.abc.Stream, FakeSmsc]:
    client, server = trio.testing.memory_stream_pair()
    return client, FakeSmsc(server)
