"""The examples stay true: each runs to completion against a real simulator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_send_sms_blocking_against_the_simulator():
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "send_sms_blocking.py"), "--with-simulator",
         "--text", "Grüße €"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("SMSC simulator listening on 127.0.0.1:")
    assert lines[1].startswith("submitted 'Grüße €' to 447700900123: SMSC message id ")
    message_id = lines[1].rsplit(" ", 1)[1]
    assert lines[2] == f"receipt for {message_id}: DELIVRD"
