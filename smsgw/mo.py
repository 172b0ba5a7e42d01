"""The MO handler: an inbound message (a deliver_sm/data_sm that is not a receipt) -> reassembled
-> stored durably -> THEN the SMSC is answered -> an inbound webhook (in the same transaction).

- A message on its own (no concatenation header) is stored at once (a UDH without a
  concatenation element is stripped from the text, kept in ``payload``).
- A part of a concatenated message (UDH 8/16-bit reference, or SAR TLVs) is collected by
  :class:`smpp_codec.segment.Reassembler` under (provider, source, destination, reference,
  total). Its PDU is **not answered yet**: every part of the message is answered once the whole
  message is stored, so the SMSC never hears "ESME_ROK" for a part the gateway could still lose.
  A part received twice is answered with the rest (the reassembler ignores the copy).
- A message whose parts do not all arrive within ``reassembly_timeout`` seconds (``[inbound]``
  in the config) is stored as it is (the parts that came, in order; counted in
  ``mo_incomplete``) and its parts answered: a lost part should not cost the others. The
  timeout is shorter than the client's ``inbound_answer_timeout`` (30 s), after which the SMSC
  would be answered with a temporary error (the config refuses a longer one).
- If storing fails, every PDU of the message is answered with a temporary error
  (ESME_RX_T_APPN): the SMSC delivers it again.

Text is decoded by ``data_coding`` (:func:`smpp_codec.text.decode`); a binary or undecodable
payload is stored with ``text`` None. An SMSC that delivers again a message whose answer was
lost makes a duplicate row: the MO has no id to recognise it by.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence

import trio

from smpp_codec.constants import CommandStatus, EsmClass, Tag
from smpp_codec.errors import TextError
from smpp_codec.pdu import DataSm, DeliverSm
from smpp_codec.segment import Reassembler, concat_info, parse_udh
from smpp_codec.text import decode as decode_text
from smsgw.dlr import Notifier
from smsgw.messages import Counters, new_message_id
from smsgw.model import NewInbound
from smsgw.smpp.inbound import Inbound
from smsgw.storage import Store, StoreError

__all__ = ["MoHandler"]

log = logging.getLogger("smsgw.mo")

RETRY_LATER = int(CommandStatus.ESME_RX_T_APPN)


def _body(pdu: DeliverSm | DataSm) -> bytes:
    short_message: bytes = getattr(pdu, "short_message", b"")
    if short_message:
        return short_message
    for tag, value in pdu.optional_parameters:
        if tag == Tag.MESSAGE_PAYLOAD:
            return value
    return b""


def _text(payload: bytes, data_coding: int) -> str | None:
    try:
        return decode_text(payload, data_coding)
    except TextError:
        return None


class MoHandler:
    """See the module docstring. ``clock`` gives the wall-clock ``received_at``."""

    def __init__(
        self,
        *,
        store: Store,
        counters: Counters,
        notifier: Notifier,
        clock: Callable[[], float],
        reassembly_timeout: float = 20.0,
        max_pending: int = 4096,
        webhooks_due: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._counters = counters
        self._notifier = notifier
        self._clock = clock
        #: Called after a stored message queued a webhook, so the deliverer need not wait a poll.
        self._webhooks_due = webhooks_due
        self.reassembly_timeout = reassembly_timeout
        self._reassembler = Reassembler(max_pending)
        #: The unanswered PDUs of each incomplete message, and what its row needs.
        self._held: dict[Hashable, list[Inbound]] = {}
        self._wake = trio.Event()

    @property
    def pending(self) -> int:
        """Incomplete multipart messages held now."""
        return self._reassembler.pending

    async def handle(self, provider: str, inbound: Inbound) -> None:
        pdu = inbound.pdu
        assert isinstance(pdu, DeliverSm | DataSm)
        body = _body(pdu)
        try:
            info = concat_info(body, pdu.esm_class, pdu.optional_parameters)
        except TextError as exc:
            # A header we cannot read: keep the message whole rather than lose it.
            log.warning("unreadable concatenation header from %s: %s", provider, exc)
            await self._store_message(provider, pdu, [inbound], body, parts=1)
            return
        if info is None:
            payload = body
            if pdu.esm_class & EsmClass.UDHI:
                try:
                    _elements, payload = parse_udh(body)
                except TextError:
                    payload = body
            await self._store_message(provider, pdu, [inbound], payload, parts=1)
            return
        key = (provider, pdu.source_addr, pdu.destination_addr, info.reference, info.total)
        joined = self._reassembler.add(key, info, trio.current_time())
        held = self._held.setdefault(key, [])
        held.append(inbound)
        if joined is None:
            if len(held) == 1:
                self._wake.set()  # a new incomplete message: the expiry timer re-arms
            return
        del self._held[key]
        await self._store_message(provider, pdu, held, joined, parts=info.total)

    async def _store_message(
        self,
        provider: str,
        pdu: DeliverSm | DataSm,
        inbounds: Sequence[Inbound],
        payload: bytes,
        *,
        parts: int,
        complete: bool = True,
    ) -> None:
        message = NewInbound(
            id=new_message_id(),
            provider=provider,
            source=pdu.source_addr,
            destination=pdu.destination_addr,
            payload=payload,
            data_coding=pdu.data_coding,
            text=_text(payload, pdu.data_coding),
            parts=parts,
            received_at=self._clock(),
        )
        notifications = self._notifier.inbound(message)
        try:
            await self._store.store_inbound([message], notifications)
        except StoreError as exc:
            self._counters.mo_store_failures += 1
            log.warning(
                "inbound message from %s not stored, the SMSC will send it again: %s",
                provider,
                exc,
                extra={"provider": provider},
            )
            for inbound in inbounds:
                await inbound.reply(RETRY_LATER)
            return
        self._counters.mo_received += 1
        if notifications:
            self._webhooks_due()
        if not complete:
            self._counters.mo_incomplete += 1
        for inbound in inbounds:
            await inbound.reply(0)

    async def run_expiry(self) -> None:
        """Forever: store the incomplete messages older than the timeout (a supervised task)."""
        while True:
            self._wake = trio.Event()
            if self._reassembler.pending:
                with trio.move_on_after(min(1.0, self.reassembly_timeout / 4)):
                    await self._wake.wait()
            else:
                await self._wake.wait()
            for key, _reference, parts in self._reassembler.expire(
                trio.current_time(), self.reassembly_timeout
            ):
                held = self._held.pop(key, [])
                if not held:
                    continue
                provider = str(key[0]) if isinstance(key, tuple) else "?"
                joined = b"".join(parts[n] for n in sorted(parts))
                pdu = held[-1].pdu
                assert isinstance(pdu, DeliverSm | DataSm)
                log.warning(
                    "multipart inbound message from %s incomplete after %gs: storing %d part(s)",
                    provider,
                    self.reassembly_timeout,
                    len(parts),
                    extra={"provider": provider},
                )
                await self._store_message(
                    provider, pdu, held, joined, parts=len(parts), complete=False
                )
