"""The provider manager: per provider a pool of SMPP connections, kept bound, shared by the
submits, merged for inbound traffic, reconfigured live.

::

    manager = ProviderManager(config.providers)
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)              # pools start binding in the background
        response = await manager.submit("acme", pdu, timeout=10)
        ...
        await manager.aclose(grace=10)

The nursery tree (the manager owns it)::

    ProviderManager.run
    └── per provider, per connection slot: a slot task
        ├── SmppClient.run     connect, bind, serve, reconnect with backoff (its own loop)
        └── forwarder          client.inbound -> manager.inbound (one merged, bounded channel)

A slot task restarts its client (with backoff) if the client itself ever fails, so a bug in
one connection never takes the manager down. The pure decisions (which connection takes a
submit, the sliding error window, the health rule) live in :mod:`smsgw.pool`.
See ``docs/providers.md``.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Protocol

import attrs
import trio

from smpp_codec import DataSm, Response, SubmitSm

from .config import ProviderConfig
from .pool import (
    HealthPolicy,
    RecentCounts,
    Sample,
    SlidingCounter,
    is_healthy,
    pick_connection,
    sample_for,
)
from .smpp import ClientConfig, ClientState, ClientStats, Inbound, SmppClient
from .smpp.backoff import Backoff
from .smpp.client import Connector, open_stream
from .smpp.errors import RequestTimeout, SessionClosed, SmppClientError
from .smpp.stats import Counters

__all__ = [
    "ConnectionHealth",
    "HealthPolicy",
    "ProviderHealth",
    "ProviderManager",
    "ProviderUnavailable",
    "RecentCounts",
    "ReloadResult",
]

log = logging.getLogger("smsgw.providers")


class ConnectionMetrics(Protocol):
    """What the manager reports about its links (:class:`smsgw.metrics.Metrics` has these)."""

    def reconnect(self, provider: str) -> None: ...

    def enquire_link_rtt(self, provider: str, seconds: float) -> None: ...


class ProviderUnavailable(SessionClosed):
    """No connection of the provider can take the request: the provider is unknown, removed by
    a reload, or shutting down, or none of its connections was bound within the caller's
    timeout. Nothing was sent.

    A :class:`~smsgw.smpp.errors.SessionClosed` (not sent, retryable), so the retry classifier
    maps it to ``FAILOVER``: another provider of the route may take the message.
    """

    def __init__(self, provider: str, reason: str) -> None:
        self.provider = provider
        self.reason = reason
        super().__init__(f"provider {provider!r}: {reason}")


@attrs.frozen
class ConnectionHealth:
    """One connection (or transmitter/receiver pair) of a pool, as seen right now."""

    index: int
    state: ClientState
    #: Submits of ours outstanding on it, and its window.
    in_flight: int
    window: int
    #: Why its last connection attempt or link failed (None: never failed).
    last_error: str | None
    #: When it tries again, while in backoff (``trio.current_time()`` clock).
    next_attempt_at: float | None
    #: Its counters (since its client was created).
    stats: ClientStats
    #: Times its client failed outright and was replaced (a bug; logged with the traceback).
    crashes: int = 0

    @property
    def bound(self) -> bool:
        return self.state is ClientState.BOUND


@attrs.frozen
class ProviderHealth:
    """A provider right now: what routing, metrics and the API read (see ``docs/providers.md``).

    Times are ``trio.current_time()`` values.
    """

    name: str
    #: Connections configured, and those bound now.
    configured: int
    bound: int
    connections: tuple[ConnectionHealth, ...]
    #: Window occupancy: submits outstanding over all connections, and the window of the bound.
    in_flight: int
    capacity: int
    #: Submits waiting for a bound connection or a free window.
    waiting: int
    #: Outcomes of the last ``recent_seconds`` seconds (the health policy's window).
    recent: RecentCounts
    recent_seconds: float
    #: The latest provider-side error (a failed submit, a failed connection) and when.
    last_error: str | None
    last_error_at: float | None
    #: Throttle signals: the latest ESME_RTHROTTLED / ESME_RMSGQFUL and when (the count of
    #: recent ones is ``recent.throttled``).
    last_throttle_at: float | None
    last_throttle_status: int | None
    #: The routing verdict (:func:`smsgw.pool.is_healthy`).
    healthy: bool

    @property
    def kept(self) -> int:
        """Connections this instance keeps: ``configured``, or its share of them when the
        instances of a Redis queue share the provider's limits (:mod:`smsgw.sharing`)."""
        return len(self.connections)

    @property
    def error_rate(self) -> float:
        return self.recent.error_rate


