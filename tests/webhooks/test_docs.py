"""The verification snippet in docs/webhooks.md stays true: it accepts what the gateway signs
and refuses a tampered, re-signed-with-another-key or replayed request."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from smsgw.signing import sign

DOC = Path(__file__).parent.parent.parent / "docs" / "webhooks.md"


@pytest.fixture(scope="module")
def verify_webhook() -> Callable[..., bool]:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"<!-- verify-snippet[^>]*-->\n```python\n(.*?)```", text, re.DOTALL)
    assert match is not None, "the verify snippet is missing from docs/webhooks.md"
    namespace: dict[str, Any] = {}
    exec(compile(match.group(1), str(DOC), "exec"), namespace)
    function: Callable[..., bool] = namespace["verify_webhook"]
    return function


def headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "x-smsgw-timestamp": str(timestamp),
        "x-smsgw-signature": sign(secret, timestamp, body),
    }


def test_snippet_accepts_a_signed_request(verify_webhook: Callable[..., bool]) -> None:
    body = '{"event_id":"evt_1","event":"status","status":"délivré"}'.encode()
    now = int(time.time())  # wall-clock: the snippet checks against time.time()
    assert verify_webhook(b"s3cret", headers("s3cret", now, body), body)


def test_snippet_refuses_forgeries(verify_webhook: Callable[..., bool]) -> None:
    body = b'{"event_id":"evt_1"}'
    now = int(time.time())  # wall-clock
    assert not verify_webhook(b"s3cret", headers("s3cret", now, body), body + b" ")
    assert not verify_webhook(b"s3cret", headers("other", now, body), body)
    assert not verify_webhook(b"s3cret", headers("s3cret", now - 3600, body), body)
    bad = headers("s3cret", now, body) | {"x-smsgw-signature": "sha256=ü"}
    assert not verify_webhook(b"s3cret", bad, body)
    assert not verify_webhook(b"s3cret", {}, body)
