"""Every error class end to end: throttling, temporary and permanent errors, dead letters and
replay, failover, no route, validity expiry, scheduling."""

from __future__ import annotations

import trio

from smpp_codec.constants import CommandStatus
from smsgw.config import RateLimitConfig, RetryPolicy, RouteConfig, RouteTarget
from smsgw.messages import Accepted, SubmitRequest
from smsgw.model import MessageStatus
from smsgw.retry import Outcome
from smsgw.simulator import Faults, ReceiptConfig

from .harness import (
    FakeClock,
    Harness,
    message_history,
    part_history,
    provider,
    wait_dead_letters,
    wait_status,
    wait_until,
)

S = MessageStatus


async def submit_one(gateway, **fields) -> str:  # type: ignore[no-untyped-def]
    fields.setdefault("to", "4915112345")
    fields.setdefault("source", "ACME")
    fields.setdefault("text", "hello")
    (result,) = await gateway.submit([SubmitRequest(**fields)])
    assert isinstance(result, Accepted), result
    return result.id


async def test_throttling_cuts_the_rate_and_retries_without_spending_attempts(
    harness: Harness,
) -> None:
    sim = await harness.simulator(faults=Faults(throttle_fraction=1.0))
    config = harness.config(
        [provider("a", sim.port)],
        retry=RetryPolicy(max_attempts=2, initial_delay=0.05, max_delay=0.1, jitter=0.0),
        rate_limit=RateLimitConfig(pause=0.02, decrease_factor=0.5, floor=0.5),
    )
    gateway = await harness.gateway(config)
    ceiling = gateway.current_rate("a")
    with trio.fail_after(20):
        message_id = await submit_one(gateway)
        # Four throttles per lease (three retried in place), then back to the queue: three
        # leases' worth is more than max_attempts=2 would allow if throttles counted.
        await wait_until(lambda: gateway.stats().throttled >= 12, what="12 throttles")
        assert gateway.current_rate("a") < ceiling
        sim.sim.set_faults(Faults())
        view = await wait_status(gateway, message_id, S.DELIVERED)
    stats = gateway.stats()
    assert stats.failed == 0 and stats.retried == 0
    assert sim.sim.stats.faults["throttle"] >= 12
    # Given back while throttled: queued again, with the reason.
    queued_again = [e for e in view.events if e.status is S.QUEUED and "throttled" in e.reason]
    assert queued_again and "ESME_RTHROTTLED" in queued_again[0].reason


async def test_a_temporary_error_is_retried_after_a_delay(any_harness: Harness) -> None:
    harness = any_harness
    sim = await harness.simulator(faults=Faults(temporary_error_fraction=1.0))
    config = harness.config(
        [provider("a", sim.port)],
        retry=RetryPolicy(max_attempts=20, initial_delay=0.2, max_delay=0.2, jitter=0.0),
    )
    gateway = await harness.gateway(config)
    with trio.fail_after(20):
        message_id = await submit_one(gateway)
        await wait_until(lambda: gateway.stats().retried >= 1, what="a retry")
        sim.sim.set_faults(Faults())
        view = await wait_status(gateway, message_id, S.DELIVERED)
    history = message_history(view)
    assert history[:3] == [S.QUEUED, S.SUBMITTING, S.QUEUED]
    assert history[-2:] == [S.SUBMITTED, S.DELIVERED]
    retry = next(e for e in view.events if e.status is S.QUEUED and e.reason.startswith("retry"))
    assert "ESME_RSYSERR from a" in retry.reason and "attempt 1" in retry.reason
    assert gateway.stats().failed == 0


