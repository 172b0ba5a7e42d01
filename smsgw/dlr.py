"""The DLR handler: a delivery receipt -> the part it is about -> its status -> a notification.

For each receipt (a ``deliver_sm``/``data_sm`` whose ``esm_class`` says so) from any connection
of a provider:

1. Read it (:func:`smpp_codec.receipt.receipt_from_pdu`). An unreadable one is answered
   ESME_ROK (sending it again would not make it readable), counted and logged.
2. Find the part: the SMSC id, normalised in the provider's ``message_id_format``
   (:func:`smsgw.correlation.receipt_key`), is looked up in the correlator's memory of recent
   mappings, else in the database (``Store.find_parts``).
3. Found: record the part's new status (:func:`smsgw.model.status_for_message_state`; the
   intermediate ENROUTE/ACCEPTED record nothing) with the receipt's ``stat``/``err`` as the
   reason, and the status webhook in the same transaction; THEN answer the SMSC. If the store
   fails, the SMSC gets a temporary error (ESME_RX_T_APPN) and delivers the receipt again.
4. Not found: the receipt probably overtook its ``submit_sm_resp`` (real SMSCs do that). It is
   stored (``Store.park_receipts``: its PDU, in table ``parked_receipts``), then *parked* in the
   provider's :class:`~smsgw.correlation.Correlator` and answered (answering only once matched
   would hold the SMSC's window for up to the park time). The processor announces every mapping
   as it hands it to the store (:meth:`DlrHandler.expect`, before the commit: later receipt
   writes are committed after it), which releases the parked receipts for that id, recorded
   once the mapping is committed, their rows deleted in the same transaction; after the
   provider's ``early_receipt_park`` time a parked receipt is an orphan (counted, logged, its
   row deleted). At start, :meth:`DlrHandler.recover` matches the stored ones again, so a
   crash loses none. If storing it fails, it is answered with a temporary error.

Several instances on one Redis queue (:mod:`smsgw.receipt_relay`): a receipt whose part is
found neither in memory nor in the database is *relayed* instead of parked: published to the
relay, then answered (answered with a temporary error if Redis cannot take it). Every instance
reads the relay (:meth:`DlrHandler.run_relay`) and handles each relayed receipt like one of its
own, except that nobody answers it: recorded where its mapping is (and deleted from the relay),
parked elsewhere. A relayed receipt still unmatched when the park time ends is counted as an
orphan by the instance that published it only, and only if no instance matched it meanwhile.

Receipts come in batches (:meth:`DlrHandler.handle_many`, the receipts the dispatcher found
waiting together): their status events are one store call, and a receipt naming a message that
is gone (pruned) makes the others be recorded one by one, so it costs only itself.

With ``receipts = "final_part"`` only the last part of a message asks for a receipt, so that
receipt's status is applied to the whole message (every part still pending takes it).

Status webhooks go to the message's ``callback_url``, else its client's default
(:class:`Notifier`). The ``callback_url`` is stored with the message (schema v2) and comes back
with every status change the store reports, so a receipt after a restart still reaches it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING

import attrs
import trio

from smpp_codec import DecodeError, decode, encode
from smpp_codec.constants import CommandStatus
from smpp_codec.errors import MessageIdError, ReceiptError
from smpp_codec.message_id import MessageIdFormat
from smpp_codec.receipt import DeliveryReceipt, receipt_from_pdu
from smsgw.config import ProviderConfig, ReceiptMode
from smsgw.correlation import Correlator, Match, Orphan, SmscKey, receipt_key, resp_key
from smsgw.messages import Counters, inbound_notification_body, status_notification_body
from smsgw.metrics import FINAL_STATUSES, Metrics
from smsgw.model import (
    MessageStatus,
    NewInbound,
    NewNotification,
    NotificationKind,
    PartRef,
    StatusChange,
    StatusEvent,
    status_for_message_state,
)
from smsgw.outage import Outage
from smsgw.queue.base import QueueError
from smsgw.smpp.inbound import Inbound
from smsgw.storage import Store, StoreError, UnknownMessage

if TYPE_CHECKING:
    from smsgw.receipt_relay import ReceiptRelay, RelayedReceipt

__all__ = ["DlrHandler", "Notifier"]

log = logging.getLogger("smsgw.dlr")

#: How a receipt is answered when it could not be recorded: a temporary error, so the SMSC
#: delivers it again later.
RETRY_LATER = int(CommandStatus.ESME_RX_T_APPN)
#: Submit times kept for the submit-to-receipt histogram (oldest forgotten first): parts whose
#: receipt comes later than this many newer submits are not measured.
SUBMIT_TIMES = 100_000


class Notifier:
    """Decides where webhooks go and builds them (the outbox delivers them later).

    ``client_defaults``: each API client's default webhook URL; ``inbound``: where inbound
    messages are notified (None: nowhere). Both are plain attributes the HTTP API layer sets.
    A status change is notified to the message's ``callback_url`` if it is known, else to its
    client's default; with neither, nothing is queued.
    """

    def __init__(
        self,
        *,
        client_defaults: Mapping[str, str] = MappingProxyType({}),
        inbound: str | None = None,
        statuses: Collection[MessageStatus] | None = None,
        remember: int = 100_000,
    ) -> None:
        self.client_defaults = client_defaults
        self.inbound_target = inbound
        #: Only changes to these statuses are notified (``[webhooks] statuses``); None: all.
        self.statuses = None if statuses is None else frozenset(statuses)
        self._remember = remember
        self._callbacks: OrderedDict[str, str] = OrderedDict()

    def remember(self, message_id: str, callback_url: str | None) -> None:
        """Keep ``callback_url`` for the receipts of ``message_id`` (bounded, oldest forgotten)."""
        if callback_url is None:
            return
        self._callbacks[message_id] = callback_url
        self._callbacks.move_to_end(message_id)
        while len(self._callbacks) > self._remember:
            self._callbacks.popitem(last=False)

    def target(
        self, message_id: str, client: str | None, callback_url: str | None = None
    ) -> str | None:
        if callback_url is not None:
            return callback_url
        remembered = self._callbacks.get(message_id)
        if remembered is not None:
            return remembered
        return self.client_defaults.get(client) if client is not None else None

    def status(
        self, change: StatusChange, callback_url: str | None = None
    ) -> list[NewNotification]:
        """The webhooks for one aggregated status change (runs in the store's writer task).
        The message's stored ``callback_url`` (in ``change``) is used when none is given."""
        if self.statuses is not None and change.new not in self.statuses:
            return []
        target = self.target(change.message_id, change.client, callback_url or change.callback_url)
        if target is None:
            return []
        return [
            NewNotification(
                kind=NotificationKind.STATUS,
                target=target,
                body=status_notification_body(change),
                subject=change.message_id,
                created_at=change.at,
            )
        ]

    def inbound(self, message: NewInbound) -> list[NewNotification]:
        if self.inbound_target is None:
            return []
        return [
            NewNotification(
                kind=NotificationKind.INBOUND,
                target=self.inbound_target,
                body=inbound_notification_body(message),
                subject=message.id,
                created_at=message.received_at,
            )
        ]


@attrs.frozen
class _Parked:
    """What a parked receipt needs to be applied later. ``relayed``: its entry in the relay when
    it came from there; ``mine``: this instance published it."""

    provider: str
    receipt: DeliveryReceipt
    relayed: str | None = None
    mine: bool = False
    #: Its row in ``parked_receipts`` (None: not stored, e.g. a relayed one).
    seq: int | None = None


class DlrHandler:
    """See the module docstring. ``providers`` looks a provider's settings up by name (None
    once it is removed); ``count_receipt`` adds to the provider's statistics; ``webhooks_due``
    is called after a status write that made webhook notifications (wakes the deliverer).
    ``relay``: the receipt relay of the instances sharing a Redis queue (None: this instance
    is alone, unmatched receipts are parked and counted here)."""

    def __init__(
        self,
        *,
        store: Store,
        counters: Counters,
        notifier: Notifier,
        providers: Callable[[str], ProviderConfig | None],
        count_receipt: Callable[[str], None] = lambda _provider: None,
        metrics: Metrics | None = None,
        webhooks_due: Callable[[], None] = lambda: None,
        relay: ReceiptRelay | None = None,
    ) -> None:
        self._metrics = metrics if metrics is not None else Metrics(process=False)
        self._relay = relay
        #: Entries this instance relayed whose parked copy here expired unmatched: orphans
        #: unless another instance matched them (checked by :meth:`run_expiry`).
        self._relay_orphans: list[tuple[str, Orphan[_Parked]]] = []
        self._webhooks_due = webhooks_due
        #: Trio time each recently mapped part was accepted (bounded: :data:`SUBMIT_TIMES`).
        self._submitted: OrderedDict[PartRef, float] = OrderedDict()
        self._store = store
        self._counters = counters
        self._notifier = notifier
        self._providers = providers
        self._count_receipt = count_receipt
        self._correlators: dict[str, Correlator[_Parked]] = {}
        #: ``parked_receipts`` rows to delete (orphans, pruned messages): by run_expiry.
        self._rows_done: list[int] = []
        #: Released parked receipts whose recording failed: tried again by run_expiry.
        self._unrecorded: list[Match[_Parked]] = []
        self._wake = trio.Event()
        #: Receipts answered with a temporary error because the database did not take them:
        #: logged once with reminders while it lasts, not a line per receipt.
        self._not_recorded = Outage(log, "recording receipts (the SMSC sends them again)")

    def correlator(self, provider: str) -> Correlator[_Parked]:
        found = self._correlators.get(provider)
        if found is None:
            config = self._providers(provider)
            park = config.early_receipt_park if config is not None else 30.0
            found = self._correlators[provider] = Correlator(park_time=park)
        return found

    def _id_format(self, provider: str) -> MessageIdFormat:
        config = self._providers(provider)
        return config.message_id_format if config is not None else MessageIdFormat.AUTO

    def parked(self) -> int:
        """Receipts parked now, over every provider."""
        return sum(len(c) for c in self._correlators.values())

    # -- receipts --------------------------------------------------------------------------

    async def handle(self, provider: str, inbound: Inbound) -> None:
        """Handle one receipt and answer it (module docstring)."""
        await self.handle_many([(provider, inbound)])

    async def handle_many(self, receipts: Sequence[tuple[str, Inbound]]) -> None:
        """Handle receipts (of any providers) and answer each (module docstring): the status
        writes of all of them in one store call, each answered once that call is committed."""
        now = trio.current_time()
        found: list[tuple[Inbound, _Parked, PartRef]] = []
        unknown: list[tuple[Inbound, _Parked, SmscKey]] = []
        answered: list[tuple[str, Inbound]] = []
        for provider, inbound in receipts:
            try:
                receipt = receipt_from_pdu(inbound.pdu)  # type: ignore[arg-type]
                if receipt is None:
                    raise ReceiptError("not a receipt")
                key = receipt_key(provider, receipt.message_id, self._id_format(provider))
            except (ReceiptError, MessageIdError) as exc:
                self._counters.receipts_invalid += 1
                log.warning(
                    "unreadable receipt from %s: %s", provider, exc, extra={"provider": provider}
                )
                answered.append((provider, inbound))
                continue
            self._counters.receipts += 1
            self._count_receipt(provider)
            part = self.correlator(provider).lookup(key, now)
            if part is None:
                unknown.append((inbound, _Parked(provider, receipt), key))
            else:
                found.append((inbound, _Parked(provider, receipt), part))
        try:
            if unknown:
                # Not among the recent mappings: the database has the older ones.
                parts = await self._store.find_parts([key for _, _, key in unknown])
                relay: list[tuple[Inbound, _Parked]] = []
                to_park: list[tuple[Inbound, _Parked, SmscKey]] = []
                for inbound, parked, key in unknown:
                    # Announced meanwhile?
                    part = parts.get(key) or self.correlator(parked.provider).lookup(
                        key, trio.current_time()
                    )
                    if part is not None:
                        found.append((inbound, parked, part))
                    elif self._relay is not None:
                        relay.append((inbound, parked))  # another instance may have sent it
                    else:
                        to_park.append((inbound, parked, key))
                unknown = to_park  # if parking fails, these are answered with an error
                answered.extend(await self._park_stored(to_park, found))
                unknown = []
                answered.extend(await self._publish(relay))
            await self._apply_many([(parked, part) for _, parked, part in found])
        except StoreError as exc:
            not_recorded = [(p.provider, i) for i, p, _ in found] + [
                (p.provider, i) for i, p, _ in unknown
            ]
            self._not_recorded.failed(exc)
            log.debug("%d receipt(s) not recorded: %s", len(not_recorded), exc)
            for provider, inbound in not_recorded:
                await self._reply(provider, inbound, RETRY_LATER)
            # Stored when parked, then matched: the SMSC sends them again.
            self._drop_rows([p.seq for _, p, _ in found if p.seq is not None])
            found = []
        else:
            self._not_recorded.succeeded()
        for provider, inbound in answered:
            await self._reply(provider, inbound, 0)
        for inbound, parked, _part in found:
            await self._reply(parked.provider, inbound, 0)

    async def _reply(self, provider: str, inbound: Inbound, command_status: int) -> None:
        """Answer a receipt; its time since it came goes to ``smsgw_inbound_answer_seconds``."""
        if await inbound.reply(command_status):
            waited = max(0.0, trio.current_time() - inbound.received_at)
            self._metrics.inbound_answered(provider, "receipt", waited)

    async def _publish(self, receipts: list[tuple[Inbound, _Parked]]) -> list[tuple[str, Inbound]]:
        """Relay receipts no part was found for; those to answer ESME_ROK (the others are
        answered with a temporary error here: the relay could not take them)."""
        if not receipts:
            return []
        assert self._relay is not None
        try:
            await self._relay.publish([(p.provider, i.pdu) for i, p in receipts])
        except QueueError as exc:
            log.warning(
                "%d receipt(s) not relayed, the SMSC will send them again: %s", len(receipts), exc
            )
            for inbound, parked in receipts:
                await self._reply(parked.provider, inbound, RETRY_LATER)
            return []
        self._counters.receipts_relayed += len(receipts)
        for _inbound, parked in receipts:
            self._metrics.receipt_relayed(parked.provider, "published")
        return [(parked.provider, inbound) for inbound, parked in receipts]

    async def _park_stored(
        self,
        receipts: list[tuple[Inbound, _Parked, SmscKey]],
        found: list[tuple[Inbound, _Parked, PartRef]],
    ) -> list[tuple[str, Inbound]]:
        """Store the receipts no part was found for (``parked_receipts``), then park them; those
        to answer now. One whose mapping was announced meanwhile goes to ``found`` instead, to
        be recorded with the others (its row deleted then). Raises the store's error (nothing
        parked: the caller answers them with a temporary error)."""
        if not receipts:
            return []
        seqs = await self._store.park_receipts(
            [(parked.provider, encode(inbound.pdu)) for inbound, parked, _key in receipts]
        )
        answer_now = []
        for (inbound, parked, key), seq in zip(receipts, seqs, strict=True):
            stored = attrs.evolve(parked, seq=seq)
            part = self._park(key, stored)
            if part is None:
                answer_now.append((parked.provider, inbound))
            else:
                found.append((inbound, stored, part))
        return answer_now

    async def handle_relayed(self, entries: Sequence[RelayedReceipt]) -> None:
        """Receipts read from the relay (published by any instance, this one included): each
        is recorded if its part is known here, and then deleted from the relay; else parked.
        Nothing is answered (the publisher did that). Raises the store's or the relay's error:
        the caller reads the same entries again later."""
        assert self._relay is not None
        found: list[tuple[_Parked, PartRef]] = []
        unknown: list[tuple[_Parked, SmscKey]] = []
        for entry in entries:
            try:
                receipt = receipt_from_pdu(entry.pdu)
                if receipt is None:
                    raise ReceiptError("not a receipt")
                key = receipt_key(
                    entry.provider, receipt.message_id, self._id_format(entry.provider)
                )
            except (ReceiptError, MessageIdError):
                continue  # its publisher read it; this instance's provider settings differ
            mine = entry.origin == self._relay.instance
            parked = _Parked(entry.provider, receipt, relayed=entry.entry, mine=mine)
            part = self.correlator(entry.provider).lookup(key, trio.current_time())
            if part is not None:
                found.append((parked, part))
            elif mine:
                # Looked for in the database just before it was published: only a mapping
                # announced since then could match it now, or later.
                part = self._park(key, parked)
                if part is not None:
                    found.append((parked, part))
            else:
                unknown.append((parked, key))
        if unknown:
            parts = await self._store.find_parts([key for _, key in unknown])
            for parked, key in unknown:
                part = parts.get(key) or self._park(key, parked)
                if part is not None:
                    found.append((parked, part))
        await self._apply_many(found)
        await self._relay_matched([parked for parked, _part in found])

    async def _relay_matched(self, receipts: Sequence[_Parked]) -> None:
        """Relayed receipts were recorded here: take them out of the relay (best effort: left
        there, they only make their publisher count an orphan too many)."""
        entries = [(p.provider, p.relayed) for p in receipts if p.relayed is not None]
        if not entries or self._relay is None:
            return
        self._counters.receipts_relay_matched += len(entries)
        for provider, _entry in entries:
            self._metrics.receipt_relayed(provider, "matched")
        try:
            await self._relay.matched(entry for _provider, entry in entries)
        except QueueError as exc:
            log.warning(
                "could not delete %d matched receipt(s) from the relay: %s", len(entries), exc
            )

    async def run_relay(self, *, block: float = 1.0) -> None:
        """Forever: read the relay and handle what comes (a supervised task; only with a
        relay). An error leaves the cursor where it was, and the same entries are read again
        a second later."""
        assert self._relay is not None
        outage = Outage(log, "receipt relay")
        while True:
            try:
                entries = await self._relay.read(block=block)
                if entries:
                    await self.handle_relayed(entries)
                await self._relay.advance()
            except (QueueError, StoreError) as exc:
                outage.failed(exc)
                await trio.sleep(1.0)
                continue
            outage.succeeded()

    def _park(self, key: SmscKey, parked: _Parked) -> PartRef | None:
        """Park a receipt that overtook its submit_sm_resp (module docstring). Returns its part
        instead if the mapping was announced meanwhile (it is then recorded with the others).
        A relayed receipt is parked without being counted (it is counted where it came in)."""
        if parked.relayed is None:
            self._counters.receipts_parked += 1
        result = self.correlator(parked.provider).park(key, parked, trio.current_time())
        if result.match is not None:
            return result.match.part
        self._wake.set()
        for orphan in result.evicted:
            self._orphan(orphan)
        return None

    def expect(
        self, provider: str, smsc_id: str, id_format: MessageIdFormat, part: PartRef
    ) -> list[Match[_Parked]]:
        """The processor handed the mapping ``smsc_id`` -> ``part`` to the store: receipts for it
        find the part from now on. Returns the receipts parked for it, for :meth:`apply_parked`
        once the mapping is committed.

        Called before the mapping is committed, and that is safe: a receipt's status write is
        handed to the store after this call, so it is committed after the mapping (or fails
        with it, and the SMSC is asked to send the receipt again). Knowing the mapping this
        early spares each receipt a database read and a park."""
        try:
            key = resp_key(provider, smsc_id, id_format)
        except MessageIdError:
            return []
        now = trio.current_time()
        self._submitted[part] = now
        if len(self._submitted) > SUBMIT_TIMES:
            self._submitted.popitem(last=False)
        return self.correlator(provider).mapped(key, part, now)

    def keep_parked(self, matches: list[Match[_Parked]]) -> None:
        """Receipts :meth:`expect` released whose part could not be recorded (the database is
        unavailable): kept, and recorded by :meth:`run_expiry` once it can (each is for a part
        the SMSC took, and was answered when parked)."""
        if matches:
            self._unrecorded.extend(matches)
            self._wake.set()

    async def apply_parked(self, matches: list[Match[_Parked]]) -> None:
        """Record the receipts :meth:`expect` released (they were answered when parked)."""
        for match in matches:
            try:
                await self._apply(match)
            except StoreError as exc:
                # Answered when parked, and kept: tried again (a relayed one stays in the
                # relay meanwhile).
                log.warning(
                    "parked receipt for %s not recorded, trying again: %s",
                    match.part.message_id,
                    exc,
                )
                self._unrecorded.append(match)
                self._wake.set()
                continue
            await self._relay_matched([match.receipt])

    async def _apply(self, match: Match[_Parked]) -> None:
        await self._apply_many([(match.receipt, match.part)])

    def _event(self, provider: str, receipt: DeliveryReceipt, part: PartRef) -> StatusEvent | None:
        """The status event of a receipt for ``part`` (None: ENROUTE / ACCEPTED, the SMSC still
        holds the message: nothing changes)."""
        status = status_for_message_state(receipt.state)
        if status is None:
            return None
        submitted = self._submitted.pop(part, None)
        if submitted is not None:
            self._metrics.observe_submit_to_receipt(max(0.0, trio.current_time() - submitted))
        config = self._providers(provider)
        whole = config is not None and config.receipts is ReceiptMode.FINAL_PART
        reason = f"receipt from {provider}: {receipt.stat}"
        if receipt.err and receipt.err.strip("0"):
            reason += f" err:{receipt.err}"
        return StatusEvent(
            message_id=part.message_id,
            status=status,
            reason=reason,
            part_number=None if whole else part.part_number,
            provider=provider,
        )

    async def _apply_many(self, receipts: Sequence[tuple[_Parked, PartRef]]) -> None:
        """Record the receipts' status events in one store call (raises its StoreError), and
        delete the rows of those that were parked in it."""
        events: list[tuple[StatusEvent, int | None]] = []
        quiet: list[int] = []  # rows of receipts that change nothing (ENROUTE, ACCEPTED)
        for parked, part in receipts:
            event = self._event(parked.provider, parked.receipt, part)
            if event is not None:
                events.append((event, parked.seq))
            elif parked.seq is not None:
                quiet.append(parked.seq)
        rows = quiet + [seq for _, seq in events if seq is not None]
        try:
            await self._record([event for event, _ in events], rows)
        except UnknownMessage:
            # One of them names a message that is gone (nothing was written): each alone.
            self._drop_rows(quiet)
            if len(events) == 1:
                ((event, seq),) = events
                self._pruned(event)
                self._drop_rows([] if seq is None else [seq])
                return
            for event, seq in events:
                mine = [] if seq is None else [seq]
                try:
                    await self._record([event], mine)
                except UnknownMessage:
                    self._pruned(event)
                    self._drop_rows(mine)

    async def _record(self, events: Sequence[StatusEvent], parked_done: Sequence[int]) -> None:
        """``events`` with their webhooks in one store call, deleting the parked receipts'
        rows ``parked_done``; raises what the store raises."""
        notified = False

        def notify(change: StatusChange) -> list[NewNotification]:
            nonlocal notified
            notifications = self._notifier.status(change)
            notified = notified or bool(notifications)
            return notifications

        result = await self._store.record_events(events, notify=notify, parked_done=parked_done)
        providers = {e.message_id: e.provider for e in events}
        for change in result.changes:
            if change.new in FINAL_STATUSES:
                self._metrics.message_final(providers.get(change.message_id), change.new)
        if notified:
            self._webhooks_due()

    def _drop_rows(self, seqs: Sequence[int]) -> None:
        """Delete these parked receipts' rows soon (run_expiry): they will never be recorded."""
        if seqs:
            self._rows_done.extend(seqs)
            self._wake.set()

    def _pruned(self, event: StatusEvent) -> None:
        # The mapping outlived its message (pruned): nothing to update.
        self._counters.orphaned_receipts += 1
        self._metrics.receipt_orphaned(event.provider or "")
        log.info("receipt for pruned message %s", event.message_id)

    # -- orphans ---------------------------------------------------------------------------

    def _orphan(self, orphan: Orphan[_Parked]) -> None:
        relayed = orphan.receipt.relayed
        if relayed is not None:
            # Another instance's receipt is none of our business; one we relayed is an orphan
            # only if nobody matched it (asked of the relay by run_expiry).
            if orphan.receipt.mine:
                self._relay_orphans.append((relayed, orphan))
                self._wake.set()
            return
        self._count_orphan(orphan)
        if orphan.receipt.seq is not None:
            self._drop_rows([orphan.receipt.seq])

    def _count_orphan(self, orphan: Orphan[_Parked]) -> None:
        self._counters.orphaned_receipts += 1
        self._metrics.receipt_orphaned(orphan.key.provider)
        log.info(
            "orphaned receipt from %s for SMSC id %s (%s): no message matched",
            orphan.key.provider,
            orphan.key.smsc_id,
            orphan.reason.value,
            extra={"provider": orphan.key.provider},
        )

    async def run_expiry(self) -> None:
        """Forever: at each parked receipt's deadline, count it orphaned; delete the rows of
        parked receipts that will never be recorded; record again the released ones whose
        recording failed, every second (a supervised task)."""
        while True:
            self._wake = trio.Event()
            deadlines = [
                d for c in self._correlators.values() if (d := c.next_deadline()) is not None
            ]
            if self._rows_done or self._unrecorded:
                deadlines.append(trio.current_time() + 1.0)
            with trio.move_on_at(min(deadlines) if deadlines else float("inf")):
                await self._wake.wait()
            now = trio.current_time()
            for correlator in list(self._correlators.values()):
                for orphan in correlator.expire(now):
                    self._orphan(orphan)
            if self._relay_orphans:
                await self._settle_relay_orphans()
            if self._unrecorded:
                matches, self._unrecorded = self._unrecorded, []
                await self.apply_parked(matches)
            if self._rows_done:
                rows, self._rows_done = self._rows_done, []
                try:
                    await self._store.unpark_receipts(rows)
                except StoreError as exc:
                    log.warning("could not delete %d parked receipt(s): %s", len(rows), exc)
                    self._rows_done.extend(rows)

    async def recover(self) -> None:
        """Match again the receipts parked before a restart (call once, at start): recorded if
        their mapping is in the database now, else parked for the park time again."""
        entries: list[tuple[_Parked, SmscKey]] = []
        for seq, provider, data, _parked_at in await self._store.parked_receipts():
            try:
                receipt = receipt_from_pdu(decode(data))  # type: ignore[arg-type]
                if receipt is None:
                    raise ReceiptError("not a receipt")
                key = receipt_key(provider, receipt.message_id, self._id_format(provider))
            except (DecodeError, ReceiptError, MessageIdError) as exc:
                log.warning("dropping a parked receipt from %s: %s", provider, exc)
                self._drop_rows([seq])
                continue
            entries.append((_Parked(provider, receipt, seq=seq), key))
        if not entries:
            return
        parts = await self._store.find_parts([key for _, key in entries])
        found = []
        for parked, key in entries:
            part = parts.get(key) or self._park(key, parked)
            if part is not None:
                found.append(Match(key, parked, part, None))
        try:
            await self._apply_many([(match.receipt, match.part) for match in found])
        except StoreError as exc:
            log.warning("%d parked receipt(s) not recorded, trying again: %s", len(found), exc)
            self._unrecorded.extend(found)
            self._wake.set()

    async def _settle_relay_orphans(self) -> None:
        """Count the receipts this instance relayed that no instance matched."""
        assert self._relay is not None
        waiting, self._relay_orphans = self._relay_orphans, []
        try:
            left = await self._relay.unmatched(entry for entry, _orphan in waiting)
        except QueueError as exc:
            log.warning(
                "could not ask the relay about %d unmatched receipt(s): %s", len(waiting), exc
            )
            left = {entry for entry, _orphan in waiting}  # counted: better than forgotten
        for entry, orphan in waiting:
            if entry in left:
                self._count_orphan(orphan)
