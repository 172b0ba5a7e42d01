"""The simulator's pure parts: option parsing, the token bucket, receipt queues, ids, receipts."""

from __future__ import annotations

import contextlib
import random
import re
import uuid
from types import MappingProxyType

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smpp_codec import DeliverSm, MessageState, decode, encode
from smpp_codec.constants import CommandStatus, DataCoding
from smpp_codec.receipt import receipt_from_pdu
from smsgw.simulator import (
    ConfigError,
    Faults,
    IdFormat,
    ReceiptConfig,
    ReceiptIdForm,
    SimulatorConfig,
    config_from_mapping,
    faults_from_mapping,
)
from smsgw.simulator.faults import Fault, FaultState, TokenBucket
from smsgw.simulator.receipts import ReceiptJob, ReceiptQueues, receipt_pdu, wants_receipt
from smsgw.simulator.stats import Counters
from smsgw.simulator.store import Address, Message, MessageIds
from smsgw.simulator.values import (
    OUTCOMES,
    boolean,
    count,
    err_codes,
    fraction,
    optional_int,
    optional_rate,
    optional_seconds,
    outcome_weights,
    positive_count,
    seconds,
    status,
    statuses,
)

# --- option values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("1.5", 1.5), ("250ms", 0.25), ("2s", 2.0), ("2 m", 120.0), ("1h", 3600.0), (".5s", 0.5),
     (3, 3.0), (0.1, 0.1), ("10MS", 0.01)],
)
def test_durations(text, value):
    assert seconds(text) == pytest.approx(value)


@pytest.mark.parametrize("bad", ["", "s", "-1", "1d", "1.2.3", "inf", True, None, [1]])
def test_bad_durations(bad):
    with pytest.raises(ConfigError):
        seconds(bad)


def test_optional_values_accept_off():
    assert optional_seconds("off") is None
    assert optional_seconds(None) is None
    assert optional_seconds("30s") == 30.0


@pytest.mark.parametrize(
    ("text", "value"),
    [("ESME_RTHROTTLED", 0x58), ("rthrottled", 0x58), ("0x58", 0x58), ("88", 88), (20, 20)],
)
def test_statuses_by_name_or_number(text, value):
    assert status(text) == value


def test_status_lists():
    assert statuses("ESME_RSYSERR, 0x64") == (8, 0x64)
    assert statuses(["ESME_RSYSERR"]) == (8,)
    for bad in ("", "ESME_ROK", 0, "nonsense", -1):
        with pytest.raises(ConfigError):
            statuses(bad)


def test_fractions_and_percentages():
    assert fraction("1%") == pytest.approx(0.01)
    assert fraction(1) == 1.0
    for bad in ("101%", -0.1, "x", True, 1.5):
        with pytest.raises(ConfigError):
            fraction(bad)


def test_outcome_weights():
    assert dict(outcome_weights("delivrd=9, UNDELIV=1")) == {"DELIVRD": 9.0, "UNDELIV": 1.0}
    for bad in ("DELIVERED=1", "DELIVRD", "DELIVRD=0", "DELIVRD=-1", {"EXPIRED": "x"}):
        with pytest.raises(ConfigError):
            outcome_weights(bad)


def test_err_codes_keep_defaults_for_outcomes_left_out():
    codes = err_codes("UNDELIV=069")
    assert codes["UNDELIV"] == "069"
    assert codes["DELIVRD"] == "000"
    with pytest.raises(ConfigError):
        err_codes("UNDELIV=0 1")


def test_booleans():
    assert boolean("yes") is True
    assert boolean("off") is False
    with pytest.raises(ConfigError):
        boolean("maybe")


@given(st.one_of(st.text(max_size=30), st.integers(), st.floats(), st.booleans(), st.none()))
def test_hostile_option_values_raise_only_config_errors(value):
    parsers = (seconds, optional_seconds, fraction, status, statuses, outcome_weights, err_codes,
               count, positive_count, optional_int, optional_rate, boolean)
    for parse in parsers:
        with contextlib.suppress(ConfigError):
            parse(value)


@given(st.integers(min_value=0, max_value=10**9))
def test_milliseconds_are_thousandths(ms):
    assert seconds(f"{ms}ms") == pytest.approx(ms / 1000)


# --- config ----------------------------------------------------------------------------------


def test_config_errors_name_the_bad_key():
    with pytest.raises(ConfigError, match=r"config\.receipts"):
        config_from_mapping({"receipts": {"delay": "soon"}})
    with pytest.raises(ConfigError, match=r"extra fields found .*nonsense"):
        config_from_mapping({"nonsense": 1})
    with pytest.raises(ConfigError, match="exceed 1"):
        Faults(throttle_fraction=0.6, permanent_error_fraction=0.6)
    with pytest.raises(ConfigError, match="UUID"):
        SimulatorConfig(id_format="uuid", receipts=ReceiptConfig(id_form="decimal"))
    with pytest.raises(ConfigError, match="text, TLVs, or both"):
        ReceiptConfig(text=False, tlvs=False)
    with pytest.raises(ConfigError, match="twice"):
        SimulatorConfig(accounts=["a:1", "a:2"])
    with pytest.raises(ConfigError, match=r"16|longer"):
        SimulatorConfig(accounts=["a" * 20 + ":x"])