async def test_attempts_exhausted_fail_the_message_into_the_dead_letter_queue(
    harness: Harness,
) -> None:
    sim = await harness.simulator(faults=Faults(temporary_error_fraction=1.0))
    gateway = await harness.gateway(harness.config([provider("a", sim.port)]))  # 3 attempts
    with trio.fail_after(20):
        message_id = await submit_one(gateway)
        view = await wait_status(gateway, message_id, S.FAILED)
        dead = await wait_dead_letters(gateway, message_id)
    assert "gave up after 3 attempt(s)" in view.reason
    assert sim.sim.stats.submits_rejected == 3
    assert [d.message.id for d in dead] == [message_id]
    assert "attempts: 3" in dead[0].reason
    assert gateway.stats().retried == 2


async def test_a_permanent_error_fails_at_once_and_a_replay_sends_it_again(
    any_harness: Harness,
) -> None:
    harness = any_harness
    sim = await harness.simulator(faults=Faults(permanent_error_fraction=1.0))
    gateway = await harness.gateway(harness.config([provider("a", sim.port)]))
    with trio.fail_after(20):
        message_id = await submit_one(gateway, client_ref="order-7")
        view = await wait_status(gateway, message_id, S.FAILED)
        assert view.reason.startswith("ESME_RINVDSTADR from a")
        assert sim.sim.stats.submits_rejected == 1  # no retry of a permanent error
        (dead,) = await wait_dead_letters(gateway, message_id)
        assert dead.message.id == message_id and "ESME_RINVDSTADR" in dead.reason

        sim.sim.set_faults(Faults())
        assert await gateway.replay_dead_letters([message_id, "no-such-id"]) == 1
        view = await wait_status(gateway, message_id, S.DELIVERED)
        assert await gateway.dead_letters() == []
    assert message_history(view) == [
        S.QUEUED,
        S.SUBMITTING,
        S.FAILED,
        S.QUEUED,
        S.SUBMITTING,
        S.SUBMITTED,
        S.DELIVERED,
    ]
    assert view.client_ref == "order-7"
    stats = gateway.stats()
    assert (stats.failed, stats.dead_lettered, stats.replayed) == (1, 1, 1)


async def test_a_replay_sends_only_the_parts_the_smsc_did_not_take(harness: Harness) -> None:
    # Answers held 0.3 s: the test sees part 2 arrive and makes the SMSC refuse what comes
    # next (part 3) before part 2 is answered.
    sim = await harness.simulator(faults=Faults(latency=0.3))
    gateway = await harness.gateway(harness.config([provider("a", sim.port)]))
    with trio.fail_after(20):
        message_id = await submit_one(gateway, text="x" * 400, receipt=False)  # 3 parts
        await wait_until(
            lambda: sim.sim.stats.pdus_received.get("submit_sm", 0) >= 2, what="part 2 sent"
        )
        sim.sim.set_faults(Faults(permanent_error_fraction=1.0))
        await wait_dead_letters(gateway, message_id)
        assert (sim.sim.stats.submits_accepted, sim.sim.stats.submits_rejected) == (2, 1)

        sim.sim.set_faults(Faults())
        assert await gateway.replay_dead_letters([message_id]) == 1
        view = await wait_status(gateway, message_id, S.SUBMITTED)
        await wait_until(lambda: gateway.stats().in_flight == 0, what="the replay done")
    # Parts 1 and 2 were not sent again: the SMSC saw one more submit_sm, part 3.
    assert sim.sim.stats.pdus_received.get("submit_sm", 0) == 4
    assert sim.sim.stats.submits_accepted == 3
    assert [p.status for p in view.parts] == [S.SUBMITTED] * 3
    assert gateway.stats().duplicates_detected == 0


