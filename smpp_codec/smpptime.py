"""The SMPP 3.4 time format (section 7.1.1): ``schedule_delivery_time``, ``validity_period``...

A time field holds 16 characters or nothing:

- absolute ``YYMMDDhhmmsstnnp``: a local time to the tenth of a second (``t``), then the distance
  of that local time from UTC in quarter hours (``nn``, 00-48) and its direction (``p``: ``+``
  ahead of UTC, ``-`` behind);
- relative ``YYMMDDhhmmss000R``: an amount of years, months, days... counted from "now" at the
  SMSC;
- the empty string (NULL): "immediately" or "the SMSC's default", depending on the field.

Two-digit years are read as 2000 + YY: the format has no century, and every time this library
can meet (receipts, schedules, expiries) lies in this century.

This module never reads the clock: a relative time becomes a datetime only against a ``now`` the
caller passes in.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta, timezone

import attrs

from .errors import TimeFormatError

__all__ = [
    "RelativeTime",
    "TimeFormatError",
    "format_absolute",
    "format_relative",
    "parse_time",
]

#: The length of every non-NULL SMPP time string.
TIME_LENGTH = 16

_QUARTER_HOUR = timedelta(minutes=15)
#: The largest offset from UTC the format can carry: 48 quarter hours.
_MAX_QUARTERS = 48

_TWO_DIGITS = "([0-9]{2})"
#: YY MM DD hh mm ss t nn p
_ABSOLUTE = re.compile(_TWO_DIGITS * 6 + "([0-9])" + _TWO_DIGITS + "([+-])")
#: YY MM DD hh mm ss 000R
_RELATIVE = re.compile(_TWO_DIGITS * 6 + "000R")




def _two_digits(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= 99:
        raise TimeFormatError(
            f"RelativeTime.{attribute.name} must be an int in 0..99 (two digits), got {value!r}"
        )


@attrs.frozen
class RelativeTime:
    """A relative SMPP time: amounts of each unit, counted from the moment the SMSC reads it.

    Each amount is what the two digits of its field say (0-99): no unit is carried into the next
    one (``hours=36`` stays 36 hours), because that is how the peer wrote it.
    """

    years: int = attrs.field(default=0, validator=_two_digits)
    months: int = attrs.field(default=0, validator=_two_digits)
    days: int = attrs.field(default=0, validator=_two_digits)
    hours: int = attrs.field(default=0, validator=_two_digits)
    minutes: int = attrs.field(default=0, validator=_two_digits)
    seconds: int = attrs.field(default=0, validator=_two_digits)

    def to_datetime(self, now: datetime) -> datetime:
        """The time this relative time points at, counted from ``now``.

        Years and months move the calendar date (a day that does not exist in the target month
        becomes that month's last day: January 31st + 1 month = February 28th or 29th); days,
        hours, minutes and seconds are then added as a :class:`~datetime.timedelta`. ``now`` may be
        naive or aware; the result is of the same kind, in the same time zone.
        """
        try:
            month_index = now.month - 1 + self.months + 12 * self.years
            year = now.year + month_index // 12
            month = month_index % 12 + 1
            day = min(now.day, calendar.monthrange(year, month)[1])
            moved = now.replace(year=year, month=month, day=day)
            return moved + timedelta(
                days=self.days, hours=self.hours, minutes=self.minutes, seconds=self.seconds
            )
        except (ValueError, OverflowError) as exc:
            raise TimeFormatError(f"{self} counted from {now} is out of range: {exc}") from None


def parse_time(s: str, *, now: datetime | None = None) -> datetime | RelativeTime | None:
    """Read an SMPP time string.

    Returns ``None`` for the empty string (NULL), a timezone-aware :class:`~datetime.datetime`
    for an absolute time, and a :class:`RelativeTime` for a relative one, or, when ``now`` is
    given, the datetime that relative time points at (``RelativeTime.to_datetime(now)``).

    The reading is strict: exactly 16 characters, ASCII digits where the format has digits, and
    every field in its range. Anything else raises :class:`TimeFormatError`.
    """
    if s == "":
        return None
    if len(s) != TIME_LENGTH:
        raise TimeFormatError(
            f"SMPP time {s!r} has {len(s)} characters; it must have exactly {TIME_LENGTH} "
            "(YYMMDDhhmmsstnnp, or YYMMDDhhmmss000R for a relative time) or be empty"
        )
    if s.endswith("R"):
        relative = _parse_relative(s)
        return relative if now is None else relative.to_datetime(now)
    return _parse_absolute(s)


def _parse_absolute(s: str) -> datetime:
    match = _ABSOLUTE.fullmatch(s)
    if match is None:
        raise TimeFormatError(
            f"SMPP time {s!r} is not YYMMDDhhmmsstnnp: 13 digits, a quarter-hour offset of two "
            "digits, then '+' or '-' (or 'R' at the end for a relative time)"
        )
    yy, month, day, hour, minute, second, tenths, quarters = (int(g) for g in match.groups()[:8])
    if quarters > _MAX_QUARTERS:
        raise TimeFormatError(
            f"SMPP time {s!r}: offset from UTC of {quarters} quarter hours; at most "
            f"{_MAX_QUARTERS} (12 hours) is allowed"
        )
    offset = quarters * _QUARTER_HOUR
    if match.group(9) == "-":
        offset = -offset
    try:
        return datetime(
            2000 + yy,
            month,
            day,
            hour,
            minute,
            second,
            tenths * 100_000,
            tzinfo=timezone(offset),
        )
    except ValueError as exc:
        raise TimeFormatError(f"SMPP time {s!r} is not a valid date and time: {exc}") from None


def _parse_relative(s: str) -> RelativeTime:
    match = _RELATIVE.fullmatch(s)
    if match is None:
        raise TimeFormatError(
            f"relative SMPP time {s!r} is not YYMMDDhhmmss000R: 12 digits, then '000R'"
        )
    years, months, days, hours, minutes, seconds = (int(g) for g in match.groups())
    return RelativeTime(years, months, days, hours, minutes, seconds)


def format_absolute(dt: datetime) -> str:
    """Write a timezone-aware datetime as an absolute SMPP time, ``YYMMDDhhmmsstnnp``.

    The datetime's own offset is kept when the format can carry it: a whole number of quarter
    hours, at most 12 hours either way. Any other offset (+05:53, or the +13:00 of Tonga, beyond
    the format's range) is written as the same instant in UTC (``00+``) rather than refused,
    since the instant, not the zone, is what the peer acts on. Fractions of a second below a
    tenth are dropped: a tenth is the format's resolution.

    Raises :class:`TimeFormatError` for a naive datetime (its instant is unknown) and for a year
    outside 2000-2099 (two-digit years).
    """
    offset = dt.utcoffset()
    if offset is None:
        raise TimeFormatError(
            f"cannot write the naive datetime {dt.isoformat()} as an SMPP time: its offset from "
            "UTC is unknown; attach a tzinfo"
        )
    quarters, rest = divmod(offset, _QUARTER_HOUR)
    if rest or abs(quarters) > _MAX_QUARTERS:
        dt = dt.astimezone(UTC)
        quarters = 0
    if not 2000 <= dt.year <= 2099:
        raise TimeFormatError(
            f"cannot write {dt.isoformat()} as an SMPP time: two-digit years cover 2000-2099 only"
        )
    sign = "-" if quarters < 0 else "+"
    return f"{dt:%y%m%d%H%M%S}{dt.microsecond // 100_000}{abs(quarters):02d}{sign}"


def format_relative(rt: RelativeTime | timedelta) -> str:
    """Write a relative SMPP time, ``YYMMDDhhmmss000R``.

    A :class:`~datetime.timedelta` is split into days, hours, minutes and seconds (never into
    months or years, whose length varies). It must be non-negative, a whole number of seconds
    and under 100 days; otherwise :class:`TimeFormatError` (pass a :class:`RelativeTime` to say
    "2 months").
    """
    if isinstance(rt, timedelta):
        rt = _relative_from_timedelta(rt)
    return (
        f"{rt.years:02d}{rt.months:02d}{rt.days:02d}"
        f"{rt.hours:02d}{rt.minutes:02d}{rt.seconds:02d}000R"
    )


def _relative_from_timedelta(delta: timedelta) -> RelativeTime:
    if delta < timedelta(0):
        raise TimeFormatError(f"a relative SMPP time cannot be negative, got {delta}")
    if delta.microseconds:
        raise TimeFormatError(
            f"a relative SMPP time counts whole seconds, got {delta} (round it first)"
        )
    if delta.days > 99:
        raise TimeFormatError(
            f"a relative SMPP time holds at most 99 days in its days field, got {delta}; "
            "pass a RelativeTime with months or years instead"
        )
    hours, rest = divmod(delta.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return RelativeTime(days=delta.days, hours=hours, minutes=minutes, seconds=seconds)
