"""Signatures: what the gateway signs, a receiver verifies; any change is caught."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsgw.signing import BadSignature, SignatureError, StaleTimestamp, sign, verify

NOW = 1_700_000_000


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign("k", NOW, b"{}") == f"sha256={expected}"
    assert sign(b"k", NOW, b"{}") == sign("k", NOW, b"{}")


@given(secret=st.text(min_size=1), body=st.binary(), skew=st.integers(-300, 300))
def test_what_is_signed_verifies(secret: str, body: bytes, skew: int) -> None:
    verify(secret, timestamp=str(NOW), body=body, signature=sign(secret, NOW, body), now=NOW + skew)


@given(body=st.binary(), other=st.binary())
def test_another_body_fails(body: bytes, other: bytes) -> None:
    signature = sign("k", NOW, body)
    if other != body:
        with pytest.raises(BadSignature):
            verify("k", timestamp=str(NOW), body=other, signature=signature, now=NOW)


def test_another_secret_or_timestamp_fails() -> None:
    signature = sign("k", NOW, b"{}")
    with pytest.raises(BadSignature):
        verify("other", timestamp=str(NOW), body=b"{}", signature=signature, now=NOW)
    # A replay with a fresh timestamp: the timestamp is inside the signed text.
    with pytest.raises(BadSignature):
        verify("k", timestamp=str(NOW + 600), body=b"{}", signature=signature, now=NOW + 600)


def test_stale_timestamp_fails_after_a_valid_signature() -> None:
    signature = sign("k", NOW, b"{}")
    with pytest.raises(StaleTimestamp, match="tolerance"):
        verify("k", timestamp=str(NOW), body=b"{}", signature=signature, now=NOW + 301)
    verify("k", timestamp=str(NOW), body=b"{}", signature=signature, now=NOW + 3000, tolerance=3600)


@pytest.mark.parametrize(
    ("timestamp", "signature", "error"),
    [
        (str(NOW), "", BadSignature),
        (str(NOW), "sha1=abc", BadSignature),
        (str(NOW), "sha256=", BadSignature),
        (str(NOW), "sha256=é", BadSignature),
        ("", "sha256=00", StaleTimestamp),
        ("-5", "sha256=00", StaleTimestamp),
        ("1.5", "sha256=00", StaleTimestamp),
        ("١٢٣", "sha256=00", StaleTimestamp),  # Arabic-Indic digits: isdigit() but not ASCII
    ],
)
def test_malformed_headers_raise_typed_errors(
    timestamp: str, signature: str, error: type[SignatureError]
) -> None:
    with pytest.raises(error):
        verify("k", timestamp=timestamp, body=b"{}", signature=signature, now=NOW)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        sign("", NOW, b"{}")
    with pytest.raises(TypeError):
        sign("k", NOW, "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        sign("k", 1.5, b"{}")  # type: ignore[arg-type]
