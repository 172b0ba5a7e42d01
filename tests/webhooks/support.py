"""Helpers shared by the webhook tests: deliverer settings with short timeouts and no jitter,
and outbox rows (the fake wall clock is tests/fakeclock.py)."""

from __future__ import annotations

import json
from typing import Any

import attrs

from smsgw.config import WebhooksConfig
from smsgw.model import NewNotification, NotificationKind

SECRET = "global-secret"


def settings(**changes: Any) -> WebhooksConfig:
    base = WebhooksConfig(
        secret=SECRET,
        timeout=0.5,
        retry_period=1000.0,
        backoff_initial=10.0,
        backoff_multiplier=2.0,
        backoff_max=100.0,
        jitter=0.0,
        concurrency=4,
        poll_interval=0.05,
    )
    return attrs.evolve(base, **changes)


def notifications(target: str, n: int) -> list[NewNotification]:
    return [
        NewNotification(
            kind=NotificationKind.STATUS if i % 2 else NotificationKind.INBOUND,
            target=target,
            body=json.dumps({"event": "status", "message_id": f"m{i}", "status": "delivered"}),
            subject=f"m{i}",
        )
        for i in range(n)
    ]
