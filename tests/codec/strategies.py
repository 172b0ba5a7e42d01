"""Hypothesis strategies for every PDU, derived from the same field declarations the codec is
generated from, so a new PDU class or field is fuzzed without touching this file."""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import strategies as st

from smpp_codec import tlv
from smpp_codec.compile import wire_fields
from smpp_codec.constants import Tag
from smpp_codec.fields import FieldKind, Wire
from smpp_codec.pdu import PDU_CLASSES, DistributionList, Pdu, SmeAddress, UnsuccessSme

u8 = st.integers(0, 255)
u32 = st.integers(0, 0xFFFFFFFF)


def cstrings(max_length: int) -> st.SearchStrategy[str]:
    """Latin-1 text without NUL that fits a C-Octet string of ``max_length`` (NUL included)."""
    return st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=max_length - 1)


times = st.one_of(
    st.just(""),
    st.text(st.sampled_from("0123456789"), min_size=12, max_size=12).flatmap(
        lambda digits: st.sampled_from(
            [digits + "000R", digits + "004+", digits + "132-"]
        )
    ),
)

sme_addresses = st.builds(SmeAddress, cstrings(21), u8, u8)
distribution_lists = st.builds(DistributionList, cstrings(21))
unsuccess_smes = st.builds(UnsuccessSme, cstrings(21), u32, u8, u8)


def _tlv_value(spec: tlv.TlvSpec) -> st.SearchStrategy[bytes]:
    if spec.kind is tlv.Kind.INT:
        return st.sampled_from(spec.sizes).flatmap(lambda n: st.binary(min_size=n, max_size=n))
    if spec.kind is tlv.Kind.FLAG:
        return st.just(b"")
    if spec.kind is tlv.Kind.CSTRING:
        return cstrings(spec.max_length).map(lambda s: s.encode("latin-1") + b"\0")
    return st.binary(min_size=spec.min_length, max_size=min(spec.max_length, 300))


known_tlvs = st.sampled_from(tlv.SPECS).flatmap(
    lambda spec: _tlv_value(spec).map(lambda value: (int(spec.tag), value))
)
unknown_tlvs = st.tuples(
    st.integers(0, 0xFFFF).filter(lambda tag: tag not in tlv.BY_TAG), st.binary(max_size=40)
)
zero_length_tlvs = st.sampled_from(tlv.SPECS).map(lambda spec: (int(spec.tag), b""))
raw_tlvs = st.lists(st.one_of(known_tlvs, unknown_tlvs, zero_length_tlvs), max_size=6).map(tuple)


def _field(wire: Wire) -> st.SearchStrategy[Any]:
    kind = wire.kind
    if kind is FieldKind.U8:
        return u8
    if kind is FieldKind.CSTRING:
        return cstrings(wire.max_length)
    if kind is FieldKind.TIME:
        return times
    if kind is FieldKind.SHORT_MESSAGE:
        return st.binary(max_size=254)
    if kind is FieldKind.DEST_ADDRESSES:
        return st.lists(st.one_of(sme_addresses, distribution_lists), min_size=1, max_size=5).map(
            tuple
        )
    if kind is FieldKind.UNSUCCESS_SMES:
        return st.lists(unsuccess_smes, max_size=5).map(tuple)
    assert kind is FieldKind.TLVS
    return raw_tlvs


def _no_payload_with_short_message(pdu: Pdu) -> Pdu:
    if getattr(pdu, "short_message", b""):
        kept = tuple(t for t in pdu.optional_parameters if t[0] != Tag.MESSAGE_PAYLOAD)  # type: ignore[attr-defined]
        return attrs.evolve(pdu, optional_parameters=kept)  # type: ignore[misc]
    return pdu


def pdus_of(cls: type[Pdu]) -> st.SearchStrategy[Pdu]:
    kwargs = {name: _field(wire) for name, wire in wire_fields(cls)}
    return st.builds(cls, sequence_number=u32, command_status=u32, **kwargs).map(
        _no_payload_with_short_message
    )


pdu_classes = st.sampled_from(sorted(PDU_CLASSES.values(), key=lambda c: c.command_id))
pdus = pdu_classes.flatmap(pdus_of)
