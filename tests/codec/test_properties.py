"""Property tests of the PDU codec: round trips, framing at every split point, hostile bytes."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from smpp_codec import NEED_DATA, DecodeError, Framer, decode, encode, error_response
from smpp_codec.pdu import PDU_CLASSES

from .strategies import pdus, pdus_of


@pytest.mark.parametrize("cls", sorted(PDU_CLASSES.values(), key=lambda c: c.__name__),
                         ids=lambda c: c.__name__)
@given(data=st.data())
def test_round_trip_every_pdu_class(cls, data):
    pdu = data.draw(pdus_of(cls))
    wire = encode(pdu)
    assert decode(wire) == pdu
    assert encode(decode(wire)) == wire  # byte for byte, unknown and empty TLVs included


@given(st.lists(pdus, min_size=1, max_size=5), st.data())
def test_framing_is_the_same_at_every_split_point(batch, data):
    stream = b"".join(map(encode, batch))
    split = data.draw(st.integers(0, len(stream)), label="split")
    second = data.draw(st.integers(split, len(stream)), label="second split")
    framer = Framer()
    out = []
    for chunk in (stream[:split], stream[split:second], stream[second:]):
        framer.feed(chunk)
        out.extend(framer)
    assert out == batch
    assert framer.buffered == 0
    assert framer.next_pdu() is NEED_DATA


@given(st.lists(pdus, min_size=1, max_size=3))
def test_framing_byte_by_byte(batch):
    stream = b"".join(map(encode, batch))
    framer = Framer()
    out = []
    for i in range(len(stream)):
        framer.feed(stream[i : i + 1])
        out.extend(framer)
    assert out == batch


def _decode_or_error(data: bytes):
    try:
        return decode(data)
    except DecodeError as exc:
        # Whatever went wrong, the error can be answered (or is knowingly left unanswered).
        answer = error_response(exc)
        if answer is not None:
            encode(answer)
        return None


@given(st.binary(max_size=300))
@example(b"\x00\x00\x00\x10\x80\x00\x00\x04\x00\x00\x00\x58\x00\x00\x00\x01")
def test_random_bytes_raise_only_the_codec_error(data):
    _decode_or_error(data)
    framer = Framer(max_command_length=1024)
    framer.feed(data)
    for _ in range(len(data) + 1):  # bounded: each call consumes a PDU or stops
        try:
            if framer.next_pdu() is NEED_DATA:
                break
        except DecodeError as exc:
            if not exc.framing_ok:
                assert framer.broken
                break


@given(pdus, st.data())
def test_mutated_pdus_decode_or_raise_the_codec_error(pdu, data):
    wire = bytearray(encode(pdu))
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        action = data.draw(st.sampled_from(["flip", "truncate", "extend", "delete"]))
        if action == "flip" and len(wire) > 16:
            i = data.draw(st.integers(16, len(wire) - 1))
            wire[i] = data.draw(st.integers(0, 255))
        elif action == "truncate":
            del wire[data.draw(st.integers(16, len(wire))) :]
        elif action == "extend":
            wire += data.draw(st.binary(min_size=1, max_size=8))
        elif action == "delete" and len(wire) > 16:
            del wire[data.draw(st.integers(16, len(wire) - 1))]
    wire[0:4] = len(wire).to_bytes(4, "big")  # keep the header honest so the body is exercised
    decoded = _decode_or_error(bytes(wire))
    if decoded is not None:
        # Whatever the decoder accepts, the encoder accepts too, and it decodes the same again.
        assert decode(encode(decoded)) == decoded
