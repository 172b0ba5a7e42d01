"""The aggregated status of a multipart message, from the statuses of its parts (pure).

The rule, in two cases:

1. **Some part is still pending** (scheduled, queued, submitting, submitted): the message is
   pending too, in the *least advanced* pending state of its parts, by
   :data:`PENDING_ORDER` (``scheduled < queued < submitting < submitted``). A message is only as
   far along as its slowest part: with parts ``[delivered, submitting]`` it is ``submitting``.
   Parts that already ended do not count while others are pending.
2. **Every part is final**: ``delivered`` if every part was delivered; otherwise the *worst*
   final status among the parts, by :data:`FINAL_SEVERITY` (worst first): ``failed`` (that part
   never reached the network), ``rejected`` (refused by the SMSC or network), ``undelivered``
   (tried, could not be delivered), ``expired`` (its validity ran out, often a phone that stayed
   off). A part that did not arrive makes the message not arrive; the worst reason explains it.

Properties (tested with Hypothesis): the result does not depend on the order of the parts; it
is final exactly when every part is final; it is always one of the parts' statuses; a message of
one part has that part's status.
"""

from __future__ import annotations

from collections.abc import Iterable

from smsgw.model import PENDING_STATUSES, MessageStatus

__all__ = ["FINAL_SEVERITY", "PENDING_ORDER", "aggregate_status"]

#: Pending statuses, least advanced first.
PENDING_ORDER: tuple[MessageStatus, ...] = (
    MessageStatus.SCHEDULED,
    MessageStatus.QUEUED,
    MessageStatus.SUBMITTING,
    MessageStatus.SUBMITTED,
)

#: Final statuses, worst first (``delivered``, the only good one, last).
FINAL_SEVERITY: tuple[MessageStatus, ...] = (
    MessageStatus.FAILED,
    MessageStatus.REJECTED,
    MessageStatus.UNDELIVERED,
    MessageStatus.EXPIRED,
    MessageStatus.DELIVERED,
)

_PENDING_RANK = {status: rank for rank, status in enumerate(PENDING_ORDER)}
_FINAL_RANK = {status: rank for rank, status in enumerate(FINAL_SEVERITY)}


def aggregate_status(parts: Iterable[MessageStatus]) -> MessageStatus:
    """The status of a message whose parts have these statuses (rule in the module docstring).

    Raises ValueError for no parts: a message has at least one.
    """
    statuses = set(parts)
    if not statuses:
        raise ValueError("a message has at least one part")
    pending = statuses & PENDING_STATUSES
    if pending:
        return min(pending, key=_PENDING_RANK.__getitem__)
    return min(statuses, key=_FINAL_RANK.__getitem__)