@pytest.mark.parametrize("bad", [0, -1, "x", "0", 1.5, True])
def test_max_binds_must_be_a_positive_count(bad):
    with pytest.raises(ConfigError, match="max_binds"):
        SimulatorConfig(max_binds=bad)
    with pytest.raises(ConfigError, match="max_binds"):
        config_from_mapping({"max_binds": bad})


def test_max_binds_is_off_by_default_and_takes_counts():
    assert SimulatorConfig().max_binds is None
    assert SimulatorConfig(max_binds="off").max_binds is None
    assert SimulatorConfig(max_binds=1).max_binds == 1
    assert config_from_mapping({"max_binds": "3"}).max_binds == 3


def test_faults_from_mapping_changes_only_what_it_names():
    base = Faults(latency="1s", throttle_fraction=0.5)
    changed = faults_from_mapping({"throttle_fraction": "10%"}, base)
    assert (changed.latency, changed.throttle_fraction) == (1.0, 0.1)
    with pytest.raises(ConfigError, match="unknown fault"):
        faults_from_mapping({"latancy": 1})


def test_faults_are_off_by_default():
    faults = Faults()
    assert not faults.submission_faults
    assert not faults.delays
    state = FaultState(faults, random.Random(1), 0.0)
    assert all(state.submission("x", 0, float(t)) is None for t in range(100))
    assert state.refuse_bind(0.0) is None
    assert state.disconnect(10**6, bound=True) is None


# --- the token bucket ----------------------------------------------------------------------


@given(
    rate=st.floats(min_value=0.5, max_value=1000),
    gaps=st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=200),
)
def test_the_token_bucket_never_exceeds_its_rate_plus_burst(rate, gaps):
    now = 0.0
    bucket = TokenBucket(rate, now)
    accepted = []
    for gap in gaps:
        now += gap
        if bucket.take(now):
            accepted.append(now)
    # Over any span, at most the burst (capacity) plus what the rate refills.
    for i, start in enumerate(accepted):
        for j in range(i, len(accepted)):
            assert j - i + 1 <= bucket.capacity + rate * (accepted[j] - start) + 1e-6


@given(rate=st.integers(min_value=1, max_value=500), n=st.integers(min_value=1, max_value=50))
def test_the_token_bucket_accepts_a_steady_rate(rate, n):
    bucket = TokenBucket(float(rate), 0.0)
    assert all(bucket.take(i / rate) for i in range(n))


# --- receipt queues and ids -----------------------------------------------------------------


def make_message(message_id: str = "1", number: int = 1, **fields: object) -> Message:
    values: dict[str, object] = dict(
        message_id=message_id, number=number, system_id="s", service_type="",
        source=Address(1, 1, "4915112345"), destinations=(Address(1, 1, "4917600000"),),
        registered_delivery=1, data_coding=0, esm_class=0, content=b"hello",
        submitted_at=0.0, final_at=5.0, outcome="DELIVRD",
    )
    values.update(fields)
    return Message(**values)  # type: ignore[arg-type]


@given(
    limit=st.integers(min_value=1, max_value=20),
    pushes=st.lists(st.sampled_from(["a", "b", "c"]), max_size=80),
)
def test_receipt_queues_hold_at_most_their_limit_and_lose_nothing_silently(limit, pushes):
    queues = ReceiptQueues(limit)
    dropped = []
    jobs = []
    for i, system_id in enumerate(pushes):
        job = ReceiptJob(make_message(str(i), i, system_id=system_id),
                         Address(0, 0, "1"), 0.0)
        jobs.append(job)
        out = queues.push(job)
        if out is not None:
            dropped.append(out)
        assert len(queues) <= limit
    kept = []
    for system_id in "abc":
        while (job := queues.pop(system_id)) is not None:
            assert job.system_id == system_id
            kept.append(job)
    assert len(kept) + len(dropped) == len(pushes)
    assert {id(j) for j in kept} | {id(j) for j in dropped} == {id(j) for j in jobs}
    for system_id in "abc":  # first in, first out
        order = [int(j.message.message_id) for j in kept if j.system_id == system_id]
        assert order == sorted(order)


@pytest.mark.parametrize(
    ("form", "pattern"), [(IdFormat.HEX, r"[0-9A-F]{8}"), (IdFormat.DECIMAL, r"[0-9]+")]
)
def test_counter_ids_are_unique_and_well_formed(form, pattern):
    ids = MessageIds(form, random.Random(0))
    made = [ids.new() for _ in range(1000)]
    assert len({m for m, _ in made}) == 1000
    for message_id, number in made:
        assert re.fullmatch(pattern, message_id)
        assert int(message_id, 16 if form is IdFormat.HEX else 10) == number


