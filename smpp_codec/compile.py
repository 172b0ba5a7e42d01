"""Turns the field declarations of each PDU class into an encoder and a decoder.

The functions are generated once, at import, as straight-line Python source (one local per field,
no loop over field specs, no dict of kwargs): declaring 27 PDU bodies as data keeps the codec
small, and generating the code keeps it fast. ``SOURCES`` keeps each generated function's text
for whoever needs to read it (``print(SOURCES["SubmitSm.decode"])``).

Generated decoders take the whole PDU (header included) and start reading at offset 16; the
header was already parsed by the caller. They raise :class:`~smpp_codec.errors.InvalidPdu` with
the status of the field at fault. Generated encoders return the whole PDU; on any ``ValueError``
or ``TypeError`` from the fast path, :func:`diagnose` walks the fields again slowly to name the
bad one.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import attrs

from .constants import CommandStatus, Tag
from .errors import EncodeError, InvalidPdu
from .fields import WIRE, FieldKind, Wire
from .pdu import DistributionList, Pdu, SmeAddress, UnsuccessSme
from .tlv import check_length

S = CommandStatus
HEADER = struct.Struct(">IIII")
_TLV_HEADER = struct.Struct(">HH")
_U32 = struct.Struct(">I")

Decoder = Callable[[bytes, int, int], Pdu]
Encoder = Callable[[Any], bytes]

SOURCES: dict[str, str] = {}


def wire_fields(cls: type[Pdu]) -> list[tuple[str, Wire]]:
    """(name, declaration) of the body fields of a PDU class, in wire order."""
    return [(a.name, a.metadata[WIRE]) for a in attrs.fields(cls) if WIRE in a.metadata]


# --- decoding helpers (called from generated code on the slow or error paths) -------------------


def _bad(cls: type[Pdu], seq: int, status: int, field: str, message: str) -> InvalidPdu:
    return InvalidPdu(
        f"{cls.__name__}.{field}: {message}",
        command_status=status,
        command_id=cls.command_id,
        sequence_number=seq,
        field=field,
    )


def _bad_cstring(
    cls: type[Pdu], seq: int, status: int, field: str, data: bytes, pos: int, max_length: int
) -> InvalidPdu:
    if data.find(0, pos) < 0:
        return _bad(cls, seq, S.ESME_RINVCMDLEN, field, "C-Octet string has no NUL before the end")
    return _bad(cls, seq, status, field, f"longer than {max_length - 1} characters")


def _short(cls: type[Pdu], seq: int, field: str) -> InvalidPdu:
    return _bad(cls, seq, S.ESME_RINVCMDLEN, field, "PDU ends inside this field")


def _decode_cstring(
    cls: type[Pdu], seq: int, data: bytes, pos: int, field: str, max_length: int, status: int
) -> tuple[str, int]:
    end = data.find(0, pos, pos + max_length)
    if end < 0:
        raise _bad_cstring(cls, seq, status, field, data, pos, max_length)
    return data[pos:end].decode("latin-1"), end + 1


def _decode_dest_addresses(
    cls: type[Pdu], seq: int, data: bytes, pos: int
) -> tuple[tuple[SmeAddress | DistributionList, ...], int]:
    if pos >= len(data):
        raise _short(cls, seq, "number_of_dests")
    count = data[pos]
    pos += 1
    if not 1 <= count <= 254:
        raise _bad(cls, seq, S.ESME_RINVNUMDESTS, "dest_address", f"number_of_dests is {count}")
    out: list[SmeAddress | DistributionList] = []
    for _ in range(count):
        if pos >= len(data):
            raise _short(cls, seq, "dest_address")
        flag = data[pos]
        pos += 1
        if flag == 1:
            if pos + 2 > len(data):
                raise _short(cls, seq, "dest_address")
            ton, npi = data[pos], data[pos + 1]
            addr, pos = _decode_cstring(
                cls, seq, data, pos + 2, "dest_address", 21, S.ESME_RINVDSTADR
            )
            out.append(SmeAddress(addr, ton, npi))
        elif flag == 2:
            name, pos = _decode_cstring(
                cls, seq, data, pos, "dest_address", 21, S.ESME_RINVDLNAME
            )
            out.append(DistributionList(name))
        else:
            raise _bad(cls, seq, S.ESME_RINVDESTFLAG, "dest_address", f"dest_flag is {flag}")
    return tuple(out), pos


def _decode_unsuccess_smes(
    cls: type[Pdu], seq: int, data: bytes, pos: int
) -> tuple[tuple[UnsuccessSme, ...], int]:
    if pos >= len(data):
        raise _short(cls, seq, "no_unsuccess")
    count = data[pos]
    pos += 1
    out: list[UnsuccessSme] = []
    for _ in range(count):
        if pos + 2 > len(data):
            raise _short(cls, seq, "unsuccess_sme")
        ton, npi = data[pos], data[pos + 1]
        addr, pos = _decode_cstring(
            cls, seq, data, pos + 2, "unsuccess_sme", 21, S.ESME_RINVDSTADR
        )
        if pos + 4 > len(data):
            raise _short(cls, seq, "unsuccess_sme")
        (status,) = _U32.unpack_from(data, pos)
        pos += 4
        out.append(UnsuccessSme(addr, status, ton, npi))
    return tuple(out), pos


def _decode_tlvs(
    cls: type[Pdu], seq: int, data: bytes, pos: int, has_short_message: bool
) -> tuple[tuple[int, bytes], ...]:
    out: list[tuple[int, bytes]] = []
    n = len(data)
    unpack = _TLV_HEADER.unpack_from
    while pos < n:
        if pos + 4 > n:
            raise _bad(cls, seq, S.ESME_RINVOPTPARSTREAM, "optional_parameters",
                       f"{n - pos} stray octet(s) after the last TLV")
        tag, length = unpack(data, pos)
        pos += 4
        end = pos + length
        if end > n:
            raise _bad(cls, seq, S.ESME_RINVOPTPARSTREAM, "optional_parameters",
                       f"TLV 0x{tag:04X} claims {length} octets, {n - pos} remain")
        problem = check_length(tag, length)
        if problem is not None:
            raise _bad(cls, seq, S.ESME_RINVPARLEN, "optional_parameters", problem)
        if tag == Tag.MESSAGE_PAYLOAD and has_short_message:
            raise _bad(cls, seq, S.ESME_RINVOPTPARAMVAL, "optional_parameters",
                       "message_payload together with a non-empty short_message")
        out.append((tag, data[pos:end]))
        pos = end
    return tuple(out)


# --- encoding helpers -----------------------------------------------------------------------


def _encode_dest_addresses(out: bytearray, dests: tuple[Any, ...]) -> None:
    if not 1 <= len(dests) <= 254:
        raise EncodeError(f"dest_address must hold 1..254 destinations, got {len(dests)}",
                          field="dest_address", command_status=S.ESME_RINVNUMDESTS)
    out.append(len(dests))
    for dest in dests:
        if isinstance(dest, SmeAddress):
            _check_u8(dest.dest_addr_ton, "dest_address", S.ESME_RINVDSTTON)
            _check_u8(dest.dest_addr_npi, "dest_address", S.ESME_RINVDSTNPI)
            out += bytes((1, dest.dest_addr_ton, dest.dest_addr_npi))
            out += _cstring_bytes(dest.destination_addr, 21, "dest_address", S.ESME_RINVDSTADR)
        elif isinstance(dest, DistributionList):
            out.append(2)
            out += _cstring_bytes(dest.dl_name, 21, "dest_address", S.ESME_RINVDLNAME)
        else:
            raise EncodeError(f"dest_address items must be SmeAddress or DistributionList, "
                              f"got {dest!r}", field="dest_address")


def _encode_unsuccess_smes(out: bytearray, smes: tuple[Any, ...]) -> None:
    if len(smes) > 255:
        raise EncodeError(f"unsuccess_sme holds at most 255 entries, got {len(smes)}",
                          field="unsuccess_sme")
    out.append(len(smes))
    for sme in smes:
        _check_u8(sme.dest_addr_ton, "unsuccess_sme", S.ESME_RINVDSTTON)
        _check_u8(sme.dest_addr_npi, "unsuccess_sme", S.ESME_RINVDSTNPI)
        out += bytes((sme.dest_addr_ton, sme.dest_addr_npi))
        out += _cstring_bytes(sme.destination_addr, 21, "unsuccess_sme", S.ESME_RINVDSTADR)
        out += _U32.pack(sme.error_status_code)


def _check_u8(value: object, field: str, status: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= 255:
        raise EncodeError(f"{field}: expected an int 0..255, got {value!r}", field=field,
                          command_status=status)


def _cstring_bytes(value: str, max_length: int, field: str, status: int) -> bytes:
    if not isinstance(value, str):
        raise EncodeError(f"{field} must be a str, got {value!r}", field=field,
                          command_status=status)
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raise EncodeError(f"{field} must be Latin-1 text, got {value!r}", field=field,
                          command_status=status) from None
    if len(raw) >= max_length:
        raise EncodeError(f"{field} is {len(raw)} characters; at most {max_length - 1} fit",
                          field=field, command_status=status)
    if 0 in raw:
        raise EncodeError(f"{field} must not contain NUL", field=field, command_status=status)
    return raw + b"\0"


def _encode_tlvs(out: bytearray, tlvs: tuple[tuple[int, bytes], ...], has_sm: bool) -> None:
    pack = _TLV_HEADER.pack
    for tag, value in tlvs:
        if not 0 <= tag <= 0xFFFF or not isinstance(value, bytes | bytearray):
            raise EncodeError(f"optional_parameters entries must be (tag 0..65535, bytes), "
                              f"got {(tag, value)!r}", field="optional_parameters")
        problem = check_length(tag, len(value))
        if problem is not None:
            raise EncodeError(problem, field="optional_parameters",
                              command_status=S.ESME_RINVPARLEN)
        if tag == Tag.MESSAGE_PAYLOAD and has_sm:
            raise EncodeError("message_payload cannot be combined with a non-empty "
                              "short_message", field="optional_parameters",
                              command_status=S.ESME_RINVOPTPARAMVAL)
        if len(value) > 0xFFFF:
            raise EncodeError(f"TLV 0x{tag:04X} value is over 65535 octets",
                              field="optional_parameters", command_status=S.ESME_RINVPARLEN)
        out += pack(tag, len(value))
        out += value


def diagnose(pdu: Pdu, original: Exception) -> EncodeError:
    """Find the field that made the fast encoder fail, and say what is wrong with it."""
    for name, wire in wire_fields(type(pdu)):
        value = getattr(pdu, name)
        kind = wire.kind
        if kind is FieldKind.U8:
            try:
                _check_u8(value, name, wire.status)
            except EncodeError as exc:
                return exc
        elif kind in (FieldKind.CSTRING, FieldKind.TIME):
            try:
                _cstring_bytes(value, wire.max_length, name, wire.status)
            except EncodeError as exc:
                return exc
        elif kind is FieldKind.SHORT_MESSAGE:
            if not isinstance(value, bytes | bytearray):
                return EncodeError(f"{name} must be bytes, got {type(value).__name__}",
                                   field=name, command_status=wire.status)
        elif kind in (FieldKind.DEST_ADDRESSES, FieldKind.UNSUCCESS_SMES):
            try:
                (_encode_dest_addresses if kind is FieldKind.DEST_ADDRESSES
                 else _encode_unsuccess_smes)(bytearray(), value)
            except EncodeError as exc:
                return exc
            except (ValueError, TypeError, AttributeError, struct.error) as exc:
                return EncodeError(f"{name}: {exc}", field=name, command_status=wire.status)
        elif kind is FieldKind.TLVS:
            try:
                _encode_tlvs(bytearray(), value, False)
            except EncodeError as exc:
                return exc
            except (ValueError, TypeError) as exc:
                return EncodeError(f"{name}: {exc}", field=name, command_status=wire.status)
    for name in ("sequence_number", "command_status"):
        value = getattr(pdu, name)
        if not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
            return EncodeError(f"{name} must be an int 0..0xFFFFFFFF, got {value!r}", field=name)
    return EncodeError(f"cannot encode {type(pdu).__name__}: {original}", field="?")


# --- code generation ------------------------------------------------------------------------


def _group_u8(fields: list[tuple[str, Wire]]) -> list[list[tuple[str, Wire]]]:
    """Split the field list into runs: consecutive U8 fields share a run, others stand alone."""
    runs: list[list[tuple[str, Wire]]] = []
    for item in fields:
        if item[1].kind is FieldKind.U8 and runs and runs[-1][0][1].kind is FieldKind.U8:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def _decoder_source(cls: type[Pdu]) -> str:
    fields = wire_fields(cls)
    names = [name for name, _ in fields]
    has_sm = any(w.kind is FieldKind.SHORT_MESSAGE for _, w in fields)
    body: list[str] = ["n = len(data)", "pos = 16"]
    if not fields:
        body += [
            "if n != 16:",
            "    raise _bad(cls, seq, S.ESME_RINVCMDLEN, 'body', 'this PDU has no body')",
        ]
    elif cls.is_response:
        # Error responses carry no body (spec); some peers omit it on success too: tolerated.
        body += ["if n == 16:", "    return _empty(cls, seq, status)"]
    for run in _group_u8(fields):
        name, wire = run[0]
        kind = wire.kind
        if kind is FieldKind.U8:
            k = len(run)
            body += [f"if pos + {k} > n:", f"    raise _short(cls, seq, {name!r})"]
            body += [f"{nm} = data[pos + {i}]" for i, (nm, _) in enumerate(run)]
            body.append(f"pos += {k}")
        elif kind in (FieldKind.CSTRING, FieldKind.TIME):
            m = wire.max_length
            body += [
                f"end = data.find(0, pos, pos + {m})",
                "if end < 0:",
                f"    raise _bad_cstring(cls, seq, {wire.status}, {name!r}, data, pos, {m})",
            ]
            if kind is FieldKind.TIME:
                body += [
                    "if end != pos and end - pos != 16:",
                    f"    raise _bad(cls, seq, {wire.status}, {name!r}, "
                    "'time must be empty or 16 characters')",
                ]
            body += [f"{name} = data[pos:end].decode('latin-1')", "pos = end + 1"]
        elif kind is FieldKind.SHORT_MESSAGE:
            body += [
                "if pos >= n:",
                "    raise _short(cls, seq, 'sm_length')",
                "end = pos + 1 + data[pos]",
                "if end > n or end - pos > 255:",
                f"    raise _bad(cls, seq, {wire.status}, 'short_message', "
                "'sm_length is larger than the rest of the PDU or 255')",
                f"{name} = data[pos + 1:end]",
                "pos = end",
            ]
        elif kind is FieldKind.DEST_ADDRESSES:
            body.append(f"{name}, pos = _decode_dest_addresses(cls, seq, data, pos)")
        elif kind is FieldKind.UNSUCCESS_SMES:
            body.append(f"{name}, pos = _decode_unsuccess_smes(cls, seq, data, pos)")
        elif kind is FieldKind.TLVS:
            sm_test = "len(short_message) > 0" if has_sm else "False"
            body += [f"{name} = _decode_tlvs(cls, seq, data, pos, {sm_test}) if pos < n else ()"]
    if fields and fields[-1][1].kind is not FieldKind.TLVS:
        body += [
            "if pos != n:",
            "    raise _bad(cls, seq, S.ESME_RINVCMDLEN, 'body', f'{n - pos} octets too many')",
        ]
    body += ["pdu = _new(cls)", "_set_sequence_number(pdu, seq)"]
    body += ["_set_command_status(pdu, status)"]
    body += [f"_set_{name}(pdu, {name})" for name in names]
    body.append("return pdu")
    return "def decode(data, status, seq):\n" + "".join(f"    {line}\n" for line in body)


def _encoder_source(cls: type[Pdu]) -> str:
    fields = wire_fields(cls)
    has_sm = any(w.kind is FieldKind.SHORT_MESSAGE for _, w in fields)
    body: list[str] = ["out = bytearray(16)"]
    lines: list[str] = []
    for name, wire in fields:
        kind = wire.kind
        if kind is FieldKind.U8:
            lines.append(f"out.append(pdu.{name})")
        elif kind in (FieldKind.CSTRING, FieldKind.TIME):
            lines += [f"v = pdu.{name}.encode('latin-1')"]
            if kind is FieldKind.TIME:
                lines += [
                    "if len(v) != 16 and v:",
                    f"    raise EncodeError('{name} must be empty or 16 characters, got ' "
                    f"+ repr(pdu.{name}), field={name!r}, command_status={wire.status})",
                ]
            lines += [
                f"if len(v) >= {wire.max_length} or 0 in v:",
                f"    raise _cstring_error(pdu.{name}, {wire.max_length}, {name!r}, "
                f"{wire.status})",
                "out += v",
                "out.append(0)",
            ]
        elif kind is FieldKind.SHORT_MESSAGE:
            lines += [
                f"sm = pdu.{name}",
                "if len(sm) > 254:",
                "    raise EncodeError(f'short_message is {len(sm)} octets; at most 254 fit"
                " (use message_payload or split the message)', field='short_message', "
                f"command_status={wire.status})",
                "out.append(len(sm))",
                "out += sm",
            ]
        elif kind is FieldKind.DEST_ADDRESSES:
            lines.append(f"_encode_dest_addresses(out, pdu.{name})")
        elif kind is FieldKind.UNSUCCESS_SMES:
            lines.append(f"_encode_unsuccess_smes(out, pdu.{name})")
        elif kind is FieldKind.TLVS:
            sm_test = "len(sm) > 0" if has_sm else "False"
            lines += [f"if pdu.{name}:", f"    _encode_tlvs(out, pdu.{name}, {sm_test})"]
    if cls.is_response and fields:
        # Error responses are sent without a body when every body field is at its default.
        defaults = " and ".join(
            f"pdu.{name} == {attrs.fields_dict(cls)[name].default!r}" for name, _ in fields
        )
        body += ["if not (pdu.command_status and " + defaults + "):"]
        body += [f"    {line}" for line in lines]
    else:
        body += lines
    body += [
        "_pack_header(out, 0, len(out), command_id, pdu.command_status, pdu.sequence_number)",
        "return bytes(out)",
    ]
    return "def encode(pdu):\n" + "".join(f"    {line}\n" for line in body)


def _cstring_error(value: str, max_length: int, field: str, status: int) -> EncodeError:
    try:
        _cstring_bytes(value, max_length, field, status)
    except EncodeError as exc:
        return exc
    raise AssertionError("unreachable: value was valid")  # pragma: no cover


def _empty(cls: type[Pdu], seq: int, status: int) -> Pdu:
    """A response that came without a body: its fields at their defaults."""
    return cls(sequence_number=seq, command_status=status)


def compile_pdu(cls: type[Pdu]) -> tuple[Decoder, Encoder]:
    """Generate the decoder and encoder of one PDU class."""
    namespace: dict[str, Any] = {
        "cls": cls,
        "S": S,
        "EncodeError": EncodeError,
        "command_id": cls.command_id,
        "_new": object.__new__,
        "_bad": _bad,
        "_bad_cstring": _bad_cstring,
        "_short": _short,
        "_cstring_error": _cstring_error,
        "_empty": _empty,
        "_decode_tlvs": _decode_tlvs,
        "_decode_dest_addresses": _decode_dest_addresses,
        "_decode_unsuccess_smes": _decode_unsuccess_smes,
        "_encode_tlvs": _encode_tlvs,
        "_encode_dest_addresses": _encode_dest_addresses,
        "_encode_unsuccess_smes": _encode_unsuccess_smes,
        "_pack_header": HEADER.pack_into,
    }
    # Slot descriptors' setters: frozen classes refuse setattr, these go around it (as the
    # attrs-generated __init__ itself does) without a call through __init__'s kwargs.
    for name in ("sequence_number", "command_status", *(n for n, _ in wire_fields(cls))):
        namespace[f"_set_{name}"] = getattr(cls, name).__set__
    decode_src = _decoder_source(cls)
    encode_src = _encoder_source(cls)
    SOURCES[f"{cls.__name__}.decode"] = decode_src
    SOURCES[f"{cls.__name__}.encode"] = encode_src
    exec(compile(decode_src, f"<smpp_codec {cls.__name__}.decode>", "exec"), namespace)
    exec(compile(encode_src, f"<smpp_codec {cls.__name__}.encode>", "exec"), namespace)
    return namespace["decode"], namespace["encode"]
