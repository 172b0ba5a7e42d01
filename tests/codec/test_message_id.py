"""Message-id normalisation: exact canonical forms, provider formats, and properties."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smpp_codec.message_id import (
    MAX_MESSAGE_ID_LENGTH,
    IdForm,
    MessageIdError,
    MessageIdFormat,
    message_ids_match,
    normalize_message_id,
)

NORMALIZE_TABLE = [
    # (id, form, canonical form)
    ("0A1B2C", IdForm.HEX, "662316"),
    ("0a1b2c", IdForm.HEX, "662316"),
    ("00000A1B2C", IdForm.HEX, "662316"),
    ("33E95179", IdForm.HEX, "870928761"),  # jsmpp issue #56: Kannel's "id<870928761>"
    ("10C8F40D", IdForm.HEX, "281605133"),  # Jasmin issue #535: "281605133 (coded:10C8F40D)"
    ("123456", IdForm.HEX, "1193046"),  # digits only, still hex when the provider says so
    ("0", IdForm.HEX, "0"),
    ("000", IdForm.HEX, "0"),
    ("0972660181", IdForm.DECIMAL, "972660181"),  # Jasmin issue #1034
    ("0000029095", IdForm.AUTO, "29095"),
    (" 29095\x00", IdForm.AUTO, "29095"),
    ("000", IdForm.DECIMAL, "0"),
    ("0000029095", IdForm.AS_IS, "0000029095"),  # AS_IS: leading zeros count
    (" 6C7C7DE28BB3E961947700000000FE37 ", IdForm.AS_IS, "6c7c7de28bb3e961947700000000fe37"),
    # Not numbers in the form asked for: stripped lower-case text.
    ("C87C2273-7EDB-4BC7-8D3A-7F57F21B625E", IdForm.HEX, "c87c2273-7edb-4bc7-8d3a-7f57f21b625e"),
    ("C87C2273-7EDB-4BC7-8D3A-7F57F21B625E", IdForm.AUTO, "c87c2273-7edb-4bc7-8d3a-7f57f21b625e"),
    ("rdwjwxns18krxr9936ey96ymcw", IdForm.DECIMAL, "rdwjwxns18krxr9936ey96ymcw"),
    ("0A1B2C", IdForm.DECIMAL, "0a1b2c"),
    ("0A1B2C", IdForm.AUTO, "0a1b2c"),  # AUTO never guesses hex
    ("0x1A", IdForm.HEX, "0x1a"),  # no prefixes: text
    ("-12", IdForm.DECIMAL, "-12"),  # no signs: text
    ("\u0661\u0662", IdForm.DECIMAL, "\u0661\u0662"),  # Arabic-Indic digits are not ASCII digits
]


@pytest.mark.parametrize(("message_id", "form", "expected"), NORMALIZE_TABLE)
def test_normalize_table(message_id: str, form: IdForm, expected: str) -> None:
    assert normalize_message_id(message_id, form=form) == expected


def test_default_form_is_auto() -> None:
    assert normalize_message_id("00ABC") == normalize_message_id("00ABC", form=IdForm.AUTO)
    assert normalize_message_id("007") == "7"


@pytest.mark.parametrize("form", list(IdForm))
@pytest.mark.parametrize("blank", ["", "   ", "\x00", " \t\r\n\x00"])
def test_empty_ids_raise(form: IdForm, blank: str) -> None:
    with pytest.raises(MessageIdError, match="empty"):
        normalize_message_id(blank, form=form)


def test_hex_ids_longer_than_smpp_allows_raise() -> None:
    longest = "F" * MAX_MESSAGE_ID_LENGTH
    assert normalize_message_id(longest, form=IdForm.HEX) == str(16**MAX_MESSAGE_ID_LENGTH - 1)
    with pytest.raises(MessageIdError, match="at most 64"):
        normalize_message_id(longest + "F", form=IdForm.HEX)
    # Decimal and text ids need no arithmetic, so no limit: 5000 digits (beyond int()'s
    # default 4300-digit limit) still normalise.
    assert normalize_message_id("0" + "9" * 5000, form=IdForm.DECIMAL) == "9" * 5000


MATCH_TABLE = [
    # (a, a_form, b, b_form, same message?)
    ("0A1B2C", IdForm.HEX, "662316", IdForm.DECIMAL, True),
    ("0A1B2C", IdForm.HEX, "00662316", IdForm.DECIMAL, True),
    ("0a1b2c", IdForm.HEX, "0A1B2C", IdForm.HEX, True),
    ("0A1B2C", IdForm.HEX, "168108", IdForm.DECIMAL, False),
    ("0A1B2C", IdForm.AUTO, "662316", IdForm.AUTO, False),  # needs the provider's format
    ("00B8BE19", IdForm.HEX, "B8BE19", IdForm.HEX, True),  # Jasmin issue #1129
    ("0000029095", IdForm.AUTO, "29095", IdForm.AUTO, True),
    ("0000029095", IdForm.AS_IS, "29095", IdForm.AS_IS, False),
    ("ABC-1", IdForm.AS_IS, " abc-1 ", IdForm.AS_IS, True),
    ("10", IdForm.HEX, "10", IdForm.DECIMAL, False),
]


@pytest.mark.parametrize(("a", "a_form", "b", "b_form", "same"), MATCH_TABLE)
def test_message_ids_match_table(
    a: str, a_form: IdForm, b: str, b_form: IdForm, same: bool
) -> None:
    assert message_ids_match(a, b, a_form=a_form, b_form=b_form) is same
    assert message_ids_match(b, a, a_form=b_form, b_form=a_form) is same


@pytest.mark.parametrize(
    ("fmt", "resp_form", "receipt_form"),
    [
        (MessageIdFormat.AUTO, IdForm.AUTO, IdForm.AUTO),
        (MessageIdFormat.AS_IS, IdForm.AS_IS, IdForm.AS_IS),
        (MessageIdFormat.DECIMAL, IdForm.DECIMAL, IdForm.DECIMAL),
        (MessageIdFormat.HEX, IdForm.HEX, IdForm.HEX),
        (MessageIdFormat.HEX_RESP_DECIMAL_RECEIPT, IdForm.HEX, IdForm.DECIMAL),
        (MessageIdFormat.DECIMAL_RESP_HEX_RECEIPT, IdForm.DECIMAL, IdForm.HEX),
    ],
)
def test_provider_formats(fmt: MessageIdFormat, resp_form: IdForm, receipt_form: IdForm) -> None:
    assert fmt.resp_form is resp_form
    assert fmt.receipt_form is receipt_form
    # The config value is the enum value.
    assert MessageIdFormat(fmt.value) is fmt


def test_provider_format_correlates_the_vonage_case() -> None:
    fmt = MessageIdFormat("hex_resp_decimal_receipt")
    stored = normalize_message_id("0A1B2C", form=fmt.resp_form)
    assert normalize_message_id("0000662316", form=fmt.receipt_form) == stored


def test_unknown_provider_format_is_refused() -> None:
    with pytest.raises(ValueError, match="hex_and_decimal"):
        MessageIdFormat("hex_and_decimal")


# --- properties -----------------------------------------------------------------------------

ids = st.text(max_size=80)
numbers = st.integers(min_value=0, max_value=16**MAX_MESSAGE_ID_LENGTH - 1)
zeros = st.integers(min_value=0, max_value=5).map(lambda n: "0" * n)
blanks = st.sampled_from(["", " ", "\x00", "\t", " \r\n"])


@st.composite
def hex_spelling(draw: st.DrawFn, n: int) -> str:
    digits = draw(zeros) + f"{n:x}"
    if len(digits) > MAX_MESSAGE_ID_LENGTH:
        digits = digits.lstrip("0") or "0"
    cased = "".join(c.upper() if draw(st.booleans()) else c for c in digits)
    return draw(blanks) + cased + draw(blanks)


@given(numbers.flatmap(lambda n: st.tuples(st.just(n), hex_spelling(n), zeros, blanks)))
def test_hex_and_decimal_spellings_of_one_number_match(
    case: tuple[int, str, str, str],
) -> None:
    n, hex_id, leading_zeros, blank = case
    decimal_id = blank + leading_zeros + str(n)
    assert normalize_message_id(hex_id, form=IdForm.HEX) == str(n)
    assert normalize_message_id(decimal_id, form=IdForm.DECIMAL) == str(n)
    assert normalize_message_id(decimal_id, form=IdForm.AUTO) == str(n)
    assert message_ids_match(hex_id, decimal_id, a_form=IdForm.HEX, b_form=IdForm.DECIMAL)


@given(numbers, numbers)
def test_different_numbers_never_match(a: int, b: int) -> None:
    assert message_ids_match(f"{a:X}", str(b), a_form=IdForm.HEX, b_form=IdForm.DECIMAL) is (a == b)


@given(ids, st.sampled_from([IdForm.AUTO, IdForm.HEX, IdForm.DECIMAL]))
def test_canonical_forms_are_fixed_points_of_auto(message_id: str, form: IdForm) -> None:
    try:
        canonical = normalize_message_id(message_id, form=form)
    except MessageIdError:
        return
    assert normalize_message_id(canonical, form=IdForm.AUTO) == canonical


@given(ids, st.sampled_from(list(IdForm)))
def test_any_text_normalises_or_raises_message_id_error(message_id: str, form: IdForm) -> None:
    try:
        canonical = normalize_message_id(message_id, form=form)
    except MessageIdError:
        return
    assert canonical
    assert canonical == canonical.strip(" \t\r\n\f\v\x00")


@given(
    st.one_of(ids, st.from_regex(r"[0-9A-Fa-f]{1,20}", fullmatch=True)),
    st.sampled_from([IdForm.AUTO, IdForm.HEX, IdForm.DECIMAL]),
)
def test_numbers_and_text_never_collide(message_id: str, form: IdForm) -> None:
    """A numeric canonical form is all ASCII digits and comes only from a number; a text one
    (read under a numeric form) always holds something else, so the two never meet."""
    try:
        canonical = normalize_message_id(message_id, form=form)
    except MessageIdError:
        return
    stripped = message_id.strip(" \t\r\n\f\v\x00")
    base = 16 if form is IdForm.HEX else 10
    number = re.fullmatch(r"[0-9A-Fa-f]+" if base == 16 else r"[0-9]+", stripped)
    if number:
        assert canonical == str(int(stripped, base))
    else:
        assert canonical == stripped.lower()
        assert not (canonical.isascii() and canonical.isdigit())
