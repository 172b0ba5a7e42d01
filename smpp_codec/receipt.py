"""SMSC delivery receipts: the de-facto text format and the receipt TLVs.

An SMSC reports what became of a message in a ``deliver_sm`` (or ``data_sm``) whose ``esm_class``
says "receipt". What it reports travels in two places, and SMSCs fill either or both:

- the ``receipted_message_id``, ``message_state`` and ``network_error_code`` TLVs (SMPP 3.4);
- the text of the message, in the format of SMPP 3.4 Appendix B, which the specification calls
  "vendor specific" and which every vendor bends a little::

    id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD
    err:E text:...

:func:`parse_receipt_text` reads the text leniently (the variants it accepts are listed on it);
:func:`receipt_from_pdu` combines the TLVs with the text, preferring the TLVs;
:func:`format_receipt` writes the canonical text (for SMSC simulators and tests).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Protocol

import attrs

from .constants import ESM_CLASS_TYPE_MASK, EsmClass, MessageState, Tag
from .errors import ReceiptError
from .smpptime import TimeFormatError, parse_time

__all__ = [
    "RECEIPT_MESSAGE_TYPES",
    "STAT_ALIASES",
    "STAT_FOR_STATE",
    "TEXT_LIMIT",
    "DeliveryReceipt",
    "ReceiptError",
    "ReceiptLike",
    "format_receipt",
    "is_receipt",
    "normalize_stat",
    "parse_receipt_text",
    "receipt_from_pdu",
    "stat_for_state",
    "state_for_stat",
]




# --- stat <-> message_state -----------------------------------------------------------------

#: The 7-letter ``stat`` of the receipt text for each ``message_state`` (SMPP 3.4, Appendix B).
STAT_FOR_STATE: Mapping[MessageState, str] = MappingProxyType(
    {
        MessageState.ENROUTE: "ENROUTE",
        MessageState.DELIVERED: "DELIVRD",
        MessageState.EXPIRED: "EXPIRED",
        MessageState.DELETED: "DELETED",
        MessageState.UNDELIVERABLE: "UNDELIV",
        MessageState.ACCEPTED: "ACCEPTD",
        MessageState.UNKNOWN: "UNKNOWN",
        MessageState.REJECTED: "REJECTD",
    }
)
_STATE_FOR_STAT = {stat: state for state, stat in STAT_FOR_STATE.items()}

#: Vendor spellings of ``stat`` seen in the wild, and the 7-letter form each one means.
#: ``FAILED`` is a final failure without detail: undeliverable (the gateway's ``undelivered``).
#: ``BUFFRED``/``BUFFERD``/``BUFFERED`` mean "held by the SMSC, still trying": enroute (Kannel
#: also counts them as intermediate).
STAT_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "DELIVERED": "DELIVRD",
        "UNDELIVERABLE": "UNDELIV",
        "UNDELIVERED": "UNDELIV",
        "FAILED": "UNDELIV",
        "REJECTED": "REJECTD",
        "ACCEPTED": "ACCEPTD",
        "BUFFRED": "ENROUTE",
        "BUFFERD": "ENROUTE",
        "BUFFERED": "ENROUTE",
    }
)

#: Stripped from both ends of the text and of each value: ASCII whitespace and NULs (a receipt
#: is often a C string, NUL included).
_BLANK = " \t\r\n\f\v\x00"


def normalize_stat(stat: str) -> str:
    """``stat`` in upper case, with a vendor spelling replaced by its 7-letter form.

    A stat this module does not know is kept (upper-cased), so nothing the SMSC said is lost.
    """
    upper = stat.strip(_BLANK).upper()
    return STAT_ALIASES.get(upper, upper)


def state_for_stat(stat: str) -> MessageState:
    """The ``message_state`` a ``stat`` means; ``UNKNOWN`` for a stat this module does not know."""
    return _STATE_FOR_STAT.get(normalize_stat(stat), MessageState.UNKNOWN)


def stat_for_state(state: MessageState) -> str:
    """The 7-letter ``stat`` for a ``message_state``."""
    return STAT_FOR_STATE[state]


# --- the receipt ----------------------------------------------------------------------------


def _not_empty(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not value:
        raise ReceiptError(f"DeliveryReceipt.{attribute.name} must not be empty")


def _naive(instance: object, attribute: attrs.Attribute[datetime | None], value: object) -> None:
    if isinstance(value, datetime) and value.tzinfo is not None:
        raise ReceiptError(
            f"DeliveryReceipt.{attribute.name} must be a naive datetime: receipt dates carry no "
            "time zone"
        )


def _frozen_mapping(extra: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(extra))


@attrs.frozen
class DeliveryReceipt:
    """What an SMSC reported about one message.

    ``state`` is the authority on what happened: from the ``message_state`` TLV when the SMSC
    sent one, else from ``stat``. ``stat`` is the receipt text's word for it, normalised (see
    :func:`normalize_stat`), or the 7-letter form of ``state`` when there was no text.

    ``sub``, ``dlvrd`` and ``err`` are kept as the strings the SMSC wrote (``"001"``, ``"0"``,
    ``"0000"``, alphanumeric error codes...). ``submit_date`` and ``done_date`` are naive: the
    receipt format has no time zone (they are the SMSC's local time, whatever that is).
    ``extra`` holds the text's fields this module does not know, keys in lower case.
    ``network_error_code`` is the raw 3-octet TLV (network type, then a 2-octet error code).
    """

    message_id: str = attrs.field(validator=_not_empty)
    stat: str = attrs.field(validator=_not_empty)
    state: MessageState
    err: str | None = None
    sub: str | None = None
    dlvrd: str | None = None
    submit_date: datetime | None = attrs.field(default=None, validator=_naive)
    done_date: datetime | None = attrs.field(default=None, validator=_naive)
    text: str | None = None
    extra: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_mapping, hash=False)
    network_error_code: bytes | None = None


# --- reading the text -----------------------------------------------------------------------

#: A field name and its colon, at the start of the text or after whitespace. The two dates are
#: the only names with a space; vendors also write them ``submit_date`` or ``submitdate``.
_KEY = re.compile(
    r"(?<!\S)(submit[ _]?date|done[ _]?date|[a-z][a-z0-9_]*):", re.IGNORECASE | re.ASCII
)
_KEY_ALIASES = {
    "submit date": "submit_date",
    "submitdate": "submit_date",
    "done date": "done_date",
    "donedate": "done_date",
}
_KNOWN_KEYS = frozenset({"id", "sub", "dlvrd", "submit_date", "done_date", "stat", "err", "text"})
#: Names that may not be used as ``extra`` keys: they would read back as known fields.
_RESERVED_KEYS = _KNOWN_KEYS | _KEY_ALIASES.keys()
_EXTRA_KEY = re.compile(r"[a-z][a-z0-9_]*", re.ASCII)


@attrs.frozen
class _TextFields:
    """The fields of a receipt text, before the id and stat are required."""

    message_id: str | None
    stat: str | None
    err: str | None
    sub: str | None
    dlvrd: str | None
    submit_date: datetime | None
    done_date: datetime | None
    text: str | None
    extra: dict[str, str]


def _show(text: str, limit: int = 60) -> str:
    """``text`` for an error message: quoted, and cut short if long (the message says so)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r} (+{len(text) - limit} more characters)"