@attrs.frozen
class ReloadResult:
    """What a :meth:`ProviderManager.reload` did, by provider name."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    #: Connection settings changed: the connections were replaced one at a time.
    restarted: tuple[str, ...] = ()
    #: Only the number of connections changed: connections added or removed.
    resized: tuple[str, ...] = ()
    #: Other settings changed (rate, status map, ...): taken over without touching connections.
    updated: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.restarted or self.resized or self.updated)


class _Slot:
    """A place in a pool: the slot task keeps one client running in it."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.client: SmppClient | None = None
        #: Submits of ours outstanding on this client (our view of its window).
        self.in_flight = 0
        #: The client's last state seen through ``on_state`` (to count failures once).
        self.state = ClientState.STOPPED
        self.stopping = False
        self.stop_requested = trio.Event()
        self.done = trio.Event()
        self.cancel_scope = trio.CancelScope()
        #: Times the client itself failed and was replaced (a bug, counted and logged).
        self.crashes = 0
        #: A client in this slot was bound once: binding again is a reconnect.
        self.bound_before = False
        #: Connection attempts, binds and bound links of this slot that failed.
        self.failures = 0
        #: Set while the client closes to be replaced by one of the pool's new settings
        #: (:meth:`renew`); the slot takes no submits meanwhile.
        self.renewal: trio.Event | None = None
        #: The cancel scope of the current client only (a renewal that overruns its bound).
        self.client_scope = trio.CancelScope()

    @property
    def bound(self) -> bool:
        return self.client is not None and self.client.state is ClientState.BOUND

    def stop(self) -> None:
        """Gracefully: the client stops taking submits, drains its window and unbinds."""
        self.stopping = True
        self.stop_requested.set()
        if self.client is not None:
            self.client.stop()

    def renew(self) -> trio.Event:
        """Close the client gracefully (as :meth:`stop`) and start one of the pool's current
        settings in its place. The event is set once the old client has closed (or the slot
        stopped)."""
        if self.renewal is None:
            self.renewal = trio.Event()
            if self.client is not None:
                self.client.stop()
        return self.renewal

    def window(self, default: int) -> int:
        """The window of the client in the slot (``default`` while it has none)."""
        return default if self.client is None else self.client.config.window