async def test_a_mapped_error_fails_over_to_the_next_provider(harness: Harness) -> None:
    first = await harness.simulator(faults=Faults(temporary_error_fraction=1.0))
    second = await harness.simulator()
    config = harness.config(
        [
            provider(
                "a", first.port, status_map={int(CommandStatus.ESME_RSYSERR): Outcome.FAILOVER}
            ),
            provider("b", second.port),
        ],
    )
    gateway = await harness.gateway(config)
    with trio.fail_after(20):
        await wait_until(lambda: gateway.providers.healthy("b"))
        message_id = await submit_one(gateway)
        view = await wait_status(gateway, message_id, S.DELIVERED)
    assert view.provider == "b"
    reasons = [e.reason for e in view.events if e.part_number == 1 and e.status is S.SUBMITTING]
    assert reasons == ["submitting to a", "submitting to b"]
    assert first.sim.stats.submits_rejected == 1 and second.sim.stats.submits_accepted == 1
    assert gateway.stats().failovers == 1


async def test_a_provider_that_is_down_is_passed_over_for_the_next(harness: Harness) -> None:
    down = await harness.simulator(faults=Faults(refuse_binds_for=600))
    up = await harness.simulator()
    gateway = await harness.gateway(
        harness.config([provider("a", down.port), provider("b", up.port)])
    )
    with trio.fail_after(20):
        message_id = await submit_one(gateway)
        view = await wait_status(gateway, message_id, S.DELIVERED)
    assert view.provider == "b"
    assert down.sim.stats.submits_accepted == 0


async def test_a_message_no_route_matches_fails_with_the_reason(harness: Harness) -> None:
    sim = await harness.simulator()
    route = RouteConfig(providers=(RouteTarget("a"),), destination_prefixes=("44",))
    gateway = await harness.gateway(harness.config([provider("a", sim.port)], routes=[route]))
    with trio.fail_after(20):
        message_id = await submit_one(gateway, to="4915112345")
        view = await wait_status(gateway, message_id, S.FAILED)
        dead = await wait_dead_letters(gateway, message_id)
    assert view.reason.startswith('no route matches destination "4915112345"')
    assert [d.message.id for d in dead] == [message_id]
    assert sim.sim.stats.submits_accepted == 0


async def test_a_message_due_after_its_validity_expires_without_being_sent(
    harness: Harness,
) -> None:
    sim = await harness.simulator()
    clock = FakeClock()
    gateway = await harness.gateway(harness.config([provider("a", sim.port)]), clock=clock)
    with trio.fail_after(20):
        (accepted,) = await gateway.submit(
            [
                SubmitRequest(
                    to="4915112345", source="ACME", text="x", schedule_at=clock() + 60, validity=5
                )
            ]
        )
        assert isinstance(accepted, Accepted) and accepted.status is S.SCHEDULED
        clock.advance(120)
        view = await wait_status(gateway, accepted.id, S.EXPIRED)
    assert message_history(view) == [S.SCHEDULED, S.EXPIRED]
    assert "validity" in view.reason
    assert sim.sim.stats.pdus_received.get("submit_sm", 0) == 0


async def test_a_scheduled_message_waits_until_it_is_due(harness: Harness) -> None:
    sim = await harness.simulator()
    clock = FakeClock()
    gateway = await harness.gateway(harness.config([provider("a", sim.port)]), clock=clock)
    with trio.fail_after(20):
        (accepted,) = await gateway.submit(
            [SubmitRequest(to="4915112345", source="ACME", text="x", schedule_at=clock() + 60)]
        )
        assert isinstance(accepted, Accepted) and accepted.status is S.SCHEDULED
        # Several lease rounds go by: nothing is due.
        await trio.sleep(0.3)
        assert sim.sim.stats.pdus_received.get("submit_sm", 0) == 0
        view = await gateway.message(accepted.id)
        assert view is not None and view.status is S.SCHEDULED
        clock.advance(61)
        view = await wait_status(gateway, accepted.id, S.DELIVERED)
    assert message_history(view) == [S.SCHEDULED, S.SUBMITTING, S.SUBMITTED, S.DELIVERED]
    assert part_history(view, 1)[0] is S.SCHEDULED