def _split_fields(text: str) -> list[tuple[str, str]]:
    """``text`` cut into ``(key, value)`` pairs: each value runs to the next key.

    ``text:`` takes the rest of the string, whatever it holds (the message's own words may look
    like fields), so it must come last, as it does in every known format.
    """
    match = _KEY.search(text)
    if match is None:
        raise ReceiptError(f"receipt text {_show(text)} has no 'name:value' field")
    if match.start() > 0:
        raise ReceiptError(
            f"receipt text {_show(text)} has {_show(text[: match.start()])} before its first field"
        )
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    while match is not None:
        name = match.group(1).lower()
        key = _KEY_ALIASES.get(name, name)
        if key in seen:
            raise ReceiptError(f"receipt text {_show(text)} has the field {key!r} twice")
        seen.add(key)
        if key == "text":
            pairs.append((key, text[match.end() :].strip(_BLANK)))
            break
        following = _KEY.search(text, match.end())
        end = len(text) if following is None else following.start()
        pairs.append((key, text[match.end() : end].strip(_BLANK)))
        match = following
    return pairs


#: The specification's layout, fields in order, one space apart: nearly every receipt. One
#: match reads it; any other text takes the general path (:func:`_split_fields`), which reads
#: this layout to the same fields (a value here holds no blank, so no key can hide in it).
_VALUE = r"([^ \t\r\n\f\v\x00]*)"
_CANONICAL = re.compile(
    rf"id:{_VALUE} sub:{_VALUE} dlvrd:{_VALUE} submit date:{_VALUE} done date:{_VALUE}"
    rf" stat:{_VALUE} err:{_VALUE}(?: text:(.*))?",
    re.IGNORECASE | re.ASCII | re.DOTALL,
)
_CANONICAL_KEYS = ("id", "sub", "dlvrd", "submit_date", "done_date", "stat", "err")


