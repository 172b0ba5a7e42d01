"""The pure request parsing (smsgw.api.validation)."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsgw.api.validation import Invalid, parse_submit, parse_time, sender_problem


def test_parse_time() -> None:
    assert parse_time("2026-05-01T09:00:00Z") == 1777626000.0
    assert parse_time("2026-05-01T11:00:00+02:00") == 1777626000.0
    assert parse_time("2026-05-01T09:00:00.5z") == 1777626000.5
    assert parse_time(1777626000) == 1777626000.0
    for bad in ("2026-05-01", "2026-05-01T09:00:00", "2026-02-30T00:00:00Z", "soon", None, True):
        with pytest.raises(ValueError):
            parse_time(bad)


@given(st.datetimes(timezones=st.just(datetime.UTC)))
def test_parse_time_round_trips_rfc3339(moment: datetime.datetime) -> None:
    text = moment.replace(microsecond=0).isoformat()
    assert parse_time(text) == moment.replace(microsecond=0).timestamp()


@pytest.mark.parametrize("good", ["+4915112345678", "+12", "0049151", "ACME", "a b", "Shop-1&Co"])
def test_good_senders(good: str) -> None:
    assert sender_problem(good) is None


@pytest.mark.parametrize("bad", ["", "+", "+0123", "+1234567890123456", "123456789012345678",
                                 "12345678901a", "Ümlaut", "a/b", "+12ab"])  # fmt: skip
def test_bad_senders(bad: str) -> None:
    assert sender_problem(bad) is not None


def test_the_key_gives_client_and_default_callback() -> None:
    body = {"to": "+4915112345678", "from": "ACME", "text": "hi", "tags": ["a"]}
    request = parse_submit(body, client="shop", max_parts=1, default_callback="https://x/cb")
    assert request.client_id == "shop" and request.callback_url == "https://x/cb"
    assert request.tags == ("a",)
    own = parse_submit(
        {**body, "callback_url": "https://mine/cb"}, client="shop", max_parts=1,
        default_callback="https://x/cb",
    )  # fmt: skip
    assert own.callback_url == "https://mine/cb"


def test_max_parts_counts_gsm_septets() -> None:
    body = {"to": "1", "from": "ACME"}
    assert parse_submit({**body, "text": "x" * 160}, client="c", max_parts=1).text
    with pytest.raises(Invalid) as failure:
        parse_submit({**body, "text": "x" * 161}, client="c", max_parts=1)
    assert "2 SMS parts" in failure.value.errors["text"]
    with pytest.raises(Invalid):  # '€' is two septets: 81 of them need 2 parts
        parse_submit({**body, "text": "€" * 81}, client="c", max_parts=1)


@given(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=5))
def test_anything_is_a_request_or_named_errors(body: dict[str, object]) -> None:
    try:
        parse_submit(body, client="c", max_parts=10)
    except Invalid as exc:
        assert exc.errors and all(isinstance(v, str) and v for v in exc.errors.values())
