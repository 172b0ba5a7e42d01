"""Send one SMS with smpp_codec over a plain blocking socket, and wait for its receipt.

Nothing here but the standard library's ``socket`` and the codec: the proof that the codec does
no I/O of its own. Point it at any SMSC, or at the simulator::

    smsgw simulator --port 2775 &
    python examples/send_sms_blocking.py --port 2775 --to 447700900123 --text "Hello"

or let it start smsgw's simulator in a background thread on a free port (``--with-simulator``).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import socket
import sys
import threading
from collections.abc import Iterator

import smpp_codec as sc
from smpp_codec.receipt import receipt_from_pdu
from smpp_codec.text import decode as decode_text
from smpp_codec.text import encode as encode_text


class BlockingSession:
    """The smallest useful ESME: one socket, one framer, one request at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.framer = sc.Framer()
        self.sequence = itertools.count(1)

    def send(self, pdu: sc.Pdu) -> None:
        self.sock.sendall(sc.encode(pdu))

    def receive(self) -> sc.Pdu:
        """The next PDU from the peer; answers enquire_link on the way."""
        while True:
            pdu = self.framer.next_pdu()
            if pdu is sc.NEED_DATA:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("the SMSC closed the connection")
                self.framer.feed(data)
                continue
            if isinstance(pdu, sc.EnquireLink):
                self.send(pdu.response())
                continue
            return pdu

    def request(self, pdu: sc.Request) -> sc.Pdu:
        """Send a request and return its response (other PDUs arriving meanwhile are printed)."""
        self.send(pdu)
        while True:
            answer = self.receive()
            if answer.sequence_number == pdu.sequence_number and type(answer).is_response:
                return answer
            print(f"(while waiting: {type(answer).__name__})")


@contextlib.contextmanager
def simulator_in_thread() -> Iterator[int]:
    """Run smsgw's SMSC simulator (a Trio server) in a thread; yield the port it listens on.

    The simulator is the only part of this example that is not plain blocking code, which is why
    it lives in its own thread with its own Trio loop.
    """
    import trio

    from smsgw.simulator import Simulator, SimulatorConfig

    ready = threading.Event()
    state: dict[str, object] = {}

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            state["port"] = await nursery.start(Simulator(SimulatorConfig(seed=1)).serve)
            state["token"] = trio.lowlevel.current_trio_token()
            state["cancel"] = nursery.cancel_scope.cancel
            ready.set()

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    if not ready.wait(timeout=10):
        raise RuntimeError("the simulator did not start within 10 seconds")
    try:
        yield int(state["port"])  # type: ignore[call-overload]
    finally:
        trio.from_thread.run_sync(state["cancel"], trio_token=state["token"])  # type: ignore[arg-type]
        thread.join(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2775)
    parser.add_argument("--system-id", default="smsgw")
    parser.add_argument("--password", default="secret")
    parser.add_argument("--from", dest="source", default="Example")
    parser.add_argument("--to", default="447700900123")
    parser.add_argument("--text", default="Hello from smpp_codec ✓")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds for each read")
    parser.add_argument("--with-simulator", action="store_true",
                        help="start smsgw's SMSC simulator in the background and use it")
    args = parser.parse_args()
    if args.with_simulator:
        with simulator_in_thread() as port:
            print(f"SMSC simulator listening on 127.0.0.1:{port}")
            args.host, args.port = "127.0.0.1", port
            return send(args)
    return send(args)


def send(args: argparse.Namespace) -> int:
    with socket.create_connection((args.host, args.port), timeout=args.timeout) as sock:
        session = BlockingSession(sock)
        bound = session.request(sc.BindTransceiver(
            sequence_number=next(session.sequence),
            system_id=args.system_id, password=args.password,
        ))
        if bound.command_status:
            print(f"bind refused: {sc.status_name(bound.command_status)}")
            return 1
        short_message, data_coding = encode_text(args.text)
        response = session.request(sc.SubmitSm(
            sequence_number=next(session.sequence),
            source_addr_ton=sc.Ton.ALPHANUMERIC, source_addr=args.source,
            dest_addr_ton=sc.Ton.INTERNATIONAL, dest_addr_npi=sc.Npi.ISDN,
            destination_addr=args.to, data_coding=data_coding, short_message=short_message,
            registered_delivery=sc.RegisteredDelivery.SMSC_RECEIPT_ON_SUCCESS_OR_FAILURE,
        ))
        if response.command_status:
            print(f"submit refused: {sc.status_name(response.command_status)}")
            return 1
        assert isinstance(response, sc.SubmitSmResp)
        print(f"submitted {args.text!r} to {args.to}: SMSC message id {response.message_id}")

        while True:
            pdu = session.receive()
            if isinstance(pdu, sc.DeliverSm):
                session.send(pdu.response())
                receipt = receipt_from_pdu(pdu)
                if receipt is None:
                    print(f"MO from {pdu.source_addr}: "
                          f"{decode_text(pdu.short_message, pdu.data_coding)!r}")
                    continue
                print(f"receipt for {receipt.message_id}: {receipt.stat}")
                break
        session.request(sc.Unbind(sequence_number=next(session.sequence)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