class _Pool:
    """The connections of one provider and what the manager knows about them."""

    def __init__(self, config: ProviderConfig, policy: HealthPolicy) -> None:
        self.config = config
        self.client_config: ClientConfig = config.client_config()
        self.slots: list[_Slot] = []
        self.retired = False
        #: Submits waiting for a bound connection or a window slot park here.
        self.lot = trio.lowlevel.ParkingLot()
        self.cursor = 0
        self.recent = SlidingCounter(policy.window, policy.buckets)
        self.last_error: tuple[float, str] | None = None
        self.last_link_error: tuple[float, _Slot] | None = None
        self.last_throttle: tuple[float, int] | None = None
        #: :meth:`ProviderManager.resize` took every connection away (shared limits).
        self.emptied = False
        #: Set (and replaced) whenever a connection of the pool changes state.
        self.changed = trio.Event()
        #: The roll of a reload replacing its connections (:meth:`ProviderManager._roll`).
        self.roll = trio.CancelScope()

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def bound(self) -> int:
        return sum(1 for slot in self.slots if slot.bound)

    def pick(self) -> _Slot | None:
        window = self.client_config.window
        free = [
            slot.window(window) - slot.in_flight if slot.bound and slot.renewal is None else 0
            for slot in self.slots
        ]
        i = pick_connection(free, self.cursor)
        if i is None:
            return None
        self.cursor = i + 1
        return self.slots[i]

    def free_index(self) -> int:
        taken = {slot.index for slot in self.slots}
        return next(i for i in range(len(taken) + 1) if i not in taken)

    def record_failure(self, now: float, exc: SmppClientError) -> None:
        sample = sample_for(exc, provider_overrides=self.config.status_map)
        self.recent.add(now, sample)
        if sample is Sample.THROTTLED:
            self.last_throttle = (now, int(getattr(exc, "command_status", 0)))
        elif sample is Sample.ERROR:
            self.last_error = (now, f"{type(exc).__name__}: {exc}")

    def latest_error(self) -> tuple[float, str] | None:
        found = self.last_error
        if self.last_link_error is not None:
            at, slot = self.last_link_error
            if found is None or at >= found[0]:
                why = slot.client.last_error if slot.client is not None else None
                found = (at, f"connection {slot.index}: {why}")
        return found

    def retire(self) -> None:
        """No new submits; waiters look the provider up again (a new pool, or none)."""
        self.retired = True
        self.wake()

    def wake(self) -> None:
        """A connection changed state: waiting submits and reloads re-check."""
        self.lot.unpark_all()
        self.changed.set()
        self.changed = trio.Event()


def _by_name(providers: Sequence[ProviderConfig]) -> dict[str, ProviderConfig]:
    configs: dict[str, ProviderConfig] = {}
    for provider in providers:
        if provider.name in configs:
            raise ValueError(f"provider name {provider.name!r} given twice")
        configs[provider.name] = provider
    return configs


#: Failed attempts of a replacement connection that stop a reload's roll.
_ROLL_ATTEMPTS = 2


def _retire_bound(config: ClientConfig) -> float:
    """How long a graceful stop of one client may take: a connection attempt under way, the
    window draining, the unbind answered (then it is cancelled)."""
    return config.connect_timeout + config.drain_timeout + 3 * config.response_timeout


