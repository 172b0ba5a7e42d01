"""Errors shared by the gateway's parts (most errors live with the code that raises them)."""

from __future__ import annotations

__all__ = ["SetupError", "lone"]


class SetupError(OSError):
    """A resource the gateway needs cannot be used (a directory it cannot create, an address
    it cannot listen on): the message says which, with its configuration keys. The daemon
    reports it in one line, without a traceback, and exits with EX_UNAVAILABLE (69)."""


def lone(error: BaseException) -> BaseException:
    """The one exception in a nest of single-exception groups (``error`` itself if it is not
    a group); a group of several stays as it is."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error
