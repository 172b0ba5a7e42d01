"""Interop with an independent peer: python-smpplib's blocking client against the simulator.

smpplib uses blocking sockets, so it runs in a worker thread (``trio.to_thread.run_sync``) while
the simulator serves in the Trio loop, on a real clock (a MockClock would jump while the thread
works). smpplib's own faults, worked around here:

- it warns (DeprecationWarning) unless ``allow_unknown_opt_params`` is given, and by default
  raises on TLVs it does not know;
- ``unbind()`` takes the next PDU as the answer, whatever it is: everything must be answered
  before unbinding;
- the message-received handler's return value becomes the deliver_sm_resp status (anything but
  an int or None breaks it);
- its socket timeout makes ``read_once`` send an enquire_link instead of failing, so loops
  reading with it must be bounded by count.
"""

from __future__ import annotations

import smpplib.client
import smpplib.consts
import trio

from smpp_codec.receipt import parse_receipt_text
from smsgw.simulator import Account, ReceiptConfig, SimulatorConfig

from .esme import serve


def smpplib_session(port: int) -> dict[str, object]:
    """Bind as transceiver, submit one message asking for a receipt, read the response and the
    receipt, unbind. Returns what smpplib saw."""
    seen: dict[str, object] = {}
    client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
    client.set_message_sent_handler(lambda pdu: seen.setdefault("message_id", pdu.message_id))

    def received(pdu: object) -> int:
        seen.setdefault("receipt", pdu)
        return 0  # smpplib answers deliver_sm with the handler's return value as the status

    client.set_message_received_handler(received)
    client.connect()
    try:
        bind = client.bind_transceiver(system_id="smpplib", password="secret")
        seen["bind_status"] = bind.status
        seen["smsc_system_id"] = bind.system_id
        client.send_message(
            source_addr_ton=smpplib.consts.SMPP_TON_INTL,
            source_addr="4915112345",
            dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
            destination_addr="4917612345",
            short_message=b"hello from smpplib",
            registered_delivery=True,
        )
        for _ in range(10):  # bounded: the response and the receipt come in two reads
            if "message_id" in seen and "receipt" in seen:
                break
            client.read_once()
        unbind = client.unbind()
        seen["unbind"] = unbind.command
    finally:
        client.disconnect()
    return seen


async def test_smpplib_binds_submits_and_receives_a_receipt(nursery):
    config = SimulatorConfig(accounts=[Account("smpplib", "secret")],
                             receipts=ReceiptConfig(delay="50ms"))
    run = await serve(nursery, config)
    with trio.fail_after(30):
        seen = await trio.to_thread.run_sync(smpplib_session, run.port)
    assert seen["bind_status"] == 0
    assert seen["smsc_system_id"] == b"smsgw-sim"
    message_id = seen["message_id"].decode()
    receipt = seen["receipt"]
    assert receipt.receipted_message_id.decode() == message_id
    assert receipt.message_state == 2  # DELIVERED
    parsed = parse_receipt_text(receipt.short_message)
    assert (parsed.message_id, parsed.stat) == (message_id, "DELIVRD")
    assert seen["unbind"] == "unbind_resp"
    with trio.fail_after(5):
        while run.sim.stats.receipts_acked < 1 or run.sim.stats.sessions:
            await trio.sleep(0.01)
    stats = run.sim.stats
    assert (stats.binds, stats.submits_accepted, stats.receipts_sent) == (1, 1, 1)
    assert stats.pdus_received["deliver_sm_resp"] == 1


async def test_smpplib_bind_with_a_wrong_password_is_refused(nursery):
    run = await serve(nursery, SimulatorConfig(accounts=[Account("smpplib", "secret")]))

    def bind_wrong() -> int:
        client = smpplib.client.Client("127.0.0.1", run.port, timeout=5,
                                       allow_unknown_opt_params=True)
        client.connect()
        try:
            client.bind_transmitter(system_id="smpplib", password="wrong")
        except smpplib.exceptions.PDUError as exc:
            return int(exc.args[1])
        finally:
            client.disconnect()
        return 0

    with trio.fail_after(30):
        status = await trio.to_thread.run_sync(bind_wrong)
    assert status == smpplib.consts.SMPP_ESME_RINVPASWD
