"""Wire field declarations for PDU bodies.

A PDU class declares each body field once, as an attrs attribute whose metadata says how it sits
on the wire (``cstring(21, ESME_RINVSRCADR)``); :mod:`smpp_codec.compile` turns those
declarations into one encoder and one decoder per class. The status in each declaration is what a
peer is answered with when that field is bad.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from .constants import CommandStatus

#: Key of the wire declaration in an attrs field's metadata.
WIRE = "smpp_wire"


class FieldKind(enum.Enum):
    U8 = "u8"  # 1-octet unsigned integer
    CSTRING = "cstring"  # C-Octet string: NUL-terminated, ``max_length`` counts the NUL
    TIME = "time"  # C-Octet string of 0 or 16 characters (SMPP time format)
    SHORT_MESSAGE = "short_message"  # sm_length (1 octet) then that many octets
    DEST_ADDRESSES = "dest_addresses"  # submit_multi: number_of_dests then dest_address list
    UNSUCCESS_SMES = "unsuccess_smes"  # submit_multi_resp: no_unsuccess then unsuccess_sme list
    TLVS = "tlvs"  # the optional parameters: everything to the end of the PDU


@attrs.frozen
class Wire:
    kind: FieldKind
    status: int = CommandStatus.ESME_RUNKNOWNERR
    max_length: int = 0  # CSTRING / TIME: the maximum octets including the NUL


# The helpers return attrs fields typed as Any, as attrs.field itself is to type checkers.


def u8(status: int = CommandStatus.ESME_RUNKNOWNERR, default: int = 0) -> Any:
    return attrs.field(default=default, metadata={WIRE: Wire(FieldKind.U8, status)})


def cstring(max_length: int, status: int = CommandStatus.ESME_RUNKNOWNERR) -> Any:
    return attrs.field(
        default="", metadata={WIRE: Wire(FieldKind.CSTRING, status, max_length)}
    )


def time(status: int) -> Any:
    return attrs.field(default="", metadata={WIRE: Wire(FieldKind.TIME, status, 17)})


def short_message() -> Any:
    return attrs.field(
        default=b"",
        metadata={WIRE: Wire(FieldKind.SHORT_MESSAGE, CommandStatus.ESME_RINVMSGLEN)},
    )


def dest_addresses() -> Any:
    return attrs.field(
        default=(),
        converter=tuple,
        metadata={WIRE: Wire(FieldKind.DEST_ADDRESSES, CommandStatus.ESME_RINVNUMDESTS)},
    )


def unsuccess_smes() -> Any:
    return attrs.field(
        default=(),
        converter=tuple,
        metadata={WIRE: Wire(FieldKind.UNSUCCESS_SMES, CommandStatus.ESME_RINVCMDLEN)},
    )


def tlvs() -> Any:
    return attrs.field(
        default=(),
        converter=tuple,
        metadata={WIRE: Wire(FieldKind.TLVS, CommandStatus.ESME_RINVOPTPARSTREAM)},
    )