async def test_a_message_waiting_for_a_connection_expires_with_its_validity_unsent(
    harness: Harness,
) -> None:
    """The SMSC refuses binds for 3 s and the provider's request timeout is 30 s: a message
    valid for 1 s waits for a connection no longer than its validity, ends expired, and is
    not sent once the connection comes (an SMSC told "valid for 1 s" 3 s late would still
    deliver it)."""
    sim = await harness.simulator(faults=Faults(refuse_binds_for=3.0))
    gateway = await harness.gateway(harness.config([provider("a", sim.port, request_timeout=30.0)]))
    with trio.fail_after(20):
        message_id = await submit_one(gateway, validity=1)
        view = await wait_status(gateway, message_id, S.EXPIRED)
        assert "validity" in view.reason
        # The connection comes: nothing goes out for the expired message.
        while not gateway.providers.healthy("a"):
            await trio.sleep(0.05)
        await trio.sleep(0.3)
    assert sim.sim.stats.pdus_received.get("submit_sm", 0) == 0
    assert gateway.stats().expired == 1 and await gateway.dead_letters() == []


async def test_the_validity_a_part_carries_counts_from_when_it_goes_out(
    harness: Harness,
) -> None:
    """Binds are refused for the simulator's first 3 s; the message, accepted at once, is
    valid for 5 s, and the SMSC would deliver it 4.5 s after taking it. Sent after the bind,
    the part says what is left (at most 4 s), not "valid 5 s": the SMSC lets it expire instead
    of delivering it after the client's validity."""
    sim = await harness.simulator(
        faults=Faults(refuse_binds_for=3.0), receipts=ReceiptConfig(delay=4.5)
    )
    gateway = await harness.gateway(harness.config([provider("a", sim.port, request_timeout=30.0)]))
    with trio.fail_after(20):
        message_id = await submit_one(gateway, validity=5)
        view = await wait_status(gateway, message_id, S.EXPIRED, timeout=15)
    if sim.sim.stats.submits_accepted:  # sent in time: the SMSC expired it
        assert view.reason.startswith("receipt from a: EXPIRED"), view.reason
    else:  # bound only after 5 s (a loaded machine): the gateway expired it unsent
        assert "validity" in view.reason


async def test_a_retry_that_would_outlive_the_validity_expires_the_message(
    harness: Harness,
) -> None:
    sim = await harness.simulator(faults=Faults(temporary_error_fraction=1.0))
    config = harness.config(
        [provider("a", sim.port)],
        retry=RetryPolicy(max_attempts=5, initial_delay=30.0, max_delay=60.0, jitter=0.0),
    )
    gateway = await harness.gateway(config)
    with trio.fail_after(20):
        message_id = await submit_one(gateway, validity=20)
        view = await wait_status(gateway, message_id, S.EXPIRED)
    assert view.reason.startswith("validity ends before another attempt could be made")
    assert "ESME_RSYSERR from a" in view.reason
    assert await gateway.dead_letters() == []
    assert gateway.stats().expired == 1 and sim.sim.stats.submits_rejected == 1


async def test_a_multipart_message_given_back_resends_only_its_unsent_parts(
    harness: Harness,
) -> None:
    # One submission per second: part 1 goes through, part 2 is throttled until the next
    # second, long enough for the message to be given back to the queue in between.
    sim = await harness.simulator(faults=Faults(tps_limit=1))
    gateway = await harness.gateway(harness.config([provider("a", sim.port)]))
    with trio.fail_after(20):
        message_id = await submit_one(gateway, text="two parts " * 20)
        view = await wait_status(gateway, message_id, S.DELIVERED)
    assert len(view.parts) == 2
    assert sim.sim.stats.submits_accepted == 2  # part 1 was not sent again
    assert part_history(view, 1) == [S.QUEUED, S.SUBMITTING, S.SUBMITTED, S.DELIVERED]
    given_back = [e for e in view.events if e.part_number == 2 and e.status is S.QUEUED]
    assert len(given_back) >= 2 and "throttled" in given_back[1].reason
    assert gateway.stats().duplicates_detected == 0
