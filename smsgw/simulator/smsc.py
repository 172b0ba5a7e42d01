"""The SMSC's behaviour: the answer to each request an ESME may send, faults included.

Pure logic, no I/O: :meth:`Smsc.handle` takes one request the sans-IO session accepted (the bind
state rules are :mod:`smpp_codec.session`'s) and returns a :class:`Reply` saying what to write,
when, and what follows (receipts to schedule, a connection to close). The Trio side
(:mod:`.connection`) carries it out. Time is passed in (``now``, the Trio clock); wall-clock
dates (receipts, ``query_sm`` final dates, absolute SMPP times) are derived from it through one
wall-clock reading taken when the simulator starts, so a ``MockClock`` moves them too.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import attrs

from smpp_codec import tlv
from smpp_codec.constants import CommandId, CommandStatus, MessageState, Tag
from smpp_codec.pdu import (
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    CancelSm,
    DataSm,
    DistributionList,
    EnquireLink,
    QuerySm,
    QuerySmResp,
    ReplaceSm,
    Request,
    Response,
    SubmitMulti,
    SubmitSm,
    Unbind,
    UnsuccessSme,
)
from smpp_codec.session import Session
from smpp_codec.smpptime import TimeFormatError, format_absolute, parse_time

from .config import SimulatorConfig
from .faults import Fault, Faults, FaultState, GarbageMode
from .receipts import ReceiptJob, wants_receipt
from .stats import Counters
from .store import Address, Message, MessageIds, MessageStore

C = CommandId
S = CommandStatus


@attrs.define(eq=False)
class Link:
    """What the SMSC logic knows of one connection."""

    session: Session
    #: The system_id it bound with (None until bound).
    system_id: str | None = None
    #: PDUs received on it so far.
    received: int = 0
    #: Submission answers held back (latency, receipt-before-response), for ``max_window``.
    held: int = 0


@attrs.define(eq=False)
class Reply:
    """What to do after one request.

    Write ``data`` after ``delay`` seconds (when ``hold`` is set, only once ``receipts[0]`` has
    been written: the receipt goes first); then, when ``close`` names a reason (``"unbind"``,
    ``"garbage"``), close the connection.
    """

    data: bytes = b""
    delay: float = 0.0
    close: str | None = None
    receipts: list[ReceiptJob] = attrs.field(factory=list)
    hold: bool = False
    #: The request was a message submission (its answer counts in ``Link.held`` while held).
    submission: bool = False
    #: The request bound the session.
    bound: bool = False


class Smsc:
    """The state shared by every connection of one simulator: store, faults, counters, rng."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.counters = Counters()
        self.store = MessageStore(config.max_messages)
        self.ids = MessageIds(config.id_format, self.rng)
        self._accounts = {a.system_id: a for a in config.accounts}
        self._reject_prefixes = config.reject_destinations
        outcomes = config.receipts.outcomes
        self._outcome_names = [k for k, w in outcomes.items() if w > 0]
        self._outcome_weights = [outcomes[k] for k in self._outcome_names]
        self._epoch_now = 0.0
        self._epoch_wall = datetime.now(UTC)  # wall-clock: re-read by start()
        self.faults = FaultState(config.faults, self.rng, 0.0)
        self._submission_faults = config.faults.submission_faults
        self._delays = config.faults.delays
        self._handlers: dict[int, Callable[[Link, Request, float], Reply]] = {
            C.BIND_TRANSMITTER: self._bind,
            C.BIND_RECEIVER: self._bind,
            C.BIND_TRANSCEIVER: self._bind,
            C.UNBIND: self._unbind,
            C.ENQUIRE_LINK: self._enquire_link,
            C.SUBMIT_SM: self._submit_sm,  # type: ignore[dict-item]
            C.DATA_SM: self._data_sm,  # type: ignore[dict-item]
            C.SUBMIT_MULTI: self._submit_multi,  # type: ignore[dict-item]
            C.QUERY_SM: self._query_sm,  # type: ignore[dict-item]
            C.CANCEL_SM: self._cancel_sm,  # type: ignore[dict-item]
            C.REPLACE_SM: self._replace_sm,  # type: ignore[dict-item]
        }

    # -- time and faults ----------------------------------------------------------------------

    def start(self, now: float, wall: datetime) -> None:
        """Anchor wall-clock dates to the Trio clock, and start the configured faults now."""
        self._epoch_now = now
        self._epoch_wall = wall
        self.set_faults(self.faults.faults, now)

    def wall(self, now: float) -> datetime:
        """The wall-clock time (UTC) at Trio time ``now``."""
        return self._epoch_wall + timedelta(seconds=now - self._epoch_now)

    def set_faults(self, faults: Faults, now: float) -> None:
        self.faults = FaultState(faults, self.rng, now)
        self._submission_faults = faults.submission_faults
        self._delays = faults.delays

    # -- entry points -------------------------------------------------------------------------

    def received(self, link: Link, command_id: int | None) -> str | None:
        """Count a PDU received on ``link``; return the name of a disconnect fault it triggers."""
        link.received += 1
        self.counters.received[command_id if command_id is not None else -1] += 1
        faults = self.faults.faults
        if faults.disconnect_after_pdus is None and not faults.disconnect_fraction:
            return None
        reason = self.faults.disconnect(link.received, link.session.bound)
        if reason is not None:
            self.counters.faults[reason] += 1
        return reason

    def handle(self, link: Link, pdu: Request, now: float) -> Reply:
        """The reply to a request the session accepted in its current state."""
        reply = self._handlers[pdu.command_id](link, pdu, now)
        if reply.data and self._delays:
            reply.delay = self.faults.latency()
            if reply.delay > 0:
                self.counters.faults["latency"] += 1
        return reply

    def sent(self, command_id: int) -> None:
        self.counters.sent[command_id] += 1

    def _send(self, link: Link, pdu: Response) -> bytes:
        self.counters.sent[pdu.command_id] += 1
        return link.session.send(pdu)

    # -- session management -------------------------------------------------------------------

    def _bind(self, link: Link, pdu: Request, now: float) -> Reply:
        assert isinstance(pdu, BindTransmitter | BindReceiver | BindTransceiver)
        status = self.faults.refuse_bind(now)
        if status is not None:
            self.counters.faults["refuse_bind"] += 1
        elif self._accounts:
            account = self._accounts.get(pdu.system_id)
            if account is None:
                status = S.ESME_RINVSYSID
            elif account.password != pdu.password:
                status = S.ESME_RINVPASWD
        if status is None and self._over_bind_limit(pdu.system_id):
            status = S.ESME_RBINDFAIL
            self.counters.binds_over_limit += 1
        if status is not None:
            self.counters.bind_failures += 1
            return Reply(self._send(link, pdu.response(status)))
        tlvs = tlv.build(sc_interface_version=0x34) if pdu.interface_version >= 0x34 else ()
        data = self._send(
            link, pdu.response(system_id=self.config.system_id, optional_parameters=tlvs)
        )
        link.system_id = pdu.system_id
        self.counters.binds += 1
        return Reply(data, bound=True)

    def _over_bind_limit(self, system_id: str) -> bool:
        """``system_id`` already has ``max_binds`` sessions bound (the simulator counts a
        session from the bind it accepts to the end of that session)."""
        limit = self.config.max_binds
        return limit is not None and self.counters.sessions_by_account[system_id] >= limit

    def _unbind(self, link: Link, pdu: Request, now: float) -> Reply:
        assert isinstance(pdu, Unbind)
        return Reply(self._send(link, pdu.response()), close="unbind")

    def _enquire_link(self, link: Link, pdu: Request, now: float) -> Reply:
        assert isinstance(pdu, EnquireLink)
        return Reply(self._send(link, pdu.response()))

    # -- submissions --------------------------------------------------------------------------

    def _reject(self, link: Link, pdu: Request, status: int) -> Reply:
        self.counters.submits_rejected += 1
        return Reply(self._send(link, pdu.response(status)), submission=True)

    def _fault(
        self, link: Link, pdu: Request, now: float, multi: bool
    ) -> tuple[Reply | None, bytes]:
        """A reply decided by a fault (or None), and garbage to send before the real answer."""
        decision = self.faults.submission(link.system_id or "", link.held, now, multi=multi)
        if decision is None:
            return None, b""
        self.counters.faults[decision.fault.value] += 1
        if decision.status is not None:
            return self._reject(link, pdu, decision.status), b""
        if decision.fault is Fault.DROP_RESPONSE:
            return Reply(submission=True), b""
        garbage = self.faults.garbage(pdu.sequence_number)
        if self.faults.faults.garbage_mode is GarbageMode.STREAM:
            return Reply(garbage, close="garbage", submission=True), b""
        return None, garbage

    def _rejected_destination(self, addr: str) -> bool:
        return not addr or any(addr.startswith(p) for p in self._reject_prefixes)

    def _timing(self, schedule: str, validity: str, now: float) -> tuple[float, bool] | int:
        """(final time, expired) of a message submitted at ``now``, or the status to reject its
        schedule_delivery_time / validity_period with."""
        start = now
        wall_now = self.wall(now) if schedule or validity else self._epoch_wall
        if schedule:
            try:
                when = parse_time(schedule, now=wall_now)
            except TimeFormatError:
                return int(S.ESME_RINVSCHED)
            assert isinstance(when, datetime)
            start = now + max(0.0, (when - wall_now).total_seconds())
        receipts = self.config.receipts
        final = start + receipts.delay
        if receipts.jitter:
            final += self.rng.uniform(0.0, receipts.jitter)
        if validity:
            try:
                until = parse_time(validity, now=wall_now)
            except TimeFormatError:
                return int(S.ESME_RINVEXPIRY)
            assert isinstance(until, datetime)
            expiry = now + (until - wall_now).total_seconds()
            if expiry < final:
                return max(start, expiry), True
        return final, False

    def _outcome(self) -> str:
        names = self._outcome_names
        if len(names) == 1:
            return names[0]
        return self.rng.choices(names, self._outcome_weights)[0]

    def _new_message(
        self,
        link: Link,
        pdu: SubmitSm | SubmitMulti | DataSm,
        destinations: tuple[Address, ...],
        content: bytes,
        now: float,
        timing: tuple[float, bool],
    ) -> Message:
        message_id, number = self.ids.new()
        final_at, expired = timing
        return Message(
            message_id=message_id,
            number=number,
            system_id=link.system_id or "",
            service_type=pdu.service_type,
            source=Address(pdu.source_addr_ton, pdu.source_addr_npi, pdu.source_addr),
            destinations=destinations,
            registered_delivery=pdu.registered_delivery,
            data_coding=pdu.data_coding,
            esm_class=pdu.esm_class,
            content=content,
            submitted_at=now,
            final_at=final_at,
            outcome="EXPIRED" if expired else self._outcome(),
        )

    def _plan_receipts(self, message: Message) -> list[ReceiptJob]:
        if not self.config.receipts.enabled or not message.destinations:
            return []
        if not wants_receipt(message.registered_delivery, message.outcome):
            return []
        message.receipt_planned = True
        return [ReceiptJob(message, dest, message.final_at) for dest in message.destinations]

    def _accepted(
        self, link: Link, message: Message, response: Response, garbage: bytes, now: float
    ) -> Reply:
        self.counters.submits_accepted += 1
        self.store.add(message)
        data = garbage + self._send(link, response)
        receipts = self._plan_receipts(message)
        before = self.config.receipts.before_response
        hold = bool(receipts) and before > 0 and self.rng.random() < before
        if hold:
            # The message reaches its final state at once and its receipt goes first.
            message.final_at = now
            for job in receipts:
                job.due = now
        return Reply(data, receipts=receipts, hold=hold, submission=True)

    @staticmethod
    def _content(pdu: SubmitSm | DataSm | ReplaceSm) -> bytes:
        short_message: bytes = getattr(pdu, "short_message", b"")
        if short_message:
            return short_message
        payload = pdu.tlv(Tag.MESSAGE_PAYLOAD)
        return payload if isinstance(payload, bytes) else b""

    def _submit_sm(self, link: Link, pdu: SubmitSm, now: float) -> Reply:
        garbage = b""
        if self._submission_faults:
            reply, garbage = self._fault(link, pdu, now, multi=False)
            if reply is not None:
                return reply
        if self._rejected_destination(pdu.destination_addr):
            return self._reject(link, pdu, S.ESME_RINVDSTADR)
        timing = self._timing(pdu.schedule_delivery_time, pdu.validity_period, now)
        if isinstance(timing, int):
            return self._reject(link, pdu, timing)
        dest = Address(pdu.dest_addr_ton, pdu.dest_addr_npi, pdu.destination_addr)
        message = self._new_message(link, pdu, (dest,), self._content(pdu), now, timing)
        return self._accepted(
            link, message, pdu.response(message_id=message.message_id), garbage, now
        )

    def _data_sm(self, link: Link, pdu: DataSm, now: float) -> Reply:
        garbage = b""
        if self._submission_faults:
            reply, garbage = self._fault(link, pdu, now, multi=False)
            if reply is not None:
                return reply
        if self._rejected_destination(pdu.destination_addr):
            return self._reject(link, pdu, S.ESME_RINVDSTADR)
        timing = self._timing("", "", now)
        assert not isinstance(timing, int)
        dest = Address(pdu.dest_addr_ton, pdu.dest_addr_npi, pdu.destination_addr)
        message = self._new_message(link, pdu, (dest,), self._content(pdu), now, timing)
        return self._accepted(
            link, message, pdu.response(message_id=message.message_id), garbage, now
        )

    def _submit_multi(self, link: Link, pdu: SubmitMulti, now: float) -> Reply:
        if not pdu.dest_address:
            return self._reject(link, pdu, S.ESME_RINVNUMDESTS)
        garbage = b""
        if self._submission_faults:
            reply, garbage = self._fault(link, pdu, now, multi=True)
            if reply is not None:
                return reply
        timing = self._timing(pdu.schedule_delivery_time, pdu.validity_period, now)
        if isinstance(timing, int):
            return self._reject(link, pdu, timing)
        accepted: list[Address] = []
        unsuccess: list[UnsuccessSme] = []
        for dest in pdu.dest_address:
            if isinstance(dest, DistributionList):
                # The simulator knows no distribution lists.
                unsuccess.append(UnsuccessSme(dest.dl_name, int(S.ESME_RINVDLNAME)))
                continue
            status: int | None = None
            if self._rejected_destination(dest.destination_addr):
                status = int(S.ESME_RINVDSTADR)
            elif self._submission_faults:
                status = self.faults.destination_error()
                if status is not None:
                    self.counters.faults[Fault.PERMANENT_ERROR.value] += 1
            ton, npi, addr = dest.dest_addr_ton, dest.dest_addr_npi, dest.destination_addr
            if status is None:
                accepted.append(Address(ton, npi, addr))
            else:
                unsuccess.append(UnsuccessSme(addr, status, ton, npi))
        message = self._new_message(
            link, pdu, tuple(accepted), pdu.short_message, now, timing
        )
        response = pdu.response(message_id=message.message_id, unsuccess_sme=tuple(unsuccess))
        return self._accepted(link, message, response, garbage, now)

    # -- message management -------------------------------------------------------------------

    def _lookup(self, link: Link, message_id: str, source_addr: str) -> Message | int:
        message = self.store.get(message_id)
        if message is None or message.system_id != link.system_id:
            return int(S.ESME_RINVMSGID)
        if source_addr and source_addr != message.source.addr:
            return int(S.ESME_RINVSRCADR)
        return message

    def _query_sm(self, link: Link, pdu: QuerySm, now: float) -> Reply:
        found = self._lookup(link, pdu.message_id, pdu.source_addr)
        if isinstance(found, int):
            return Reply(self._send(link, pdu.response(found)))
        state = found.state_at(now)
        final = found.final_time(now)
        error_code = 0
        if state in (MessageState.UNDELIVERABLE, MessageState.REJECTED, MessageState.EXPIRED):
            err = self.config.receipts.err[found.outcome]
            error_code = int(err) & 0xFF if err.isdigit() else 0
        response = QuerySmResp(
            sequence_number=pdu.sequence_number,
            message_id=pdu.message_id,
            final_date="" if final is None else format_absolute(self.wall(final)),
            message_state=int(state),
            error_code=error_code,
        )
        return Reply(self._send(link, response))

    def _cancel_sm(self, link: Link, pdu: CancelSm, now: float) -> Reply:
        if pdu.message_id:
            found = self._lookup(link, pdu.message_id, pdu.source_addr)
            if isinstance(found, int):
                return Reply(self._send(link, pdu.response(found)))
            targets = [found]
        else:
            # No id: every pending message from source_addr (to destination_addr, with
            # service_type, when given), as SMPP 3.4 section 4.9 describes.
            targets = [
                m
                for m in self.store
                if m.system_id == link.system_id
                and m.source.addr == pdu.source_addr
                and (not pdu.destination_addr
                     or any(d.addr == pdu.destination_addr for d in m.destinations))
                and (not pdu.service_type or m.service_type == pdu.service_type)
                and m.state_at(now) is MessageState.ENROUTE
            ]
        if not targets or any(m.state_at(now) is not MessageState.ENROUTE for m in targets):
            return Reply(self._send(link, pdu.response(S.ESME_RCANCELFAIL)))
        for message in targets:
            message.cancelled_at = now
        return Reply(self._send(link, pdu.response()))

    def _replace_sm(self, link: Link, pdu: ReplaceSm, now: float) -> Reply:
        found = self._lookup(link, pdu.message_id, pdu.source_addr)
        if isinstance(found, int):
            return Reply(self._send(link, pdu.response(found)))
        if found.state_at(now) is not MessageState.ENROUTE:
            return Reply(self._send(link, pdu.response(S.ESME_RREPLACEFAIL)))
        retimed = bool(pdu.schedule_delivery_time or pdu.validity_period)
        if retimed:
            timing = self._timing(pdu.schedule_delivery_time, pdu.validity_period, now)
            if isinstance(timing, int):
                return Reply(self._send(link, pdu.response(timing)))
            found.final_at, expired = timing
            if expired:
                found.outcome = "EXPIRED"
        found.content = self._content(pdu)
        found.registered_delivery = pdu.registered_delivery
        # Receipt jobs made for another final time are stale (see ReceiptJob.wanted).
        receipts = self._plan_receipts(found) if retimed or not found.receipt_planned else []
        return Reply(self._send(link, pdu.response()), receipts=receipts)
