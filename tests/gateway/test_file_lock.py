"""The lock that keeps a second gateway off a gateway's files (:mod:`smsgw.file_lock`): real
``flock(2)`` locks, held in this process and by a child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from smsgw.errors import SetupError
from smsgw.file_lock import hold_lock, lock_path

KEY = "[database] path"

# A process that is not the gateway holds the lock the way flock(2) is documented, writes its
# pid, says so, and waits to be killed.
HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, b"%d\\n" % os.getpid())
print("held", flush=True)
sys.stdin.read()
"""


def test_a_second_holder_is_refused_naming_the_file_the_key_and_the_pid(tmp_path: Path) -> None:
    db = tmp_path / "smsgw.sqlite3"
    with hold_lock(db, KEY), pytest.raises(SetupError) as refused, hold_lock(db, KEY):
        raise AssertionError("a second holder got the lock")
    assert str(refused.value) == (
        f"{db} is in use by another gateway (pid {os.getpid()}): stop it first, or give this"
        f" one its own {KEY}"
    )
    assert lock_path(db).read_text() == f"{os.getpid()}\n"


def test_the_lock_is_free_again_after_the_block(tmp_path: Path) -> None:
    db = tmp_path / "smsgw.sqlite3"
    with hold_lock(db, KEY):
        pass
    with hold_lock(db, KEY):
        pass


def test_each_file_has_its_own_lock(tmp_path: Path) -> None:
    with (
        hold_lock(tmp_path / "smsgw.sqlite3", KEY),
        hold_lock(tmp_path / "queue.sqlite3", "[queue.embedded] path"),
    ):
        pass


def test_another_process_holds_it_until_it_is_killed(tmp_path: Path) -> None:
    db = tmp_path / "smsgw.sqlite3"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock_path(db))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(SetupError, match=rf"\(pid {holder.pid}\)"), hold_lock(db, KEY):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)  # no clean-up of its own: the kernel releases it
        holder.communicate(timeout=10)
    with hold_lock(db, KEY):
        assert lock_path(db).read_text() == f"{os.getpid()}\n"  # its pid is gone


def test_a_lock_file_that_cannot_be_made_names_the_key(tmp_path: Path) -> None:
    db = tmp_path / "missing" / "smsgw.sqlite3"
    expected = r"cannot open .*smsgw\.sqlite3\.lock \(\[database\] path\)"
    with pytest.raises(SetupError, match=expected), hold_lock(db, KEY):
        pass
