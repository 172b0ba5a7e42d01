"""``smsgw demo`` runs end to end (it is the README's first command) and says what happened."""

from __future__ import annotations

import io

import pytest

from smsgw.demo import check, format_journey, run_demo, scenarios
from smsgw.messages import MessageView
from smsgw.model import MessageStatus, Part

pytestmark = pytest.mark.slow


async def test_demo_succeeds_and_prints_every_journey() -> None:
    out = io.StringIO()
    assert await run_demo(out) == 0, out.getvalue()
    text = out.getvalue()
    first, failover = scenarios()
    for scenario in [*first, failover]:
        assert scenario.title in text
    assert "final: delivered via primary" in text
    assert "final: failed via primary" in text
    assert "ESME_RINVDSTADR" in text
    assert "final: delivered via backup" in text
    assert "the gateway answered ESME_ROK" in text
    assert "stored: " in text and "Hi smsgw, this is a reply from a phone." in text
    assert "UNEXPECTED" not in text
    assert text.rstrip().endswith("ended as expected.")


async def test_demo_reports_a_timeout_and_exits_1() -> None:
    out = io.StringIO()
    assert await run_demo(out, timeout=0.001) == 1
    assert "did not finish within" in out.getvalue()


def _view(status: MessageStatus, provider: str, parts: int) -> MessageView:
    part = Part("m1", 1, status, 0.0, "", provider, "1")
    return MessageView(
        id="m1", status=status, reason="", source="s", destination="1", client=None,
        client_ref=None, created_at=0.0, updated_at=0.0, provider=provider,
        schedule_at=None, expires_at=None, parts=(part,) * parts, events=(),
    )  # fmt: skip


def test_check_names_each_difference() -> None:
    scenario = scenarios()[0][1]  # the 3-part Unicode message, delivered by primary
    assert check(scenario, _view(MessageStatus.DELIVERED, "primary", 3)) is None
    assert check(scenario, _view(MessageStatus.FAILED, "backup", 1)) == (
        "expected delivered, got failed; expected provider primary, got backup; "
        "expected 3 parts, got 1"
    )
    assert check(scenario, None) == "the message is unknown to the gateway"
    journey = format_journey(2, scenario, _view(MessageStatus.SUBMITTED, "primary", 3))
    assert journey[-2].endswith("UNEXPECTED: expected delivered, got submitted")
