"""Message-id normalisation: one canonical text for the different spellings of one SMSC id.

An SMSC names a message once in ``submit_sm_resp`` and again in its delivery receipt, and the
two spellings often differ: ``"0A1B2C"`` (hex) in the response and ``"662316"`` (the same number
in decimal) in the receipt text, or ``"00662316"`` with leading zeros, or another letter case.
To correlate them, both sides are reduced to a canonical form and compared as strings.

The canonical form is:

- for an id read as a number (``IdForm.HEX``, ``IdForm.DECIMAL``, or ``IdForm.AUTO`` on an id of
  decimal digits only): the decimal digits of its value, without leading zeros (``"0"`` for
  zero);
- for any other id (UUIDs, alphanumerics, or anything under ``IdForm.AS_IS``): the id with the
  surrounding whitespace and NULs stripped, in lower case.

A numeric canonical form is all ASCII digits; a text one read under HEX/DECIMAL/AUTO always
holds some other character. So a number and a text id never collide.

``AUTO`` never guesses hex: ``"123456"`` could be either base, and guessing from the letters
present (as Kannel does) mismatches the hex ids that happen to hold only digits. A provider whose
two sides use different bases says so with :class:`MessageIdFormat`.
"""

from __future__ import annotations

import enum
import re

from .errors import MessageIdError

__all__ = [
    "MAX_MESSAGE_ID_LENGTH",
    "IdForm",
    "MessageIdError",
    "MessageIdFormat",
    "message_ids_match",
    "normalize_message_id",
]

#: The longest message id SMPP 3.4 carries (a C-Octet String of 65 octets with its NUL).
MAX_MESSAGE_ID_LENGTH = 64

_DECIMAL = re.compile(r"[0-9]+")
_HEX = re.compile(r"[0-9A-Fa-f]+")
#: Stripped from both ends: ASCII whitespace and the NUL of a C string.
_BLANK = " \t\r\n\f\v\x00"




class IdForm(enum.Enum):
    """How to read one spelling of a message id."""

    #: Decimal digits are a number (leading zeros ignored); anything else is text.
    AUTO = "auto"
    #: Text only: strip, lower-case. Leading zeros count.
    AS_IS = "as_is"
    #: Hex digits are a hex number; anything else is text.
    HEX = "hex"
    #: Decimal digits are a decimal number; anything else is text (same as AUTO).
    DECIMAL = "decimal"


def normalize_message_id(message_id: str, *, form: IdForm = IdForm.AUTO) -> str:
    """The canonical form of ``message_id`` read as ``form`` (see the module docstring).

    >>> normalize_message_id("0A1B2C", form=IdForm.HEX)
    '662316'
    >>> normalize_message_id(" 00662316 ")
    '662316'
    >>> normalize_message_id("C87C2273-7EDB-4BC7-8D3A-7F57F21B625E", form=IdForm.HEX)
    'c87c2273-7edb-4bc7-8d3a-7f57f21b625e'

    Raises :class:`MessageIdError` for an empty id, and for a hex id longer than
    :data:`MAX_MESSAGE_ID_LENGTH` (no SMPP id is; converting it would be unbounded work).
    """
    text = message_id.strip(_BLANK)
    if not text:
        raise MessageIdError(f"message id {message_id!r} is empty")
    if form is IdForm.HEX and _HEX.fullmatch(text):
        if len(text) > MAX_MESSAGE_ID_LENGTH:
            raise MessageIdError(
                f"hex message id of {len(text)} characters; SMPP ids have at most "
                f"{MAX_MESSAGE_ID_LENGTH}"
            )
        return str(int(text, 16))
    if form in (IdForm.AUTO, IdForm.DECIMAL) and _DECIMAL.fullmatch(text):
        return text.lstrip("0") or "0"
    return text.lower()


def message_ids_match(
    a: str, b: str, *, a_form: IdForm = IdForm.AUTO, b_form: IdForm = IdForm.AUTO
) -> bool:
    """Whether ``a`` read as ``a_form`` and ``b`` read as ``b_form`` name the same message.

    >>> message_ids_match("0A1B2C", "00662316", a_form=IdForm.HEX, b_form=IdForm.DECIMAL)
    True
    """
    return normalize_message_id(a, form=a_form) == normalize_message_id(b, form=b_form)


class MessageIdFormat(enum.Enum):
    """How a provider spells its message ids: the per-provider ``message_id_format`` setting.

    Each value names the form of the id in ``submit_sm_resp`` (:attr:`resp_form`) and in the
    delivery receipt (:attr:`receipt_form`, applied to the receipt's id whether it came from the
    ``receipted_message_id`` TLV or the receipt text, as Kannel's ``msg-id-type`` does).
    """

    #: Decimal ids compared as numbers, everything else as case-insensitive text. The default.
    AUTO = "auto"
    #: Case-insensitive text on both sides; leading zeros count.
    AS_IS = "as_is"
    #: Decimal on both sides (Kannel ``msg-id-type = 0x00``).
    DECIMAL = "decimal"
    #: Hex on both sides (Kannel ``msg-id-type = 0x03``).
    HEX = "hex"
    #: Hex in submit_sm_resp, decimal in receipts (Vonage/Nexmo; Kannel ``0x01``).
    HEX_RESP_DECIMAL_RECEIPT = "hex_resp_decimal_receipt"
    #: Decimal in submit_sm_resp, hex in receipts (Kannel ``0x02``).
    DECIMAL_RESP_HEX_RECEIPT = "decimal_resp_hex_receipt"

    @property
    def resp_form(self) -> IdForm:
        """How to read the ``message_id`` of ``submit_sm_resp``."""
        return _FORMS[self][0]

    @property
    def receipt_form(self) -> IdForm:
        """How to read the message id of a delivery receipt."""
        return _FORMS[self][1]


_FORMS: dict[MessageIdFormat, tuple[IdForm, IdForm]] = {
    MessageIdFormat.AUTO: (IdForm.AUTO, IdForm.AUTO),
    MessageIdFormat.AS_IS: (IdForm.AS_IS, IdForm.AS_IS),
    MessageIdFormat.DECIMAL: (IdForm.DECIMAL, IdForm.DECIMAL),
    MessageIdFormat.HEX: (IdForm.HEX, IdForm.HEX),
    MessageIdFormat.HEX_RESP_DECIMAL_RECEIPT: (IdForm.HEX, IdForm.DECIMAL),
    MessageIdFormat.DECIMAL_RESP_HEX_RECEIPT: (IdForm.DECIMAL, IdForm.HEX),
}
