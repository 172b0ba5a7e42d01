"""SMPP 3.4 time format (section 7.1.1): tables of exact strings, then round-trip properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smpp_codec.smpptime import (
    RelativeTime,
    TimeFormatError,
    format_absolute,
    format_relative,
    parse_time,
)


def tz(minutes: int) -> timezone:
    return timezone(timedelta(minutes=minutes))


# --- absolute times -------------------------------------------------------------------------

ABSOLUTE_TABLE = [
    # (string, the datetime it means)
    ("210413101300004+", datetime(2021, 4, 13, 10, 13, 0, tzinfo=tz(60))),
    ("000101000000000+", datetime(2000, 1, 1, tzinfo=UTC)),
    ("991231235959948-", datetime(2099, 12, 31, 23, 59, 59, 900_000, tzinfo=tz(-12 * 60))),
    ("240229120000522+", datetime(2024, 2, 29, 12, 0, 0, 500_000, tzinfo=tz(5 * 60 + 30))),
    ("180711070003912+", datetime(2018, 7, 11, 7, 0, 3, 900_000, tzinfo=tz(3 * 60))),
    ("230615083000123-", datetime(2023, 6, 15, 8, 30, 0, 100_000, tzinfo=tz(-(5 * 60 + 45)))),
]


@pytest.mark.parametrize(("text", "expected"), ABSOLUTE_TABLE)
def test_absolute_table_both_ways(text: str, expected: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == expected
    assert isinstance(parsed, datetime)
    assert parsed.utcoffset() == expected.utcoffset()
    assert format_absolute(expected) == text


def test_minus_zero_offset_reads_as_utc_and_writes_as_plus() -> None:
    parsed = parse_time("210413101300000-")
    assert parsed == datetime(2021, 4, 13, 10, 13, tzinfo=UTC)
    assert isinstance(parsed, datetime)
    assert format_absolute(parsed) == "210413101300000+"


def test_empty_string_is_null() -> None:
    assert parse_time("") is None
    assert parse_time("", now=datetime(2024, 1, 1)) is None


def test_two_digit_years_are_this_century() -> None:
    parsed = parse_time("690101000000000+")
    assert isinstance(parsed, datetime)
    assert parsed.year == 2069  # not 1969, as strptime's %y would say


def test_absolute_ignores_now() -> None:
    assert parse_time("210413101300004+", now=datetime(1999, 1, 1)) == ABSOLUTE_TABLE[0][1]


BAD_TIMES = [
    # (string, a word the error message must contain)
    ("2104131013", "16"),
    ("2104131013000004+", "16"),
    ("21041310130000 +", "YYMMDDhhmmsstnnp"),
    ("21041310130000+4", "YYMMDDhhmmsstnnp"),
    ("210413101300004*", "YYMMDDhhmmsstnnp"),
    ("2104131O1300004+", "YYMMDDhhmmsstnnp"),  # a letter O
    ("\uff1210413101300004+", "YYMMDDhhmmsstnnp"),  # a full-width digit two
    ("211313101300004+", "month"),
    ("210013101300004+", "month"),
    ("210230101300004+", "day"),
    ("230229101300004+", "day"),  # not a leap year
    ("210413241300004+", "hour"),
    ("210413106000004+", "minute"),
    ("210413101360004+", "second"),
    ("210413101300049+", "48"),
    ("210413101300099-", "48"),
    ("000001020304001R", "000R"),
    ("00000102030400 R", "000R"),
    ("0000010203040a0R", "000R"),
]


@pytest.mark.parametrize(("text", "word"), BAD_TIMES)
def test_bad_times_raise_a_clear_error(text: str, word: str) -> None:
    with pytest.raises(TimeFormatError, match=word) as info:
        parse_time(text)
    assert repr(text) in str(info.value)


def test_format_absolute_refuses_naive_datetimes() -> None:
    with pytest.raises(TimeFormatError, match="naive"):
        format_absolute(datetime(2024, 1, 1))


@pytest.mark.parametrize("year", [1999, 2100])
def test_format_absolute_refuses_years_outside_the_century(year: int) -> None:
    with pytest.raises(TimeFormatError, match="2000-2099"):
        format_absolute(datetime(year, 6, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("dt", "expected"),
    [
        # +05:53 is no whole number of quarter hours: the same instant in UTC.
        (datetime(2024, 3, 1, 12, 0, tzinfo=tz(5 * 60 + 53)), "240301060700000+"),
        # Tonga's +13:00 is beyond the format's 12 hours.
        (datetime(2024, 3, 1, 12, 0, tzinfo=tz(13 * 60)), "240229230000000+"),
        (datetime(2024, 3, 1, 12, 0, tzinfo=tz(-(12 * 60 + 15))), "240302001500000+"),
        # Offsets with seconds (historic local mean times) too.
        (datetime(2024, 3, 1, 12, 0, tzinfo=timezone(timedelta(seconds=61))), "240301115859000+"),
    ],
)
def test_format_absolute_writes_unrepresentable_offsets_in_utc(dt: datetime, expected: str) -> None:
    assert format_absolute(dt) == expected
    assert parse_time(expected) == dt


def test_format_absolute_truncates_below_tenths() -> None:
    dt = datetime(2024, 3, 1, 12, 0, 0, 199_999, tzinfo=UTC)
    assert format_absolute(dt) == "240301120000100+"


# --- relative times -------------------------------------------------------------------------


def test_relative_table_both_ways() -> None:
    rt = RelativeTime(years=1, months=2, days=3, hours=4, minutes=5, seconds=6)
    assert parse_time("010203040506000R") == rt
    assert format_relative(rt) == "010203040506000R"
    assert parse_time("000000000000000R") == RelativeTime()
    assert format_relative(RelativeTime()) == "000000000000000R"
    # Amounts are not carried into the next unit: 99 hours stay 99 hours.
    assert parse_time("000000999999000R") == RelativeTime(hours=99, minutes=99, seconds=99)


def test_relative_with_now_gives_a_datetime() -> None:
    now = datetime(2024, 1, 15, 10, 0, tzinfo=UTC)
    assert parse_time("000001020304000R", now=now) == datetime(2024, 1, 16, 12, 3, 4, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "rt", "expected"),
    [
        (datetime(2024, 1, 31), RelativeTime(months=1), datetime(2024, 2, 29)),
        (datetime(2023, 1, 31), RelativeTime(months=1), datetime(2023, 2, 28)),
        (datetime(2024, 2, 29), RelativeTime(years=1), datetime(2025, 2, 28)),
        (datetime(2024, 11, 30), RelativeTime(months=3), datetime(2025, 2, 28)),
        (datetime(2024, 5, 10), RelativeTime(years=2, months=14), datetime(2027, 7, 10)),
        (
            datetime(2024, 12, 31, 23, 0, tzinfo=tz(120)),
            RelativeTime(hours=1, minutes=30),
            datetime(2025, 1, 1, 0, 30, tzinfo=tz(120)),
        ),
        (datetime(2024, 1, 1), RelativeTime(days=99, hours=99), datetime(2024, 4, 13, 3)),
    ],
)
def test_relative_to_datetime(now: datetime, rt: RelativeTime, expected: datetime) -> None:
    result = rt.to_datetime(now)
    assert result == expected
    assert result.tzinfo == expected.tzinfo


def test_relative_to_datetime_out_of_range() -> None:
    with pytest.raises(TimeFormatError, match="out of range"):
        RelativeTime(years=1).to_datetime(datetime(9999, 6, 1))


@pytest.mark.parametrize("value", [-1, 100, 1.5, "1"])
def test_relative_time_fields_are_two_digits(value: object) -> None:
    with pytest.raises(TimeFormatError, match=r"0\.\.99"):
        RelativeTime(days=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(0), "000000000000000R"),
        (timedelta(days=3, hours=1, minutes=2, seconds=5), "000003010205000R"),
        (timedelta(hours=48), "000002000000000R"),
        (timedelta(days=99, seconds=86_399), "000099235959000R"),
    ],
)
def test_format_relative_from_timedelta(delta: timedelta, expected: str) -> None:
    assert format_relative(delta) == expected


@pytest.mark.parametrize(
    ("delta", "word"),
    [
        (timedelta(seconds=-1), "negative"),
        (timedelta(seconds=1, milliseconds=500), "whole seconds"),
        (timedelta(days=100), "99 days"),
    ],
)
def test_format_relative_refuses_what_it_cannot_write(delta: timedelta, word: str) -> None:
    with pytest.raises(TimeFormatError, match=word):
        format_relative(delta)


# --- properties -----------------------------------------------------------------------------

quarter_offsets = st.integers(min_value=-48, max_value=48).map(lambda q: tz(15 * q))
representable_datetimes = st.builds(
    lambda dt, tenths, zone: dt.replace(microsecond=tenths * 100_000, tzinfo=zone),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59)),
    st.integers(min_value=0, max_value=9),
    quarter_offsets,
)


@given(representable_datetimes)
def test_absolute_round_trip_from_datetime(dt: datetime) -> None:
    text = format_absolute(dt)
    assert len(text) == 16
    parsed = parse_time(text)
    assert parsed == dt
    assert isinstance(parsed, datetime)
    assert parsed.utcoffset() == dt.utcoffset()


absolute_strings = st.builds(
    lambda digits, tenths, quarters, sign: f"{digits}{tenths}{quarters:02d}{sign}",
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59)).map(
        lambda d: d.strftime("%y%m%d%H%M%S")
    ),
    st.integers(min_value=0, max_value=9),
    st.integers(min_value=1, max_value=48),  # 00- is written back as 00+ (see above)
    st.sampled_from("+-"),
)


@given(absolute_strings)
def test_absolute_round_trip_from_string(text: str) -> None:
    parsed = parse_time(text)
    assert isinstance(parsed, datetime)
    assert format_absolute(parsed) == text


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30), timezones=st.just(UTC)
    ),
    st.integers(min_value=-24 * 3600 + 1, max_value=24 * 3600 - 1),
)
def test_any_aware_datetime_keeps_its_instant(base: datetime, offset_seconds: int) -> None:
    dt = base.astimezone(timezone(timedelta(seconds=offset_seconds)))
    parsed = parse_time(format_absolute(dt))
    assert isinstance(parsed, datetime)
    # The same instant, to the tenth of a second the format holds.
    assert timedelta(0) <= dt - parsed < timedelta(milliseconds=100)


relative_times = st.builds(
    RelativeTime,
    *(st.integers(min_value=0, max_value=99) for _ in range(6)),
)


@given(relative_times)
def test_relative_round_trip(rt: RelativeTime) -> None:
    text = format_relative(rt)
    assert parse_time(text) == rt
    assert format_relative(parse_time(text)) == text  # type: ignore[arg-type]


@given(
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=99, seconds=86_399)).map(
        lambda d: timedelta(seconds=int(d.total_seconds()))
    ),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1)),
)
def test_relative_from_timedelta_points_where_the_timedelta_does(
    delta: timedelta, now: datetime
) -> None:
    assert parse_time(format_relative(delta), now=now) == now + delta


@given(st.text(max_size=20))
def test_any_text_parses_or_raises_time_format_error(text: str) -> None:
    try:
        result = parse_time(text)
    except TimeFormatError:
        return
    if result is not None:
        assert isinstance(result, datetime | RelativeTime)
        assert len(text) == 16


@given(st.text(alphabet="0123456789+-R", min_size=16, max_size=16))
def test_near_miss_strings_parse_or_raise_time_format_error(text: str) -> None:
    try:
        result = parse_time(text)
    except TimeFormatError:
        return
    if isinstance(result, datetime):
        expected = text[:-1] + "+" if text.endswith("00-") else text
        assert format_absolute(result) == expected
    else:
        assert isinstance(result, RelativeTime)
        assert format_relative(result) == text
