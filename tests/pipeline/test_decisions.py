"""The small pure decisions of the pipeline: concatenation references, reload settings that
keep AIMD state, and where webhooks go."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from smpp_codec.segment import SplitMode
from smsgw.config import ProviderRate
from smsgw.dlr import Notifier
from smsgw.model import MessageStatus, StatusChange
from smsgw.processor import Settings, reference_for

from .harness import gateway_config, provider


@given(st.text(min_size=1), st.sampled_from(list(SplitMode)))
def test_a_message_keeps_one_concatenation_reference(message_id: str, mode: SplitMode) -> None:
    reference = reference_for(message_id, mode)
    assert reference == reference_for(message_id, mode)
    assert 0 <= reference < (256 if mode is SplitMode.UDH8 else 65536)


def test_a_reload_keeps_the_aimd_state_of_providers_whose_rate_did_not_change() -> None:
    state = Path("/nonexistent")
    before = Settings.from_config(gateway_config(state, [provider("a", 1), provider("b", 2)]))
    before.limiter.on_throttle("a", 10.0)
    before.limiter.on_throttle("b", 10.0)
    cut_a = before.limiter.current_rate("a")
    assert cut_a < 100.0
    after = Settings.from_config(
        gateway_config(
            state,
            [
                provider("a", 1),
                provider("b", 2, rate=ProviderRate(per_second=50)),
                provider("c", 3),
            ],
        ),
        previous=before,
    )
    assert after.limiter.current_rate("a") == cut_a  # same rate settings: state kept
    assert after.limiter.current_rate("b") == 50.0  # new rate: starts afresh
    assert after.limiter.current_rate("c") == 100.0
    assert set(after.providers) == {"a", "b", "c"}


def _change(message_id: str = "m", client: str | None = "shop") -> StatusChange:
    return StatusChange(
        message_id=message_id,
        client=client,
        client_ref="r",
        old=MessageStatus.SUBMITTED,
        new=MessageStatus.DELIVERED,
        reason="receipt from a: DELIVRD",
        at=1.0,
    )


def test_webhooks_go_to_the_callback_url_then_the_clients_default_else_nowhere() -> None:
    notifier = Notifier(client_defaults={"shop": "https://shop.test/hook"}, remember=2)
    assert notifier.status(_change(), "https://cb.test")[0].target == "https://cb.test"
    assert notifier.status(_change())[0].target == "https://shop.test/hook"
    assert notifier.status(_change(client="other")) == []
    notifier.remember("m", "https://remembered.test")
    (note,) = notifier.status(_change())
    assert note.target == "https://remembered.test" and note.subject == "m"
    assert '"status":"delivered"' in note.body and '"previous":"submitted"' in note.body
    notifier.remember("x", "https://x.test")
    notifier.remember("y", "https://y.test")  # remember=2: "m" is forgotten
    assert notifier.status(_change())[0].target == "https://shop.test/hook"
