"""Error classification and the retry delays."""

from __future__ import annotations

import random

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from smpp_codec import CommandStatus
from smsgw.retry import (
    DEFAULT_OUTCOMES,
    UNKNOWN_STATUS_OUTCOME,
    Outcome,
    RetryPolicy,
    classify,
    classify_exception,
)
from smsgw.smpp.errors import (
    BindError,
    ConnectionLost,
    InvalidResponse,
    RequestTimeout,
    SessionClosed,
    SubmitRejected,
    ThrottledError,
)

S = CommandStatus


def test_the_table_covers_every_error_status_of_smpp_34() -> None:
    assert set(DEFAULT_OUTCOMES) == set(S) - {S.ESME_ROK}


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (S.ESME_RTHROTTLED, Outcome.THROTTLE),
        (S.ESME_RMSGQFUL, Outcome.THROTTLE),
        (S.ESME_RSYSERR, Outcome.RETRY),
        (S.ESME_RX_T_APPN, Outcome.RETRY),
        (S.ESME_RSUBMITFAIL, Outcome.RETRY),
        (S.ESME_RUNKNOWNERR, Outcome.RETRY),
        (S.ESME_RINVBNDSTS, Outcome.RETRY),
        (S.ESME_RINVDSTADR, Outcome.FAIL),
        (S.ESME_RINVSRCADR, Outcome.FAIL),
        (S.ESME_RINVMSGLEN, Outcome.FAIL),
        (S.ESME_RINVESMCLASS, Outcome.FAIL),
        (S.ESME_RINVDSTTON, Outcome.FAIL),
        (S.ESME_RX_R_APPN, Outcome.FAIL),
        (S.ESME_RINVOPTPARAMVAL, Outcome.FAIL),
        (S.ESME_RBINDFAIL, Outcome.FAILOVER),
        (S.ESME_RINVPASWD, Outcome.FAILOVER),
        (S.ESME_RINVSYSID, Outcome.FAILOVER),
        (S.ESME_RINVCMDID, Outcome.FAILOVER),
        (S.ESME_ROPTPARNOTALLWD, Outcome.FAILOVER),
    ],
)
def test_default_classification(status: int, outcome: Outcome) -> None:
    assert classify(status) is outcome


def test_unknown_statuses_are_retried() -> None:
    assert UNKNOWN_STATUS_OUTCOME is Outcome.RETRY
    assert classify(0x00000400) is Outcome.RETRY
    assert classify(0xFFFFFFFF) is Outcome.RETRY


def test_provider_overrides_win() -> None:
    overrides: dict[int, Outcome] = {S.ESME_RSYSERR: Outcome.FAIL, 0x401: Outcome.FAILOVER}
    assert classify(S.ESME_RSYSERR, provider_overrides=overrides) is Outcome.FAIL
    assert classify(0x401, provider_overrides=overrides) is Outcome.FAILOVER
    assert classify(S.ESME_RTHROTTLED, provider_overrides=overrides) is Outcome.THROTTLE


def test_success_is_not_classified() -> None:
    with pytest.raises(ValueError, match="ESME_ROK"):
        classify(S.ESME_ROK)


class Subclassed(RequestTimeout):
    """A subclass keeps the rule of its parent's name."""


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (ThrottledError(S.ESME_RTHROTTLED, None), Outcome.THROTTLE),
        (ThrottledError(S.ESME_RMSGQFUL, None), Outcome.THROTTLE),
        (SubmitRejected(S.ESME_RINVDSTADR, None), Outcome.FAIL),
        (SubmitRejected(S.ESME_RSYSERR, None), Outcome.RETRY),
        (SubmitRejected(0x0000040A, None), Outcome.RETRY),
        (RequestTimeout("no answer", sent=True), Outcome.RETRY),
        (RequestTimeout("not bound in time", sent=False), Outcome.FAILOVER),
        (Subclassed("x", sent=False), Outcome.FAILOVER),
        (ConnectionLost("link down", sent=True), Outcome.RETRY),
        (ConnectionLost("link down", sent=False), Outcome.RETRY),
        (InvalidResponse("garbled"), Outcome.RETRY),
        (SessionClosed("closing"), Outcome.FAILOVER),
        (BindError("refused", command_status=S.ESME_RINVPASWD), Outcome.FAILOVER),
        (BindError("no answer", command_status=None), Outcome.FAILOVER),
        (trio.TooSlowError(), Outcome.RETRY),
        (trio.BrokenResourceError(), Outcome.RETRY),
        (TimeoutError(), Outcome.RETRY),
        (ConnectionResetError(), Outcome.RETRY),
        (ConnectionRefusedError(), Outcome.FAILOVER),
    ],
)
def test_exception_outcomes(exc: BaseException, outcome: Outcome) -> None:
    assert classify_exception(exc) is outcome


