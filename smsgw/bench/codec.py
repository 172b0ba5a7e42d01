"""``smsgw bench --codec``: encode+decode round trips of smpp_codec vs python-smpplib.

Two PDUs a gateway handles all day: a typical submit_sm, and a deliver_sm delivery receipt with
three TLVs (receipted_message_id, message_state, network_error_code). Both libraries encode the
PDU from its fields and decode the bytes back, in the same process, one after the other.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import smpp_codec as sc
from smpp_codec import Tag

from .report import fmt_rate, print_table, rate

TEXT = b"Your verification code is 123456. It expires in 10 minutes."
RECEIPT = (
    b"id:0A1B2C3D4E sub:001 dlvrd:001 submit date:2611281015 done date:2611281016 "
    b"stat:DELIVRD err:000 text:Your verification"
)

TARGET_SUBMIT_RATE = 150_000
TARGET_RATIO = 7.0


def _ours() -> dict[str, Callable[[], object]]:
    submit = sc.SubmitSm(
        sequence_number=12345, source_addr_ton=5, source_addr="MyBrand", dest_addr_ton=1,
        dest_addr_npi=1, destination_addr="447700900123", registered_delivery=1,
        short_message=TEXT,
    )
    receipt = sc.DeliverSm(
        sequence_number=777, source_addr_ton=1, source_addr_npi=1, source_addr="447700900123",
        destination_addr="MyBrand", esm_class=0x04, short_message=RECEIPT,
        optional_parameters=(
            (Tag.RECEIPTED_MESSAGE_ID, b"0A1B2C3D4E\0"),
            (Tag.MESSAGE_STATE, b"\x02"),
            (Tag.NETWORK_ERROR_CODE, b"\x03\x00\x00"),
        ),
    )
    encode, decode = sc.encode, sc.decode
    return {
        "submit_sm": lambda: decode(encode(submit)),
        "deliver_sm receipt": lambda: decode(encode(receipt)),
    }


def _smpplib() -> dict[str, Callable[[], object]] | None:
    try:
        from smpplib import smpp
    except ImportError:
        return None

    def submit() -> object:
        pdu = smpp.make_pdu(
            "submit_sm", sequence=12345, source_addr_ton=5, source_addr="MyBrand",
            dest_addr_ton=1, dest_addr_npi=1, destination_addr="447700900123",
            registered_delivery=1, short_message=TEXT,
        )
        return smpp.parse_pdu(pdu.generate(), need_sequence=False)

    def receipt() -> object:
        pdu = smpp.make_pdu(
            "deliver_sm", sequence=777, source_addr_ton=1, source_addr_npi=1,
            source_addr="447700900123", destination_addr="MyBrand", esm_class=0x04,
            short_message=RECEIPT, receipted_message_id="0A1B2C3D4E", message_state=2,
            network_error_code=b"\x03\x00\x00",
        )
        return smpp.parse_pdu(pdu.generate(), need_sequence=False)

    return {"submit_sm": submit, "deliver_sm receipt": receipt}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smsgw bench --codec", description=__doc__)
    parser.add_argument("--count", type=int, default=50_000, help="round trips per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure (median)")
    args = parser.parse_args(argv)
    ours = _ours()
    theirs = _smpplib()
    rows = [("PDU (encode+decode)", "smpp_codec", "python-smpplib", "ratio", "target")]
    for name, fn in ours.items():
        our_rate = rate(fn, count=args.count, repeats=args.repeats)
        if theirs is not None:
            their_rate = rate(theirs[name], count=max(args.count // 10, 1), repeats=args.repeats)
            cells = (fmt_rate(their_rate), f"{our_rate / their_rate:.1f}x")
        else:
            cells = ("(not installed)", "-")
        target = (f">= {TARGET_SUBMIT_RATE:,}/s, >= {TARGET_RATIO:.0f}x"
                  if name == "submit_sm" else "")
        rows.append((name, fmt_rate(our_rate), *cells, target))
    print_table("Codec round trips per second (median of runs)", rows)
    return 0
