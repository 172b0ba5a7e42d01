"""Mobile-originated messages: the deliver_sm PDUs of one MO, split as a handset's would be."""

from __future__ import annotations

import attrs

from smpp_codec.pdu import DeliverSm
from smpp_codec.segment import SplitMode, split
from smpp_codec.text import Encoding

from .values import ConfigError


@attrs.frozen
class MoResult:
    """The answers to the deliver_sm PDUs of one MO, one per part in order.

    A status is the ``command_status`` of the deliver_sm_resp (or generic_nack); None means no
    answer came (timeout, or the connection ended first).
    """

    system_id: str
    statuses: tuple[int | None, ...]

    @property
    def ok(self) -> bool:
        return all(s == 0 for s in self.statuses)

    @property
    def parts(self) -> int:
        return len(self.statuses)


def encoding_of(value: Encoding | str | None) -> Encoding | None:
    """``Encoding.UCS2``, ``"ucs2"`` (any case), or None (automatic)."""
    if value is None or isinstance(value, Encoding):
        return value
    try:
        return Encoding(value.strip().lower())
    except ValueError:
        names = ", ".join(e.value for e in Encoding)
        raise ConfigError(f"unknown encoding {value!r}: choose among {names}") from None


def split_mode_of(value: SplitMode | str) -> SplitMode:
    """``SplitMode.UDH8`` or ``"udh8"``/``"udh16"``/``"sar"``/``"payload"``."""
    if isinstance(value, SplitMode):
        return value
    try:
        return SplitMode(value.strip().lower())
    except ValueError:
        names = ", ".join(m.value for m in SplitMode)
        raise ConfigError(f"unknown multipart mode {value!r}: choose among {names}") from None


def mo_pdus(
    *,
    source_addr: str,
    destination_addr: str,
    content: str | bytes,
    encoding: Encoding | None,
    mode: SplitMode,
    reference: int,
    source_addr_ton: int = 1,
    source_addr_npi: int = 1,
    dest_addr_ton: int = 0,
    dest_addr_npi: int = 0,
    service_type: str = "",
) -> list[DeliverSm]:
    """The deliver_sm PDUs (``sequence_number`` 0: the session stamps them) of one MO.

    Raises :class:`smpp_codec.errors.TextError` when the text does not fit the encoding.
    """
    pdus = []
    for seg in split(content, encoding=encoding, mode=mode, reference=reference):
        pdus.append(
            DeliverSm(
                sequence_number=0,
                service_type=service_type,
                source_addr_ton=source_addr_ton,
                source_addr_npi=source_addr_npi,
                source_addr=source_addr,
                dest_addr_ton=dest_addr_ton,
                dest_addr_npi=dest_addr_npi,
                destination_addr=destination_addr,
                esm_class=seg.esm_class_flags,
                data_coding=seg.data_coding,
                short_message=seg.short_message,
                optional_parameters=seg.tlvs,
            )
        )
    return pdus