def test_rejections_use_the_provider_overrides() -> None:
    overrides: dict[int, Outcome] = {S.ESME_RINVDSTADR: Outcome.FAILOVER}
    exc = SubmitRejected(S.ESME_RINVDSTADR, None)
    assert classify_exception(exc, provider_overrides=overrides) is Outcome.FAILOVER


@pytest.mark.parametrize("exc", [KeyError("bug"), TypeError("bug"), RuntimeError()])
def test_unknown_exceptions_are_left_to_the_caller(exc: BaseException) -> None:
    assert classify_exception(exc) is None


# --- delays ---------------------------------------------------------------------------------


class Fixed:
    """A "random" source that always draws the same number."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def test_delays_grow_exponentially_up_to_the_cap_then_stop() -> None:
    policy = RetryPolicy(max_attempts=7, initial_delay=5, multiplier=2, max_delay=60, jitter=0.2)
    no_jitter = Fixed(0.0)
    delays = [policy.next_delay(attempt, no_jitter) for attempt in range(1, 8)]
    assert delays == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0, None]


def test_jitter_only_shortens() -> None:
    policy = RetryPolicy(initial_delay=10, jitter=0.25)
    assert policy.next_delay(1, Fixed(0.0)) == 10.0
    assert policy.next_delay(1, Fixed(0.5)) == 8.75
    assert policy.next_delay(1, Fixed(0.999999)) == pytest.approx(7.5, abs=1e-4)


def test_no_retry_that_would_outlive_the_validity() -> None:
    policy = RetryPolicy(initial_delay=5, multiplier=2, jitter=0)
    assert policy.next_delay(1, Fixed(0), remaining_validity=5.01) == 5.0
    assert policy.next_delay(1, Fixed(0), remaining_validity=5.0) is None
    assert policy.next_delay(2, Fixed(0), remaining_validity=7.0) is None
    assert policy.next_delay(2, Fixed(0), remaining_validity=None) == 10.0


def test_attempts_are_one_based_and_huge_ones_stay_capped() -> None:
    policy = RetryPolicy(max_attempts=1000, multiplier=100, max_delay=3600, jitter=0)
    with pytest.raises(ValueError, match="1-based"):
        policy.next_delay(0)
    assert policy.next_delay(999, Fixed(0)) == 3600.0
    assert RetryPolicy(max_attempts=1).next_delay(1) is None


@given(
    max_attempts=st.integers(1, 50),
    initial=st.floats(0.001, 100),
    multiplier=st.floats(1, 10),
    extra=st.floats(0, 1000),
    jitter=st.floats(0, 1),
    attempt=st.integers(1, 60),
    seed=st.integers(0, 2**32),
    validity=st.none() | st.floats(0, 5000),
)
def test_delay_properties(
    max_attempts: int,
    initial: float,
    multiplier: float,
    extra: float,
    jitter: float,
    attempt: int,
    seed: int,
    validity: float | None,
) -> None:
    policy = RetryPolicy(
        max_attempts=max_attempts,
        initial_delay=initial,
        multiplier=multiplier,
        max_delay=initial + extra,
        jitter=jitter,
    )
    delay = policy.next_delay(attempt, random.Random(seed), remaining_validity=validity)
    base = min(policy.max_delay, initial * multiplier ** (attempt - 1))
    if attempt >= max_attempts:
        assert delay is None
        return
    if delay is None:
        # Only the validity can have stopped it, and only a delay reaching it does.
        assert validity is not None
        assert validity <= base
        return
    assert base * (1 - jitter) - 1e-9 <= delay <= base <= policy.max_delay
    assert validity is None or delay < validity