def test_uuid_ids():
    ids = MessageIds(IdFormat.UUID, random.Random(0))
    made = {ids.new()[0] for _ in range(100)}
    assert len(made) == 100
    assert all(uuid.UUID(m).version == 4 for m in made)


@pytest.mark.parametrize(
    ("registered_delivery", "outcome", "wanted"),
    [(0, "DELIVRD", False), (1, "DELIVRD", True), (2, "DELIVRD", False), (2, "EXPIRED", True),
     (3, "UNDELIV", False), (0x1D, "UNDELIV", True)],
)
def test_wants_receipt(registered_delivery, outcome, wanted):
    assert wants_receipt(registered_delivery, outcome) is wanted


# --- receipts round trip through the codec's parser -----------------------------------------

_texts = st.one_of(
    st.text(max_size=40).map(lambda t: (t.encode("utf-16-be", "surrogatepass"), DataCoding.UCS2)),
    st.binary(max_size=40).map(lambda b: (b, DataCoding.BINARY)),
    st.text(alphabet="abcdefghij KLMNOP0123456789@", max_size=60).map(
        lambda t: (t.encode(), DataCoding.SMSC_DEFAULT)
    ),
)


@given(
    outcome=st.sampled_from(sorted(OUTCOMES)),
    number=st.integers(min_value=0x10000000, max_value=0x3FFFFFFF),
    id_form=st.sampled_from(list(ReceiptIdForm)),
    forms=st.sampled_from([(True, True), (True, False), (False, True)]),
    content=_texts,
)
def test_every_receipt_reads_back_with_the_codecs_parser(outcome, number, id_form, forms,
                                                         content):
    data, data_coding = content
    message = make_message(f"{number:X}", number, outcome=outcome, content=data,
                           data_coding=data_coding)
    config = ReceiptConfig(id_form=id_form, text=forms[0], tlvs=forms[1])
    from datetime import datetime

    pdu = receipt_pdu(ReceiptJob(message, message.destinations[0], 5.0), config,
                      datetime(2024, 5, 1, 12, 0), datetime(2024, 5, 1, 12, 3))
    pdu = decode(encode(attrs.evolve(pdu, sequence_number=1)))
    assert isinstance(pdu, DeliverSm)
    receipt = receipt_from_pdu(pdu)
    assert receipt is not None
    expected_id = {ReceiptIdForm.AS_SENT: f"{number:X}", ReceiptIdForm.HEX: f"{number:X}",
                   ReceiptIdForm.DECIMAL: str(number)}[id_form]
    assert receipt.message_id == expected_id
    assert receipt.state == OUTCOMES[outcome]
    assert receipt.stat == outcome
    if forms[0]:
        assert receipt.err == config.err[outcome]
    if forms[1] and outcome != "DELIVRD":
        assert receipt.network_error_code is not None
    assert receipt.state is not MessageState.ENROUTE


# --- stats -----------------------------------------------------------------------------------


def test_stats_snapshots_are_frozen_copies():
    counters = Counters()
    counters.received[4] += 2
    counters.faults[Fault.THROTTLE.value] += 1
    snap = counters.snapshot(messages_stored=1, receipts_scheduled=2, receipts_queued=3)
    counters.received[4] += 5
    assert snap.pdus_received == {"submit_sm": 2}
    assert isinstance(snap.pdus_received, MappingProxyType)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        snap.binds = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        snap.faults["x"] = 1  # type: ignore[index]
    line = snap.line()
    assert "rx=2" in line
    assert "throttle=1" in line
    assert "queued=5" in line


def test_unknown_command_ids_are_named_in_hex():
    counters = Counters()
    counters.received[0x42] += 1
    assert counters.snapshot(messages_stored=0, receipts_scheduled=0,
                             receipts_queued=0).pdus_received == {"0x00000042": 1}


def test_status_constants_are_the_codecs():
    assert status("ESME_RMSGQFUL") == CommandStatus.ESME_RMSGQFUL


def test_sessions_are_counted_per_system_id_with_their_peak():
    counters = Counters()
    for system_id in ("a", "a", "b"):
        counters.session_started(system_id)
    counters.session_ended("a")
    counters.session_ended("b")
    snap = counters.snapshot(messages_stored=0, receipts_scheduled=0, receipts_queued=0)
    assert snap.sessions == 1
    assert snap.sessions_by_account == {"a": 1}  # b, with none bound, left out
    assert snap.peak_sessions == {"a": 2, "b": 1}
    counters.session_started("a")
    counters.session_started("a")
    assert snap.peak_sessions == {"a": 2, "b": 1}  # a frozen copy
    assert isinstance(snap.peak_sessions, MappingProxyType)
    assert counters.snapshot(messages_stored=0, receipts_scheduled=0,
                             receipts_queued=0).peak_sessions == {"a": 3, "b": 1}
