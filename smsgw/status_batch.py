"""Status writes of many concurrent tasks merged into one store call.

The processor works on a leased batch of messages at once, a task per message, and each task
writes its messages' status events ("submitting", then "submitted" with the SMSC id mapping).
Each store call has a fixed cost on the Trio thread (checking, a request for the writer, a wait)
that is larger than the cost of one more event in a call. So the tasks of one batch hand their
writes to a :class:`StatusBatcher`, whose flusher task takes everything handed over since its last
call and makes ONE :meth:`Store.map_and_record` call of it; each task gets back its own part of
the result (or the call's error).

Nothing waits for a timer: the flusher takes what is there as soon as it runs, so a lone write
goes at once, and writes merge only when many are handed over together (under load).

Each write keeps its meaning: the store applies a call's events in order, and the writes of one
task (one message) are handed over one at a time, so a message's events are never reordered.
The ``notify`` callback of each write is called for the status changes of its own messages
only. If the merged call fails because one write is wrong (an event names a message that has no
row: a message queued just before a crash, whose row the processor rebuilds; or an SMSC id that
cannot be normalised), the writes are made again one call each, so that the error reaches only
the write it belongs to. Any other error (the database is unavailable) is every write's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs
import trio

from smpp_codec.errors import MessageIdError
from smsgw.model import NewNotification, SmscIdMapping, StatusChange, StatusEvent
from smsgw.storage import Store, StoreError, UnknownMessage
from smsgw.storage.writes import Notify, RecordResult

__all__ = ["StatusBatcher"]


@attrs.define(eq=False)
class _Write:
    mappings: Sequence[SmscIdMapping]
    events: Sequence[StatusEvent]
    notify: Notify | None
    handed_over: Callable[[], None] | None
    result: RecordResult | None = None
    error: Exception | None = None


@attrs.define(eq=False)
class _Flush:
    """The writes taken together by one store call (they are settled together)."""

    writes: list[_Write] = attrs.Factory(list)
    done: trio.Event = attrs.Factory(trio.Event)


class StatusBatcher:
    """Run :meth:`run` in a nursery, then call :meth:`write` from any number of tasks; cancel
    :meth:`run` once no write is pending (every :meth:`write` has returned)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._open = _Flush()
        self._ready = trio.Event()

    async def write(
        self,
        mappings: Sequence[SmscIdMapping],
        events: Sequence[StatusEvent],
        *,
        notify: Notify | None = None,
        handed_over: Callable[[], None] | None = None,
    ) -> RecordResult:
        """:meth:`Store.map_and_record`, merged with the writes of other tasks (module
        docstring). ``handed_over`` is called once the write is queued for the store's
        writer."""
        write = _Write(mappings, events, notify, handed_over)
        flush = self._open
        flush.writes.append(write)
        self._ready.set()
        await flush.done.wait()
        if write.error is not None:
            raise write.error
        assert write.result is not None
        return write.result

    async def run(self) -> None:
        """The flusher: one store call for whatever was handed over, again and again."""
        while True:
            await self._ready.wait()
            self._ready = trio.Event()
            flush, self._open = self._open, _Flush()
            try:
                await self._flush(flush.writes)
            finally:
                for write in flush.writes:
                    if write.result is None and write.error is None:  # cut off (cancelled)
                        write.error = StoreError("the status write was cut off")
                flush.done.set()

    async def _flush(self, writes: list[_Write]) -> None:
        if len(writes) == 1:
            await self._alone(writes[0])
            return
        owners: dict[str, _Write] = {}
        for write in writes:
            for event in write.events:
                owners[event.message_id] = write

        def notify(change: StatusChange) -> Sequence[NewNotification]:
            owner = owners.get(change.message_id)
            if owner is None or owner.notify is None:
                return []
            return owner.notify(change)

        told = False

        def handed_over() -> None:
            nonlocal told
            told = True
            for write in writes:
                if write.handed_over is not None:
                    write.handed_over()

        try:
            result = await self._store.map_and_record(
                [m for write in writes for m in write.mappings],
                [e for write in writes for e in write.events],
                notify=notify,
                handed_over=handed_over,
            )
        except (UnknownMessage, MessageIdError):
            # One write is wrong (an event for a message with no row, an unusable SMSC id) and
            # the call wrote no event: one call each, so the error reaches only its own write.
            for write in writes:
                if told:
                    write.handed_over = None  # called already
                await self._alone(write)
            return
        except Exception as exc:  # noqa: BLE001 -- the call's error belongs to every write of it
            for write in writes:
                write.error = exc
            return
        # Each write gets the changes and refused events of its own messages, in order.
        changes: dict[_Write, list[StatusChange]] = {write: [] for write in writes}
        refused: dict[_Write, list[StatusEvent]] = {write: [] for write in writes}
        for change in result.changes:
            changes[owners[change.message_id]].append(change)
        for event in result.refused:
            refused[owners[event.message_id]].append(event)
        for write in writes:
            write.result = RecordResult(tuple(changes[write]), tuple(refused[write]))

    async def _alone(self, write: _Write) -> None:
        try:
            write.result = await self._store.map_and_record(
                write.mappings, write.events, notify=write.notify, handed_over=write.handed_over
            )
        except Exception as exc:  # noqa: BLE001 -- handed to the writing task, which raises it
            write.error = exc
