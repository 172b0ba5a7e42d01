"""The messages the simulator accepted: their ids, their fate, their state over time.

A message's outcome (DELIVRD, UNDELIV...) and the time it reaches it (``final_at``) are decided
when it is accepted; until then it is ENROUTE. So ``query_sm`` answers the same whether or not a
receipt was asked for, ``cancel_sm``/``replace_sm`` work only while it is ENROUTE, and a receipt
reports what a query would.

Pure: times are the simulator's clock values, passed in.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

import attrs

from smpp_codec.constants import MessageState

from .config import IdFormat, ReceiptIdForm
from .values import OUTCOMES


@attrs.frozen
class Address:
    ton: int
    npi: int
    addr: str


@attrs.define(eq=False)
class Message:
    """One accepted submission (all destinations of a submit_multi share it)."""

    message_id: str
    #: The counter behind the id (-1 for UUID ids): receipts may spell it another way.
    number: int
    system_id: str
    service_type: str
    source: Address
    destinations: tuple[Address, ...]
    registered_delivery: int
    data_coding: int
    esm_class: int
    #: The text (short_message, or message_payload): receipts quote its first 20 characters.
    content: bytes
    submitted_at: float
    final_at: float
    #: The final receipt stat it reaches at ``final_at`` (a key of ``values.OUTCOMES``).
    outcome: str
    cancelled_at: float | None = None
    #: A receipt job exists for it (so replace_sm does not make a second one).
    receipt_planned: bool = False

    def state_at(self, now: float) -> MessageState:
        if self.cancelled_at is not None:
            return MessageState.DELETED
        if now >= self.final_at:
            return OUTCOMES[self.outcome]
        return MessageState.ENROUTE

    def final_time(self, now: float) -> float | None:
        """When it reached its final state, or None while ENROUTE."""
        if self.cancelled_at is not None:
            return self.cancelled_at
        return self.final_at if now >= self.final_at else None

    def receipt_id(self, form: ReceiptIdForm) -> str:
        """The id as a receipt writes it."""
        if form is ReceiptIdForm.AS_SENT or self.number < 0:
            return self.message_id
        return str(self.number) if form is ReceiptIdForm.DECIMAL else f"{self.number:X}"


class MessageIds:
    """Unique message ids in the configured form.

    Counter-based forms start at a random point (from the seeded generator) so two simulator
    runs with different seeds do not hand out the same ids; within one simulator an id is never
    repeated.
    """

    def __init__(self, form: IdFormat, rng: random.Random) -> None:
        self.form = form
        self._rng = rng
        self._next = rng.randrange(0x10000000, 0x40000000)

    def new(self) -> tuple[str, int]:
        """The next id and its number (-1 for a UUID)."""
        if self.form is IdFormat.UUID:
            return str(uuid.UUID(int=self._rng.getrandbits(128), version=4)), -1
        n = self._next
        self._next = n + 1
        return (f"{n:X}" if self.form is IdFormat.HEX else str(n)), n


class MessageStore:
    """Messages by id, the oldest forgotten beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._messages: dict[str, Message] = {}

    def __len__(self) -> int:
        return len(self._messages)

    def __iter__(self) -> Iterator[Message]:
        return iter(self._messages.values())

    def add(self, message: Message) -> None:
        messages = self._messages
        messages[message.message_id] = message
        if len(messages) > self.limit:
            del messages[next(iter(messages))]

    def get(self, message_id: str) -> Message | None:
        return self._messages.get(message_id)
