"""Single-message submissions gathered into one :meth:`Gateway.submit` call.

Every ``Gateway.submit`` call is one queue write and one database commit (each an fsync), so
its cost is nearly the same for 1 message or 500. Requests that arrive while earlier ones are
being stored wait in a bounded channel; each of :data:`FLUSHERS` tasks takes what is waiting
(up to :data:`MAX_GROUP`) and submits it at once. Nothing waits for a timer: a lone request is
submitted immediately, and groups form only under load, where they raise throughput.

A group shares its fate: if ``submit`` raises (queue full, storage down), nothing of the group
was accepted and every request in it gets the exception.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import trio

from smsgw.gateway import Gateway
from smsgw.messages import Accepted, Rejected, SubmitRequest

__all__ = ["Coalescer"]

#: Requests submitted in one call at most.
MAX_GROUP = 500
#: Groups being stored at once. Measured with ``smsgw bench --api`` (2 CPUs, 32 clients): one
#: flusher (bigger groups) costs ~10% less CPU per request while nothing is sent, but accepts
#: ~25% fewer requests/s while the gateway sends (its writes then wait behind the processor's);
#: 2 and 4 are alike.
FLUSHERS = 4
#: Requests waiting for a flusher at most (then the HTTP handlers wait).
BACKLOG = 4096


@attrs.define(eq=False)
class _Pending:
    request: SubmitRequest
    done: trio.Event = attrs.field(factory=trio.Event)
    result: Accepted | Rejected | None = None
    error: Exception | None = None


class Coalescer:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._send, self._receive = trio.open_memory_channel[_Pending](BACKLOG)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The flushers; runs until cancelled."""
        async with trio.open_nursery() as nursery:
            for _ in range(FLUSHERS):
                nursery.start_soon(self._flush_forever)
            task_status.started()

    async def submit(self, request: SubmitRequest) -> Accepted | Rejected:
        """``Gateway.submit([request])[0]``, possibly stored together with others; raises what
        ``Gateway.submit`` raised for the group."""
        pending = _Pending(request)
        await self._send.send(pending)
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    async def _flush_forever(self) -> None:
        while True:
            group = [await self._receive.receive()]
            while len(group) < MAX_GROUP:
                try:
                    group.append(self._receive.receive_nowait())
                except trio.WouldBlock:
                    break
            await self._flush(group)

    async def _flush(self, group: Sequence[_Pending]) -> None:
        try:
            results = await self._gateway.submit([p.request for p in group])
        # Any failure, a bug included, belongs to the requests of the group: each re-raises it
        # in its own handler (503, or 500 and logged), and the flusher goes on.
        except Exception as exc:  # noqa: BLE001
            for pending in group:
                pending.error = exc
                pending.done.set()
            return
        for pending, result in zip(group, results, strict=True):
            pending.result = result
            pending.done.set()