def _fields(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """The known fields and the extra ones of a (stripped, non-empty) receipt text."""
    canonical = _CANONICAL.fullmatch(text)
    if canonical is not None:
        values = dict(zip(_CANONICAL_KEYS, canonical.groups(), strict=False))
        if canonical.group(8) is not None:
            values["text"] = canonical.group(8).strip(_BLANK)
        return values, {}
    values = {}
    extra: dict[str, str] = {}
    for key, value in _split_fields(text):
        if key in _KNOWN_KEYS:
            values[key] = value
        else:
            extra[key] = value
    return values, extra


def _read_text(raw: str | bytes) -> _TextFields:
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    text = text.strip(_BLANK)
    if not text:
        raise ReceiptError("receipt text is empty")
    values, extra = _fields(text)
    stat = values.get("stat")
    return _TextFields(
        message_id=values.get("id") or None,
        stat=normalize_stat(stat) if stat else None,
        err=values.get("err"),
        sub=values.get("sub"),
        dlvrd=values.get("dlvrd"),
        submit_date=_parse_date(values.get("submit_date"), "submit date"),
        done_date=_parse_date(values.get("done_date"), "done date"),
        text=values.get("text"),
        extra=extra,
    )


def _parse_date(value: str | None, name: str) -> datetime | None:
    """A receipt date, in any of the layouts SMSCs use:

    - 10 digits ``YYMMDDhhmm`` (the specification's);
    - 12 digits ``YYMMDDhhmmss``, or, when that is no valid date, ``YYYYMMDDhhmm`` (Jasmin);
    - 14 digits ``YYYYMMDDhhmmss``;
    - 16 characters in the SMPP absolute time format ``YYMMDDhhmmsstnnp``: the local time is
      kept (tenths included) and its UTC offset dropped, like the other layouts' time zone;
    - empty, or all zeros (no date yet): None.

    Two-digit years are 2000 + YY.
    """
    if not value or value.strip("0") == "":
        return None
    if len(value) == 16 and value[-1] in "+-":
        try:
            absolute = parse_time(value)
        except TimeFormatError as exc:
            raise ReceiptError(f"receipt field {name!r}: {exc}") from None
        assert isinstance(absolute, datetime)  # a string ending in +/- is never relative
        return absolute.replace(tzinfo=None)
    if value.isascii() and value.isdigit() and len(value) in (10, 12, 14):
        layouts = {10: ((2, False),), 12: ((2, True), (4, False)), 14: ((4, True),)}
        for year_width, with_seconds in layouts[len(value)]:
            try:
                return _date_from_digits(value, year_width, with_seconds)
            except ValueError:
                continue
        raise ReceiptError(f"receipt field {name!r} is {value!r}, which is not a valid date")
    raise ReceiptError(
        f"receipt field {name!r} is {_show(value)}: expected YYMMDDhhmm, YYMMDDhhmmss, "
        "YYYYMMDDhhmmss or an SMPP absolute time"
    )


def _date_from_digits(digits: str, year_width: int, with_seconds: bool) -> datetime:
    year = int(digits[:year_width])
    if year_width == 2:
        year += 2000
    rest = digits[year_width:]
    month, day, hour, minute = (int(rest[i : i + 2]) for i in range(0, 8, 2))
    second = int(rest[8:10]) if with_seconds else 0
    return datetime(year, month, day, hour, minute, second)


def _receipt(
    fields: _TextFields | None,
    *,
    message_id: str | None = None,
    state: MessageState | None = None,
    network_error_code: bytes | None = None,
) -> DeliveryReceipt:
    """Build a receipt from the text's fields and the TLVs' values (which win)."""
    message_id = message_id or (fields.message_id if fields else None)
    if message_id is None:
        raise ReceiptError("receipt has no message id: no 'id:' field and no receipted_message_id")
    stat = fields.stat if fields and fields.stat else None
    if stat is None and state is not None:
        stat = stat_for_state(state)
    if stat is None:
        raise ReceiptError("receipt has no status: no 'stat:' field and no message_state")
    if state is None:
        state = state_for_stat(stat)
    if fields is None:
        return DeliveryReceipt(
            message_id=message_id,
            stat=stat,
            state=state,
            network_error_code=network_error_code,
        )
    return DeliveryReceipt(
        message_id=message_id,
        stat=stat,
        state=state,
        err=fields.err,
        sub=fields.sub,
        dlvrd=fields.dlvrd,
        submit_date=fields.submit_date,
        done_date=fields.done_date,
        text=fields.text,
        extra=fields.extra,
        network_error_code=network_error_code,
    )


def parse_receipt_text(text: str | bytes) -> DeliveryReceipt:
    """Read the text of a delivery receipt.

    Lenient where vendors differ: fields in any order, separated by any whitespace; names in any
    case (``Text:``, ``STAT:``); ``submit_date``/``submitdate`` for ``submit date`` (and the
    same for ``done date``); ``sub``, ``dlvrd``, ``err``, the dates and ``text`` optional; the
    date layouts listed on :func:`_parse_date`; ``stat`` normalised by :func:`normalize_stat`;
    unknown ``name:value`` fields kept in ``extra``. Bytes are read as Latin-1, which never
    fails (the text of a receipt is ASCII in practice). ``text:`` takes the rest of the string.

    Strict where a guess would be wrong: :class:`ReceiptError` when there is no ``id`` or no
    ``stat`` (the message says which), for a field given twice, for text before the first
    field, and for a date that is not a date.
    """
    return _receipt(_read_text(text))


# --- writing the text -----------------------------------------------------------------------

#: How much of the message's text a receipt repeats: SMPP 3.4 Appendix B defines ``text`` as "the
#: first 20 characters of the short message" (some SMSCs send more; the parser keeps it all).
TEXT_LIMIT = 20

_WHITESPACE = re.compile(r"\s", re.ASCII)


def _token(value: str, name: str) -> str:
    if _WHITESPACE.search(value) or value != value.strip(_BLANK):
        raise ReceiptError(
            f"cannot write receipt field {name!r} = {_show(value)}: a value other than the text "
            "may hold no whitespace (it would read back as something else)"
        )
    return value


def _counter(value: str, name: str) -> str:
    value = _token(value, name)
    return value.zfill(3) if value.isascii() and value.isdigit() else value


def _format_date(value: datetime, name: str) -> str:
    if not 2000 <= value.year <= 2099:
        raise ReceiptError(
            f"cannot write receipt field {name!r} = {value}: two-digit years cover 2000-2099"
        )
    return f"{value:%y%m%d%H%M}"


def format_receipt(receipt: DeliveryReceipt) -> bytes:
    """The canonical text of a receipt, in the specification's layout, as Latin-1 bytes.

    Fields in the specification's order, those that are None left out; then ``extra``; then
    ``text`` last. Dates are written ``YYMMDDhhmm`` (seconds are below the format's resolution
    and dropped); digit-only ``sub``/``dlvrd`` are zero-padded to 3 digits; ``text`` is cut to
    its first :data:`TEXT_LIMIT` characters, as the de-facto format does.

    ``parse_receipt_text(format_receipt(r)) == r`` for every receipt the text can carry: no
    ``network_error_code``, ``state`` matching ``stat``, dates on the minute, 3-digit counters,
    a text of at most 20 characters without surrounding whitespace.

    Raises :class:`ReceiptError` for what would not read back: whitespace in a value other than
    the text, an ``extra`` key that is not a lower-case name or that names a known field, a year
    outside 2000-2099, a character outside Latin-1.
    """
    r = receipt
    parts = [f"id:{_token(r.message_id, 'id')}"]
    if r.sub is not None:
        parts.append(f"sub:{_counter(r.sub, 'sub')}")
    if r.dlvrd is not None:
        parts.append(f"dlvrd:{_counter(r.dlvrd, 'dlvrd')}")
    if r.submit_date is not None:
        parts.append(f"submit date:{_format_date(r.submit_date, 'submit date')}")
    if r.done_date is not None:
        parts.append(f"done date:{_format_date(r.done_date, 'done date')}")
    parts.append(f"stat:{_token(r.stat, 'stat')}")
    if r.err is not None:
        parts.append(f"err:{_token(r.err, 'err')}")
    for key, value in r.extra.items():
        if not _EXTRA_KEY.fullmatch(key) or key in _RESERVED_KEYS:
            raise ReceiptError(
                f"cannot write the extra receipt field {key!r}: its name must be lower-case "
                "letters, digits and '_' (starting with a letter) and not a known field's"
            )
        parts.append(f"{key}:{_token(value, key)}")
    if r.text is not None:
        parts.append(f"text:{r.text[:TEXT_LIMIT]}")
    line = " ".join(parts)
    try:
        return line.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ReceiptError(
            f"cannot write receipt {_show(line)}: {exc.object[exc.start : exc.end]!r} is not "
            "Latin-1"
        ) from None


# --- receipts in PDUs -----------------------------------------------------------------------


class ReceiptLike(Protocol):
    """What :func:`receipt_from_pdu` reads of a PDU: every ``DeliverSm`` and ``DataSm`` has it.

    ``short_message`` is read with ``getattr`` (``DataSm`` has none).
    """

    @property
    def esm_class(self) -> int: ...

    @property
    def optional_parameters(self) -> tuple[tuple[int, bytes], ...]: ...


#: ``esm_class`` message types that carry a receipt: SMSC delivery receipt (0x04), SME delivery
#: acknowledgement (0x08: the handset confirms delivery; Kannel reads these as receipts too) and
#: intermediate notification (0x20). Not 0x10, the manual/user acknowledgement: that is the
#: recipient's answer, a message in its own right.
RECEIPT_MESSAGE_TYPES = frozenset(
    {
        int(EsmClass.DELIVERY_RECEIPT),
        int(EsmClass.DELIVERY_ACK),
        int(EsmClass.INTERMEDIATE_NOTIFICATION),
    }
)

_RECEIPT_TAGS = frozenset(
    {
        int(Tag.RECEIPTED_MESSAGE_ID),
        int(Tag.MESSAGE_STATE),
        int(Tag.NETWORK_ERROR_CODE),
        int(Tag.MESSAGE_PAYLOAD),
    }
)


def is_receipt(pdu: ReceiptLike) -> bool:
    """Whether the ``esm_class`` of ``pdu`` marks it as a receipt (see RECEIPT_MESSAGE_TYPES)."""
    return (pdu.esm_class & ESM_CLASS_TYPE_MASK) in RECEIPT_MESSAGE_TYPES


def receipt_from_pdu(pdu: ReceiptLike) -> DeliveryReceipt | None:
    """The receipt a ``deliver_sm``/``data_sm`` carries, or None when it is not a receipt.

    ``esm_class`` decides (see :data:`RECEIPT_MESSAGE_TYPES`): a PDU whose message type is not a
    receipt gives None whatever it holds. For a receipt:

    - the id is the ``receipted_message_id`` TLV (its terminating NUL stripped) when present and
      not empty, else the text's ``id``;
    - ``state`` is the ``message_state`` TLV when present, else the one ``stat`` means;
    - ``network_error_code`` is the 3-octet TLV, kept raw;
    - the text is ``short_message``, or the ``message_payload`` TLV when ``short_message`` is
      empty (``data_sm`` has only that).

    When the TLVs give both the id and the state, a missing or unreadable text still gives a
    receipt (the text's fields are then None). Otherwise :class:`ReceiptError`, also for a
    receipt TLV of the wrong size or value, or one given twice.
    """
    if not is_receipt(pdu):
        return None
    message_id, state, network_error_code, payload = _receipt_tlvs(pdu.optional_parameters)
    raw_text: bytes = getattr(pdu, "short_message", b"") or payload or b""
    if not raw_text.strip(_BLANK.encode()):
        if message_id is None or state is None:
            raise ReceiptError(
                "receipt has no text and its TLVs lack "
                + ("receipted_message_id" if message_id is None else "message_state")
            )
        fields = None
    else:
        try:
            fields = _read_text(raw_text)
        except ReceiptError:
            if message_id is None or state is None:
                raise
            fields = None
    return _receipt(
        fields, message_id=message_id, state=state, network_error_code=network_error_code
    )


def _receipt_tlvs(
    tlvs: tuple[tuple[int, bytes], ...],
) -> tuple[str | None, MessageState | None, bytes | None, bytes | None]:
    """The receipt TLVs' values: (receipted_message_id, message_state, network_error_code,
    message_payload), each None when absent."""
    found: dict[int, bytes] = {}
    for tag, value in tlvs:
        if tag in _RECEIPT_TAGS:
            if tag in found:
                raise ReceiptError(f"receipt has the {Tag(tag).name.lower()} TLV twice")
            found[tag] = value

    message_id = None
    raw_id = found.get(Tag.RECEIPTED_MESSAGE_ID)
    if raw_id is not None:
        if raw_id.endswith(b"\x00"):
            raw_id = raw_id[:-1]
        if b"\x00" in raw_id:
            raise ReceiptError(f"receipted_message_id TLV {raw_id!r} has a NUL inside")
        message_id = raw_id.decode("latin-1") or None

    state = None
    raw_state = found.get(Tag.MESSAGE_STATE)
    if raw_state is not None:
        if len(raw_state) != 1:
            raise ReceiptError(
                f"message_state TLV has {len(raw_state)} octets ({raw_state!r}); it must have 1"
            )
        try:
            state = MessageState(raw_state[0])
        except ValueError:
            raise ReceiptError(
                f"message_state TLV is {raw_state[0]}, which is no SMPP 3.4 message state "
                f"(1-{max(MessageState)})"
            ) from None

    network_error_code = found.get(Tag.NETWORK_ERROR_CODE)
    if network_error_code is not None and len(network_error_code) != 3:
        raise ReceiptError(
            f"network_error_code TLV has {len(network_error_code)} octets "
            f"({network_error_code!r}); it must have 3"
        )
    return message_id, state, network_error_code, found.get(Tag.MESSAGE_PAYLOAD)