class ProviderManager:
    """The connection pools of every provider; see the module docstring.

    ``rand`` (floats in [0, 1)) draws the reconnect jitter and ``connector`` opens the streams
    (both for tests, passed to every :class:`SmppClient`); ``health`` is the routing rule;
    ``inbound_buffer`` bounds :attr:`inbound`; ``metrics`` hears of reconnects and enquire_link
    round trips.

    ``connections`` hands the pools' sizes to the caller (instances sharing an account's
    connections, :mod:`smsgw.sharing`): a new pool starts with ``connections(name)`` of them,
    a reload leaves sizes alone, and :meth:`resize` changes them.
    """

    def __init__(
        self,
        providers: Sequence[ProviderConfig],
        *,
        rand: Callable[[], float] = random.random,
        connector: Connector = open_stream,
        health: HealthPolicy | None = None,
        inbound_buffer: int = 64,
        metrics: ConnectionMetrics | None = None,
        connections: Callable[[str], int] | None = None,
    ) -> None:
        self._configs = _by_name(providers)
        #: None: each pool keeps its config's ``connections``. Else the owner sizes the pools
        #: (:meth:`resize`) and this gives a new pool's size by provider name.
        self._sizes = connections
        self._metrics = metrics
        self._rand = rand
        self._connector = connector
        self._policy = health if health is not None else HealthPolicy()
        self._pools: dict[str, _Pool] = {}
        #: Every slot whose task runs, in a pool or being retired.
        self._slots: set[_Slot] = set()
        self._inbound_send, self.inbound = trio.open_memory_channel[tuple[str, Inbound]](
            inbound_buffer
        )
        """``(provider name, Inbound)`` from every connection of every provider. Bounded: a
        slow consumer stops the forwarders, then the clients' readers, then TCP pushes back on
        the SMSCs. Closed when :meth:`run` returns."""
        self._nursery: trio.Nursery | None = None
        self._running = False
        self._closing = False
        #: The gateway is stopping (:meth:`stop_waiting`): a submit no bound connection can
        #: take fails at once instead of waiting for one.
        self._stopping = False
        self._stop_run = trio.Event()
        self._finished = trio.Event()
        self._reload_lock = trio.Lock()
        #: Retirements and rolls that reloads started and that are still running.
        self._settling = 0
        self._settled = trio.Event()
        self._settled.set()

    # -- running ---------------------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[ProviderManager] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start every pool and serve until :meth:`aclose`. Reports started at once: the
        connections bind in the background (:meth:`submit` waits for them)."""
        if self._nursery is not None or self._closing:
            raise RuntimeError("a ProviderManager runs once")
        self._running = True
        try:
            async with self._inbound_send, trio.open_nursery() as nursery:
                self._nursery = nursery
                for config in self._configs.values():
                    self._pools[config.name] = self._start_pool(config)
                task_status.started(self)
                await self._stop_run.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._running = False
            self._closing = True
            for pool in self._pools.values():
                pool.retire()
            self._pools.clear()
            self._finished.set()

    def stop_waiting(self) -> None:
        """The gateway is draining: a submit that finds no bound connection of its provider
        raises :class:`ProviderUnavailable` at once, and those waiting for one now do too (an
        SMSC that is down must not hold the stop for the whole grace). Submits that a bound
        connection takes, or that wait for a free window of one, go on as before."""
        self._stopping = True
        for pool in self._pools.values():
            pool.wake()

    async def aclose(self, *, grace: float) -> None:
        """Stop everything gracefully: no new submits (:class:`ProviderUnavailable`), the
        windows drain and every connection unbinds, within ``grace`` seconds; what is left
        then is cancelled (its outstanding submits fail with ``ConnectionLost``). Returns once
        :meth:`run` has returned."""
        if self._closing:
            if self._running:
                await self._finished.wait()
            return
        self._closing = True
        for pool in self._pools.values():
            pool.retire()
        self._pools.clear()
        slots = list(self._slots)
        with trio.move_on_after(grace):
            await self._stop_slots(slots)
        for slot in slots:
            slot.cancel_scope.cancel()
        self._stop_run.set()
        if self._running:
            await self._finished.wait()
        else:
            self._inbound_send.close()

    async def _stop_slots(self, slots: Sequence[_Slot]) -> None:
        for slot in slots:
            slot.stop()
        for slot in slots:
            await slot.done.wait()

    async def _retire_slots(self, slots: Sequence[_Slot], bound: float) -> None:
        """Stop ``slots`` gracefully within ``bound`` seconds, then cancel what is left."""
        with trio.move_on_after(bound):
            await self._stop_slots(slots)
        for slot in slots:
            slot.cancel_scope.cancel()
        for slot in slots:
            await slot.done.wait()

    # -- submitting ------------------------------------------------------------------------------

    async def submit(
        self,
        provider: str,
        pdu: SubmitSm | DataSm | Callable[[], SubmitSm | DataSm],
        *,
        timeout: float,
        send_by: float | None = None,
    ) -> Response:
        """Send ``pdu`` on a connection of ``provider`` and return its ESME_ROK response.
        ``pdu`` may be a function that makes it, called once a connection takes it (a
        relative validity then counts from the moment it goes out).

        The bound connection with the most free window takes it (ties rotate). When none is
        bound, or every window is full, the call waits, within ``timeout`` (which also bounds
        the answer) and, if given, until ``send_by`` at most (``trio.current_time()`` clock:
        the last moment the PDU may still go out, such as the end of a message's validity).
        Raises the client's errors unchanged (:mod:`smsgw.smpp.errors`), and
        :class:`ProviderUnavailable` for an unknown or removed provider or when no connection
        was bound in time; ``RequestTimeout(sent=False)`` when connections were bound but no
        window came free in time.
        """
        deadline = trio.current_time() + timeout
        wait_until = deadline if send_by is None else min(deadline, send_by)
        while True:
            pool = self._pools.get(provider)
            if pool is None:
                raise ProviderUnavailable(provider, self._why_missing())
            slot = pool.pick()
            if slot is not None:
                return await self._submit_on(pool, slot, pdu() if callable(pdu) else pdu, deadline)
            if pool.emptied:
                # Sized to none by its owner: no connection will come to wait for.
                raise ProviderUnavailable(
                    provider, "this instance keeps none of its connections (shared limits)"
                )
            if self._stopping and not pool.bound:
                raise ProviderUnavailable(provider, "the gateway is stopping: none is bound")
            with trio.move_on_at(wait_until):
                await pool.lot.park()
                continue
            waited = f"{timeout:g}s" if wait_until == deadline else "the time it had to be sent"
            if pool.bound:
                raise RequestTimeout(
                    f"provider {provider!r}: no free window within {waited}", sent=False
                )
            latest = pool.latest_error()
            why = f" (last error: {latest[1]})" if latest is not None else ""
            raise ProviderUnavailable(provider, f"no connection bound within {waited}{why}")

    async def _submit_on(
        self, pool: _Pool, slot: _Slot, pdu: SubmitSm | DataSm, deadline: float
    ) -> Response:
        client = slot.client
        assert client is not None
        slot.in_flight += 1
        try:
            response = await client.submit(pdu, timeout=max(0.0, deadline - trio.current_time()))
        except SmppClientError as exc:
            pool.record_failure(trio.current_time(), exc)
            raise
        else:
            pool.recent.add(trio.current_time(), Sample.OK)
            return response
        finally:
            slot.in_flight -= 1
            # One window slot came free: one waiter can use it (it re-checks; nothing is lost
            # if it has gone, because a woken task always re-checks before parking again).
            pool.lot.unpark(count=1)

    def _why_missing(self) -> str:
        if self._closing:
            return "the provider manager is shutting down"
        if not self._running:
            return "the provider manager is not running"
        return "no such provider"

    # -- health ----------------------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        """The providers in force."""
        return tuple(self._pools)

    def health(self, name: str) -> ProviderHealth:
        """The provider ``name`` right now (``KeyError`` for an unknown name)."""
        pool = self._pools.get(name)
        if pool is None:
            raise KeyError(f"no provider named {name!r}")
        now = trio.current_time()
        window = pool.client_config.window
        connections = tuple(
            self._connection_health(slot, slot.window(window)) for slot in pool.slots
        )
        bound = sum(1 for c in connections if c.bound)
        recent = pool.recent.counts(now)
        latest = pool.latest_error()
        throttle = pool.last_throttle
        return ProviderHealth(
            name=name,
            configured=pool.config.connections,
            bound=bound,
            connections=connections,
            in_flight=sum(c.in_flight for c in connections),
            capacity=sum(c.window for c in connections if c.bound),
            waiting=pool.lot.statistics().tasks_waiting,
            recent=recent,
            recent_seconds=self._policy.window,
            last_error=latest[1] if latest is not None else None,
            last_error_at=latest[0] if latest is not None else None,
            last_throttle_at=throttle[0] if throttle is not None else None,
            last_throttle_status=throttle[1] if throttle is not None else None,
            healthy=is_healthy(bound, recent, self._policy),
        )

    @staticmethod
    def _connection_health(slot: _Slot, window: int) -> ConnectionHealth:
        client = slot.client
        if client is None:
            return ConnectionHealth(
                index=slot.index,
                state=ClientState.STOPPED,
                in_flight=slot.in_flight,
                window=window,
                last_error=None,
                next_attempt_at=None,
                stats=Counters().snapshot(),
                crashes=slot.crashes,
            )
        return ConnectionHealth(
            index=slot.index,
            state=client.state,
            in_flight=slot.in_flight,
            window=window,
            last_error=client.last_error_text,
            next_attempt_at=client.next_attempt_at,
            stats=client.stats,
            crashes=slot.crashes,
        )

    def healthy(self, name: str) -> bool:
        """Whether routing should use ``name`` now (False for an unknown name): at least one
        bound connection and a recent error rate below the policy's threshold."""
        pool = self._pools.get(name)
        if pool is None:
            return False
        return is_healthy(pool.bound, pool.recent.counts(trio.current_time()), self._policy)

    def snapshot(self) -> Mapping[str, ProviderHealth]:
        """Every provider's :meth:`health`, for metrics and the API."""
        return MappingProxyType({name: self.health(name) for name in self._pools})

    # -- reload ----------------------------------------------------------------------------------

    async def reload(
        self, providers: Sequence[ProviderConfig], *, wait: bool = True
    ) -> ReloadResult:
        """Take a new provider list, diffed by name, without interrupting unchanged providers:

        - new names get a pool (binding in the background);
        - removed names stop taking submits at once (:class:`ProviderUnavailable`); their
          in-flight submits complete, then they unbind;
        - a provider whose connection settings changed (everything that goes into its
          :class:`ClientConfig`: host, credentials, window, timers, TLS, ...) has its
          connections replaced one at a time (:meth:`_roll`): never more bound than before;
        - only ``connections`` changed: connections are added, or removed (unbound ones first,
          then the least busy) and drained;
        - any other change (rate, status map, ...) is taken over as is.

        Returns once the retired connections have closed (each within its drain and unbind
        timeouts) and the replaced ones are bound again (or a replacement failed to bind); with
        ``wait=False`` at once, and :meth:`settled` waits for that. Either way the manager's own
        tasks do that work, so a caller that stops waiting stops nothing. A reload that
        changes a provider again stops its roll still running and starts one for the newest
        settings. Reloads run one at a time. ``ValueError`` for a duplicated name (nothing
        changes then).
        """
        configs = _by_name(providers)
        async with self._reload_lock:
            if self._closing or self._nursery is None:
                raise RuntimeError("the provider manager is not running")
            added: list[str] = []
            removed: list[str] = []
            restarted: list[str] = []
            resized: list[str] = []
            updated: list[str] = []
            retiring: list[tuple[list[_Slot], float]] = []
            rolling: list[_Pool] = []
            for name in list(self._pools):
                if name not in configs:
                    gone = self._pools.pop(name)
                    gone.retire()
                    retiring.append((list(gone.slots), _retire_bound(gone.client_config)))
                    removed.append(name)
            for name, config in configs.items():
                pool = self._pools.get(name)
                if pool is None:
                    self._pools[name] = self._start_pool(config)
                    added.append(name)
                elif pool.client_config != config.client_config():
                    old_bound = _retire_bound(pool.client_config)
                    pool.config = config
                    pool.client_config = config.client_config()
                    if self._sizes is None:
                        dropped = self._resize(pool, config.connections)
                        if dropped:
                            retiring.append((dropped, old_bound))
                    rolling.append(pool)
                    restarted.append(name)
                elif pool.config != config:
                    if self._sizes is None and config.connections != pool.config.connections:
                        dropped = self._resize(pool, config.connections)
                        if dropped:
                            retiring.append((dropped, _retire_bound(pool.client_config)))
                        resized.append(name)
                    else:
                        updated.append(name)
                    pool.config = config
            result = ReloadResult(
                added=tuple(added),
                removed=tuple(removed),
                restarted=tuple(restarted),
                resized=tuple(resized),
                updated=tuple(updated),
            )
            if result.changed:
                log.info(
                    "providers reloaded: added %s, removed %s, restarted %s, resized %s, "
                    "updated %s",
                    added,
                    removed,
                    restarted,
                    resized,
                    updated,
                )
            for slots, bound in retiring:
                self._settle(self._retire_slots, slots, bound)
            for pool in rolling:
                pool.roll.cancel()  # an earlier reload's roll: this one takes over
                pool.roll = trio.CancelScope()
                self._settle(self._roll, pool, pool.roll)
            if wait:
                await self.settled()
            return result

    async def settled(self) -> None:
        """Until the retirements and rolls of the reloads so far have finished."""
        while self._settling:
            await self._settled.wait()

    def _settle(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run ``fn(*args)`` in the manager's nursery, counted until it returns."""
        assert self._nursery is not None
        self._settling += 1
        self._settled = trio.Event()

        async def counted() -> None:
            try:
                await fn(*args)
            finally:
                self._settling -= 1
                if not self._settling:
                    self._settled.set()

        self._nursery.start_soon(counted)

    async def _roll(self, pool: _Pool, scope: trio.CancelScope) -> None:
        """:meth:`_replace` under ``scope``, which a later reload of the provider cancels."""
        with scope:
            await self._replace(pool)

    async def _replace(self, pool: _Pool) -> None:
        """Replace the clients of ``pool`` that do not have its settings. Those not bound
        carry no traffic: each is replaced at once, first. The bound ones go one at a time:
        each drains and unbinds, then its replacement binds, and the next waits for that bind.
        The account never has more connections bound than before, and the others carry the
        traffic meanwhile. A replacement that fails to bind twice, or is not bound within
        :func:`_retire_bound`, stops the roll (logged as an error): it keeps trying with its
        backoff, and the bound connections not replaced yet keep their settings until the
        next reload. (So a reload during an outage replaces every connection: none is
        bound.)"""
        settings = pool.client_config
        for slot in sorted(pool.slots, key=lambda slot: slot.bound):  # the unbound first
            if pool.retired or self._closing:
                return
            if slot.stopping or slot not in pool.slots:
                continue
            client = slot.client
            if client is not None and client.config == settings:
                continue  # a slot added by the reload, or replaced by an earlier one
            old = settings if client is None else client.config
            carrying = slot.bound
            renewed = slot.renew()
            with trio.move_on_after(_retire_bound(old)):
                await renewed.wait()
            if not renewed.is_set():
                slot.client_scope.cancel()  # its outstanding submits fail with ConnectionLost
                await renewed.wait()
            if not carrying:
                continue  # its replacement binds when it can; the next need not wait for it
            # Two failed attempts, not one: the SMSC may refuse the first bind while it still
            # counts the session just unbound.
            failures = slot.failures
            with trio.move_on_after(_retire_bound(settings)):
                while not (slot.bound or slot.stopping or pool.retired):
                    if slot.failures - failures >= _ROLL_ATTEMPTS:
                        break
                    await pool.changed.wait()
            if not (slot.bound or slot.stopping or pool.retired):
                why = "" if slot.client is None else f": {slot.client.last_error_text}"
                log.error(
                    "%s#%d: the new settings did not bind (%d attempts%s); the connections "
                    "not replaced yet keep the old settings until the next reload",
                    pool.name,
                    slot.index,
                    slot.failures - failures,
                    why,
                )
                return

    async def resize(
        self, name: str, size: int, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep ``size`` connections of provider ``name`` (an unknown or removed provider:
        nothing). New ones bind in the background; surplus ones (unbound first, then the least
        busy) stop taking submits at once. Reports started when the pool has its new size, and
        returns once the surplus connections have drained and unbound (or were cancelled
        after their bound)."""
        pool = self._pools.get(name)
        if pool is None or pool.retired or self._closing:
            task_status.started()
            return
        before = len(pool.slots)
        pool.emptied = size == 0
        dropped = self._resize(pool, size)
        task_status.started()
        if size != before:
            log.info("%s: %d connection(s), now %d", name, before, size)
        if dropped:
            await self._retire_slots(dropped, _retire_bound(pool.client_config))

    @property
    def has_connections(self) -> bool:
        """Whether any provider keeps a connection here (False only when the pools are sized
        by their owner and it gave them none)."""
        return any(pool.slots for pool in self._pools.values())

    def size(self, name: str) -> int:
        """Connections provider ``name`` keeps now (0 for an unknown one)."""
        pool = self._pools.get(name)
        return 0 if pool is None else len(pool.slots)

    def _resize(self, pool: _Pool, size: int) -> list[_Slot]:
        """Add slots up to ``size``, or take the surplus out of the pool and return it."""
        while len(pool.slots) < size:
            self._add_slot(pool)
        surplus = len(pool.slots) - size
        if surplus <= 0:
            return []
        # Unbound connections carry nothing; among bound ones the least busy drain first.
        order = sorted(pool.slots, key=lambda s: (s.bound, s.in_flight, -s.index))
        dropped = order[:surplus]
        pool.slots = [s for s in pool.slots if s not in dropped]
        pool.lot.unpark_all()
        return dropped

    # -- the slot tasks --------------------------------------------------------------------------

    def _start_pool(self, config: ProviderConfig) -> _Pool:
        pool = _Pool(config, self._policy)
        size = config.connections if self._sizes is None else self._sizes(config.name)
        for _ in range(size):
            self._add_slot(pool)
        log.info("%s: starting %d connection(s)", config.name, size)
        return pool

    def _add_slot(self, pool: _Pool) -> None:
        assert self._nursery is not None
        slot = _Slot(pool.free_index())
        pool.slots.append(slot)
        pool.slots.sort(key=lambda s: s.index)
        self._slots.add(slot)
        self._nursery.start_soon(self._run_slot, pool, slot, name=f"{pool.name}#{slot.index}")

    async def _run_slot(self, pool: _Pool, slot: _Slot) -> None:
        """Keep a client running in ``slot`` until it is stopped. The client reconnects by
        itself; this loop only replaces a client that failed outright (a bug), with backoff."""
        name = f"{pool.name}#{slot.index}"
        backoff = Backoff(pool.client_config.backoff, self._rand)
        try:
            with slot.cancel_scope:
                while not slot.stopping:
                    if slot.renewal is not None:
                        # Asked while no client ran: this one has the pool's new settings.
                        slot.renewal.set()
                        slot.renewal = None
                    client = SmppClient(
                        pool.client_config,
                        rand=self._rand,
                        connector=self._connector,
                        on_state=functools.partial(self._on_state, pool, slot),
                        on_enquire_link_rtt=(
                            None
                            if self._metrics is None
                            else functools.partial(self._metrics.enquire_link_rtt, pool.name)
                        ),
                        name=name,
                    )
                    slot.client = client
                    crashed = False
                    try:
                        with trio.CancelScope() as slot.client_scope:
                            async with trio.open_nursery() as nursery:
                                nursery.start_soon(self._forward, pool.name, client)
                                await client.run()
                    except Exception:
                        crashed = True
                        slot.crashes += 1
                        log.exception("%s: connection task failed (crash %d)", name, slot.crashes)
                    renewal, slot.renewal = slot.renewal, None
                    if renewal is not None:
                        renewal.set()
                    if slot.stopping:
                        break
                    if renewal is not None and not crashed:
                        continue  # closed to be replaced: the next client has the new settings
                    delay = backoff.next_delay()
                    log.warning("%s: restarting the connection in %.2fs", name, delay)
                    with trio.move_on_after(delay):
                        await slot.stop_requested.wait()
        finally:
            if slot.renewal is not None:
                slot.renewal.set()
            self._slots.discard(slot)
            slot.done.set()
            pool.wake()

    def _on_state(self, pool: _Pool, slot: _Slot, state: ClientState) -> None:
        previous, slot.state = slot.state, state
        if state is ClientState.BOUND and previous is not ClientState.BOUND:
            if slot.bound_before and self._metrics is not None:
                self._metrics.reconnect(pool.name)
            slot.bound_before = True
        if state is ClientState.BACKOFF and previous is not ClientState.BACKOFF:
            # A connection attempt, a bind or a bound link failed (counted once per failure:
            # the client reports BACKOFF twice for a lost link).
            slot.failures += 1
            now = trio.current_time()
            pool.recent.add(now, Sample.LINK)
            pool.last_link_error = (now, slot)
        # Bound (or not any more): waiters re-check.
        pool.wake()

    async def _forward(self, provider: str, client: SmppClient) -> None:
        """Hand the client's inbound PDUs on to the merged channel, waiting when it is full
        (that wait is the backpressure). Ends when the client closes its channel."""
        async for inbound in client.inbound:
            try:
                await self._inbound_send.send((provider, inbound))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                # Nobody consumes any more: answer now with the temporary default so the SMSC
                # delivers it again later, rather than leaving it to time out.
                await inbound.reply(client.config.inbound_default_status)
