"""The SMPP 3.4 PDUs, one immutable class each, fields named as the specification names them.

Every PDU has the header's ``sequence_number`` (required: this library never invents one) and
``command_status`` (0 unless a response carries an error); ``command_id`` is a class attribute.
PDUs that have a body also have ``optional_parameters``: the raw TLVs, ``(tag, value)`` pairs in
wire order (see :mod:`smpp_codec.tlv` and :meth:`Pdu.tlv` for typed access).

Constructors validate nothing, so any PDU can be built, inspected and compared;
:func:`smpp_codec.encode` checks every field against the specification before a byte is sent.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import attrs

from . import fields as f
from .constants import RESPONSE_BIT, CommandId, CommandStatus
from .tlv import RawTlvs, TlvValue, get

S = CommandStatus

_P = TypeVar("_P", bound="Pdu")

#: command_id -> PDU class, filled by :func:`_register`.
PDU_CLASSES: dict[int, type[Pdu]] = {}


@attrs.frozen(kw_only=True)
class Pdu:
    """Base of every PDU."""

    command_id: ClassVar[int]
    #: Response PDUs may omit their body when ``command_status`` is not 0 (the spec says they
    #: must); see :mod:`smpp_codec.compile`.
    is_response: ClassVar[bool] = False

    sequence_number: int
    command_status: int = 0

    def tlv(self, name_or_tag: str | int) -> TlvValue | None:
        """The typed value of an optional parameter by spec name (``"message_state"``) or tag,
        or None when the PDU does not carry it."""
        tlvs: RawTlvs = getattr(self, "optional_parameters", ())
        return get(tlvs, name_or_tag)


@attrs.frozen(kw_only=True)
class Request(Pdu):
    """A PDU that expects a response carrying the same ``sequence_number``."""

    response_class: ClassVar[type[Response]]

    def response(self, command_status: int = 0, **fields: Any) -> Response:
        """The response to this request: same sequence number, the given status and fields."""
        return self.response_class(
            sequence_number=self.sequence_number, command_status=command_status, **fields
        )


@attrs.frozen(kw_only=True)
class Response(Pdu):
    is_response: ClassVar[bool] = True


def _register(command_id: CommandId) -> Any:
    def wrap(cls: type[_P]) -> type[_P]:
        cls.command_id = int(command_id)
        PDU_CLASSES[int(command_id)] = cls
        if not command_id & RESPONSE_BIT and (command_id | RESPONSE_BIT) in PDU_CLASSES:
            cls.response_class = PDU_CLASSES[command_id | RESPONSE_BIT]  # type: ignore[attr-defined]
        return cls

    return wrap


# --- Session management -------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _Bind(Request):
    """The body the three bind requests share."""

    system_id: str = f.cstring(16, S.ESME_RINVSYSID)
    password: str = f.cstring(9, S.ESME_RINVPASWD)
    system_type: str = f.cstring(13, S.ESME_RINVSYSTYP)
    interface_version: int = f.u8(default=0x34)
    addr_ton: int = f.u8(S.ESME_RINVSRCTON)
    addr_npi: int = f.u8(S.ESME_RINVSRCNPI)
    address_range: str = f.cstring(41, S.ESME_RINVSRCADR)


@attrs.frozen(kw_only=True)
class _BindResp(Response):
    """The body the three bind responses share."""

    system_id: str = f.cstring(16, S.ESME_RINVSYSID)
    optional_parameters: RawTlvs = f.tlvs()


@_register(CommandId.GENERIC_NACK)
@attrs.frozen(kw_only=True)
class GenericNack(Response):
    """Answer to a PDU that cannot be answered otherwise (unknown command, broken header)."""


@_register(CommandId.BIND_TRANSMITTER_RESP)
@attrs.frozen(kw_only=True)
class BindTransmitterResp(_BindResp):
    pass


@_register(CommandId.BIND_TRANSMITTER)
@attrs.frozen(kw_only=True)
class BindTransmitter(_Bind):
    """Bind to send messages only."""


@_register(CommandId.BIND_RECEIVER_RESP)
@attrs.frozen(kw_only=True)
class BindReceiverResp(_BindResp):
    pass


@_register(CommandId.BIND_RECEIVER)
@attrs.frozen(kw_only=True)
class BindReceiver(_Bind):
    """Bind to receive messages (and receipts) only."""


@_register(CommandId.BIND_TRANSCEIVER_RESP)
@attrs.frozen(kw_only=True)
class BindTransceiverResp(_BindResp):
    pass


@_register(CommandId.BIND_TRANSCEIVER)
@attrs.frozen(kw_only=True)
class BindTransceiver(_Bind):
    """Bind to send and receive on one connection."""


@_register(CommandId.OUTBIND)
@attrs.frozen(kw_only=True)
class Outbind(Pdu):
    """Sent by an SMSC to ask an ESME to bind as a receiver; it has no response."""

    system_id: str = f.cstring(16, S.ESME_RINVSYSID)
    password: str = f.cstring(9, S.ESME_RINVPASWD)
    optional_parameters: RawTlvs = f.tlvs()


@_register(CommandId.UNBIND_RESP)
@attrs.frozen(kw_only=True)
class UnbindResp(Response):
    pass


@_register(CommandId.UNBIND)
@attrs.frozen(kw_only=True)
class Unbind(Request):
    pass


@_register(CommandId.ENQUIRE_LINK_RESP)
@attrs.frozen(kw_only=True)
class EnquireLinkResp(Response):
    pass


@_register(CommandId.ENQUIRE_LINK)
@attrs.frozen(kw_only=True)
class EnquireLink(Request):
    pass


# --- Message submission ---------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _ShortMessageBody(Request):
    """The body submit_sm and deliver_sm share (field for field, SMPP 3.4 4.4.1 and 4.6.1)."""

    service_type: str = f.cstring(6, S.ESME_RINVSERTYP)
    source_addr_ton: int = f.u8(S.ESME_RINVSRCTON)
    source_addr_npi: int = f.u8(S.ESME_RINVSRCNPI)
    source_addr: str = f.cstring(21, S.ESME_RINVSRCADR)
    dest_addr_ton: int = f.u8(S.ESME_RINVDSTTON)
    dest_addr_npi: int = f.u8(S.ESME_RINVDSTNPI)
    destination_addr: str = f.cstring(21, S.ESME_RINVDSTADR)
    esm_class: int = f.u8(S.ESME_RINVESMCLASS)
    protocol_id: int = f.u8()
    priority_flag: int = f.u8(S.ESME_RINVPRTFLG)
    schedule_delivery_time: str = f.time(S.ESME_RINVSCHED)
    validity_period: str = f.time(S.ESME_RINVEXPIRY)
    registered_delivery: int = f.u8(S.ESME_RINVREGDLVFLG)
    replace_if_present_flag: int = f.u8(S.ESME_RINVREPFLAG)
    data_coding: int = f.u8()
    sm_default_msg_id: int = f.u8(S.ESME_RINVDFTMSGID)
    short_message: bytes = f.short_message()
    optional_parameters: RawTlvs = f.tlvs()


@_register(CommandId.SUBMIT_SM_RESP)
@attrs.frozen(kw_only=True)
class SubmitSmResp(Response):
    message_id: str = f.cstring(65, S.ESME_RINVMSGID)
    optional_parameters: RawTlvs = f.tlvs()


@_register(CommandId.SUBMIT_SM)
@attrs.frozen(kw_only=True)
class SubmitSm(_ShortMessageBody):
    """A message from an ESME to the SMSC for one destination."""


@attrs.frozen
class SmeAddress:
    """A submit_multi destination that is one SME (``dest_flag`` 1)."""

    destination_addr: str
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0


@attrs.frozen
class DistributionList:
    """A submit_multi destination that is a distribution list (``dest_flag`` 2)."""

    dl_name: str


@attrs.frozen
class UnsuccessSme:
    """One destination a submit_multi could not be delivered to."""

    destination_addr: str
    error_status_code: int
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0


@_register(CommandId.SUBMIT_MULTI_RESP)
@attrs.frozen(kw_only=True)
class SubmitMultiResp(Response):
    message_id: str = f.cstring(65, S.ESME_RINVMSGID)
    unsuccess_sme: tuple[UnsuccessSme, ...] = f.unsuccess_smes()
    optional_parameters: RawTlvs = f.tlvs()


@_register(CommandId.SUBMIT_MULTI)
@attrs.frozen(kw_only=True)
class SubmitMulti(Request):
    service_type: str = f.cstring(6, S.ESME_RINVSERTYP)
    source_addr_ton: int = f.u8(S.ESME_RINVSRCTON)
    source_addr_npi: int = f.u8(S.ESME_RINVSRCNPI)
    source_addr: str = f.cstring(21, S.ESME_RINVSRCADR)
    dest_address: tuple[SmeAddress | DistributionList, ...] = f.dest_addresses()
    esm_class: int = f.u8(S.ESME_RINVESMCLASS)
    protocol_id: int = f.u8()
    priority_flag: int = f.u8(S.ESME_RINVPRTFLG)
    schedule_delivery_time: str = f.time(S.ESME_RINVSCHED)
    validity_period: str = f.time(S.ESME_RINVEXPIRY)
    registered_delivery: int = f.u8(S.ESME_RINVREGDLVFLG)
    replace_if_present_flag: int = f.u8(S.ESME_RINVREPFLAG)
    data_coding: int = f.u8()
    sm_default_msg_id: int = f.u8(S.ESME_RINVDFTMSGID)
    short_message: bytes = f.short_message()
    optional_parameters: RawTlvs = f.tlvs()


@_register(CommandId.DELIVER_SM_RESP)
@attrs.frozen(kw_only=True)
class DeliverSmResp(Response):
    message_id: str = f.cstring(65, S.ESME_RINVMSGID)  # unused by the spec: NULL
    optional_parameters: RawTlvs = f.tlvs()


@_register(CommandId.DELIVER_SM)
@attrs.frozen(kw_only=True)
class DeliverSm(_ShortMessageBody):
    """A mobile-originated message or a delivery receipt (``esm_class`` tells which)."""


@_register(CommandId.DATA_SM_RESP)
@attrs.frozen(kw_only=True)
class DataSmResp(Response):
    message_id: str = f.cstring(65, S.ESME_RINVMSGID)
    optional_parameters: RawTlvs = f.tlvs()


@_register(CommandId.DATA_SM)
@attrs.frozen(kw_only=True)
class DataSm(Request):
    """Interactive messaging in either direction; the text travels in ``message_payload``."""

    service_type: str = f.cstring(6, S.ESME_RINVSERTYP)
    source_addr_ton: int = f.u8(S.ESME_RINVSRCTON)
    source_addr_npi: int = f.u8(S.ESME_RINVSRCNPI)
    source_addr: str = f.cstring(65, S.ESME_RINVSRCADR)
    dest_addr_ton: int = f.u8(S.ESME_RINVDSTTON)
    dest_addr_npi: int = f.u8(S.ESME_RINVDSTNPI)
    destination_addr: str = f.cstring(65, S.ESME_RINVDSTADR)
    esm_class: int = f.u8(S.ESME_RINVESMCLASS)
    registered_delivery: int = f.u8(S.ESME_RINVREGDLVFLG)
    data_coding: int = f.u8()
    optional_parameters: RawTlvs = f.tlvs()


# --- Message management ---------------------------------------------------------------------


@_register(CommandId.QUERY_SM_RESP)
@attrs.frozen(kw_only=True)
class QuerySmResp(Response):
    message_id: str = f.cstring(65, S.ESME_RINVMSGID)
    final_date: str = f.time(S.ESME_RQUERYFAIL)
    message_state: int = f.u8(S.ESME_RQUERYFAIL)
    error_code: int = f.u8(S.ESME_RQUERYFAIL)
    optional_parameters: RawTlvs = f.tlvs()


@_register(CommandId.QUERY_SM)
@attrs.frozen(kw_only=True)
class QuerySm(Request):
    message_id: str = f.cstring(65, S.ESME_RINVMSGID)
    source_addr_ton: int = f.u8(S.ESME_RINVSRCTON)
    source_addr_npi: int = f.u8(S.ESME_RINVSRCNPI)
    source_addr: str = f.cstring(21, S.ESME_RINVSRCADR)
    optional_parameters: RawTlvs = f.tlvs()


@_register(CommandId.CANCEL_SM_RESP)
@attrs.frozen(kw_only=True)
class CancelSmResp(Response):
    pass


@_register(CommandId.CANCEL_SM)
@attrs.frozen(kw_only=True)
class CancelSm(Request):
    service_type: str = f.cstring(6, S.ESME_RINVSERTYP)
    message_id: str = f.cstring(65, S.ESME_RINVMSGID)
    source_addr_ton: int = f.u8(S.ESME_RINVSRCTON)
    source_addr_npi: int = f.u8(S.ESME_RINVSRCNPI)
    source_addr: str = f.cstring(21, S.ESME_RINVSRCADR)
    dest_addr_ton: int = f.u8(S.ESME_RINVDSTTON)
    dest_addr_npi: int = f.u8(S.ESME_RINVDSTNPI)
    destination_addr: str = f.cstring(21, S.ESME_RINVDSTADR)
    optional_parameters: RawTlvs = f.tlvs()


@_register(CommandId.REPLACE_SM_RESP)
@attrs.frozen(kw_only=True)
class ReplaceSmResp(Response):
    pass


@_register(CommandId.REPLACE_SM)
@attrs.frozen(kw_only=True)
class ReplaceSm(Request):
    message_id: str = f.cstring(65, S.ESME_RINVMSGID)
    source_addr_ton: int = f.u8(S.ESME_RINVSRCTON)
    source_addr_npi: int = f.u8(S.ESME_RINVSRCNPI)
    source_addr: str = f.cstring(21, S.ESME_RINVSRCADR)
    schedule_delivery_time: str = f.time(S.ESME_RINVSCHED)
    validity_period: str = f.time(S.ESME_RINVEXPIRY)
    registered_delivery: int = f.u8(S.ESME_RINVREGDLVFLG)
    sm_default_msg_id: int = f.u8(S.ESME_RINVDFTMSGID)
    short_message: bytes = f.short_message()
    optional_parameters: RawTlvs = f.tlvs()


@_register(CommandId.ALERT_NOTIFICATION)
@attrs.frozen(kw_only=True)
class AlertNotification(Pdu):
    """Sent by an SMSC when a mobile becomes available; it has no response."""

    source_addr_ton: int = f.u8(S.ESME_RINVSRCTON)
    source_addr_npi: int = f.u8(S.ESME_RINVSRCNPI)
    source_addr: str = f.cstring(65, S.ESME_RINVSRCADR)
    esme_addr_ton: int = f.u8(S.ESME_RINVDSTTON)
    esme_addr_npi: int = f.u8(S.ESME_RINVDSTNPI)
    esme_addr: str = f.cstring(65, S.ESME_RINVDSTADR)
    optional_parameters: RawTlvs = f.tlvs()
