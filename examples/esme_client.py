"""Bind to an SMSC, send one message, print its delivery receipt.

Against the simulator (start it first: ``smsgw simulator``, it listens on 127.0.0.1:2775)::

    python examples/esme_client.py --to 46700000001 --text "hello"

Options name another SMSC (``--host``, ``--port``, ``--system-id``, ``--password``, ``--tls``).
"""

from __future__ import annotations

import argparse
import logging
import sys

import trio

from smpp_codec import RegisteredDelivery, SubmitSm
from smsgw.smpp import ClientConfig, SmppClientError, TlsConfig, open_client


async def send_one(config: ClientConfig, source: str, destination: str, text: str) -> int:
    async with open_client(config, bound_timeout=config.connect_timeout) as client:
        pdu = SubmitSm(
            sequence_number=0,  # the session numbers every request it sends
            source_addr=source,
            destination_addr=destination,
            short_message=text.encode("latin-1"),
            data_coding=0x03,  # Latin-1
            registered_delivery=RegisteredDelivery.SMSC_RECEIPT_ON_SUCCESS_OR_FAILURE,
        )
        try:
            response = await client.submit(pdu, timeout=10)
        except SmppClientError as exc:
            print(f"not accepted: {exc!r} (retryable: {exc.retryable})")
            return 1
        message_id = getattr(response, "message_id", "")
        print(f"accepted, message id {message_id}")
        with trio.move_on_after(30) as waited:
            async for inbound in client.inbound:
                # Answer every deliver_sm, or the SMSC sends it again.
                await inbound.reply()
                if inbound.is_receipt and inbound.pdu.tlv("receipted_message_id") == message_id:
                    text_part = getattr(inbound.pdu, "short_message", b"")
                    print(f"receipt: {text_part.decode('latin-1')}")
                    print(f"state: {inbound.pdu.tlv('message_state')!r}")
                    break
        if waited.cancelled_caught:
            print("no receipt within 30 s")
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2775)
    parser.add_argument("--system-id", default="smsgw")
    parser.add_argument("--password", default="secret")
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument("--ca-file", help="CA certificates to trust (with --tls)")
    parser.add_argument("--from", dest="source", default="smsgw")
    parser.add_argument("--to", default="46700000001")
    parser.add_argument("--text", default="Hello from smsgw")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = ClientConfig(
        host=args.host,
        port=args.port,
        system_id=args.system_id,
        password=args.password,
        tls=TlsConfig(ca_file=args.ca_file) if args.tls else None,
    )
    try:
        return trio.run(send_one, config, args.source, args.to, args.text)
    except trio.TooSlowError:
        print(f"could not bind to {args.host}:{args.port}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
