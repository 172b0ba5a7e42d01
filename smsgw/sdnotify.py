"""The systemd notify protocol (``sd_notify(3)``): a few datagrams to ``$NOTIFY_SOCKET``.

With ``Type=notify`` systemd waits for ``READY=1`` before it calls the service started, reads
``STOPPING=1`` / ``RELOADING=1`` as state changes, and with ``WatchdogSec=`` restarts the
service when ``WATCHDOG=1`` pings stop for that long. The daemon pings from a task in the main
Trio loop (:func:`watchdog_pings`), so a loop that is stuck (a blocking call, a busy task that
never yields) stops the pings and is caught; a thread could not tell.

Outside systemd (no ``$NOTIFY_SOCKET``) every call does nothing. A send never blocks and never
raises: losing a notification must not stop the gateway (systemd's own timeouts catch a
service that never reports).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

import trio

__all__ = ["SystemdNotifier", "watchdog_pings"]

log = logging.getLogger("smsgw.sdnotify")


def _address(value: str) -> str | bytes:
    """``@name`` is a Linux abstract-namespace socket: a NUL byte takes the ``@``'s place."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode("utf-8")
    return value


class SystemdNotifier:
    """Sends notifications to ``socket_path`` (None: nowhere). :meth:`from_environ` is the usual
    way to make one; ``watchdog_interval`` is how often to ping (None: no watchdog)."""

    def __init__(self, socket_path: str | None, watchdog_interval: float | None = None) -> None:
        self.socket_path = socket_path
        self.watchdog_interval = watchdog_interval

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` (the watchdog is ours
        only if ``WATCHDOG_PID`` is unset or our pid). Pings go at half the watchdog period, as
        ``sd_watchdog_enabled(3)`` advises."""
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET") or None
        interval: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        ours = not pid or (pid.isdigit() and int(pid) == os.getpid())
        if path is not None and usec.isdigit() and int(usec) > 0 and ours:
            interval = int(usec) / 1e6 / 2
        return cls(path, interval)

    @property
    def enabled(self) -> bool:
        return self.socket_path is not None

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` fields in one datagram; False if it could not be sent."""
        if self.socket_path is None:
            return False
        message = "\n".join(fields).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto(message, _address(self.socket_path))
        except OSError as exc:
            log.warning("systemd notification %r not sent: %s", fields[0] if fields else "", exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *_status(status))

    def reloading(self) -> bool:
        # systemd (Type=notify-reload) wants the monotonic time the reload started, in
        # microseconds of CLOCK_MONOTONIC: a protocol field, not a timer.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *_status(status))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.send(*_status(text))


def _status(text: str | None) -> list[str]:
    # One datagram field per line: a newline in the text would start a bogus field.
    return [] if text is None else ["STATUS=" + " ".join(text.splitlines())]


async def watchdog_pings(notifier: SystemdNotifier) -> None:
    """Ping the watchdog every ``watchdog_interval`` seconds until cancelled (returns at once
    without a watchdog). Runs in the main loop on purpose: see the module docstring."""
    interval = notifier.watchdog_interval
    if interval is None:
        return
    while True:
        notifier.watchdog()
        await trio.sleep(interval)
