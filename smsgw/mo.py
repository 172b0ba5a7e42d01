"""The MO handler: an inbound message (a deliver_sm/data_sm that is not a receipt) -> stored
durably -> THEN the SMSC is answered; an inbound webhook is queued in the transaction that
stores the message.

- A message on its own (no concatenation header) is stored at once (a UDH without a
  concatenation element is stripped from the text, kept in ``payload``), then answered.
- A part of a concatenated message (UDH 8/16-bit reference, or SAR TLVs) is stored on its own
  (table ``inbound_parts``) and **then answered at once**, so the SMSC sends the next part
  whatever its window. An SMSC that sends one deliver_sm at a time (window 1, common for MO)
  would otherwise wait for an answer the gateway gives only once it has the part the SMSC is
  holding back. The parts are collected by :class:`smpp_codec.segment.Reassembler` under
  (provider, source, destination, reference, total). When the last one arrives, the whole
  message is stored and its parts' rows deleted, in one transaction. A part received twice is
  stored twice and deleted with the rest (the reassembler ignores the copy). A copy that comes
  after its message was stored (the SMSC did not get our answer, and sends it again) is
  recognised by its key, number and payload among the last :data:`RECENT_PARTS` parts, and
  dropped (``mo_duplicate_parts``) rather than stored later as a message of its own.
- Stored parts outlive the process: :meth:`MoHandler.recover` (at start) gives them back to
  the reassembler, their age counted from when they were received.
- A message whose parts do not all arrive within ``reassembly_timeout`` seconds (``[inbound]``
  in the config) is stored as it is (the parts that came, in order; counted in
  ``mo_incomplete``): a lost part should not cost the others. So is the oldest pending message
  when more than ``max_pending`` are pending.
- If storing a message or a part fails, its PDU is answered with a temporary error
  (ESME_RX_T_APPN): the SMSC delivers it again. A whole message made of stored parts that fails
  to be stored is tried again every second (its parts stay stored).

With a Redis queue (``shared``: :class:`smsgw.mo_shared.SharedParts`), a part is kept in
Redis instead of the database and answered once Redis has it (ESME_RX_T_APPN if Redis cannot
take it), so that the instances of one queue put together the parts each of them received. The
instance whose part completes a message claims it there and stores it; :meth:`run_expiry`
sweeps Redis every second for the messages timed out, beyond ``max_pending``, or claimed by an
instance that died, and at start takes back this instance's claims and moves the database's
parts to Redis. See :mod:`smsgw.mo_shared`.

Text is decoded by ``data_coding`` (:func:`smpp_codec.text.decode`; a multipart message by its
first part's); a binary or undecodable payload is stored with ``text`` None. An SMSC that
delivers again a message whose answer was lost makes a duplicate row: the MO has no id to
recognise it by.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import attrs
import trio

from smpp_codec.constants import CommandStatus, EsmClass, Tag
from smpp_codec.errors import TextError
from smpp_codec.pdu import DataSm, DeliverSm
from smpp_codec.segment import ConcatInfo, Reassembler, concat_info, parse_udh
from smpp_codec.text import decode as decode_text
from smsgw.dlr import Notifier
from smsgw.messages import Counters, new_message_id
from smsgw.metrics import Metrics
from smsgw.mo_shared import SWEEP_LIMIT, Added, Claim, SharedParts
from smsgw.model import InboundPart, NewInbound
from smsgw.outage import Outage
from smsgw.queue.base import QueueError
from smsgw.smpp.inbound import Inbound
from smsgw.storage import DuplicateId, Store, StoreError

__all__ = ["MoHandler"]

log = logging.getLogger("smsgw.mo")

RETRY_LATER = int(CommandStatus.ESME_RX_T_APPN)

#: Parts of recently stored multipart MOs remembered, to recognise copies the SMSC sends again.
RECENT_PARTS = 20_000


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


@attrs.define
class _Held:
    """What is known of a pending multipart message besides what the reassembler holds."""

    data_coding: int  # its first part's
    seqs: list[int] = attrs.Factory(list)  # its stored parts' rows
    payloads: dict[int, bytes] = attrs.Factory(dict)  # by part number (to know copies later)


@attrs.frozen
class _Whole:
    """A message made of stored parts, to be stored (again, if that failed)."""

    key: tuple[str, str, str, int, int]
    payload: bytes
    parts: int
    complete: bool
    data_coding: int
    seqs: tuple[int, ...]


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
        metrics: Metrics | None = None,
        shared: SharedParts | None = None,
    ) -> None:
        self._store = store
        #: With a Redis queue: the parts are collected in Redis, for every instance (below).
        self._shared = shared
        self._metrics = metrics if metrics is not None else Metrics(process=False)
        self._counters = counters
        self._notifier = notifier
        self._clock = clock
        #: Called after a stored message queued a webhook, so the deliverer need not wait a poll.
        self._webhooks_due = webhooks_due
        self.reassembly_timeout = reassembly_timeout
        self._reassembler = Reassembler(max_pending)
        #: Each pending multipart message's first data_coding and stored rows.
        self._held: dict[Hashable, _Held] = {}
        #: Whole messages of stored parts whose storing failed: tried again by run_expiry.
        self._unstored: list[_Whole] = []
        #: The parts of the messages made whole most recently, by (key, number): a part that
        #: comes again (the SMSC did not get our answer) is recognised and dropped, instead
        #: of starting a message of its own. Bounded: :data:`RECENT_PARTS`.
        self._recent: OrderedDict[tuple[Hashable, int], bytes] = OrderedDict()
        self._wake = trio.Event()
        #: Shared parts: messages claimed here whose storing failed, or whose ``done`` did;
        #: tried again by run_expiry.
        self._unstored_claims: list[Claim] = []
        self._undone: list[Claim] = []
        #: Inbound messages and parts the database did not take: logged once with reminders
        #: while it lasts, not a line per message.
        self._not_stored = Outage(
            log, "storing inbound messages (each is asked for again, or kept and tried again)"
        )

    @property
    def pending(self) -> int:
        """Incomplete multipart messages held now by this process."""
        return self._reassembler.pending

    async def multipart_pending(self) -> int:
        """Multipart messages waiting for parts: held here, or with shared parts in Redis
        (all instances'; raises the queue's errors)."""
        if self._shared is not None:
            pending, _claimed = await self._shared.count()
            return pending
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
            await self._store_message(provider, pdu, inbound, body)
            return
        if info is None:
            payload = body
            if pdu.esm_class & EsmClass.UDHI:
                try:
                    _elements, payload = parse_udh(body)
                except TextError:
                    payload = body
            await self._store_message(provider, pdu, inbound, payload)
            return
        if info.total == 1:  # "part 1 of 1": a message on its own
            await self._store_message(provider, pdu, inbound, info.payload)
            return
        part = InboundPart(
            provider=provider,
            source=pdu.source_addr,
            destination=pdu.destination_addr,
            reference=info.reference,
            total=info.total,
            number=info.number,
            payload=info.payload,
            data_coding=pdu.data_coding,
            received_at=self._clock(),
        )
        if self._shared is not None:
            await self._handle_shared(self._shared, inbound, part)
            return
        try:
            stored = await self._store.store_inbound_part(part)
        except StoreError as exc:
            self._counters.mo_store_failures += 1
            self._not_stored.failed(exc)
            log.debug(
                "part of an inbound message from %s not stored, the SMSC will send it again: %s",
                provider,
                exc,
            )
            await self._reply(provider, inbound, RETRY_LATER)
            return
        self._not_stored.succeeded()
        await self._reply(provider, inbound, 0)
        await self._add(stored)

    async def _handle_shared(
        self, shared: SharedParts, inbound: Inbound, part: InboundPart
    ) -> None:
        """Keep a part in Redis, then answer it; store its message if it completed it."""
        try:
            added = await shared.add(part)
        except QueueError as exc:
            self._counters.mo_store_failures += 1
            log.warning(
                "part of an inbound message from %s not kept in Redis, the SMSC will send it"
                " again: %s",
                part.provider,
                exc,
                extra={"provider": part.provider},
            )
            await self._reply(part.provider, inbound, RETRY_LATER)
            return
        # BUSY: an instance is storing its message now; a different part of the same key (a
        # reference used again this soon) is asked for again, and is then the start of a new
        # message.
        await self._reply(part.provider, inbound, RETRY_LATER if added is Added.BUSY else 0)
        if added is Added.DUPLICATE:
            self._counters.mo_duplicate_parts += 1
        elif isinstance(added, Claim):
            await self._store_claim(shared, added)

    async def _store_claim(self, shared: SharedParts, claim: Claim) -> None:
        """Store a message claimed in Redis, then let Redis delete its parts. Either step that
        fails is tried again by :meth:`run_expiry`; a crash in between leaves the claim in
        Redis, taken again at start (or after ``CLAIM_TIMEOUT`` by any instance)."""
        message = self._message(
            claim.key[:3],
            claim.payload,
            claim.data_coding,
            len(claim.parts),
            complete=claim.complete,
            message_id=claim.id,
        )
        if not await self._save(message, (), then="trying again (its parts are kept in Redis)"):
            self._unstored_claims.append(claim)
            return
        if not claim.complete:
            self._counters.mo_incomplete += 1
        await self._done(shared, claim)

    async def _done(self, shared: SharedParts, claim: Claim) -> None:
        try:
            await shared.done(claim)
        except QueueError as exc:
            log.warning(
                "inbound message %s stored, its parts not deleted from Redis: %s", claim.id, exc
            )
            self._undone.append(claim)

    async def _store_message(
        self, provider: str, pdu: DeliverSm | DataSm, inbound: Inbound, payload: bytes
    ) -> None:
        """Store a message on its own, then answer its PDU."""
        message = self._message(
            (provider, pdu.source_addr, pdu.destination_addr), payload, pdu.data_coding, parts=1
        )
        stored = await self._save(message, (), then="the SMSC will send it again")
        await self._reply(provider, inbound, 0 if stored else RETRY_LATER)

    async def _reply(self, provider: str, inbound: Inbound, command_status: int) -> None:
        """Answer an MO or a part; its time since it came goes to
        ``smsgw_inbound_answer_seconds``."""
        if await inbound.reply(command_status):
            waited = max(0.0, trio.current_time() - inbound.received_at)
            self._metrics.inbound_answered(provider, "mo", waited)

    async def recover(self) -> None:
        """Give the parts stored before a restart back to the reassembler (call once, at start,
        before :meth:`handle`). A message they complete is stored now; the others wait for
        their remaining parts or their timeout, counted from their first part's arrival.

        With shared parts, nothing here: :meth:`run_expiry` first hands the parts stored in
        the database (before the gateway moved to a Redis queue) over to Redis, and takes back
        this instance's claims, so that a Redis down at start does not stop the gateway."""
        if self._shared is not None:
            return
        for part in await self._store.inbound_parts():
            await self._add(part)

    async def _add(self, part: InboundPart) -> None:
        """Collect a stored part; store its message when this part completes it."""
        assert part.seq is not None and part.received_at is not None
        if part.key not in self._held and self._recent.get((part.key, part.number)) == part.payload:
            # A copy of a part of a message stored already: the SMSC did not get our answer.
            self._counters.mo_duplicate_parts += 1
            try:
                await self._store.delete_inbound_parts([part.seq])
            except StoreError as exc:  # kept: stored as an incomplete message after a restart
                log.warning("could not delete a copy of an inbound part: %s", exc)
            return
        # The reassembler's clock is Trio's: a part stored before a restart is as old as it is.
        age = max(0.0, self._clock() - part.received_at)
        info = ConcatInfo(part.reference, part.total, part.number, part.payload)
        joined = self._reassembler.add(part.key, info, trio.current_time() - age)
        held = self._held.setdefault(part.key, _Held(part.data_coding))
        held.seqs.append(part.seq)
        held.payloads.setdefault(part.number, part.payload)
        if joined is None:
            if len(held.seqs) == 1:
                self._wake.set()  # a new incomplete message: the expiry timer re-arms
            return
        del self._held[part.key]
        self._remember(part.key, held)
        await self._store_whole(
            _Whole(part.key, joined, part.total, True, held.data_coding, tuple(held.seqs))
        )

    def _remember(self, key: Hashable, held: _Held) -> None:
        for number, payload in held.payloads.items():
            self._recent[(key, number)] = payload
            self._recent.move_to_end((key, number))
        while len(self._recent) > RECENT_PARTS:
            self._recent.popitem(last=False)

    async def _store_whole(self, whole: _Whole) -> None:
        """Store a message made of stored parts and delete their rows, in one transaction. If
        that fails the parts stay stored, and :meth:`run_expiry` tries again."""
        message = self._message(
            whole.key[:3], whole.payload, whole.data_coding, whole.parts, complete=whole.complete
        )
        if not await self._save(message, whole.seqs, then="trying again (its parts are kept)"):
            self._unstored.append(whole)
            self._wake.set()
            return
        if not whole.complete:
            self._counters.mo_incomplete += 1

    def _message(
        self,
        where: tuple[str, str, str],
        payload: bytes,
        data_coding: int,
        parts: int,
        *,
        complete: bool = True,
        message_id: str | None = None,
    ) -> NewInbound:
        provider, source, destination = where
        return NewInbound(
            id=new_message_id() if message_id is None else message_id,
            provider=provider,
            source=source,
            destination=destination,
            payload=payload,
            data_coding=data_coding,
            text=_text(payload, data_coding),
            parts=parts,
            received_at=self._clock(),
            complete=complete,
        )

    async def _save(self, message: NewInbound, parts_done: Sequence[int], *, then: str) -> bool:
        """Store ``message`` with its webhook, deleting the part rows ``parts_done``; False
        (logged with ``then``, what happens next, and counted) if that failed."""
        notifications = self._notifier.inbound(message)
        try:
            await self._store.store_inbound([message], notifications, parts_done=parts_done)
        except DuplicateId:
            # A message claimed in Redis again after a restart, stored here before it.
            log.info("inbound message %s was stored already", message.id)
            return True
        except StoreError as exc:
            self._counters.mo_store_failures += 1
            self._not_stored.failed(exc)
            log.debug("inbound message from %s not stored, %s: %s", message.provider, then, exc)
            return False
        self._not_stored.succeeded()
        self._counters.mo_received += 1
        self._metrics.inbound_stored(message.provider, message.complete)
        if notifications:
            self._webhooks_due()
        return True

    async def run_expiry(self) -> None:
        """Forever: store the incomplete messages older than the timeout, and try again the
        whole ones whose storing failed (a supervised task)."""
        if self._shared is not None:
            await self._run_sweeps(self._shared)
            return
        while True:
            self._wake = trio.Event()
            if self._reassembler.pending or self._unstored:
                with trio.move_on_after(min(1.0, self.reassembly_timeout / 4)):
                    await self._wake.wait()
            else:
                await self._wake.wait()
            retry, self._unstored = self._unstored, []
            for whole in retry:
                await self._store_whole(whole)
            for key, _reference, parts in self._reassembler.expire(
                trio.current_time(), self.reassembly_timeout
            ):
                held = self._held.pop(key, None)
                if held is None:
                    continue
                provider = str(key[0]) if isinstance(key, tuple) else "?"
                log.warning(
                    "multipart inbound message from %s incomplete after %gs: storing %d part(s)",
                    provider,
                    self.reassembly_timeout,
                    len(parts),
                    extra={"provider": provider},
                )
                joined = b"".join(parts[n] for n in sorted(parts))
                assert isinstance(key, tuple)
                self._remember(key, held)
                await self._store_whole(
                    _Whole(key, joined, len(parts), False, held.data_coding, tuple(held.seqs))
                )

    async def _run_sweeps(self, shared: SharedParts) -> None:
        """Shared parts: every second, claim and store what is due in Redis (the messages
        timed out or beyond ``max_pending``, claims whose instance died), and try again what
        failed here. First, once: the database's parts go to Redis, and this instance's claims
        left by a crash are taken back."""
        handed_over = started = False
        outage = Outage(log, "inbound parts in Redis")
        while True:
            try:
                if not handed_over:
                    handed_over = await self._hand_over(shared)
                if not started:
                    await self._sweep(shared, mine=True)
                    started = True
                retry, self._unstored_claims = self._unstored_claims, []
                for claim in retry:
                    await self._store_claim(shared, claim)
                undone, self._undone = self._undone, []
                for claim in undone:
                    await self._done(shared, claim)
                await self._sweep(shared)
            except (QueueError, StoreError) as exc:
                outage.failed(exc)
            else:
                outage.succeeded()
            await trio.sleep(min(1.0, self.reassembly_timeout / 4))

    async def _sweep(self, shared: SharedParts, *, mine: bool = False) -> None:
        while True:
            claims = await shared.sweep(
                timeout=self.reassembly_timeout,
                max_pending=self._reassembler.max_pending,
                mine=mine,
            )
            for claim in claims:
                if not claim.complete:
                    log.warning(
                        "multipart inbound message from %s incomplete (after %gs, or beyond"
                        " max_pending): storing %d of its %d part(s)",
                        claim.key[0],
                        self.reassembly_timeout,
                        len(claim.parts),
                        claim.key[4],
                        extra={"provider": claim.key[0]},
                    )
                await self._store_claim(shared, claim)
            if len(claims) < SWEEP_LIMIT:
                return

    async def _hand_over(self, shared: SharedParts) -> bool:
        """Move the parts stored in the database (by this gateway before it used a Redis queue)
        to Redis, each part's row deleted once Redis has it. False if some are left (their
        message is being stored by an instance: moved at a later call)."""
        left = False
        for part in await self._store.inbound_parts():
            assert part.seq is not None
            added = await shared.add(part)
            if added is Added.BUSY:
                left = True
                continue
            if isinstance(added, Claim):
                await self._store_claim(shared, added)
            await self._store.delete_inbound_parts([part.seq])
        return not left
