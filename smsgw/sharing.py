"""Instances on one Redis queue sharing their SMSC accounts' limits: the heartbeat task.

With a Redis queue (and ``[queue.redis] share_limits``, the default), a provider's
``connections`` and ``rate`` and ``[rate_limit] per_second`` are totals for all the instances
together. Every ``heartbeat`` seconds, :meth:`SharedLimits.run`:

1. says this instance is alive, and reads which instances are (:meth:`Cluster.heartbeat`);
2. per provider, renews the leases of the connection slots it holds, takes free ones up to its
   share (:func:`smsgw.shares.connection_share`), or gives its surplus back (after those
   connections have drained and unbound), and sizes the provider's pool to the slots held
   (:meth:`ProviderManager.resize`);
3. sets each provider's rate limit to the share of its slots held here, and the global limit
   to the share of all providers' capacity those slots are (:meth:`RateLimiter.set_shares`).

An instance that stops gives its slots back at once (:meth:`SharedLimits.aclose`); the slots of
one that dies are free once their leases expire (``instance_timeout``), and the others then
take them. An instance that cannot reach Redis for ``instance_timeout - heartbeat`` closes its
connections: its leases may have expired, and the slots gone to other instances. It takes
slots again when Redis answers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence

import trio

from .cluster import Cluster, Membership
from .config import ProviderConfig
from .outage import Outage
from .providers import ProviderManager
from .queue.base import QueueError
from .ratelimit import RateLimiter
from .shares import connection_share, global_share, rate_share, surplus

__all__ = ["SharedLimits"]

log = logging.getLogger("smsgw.sharing")

#: Seconds between two errors about another process using this instance's id.
SAME_ID_LOG_INTERVAL = 60.0


class SharedLimits:
    """This instance's share of every provider's connections and rates; see the module
    docstring. ``limiter`` returns the rate limiter in force (a reload replaces it)."""

    def __init__(
        self,
        cluster: Cluster,
        providers: Sequence[ProviderConfig],
        *,
        limiter: Callable[[], RateLimiter],
        heartbeat: float,
        timeout: float,
    ) -> None:
        self._cluster = cluster
        self._manager: ProviderManager | None = None
        self._configs = {p.name: p for p in providers}
        self._limiter = limiter
        self.heartbeat = heartbeat
        self.timeout = timeout
        #: Slots held per provider (one bound connection each), and those being given back.
        self.held: dict[str, set[int]] = {}
        self._releasing: dict[str, set[int]] = {}
        #: The live instances at the last heartbeat.
        self.membership = Membership((), {})
        self._targets: dict[str, int] = {}
        self._last_ok: float | None = None
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self._cancel = trio.CancelScope()
        self._closed = False
        #: When the last "another process uses this instance_id" error was logged.
        self._same_id_logged: float | None = None
        #: Heartbeats that fail while no slot is held (Redis down): logged once, then reminded.
        self._outage = Outage(log, "taking connection slots")

    def connections(self, provider: str) -> int:
        """Connections ``provider``'s pool keeps now: the slots held (the manager's sizes)."""
        return len(self.held.get(provider, ()))

    @property
    def keeps_none(self) -> bool:
        """Whether the division at the last heartbeat, answered within ``timeout``, gave this
        instance none of any provider's connections (more instances than connections): the
        other instances send, this one takes submissions into the shared queue."""
        if not self._configs or self._last_ok is None:
            return False
        if trio.current_time() - self._last_ok >= self.timeout:
            return False
        return all(self._targets.get(name) == 0 for name in self._configs)

    @property
    def instance_count(self) -> int:
        """Live instances at the last heartbeat (0: none read yet)."""
        return len(self.membership.instances)

    async def run(self, manager: ProviderManager) -> None:
        """Size ``manager``'s pools (made with ``connections=``:meth:`connections`) and
        heartbeat, a round at once and then every ``heartbeat`` seconds, until :meth:`aclose`
        (then it returns). A failed round (Redis unreachable) is logged and the next one tries
        again; run under the gateway's supervisor, it is restarted after a bug."""
        if self._closed:
            return
        self._manager = manager
        self._cancel = trio.CancelScope()
        await self._release_abandoned()
        try:
            with self._cancel:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    while True:
                        await self._round()
                        await trio.sleep(self.heartbeat)
        finally:
            self._nursery = None

    async def _release_abandoned(self) -> None:
        """Release the slots a run that failed was giving back (their connections were told to
        stop then, and drain by themselves)."""
        async with self._lock:
            for name, slots in self._releasing.items():
                if slots:
                    with contextlib.suppress(QueueError):
                        await self._cluster.release(name, slots)
                    slots.clear()

    async def reconfigure(self, providers: Sequence[ProviderConfig]) -> None:
        """Take a reloaded provider list (after :meth:`ProviderManager.reload` returned:
        removed providers' connections are closed, so their slots are given back here)."""
        async with self._lock:
            configs = {p.name: p for p in providers}
            removed = [name for name in self._configs if name not in configs]
            self._configs = configs
            self.apply_rates()
            for name in removed:
                slots = self.held.pop(name, set()) | self._releasing.pop(name, set())
                self._targets.pop(name, None)
                try:
                    await self._cluster.release(name, slots)
                    await self._cluster.leave([name], everything=False)
                except QueueError as exc:
                    log.info("%s: slots not given back (they expire): %s", name, exc)
            if self._nursery is not None:  # else the next run() starts with a round
                await self._round_locked()

    async def aclose(self) -> None:
        """Stop, give every slot back and leave (call once the connections are closed). The
        caller bounds the time; slots not given back expire after ``instance_timeout``."""
        self._closed = True
        self._cancel.cancel()
        async with self._lock:
            slots = {
                name: held | self._releasing.get(name, set()) for name, held in self.held.items()
            }
            self.held.clear()
            self._releasing.clear()
            try:
                for name, held in slots.items():
                    await self._cluster.release(name, held)
                await self._cluster.leave(list(self._configs), everything=True)
            except QueueError as exc:
                log.info("connection slots not given back (they expire): %s", exc)

    def apply_rates(self) -> None:
        """Set the rate limiter in force to this instance's shares."""
        shares = {
            name: rate_share(self.connections(name), config.connections)
            for name, config in self._configs.items()
        }
        held = {
            name: (self.connections(name), config.connections, config.rate.per_second)
            for name, config in self._configs.items()
        }
        global_part = global_share(held, self.instance_count)
        self._limiter().set_shares(shares, global_part, trio.current_time())

    # -- one round ---------------------------------------------------------------------------

    async def _round(self) -> None:
        async with self._lock:
            await self._round_locked()

    async def _round_locked(self) -> None:
        now = trio.current_time()
        assert self._nursery is not None and self._manager is not None
        try:
            self.membership = await self._cluster.heartbeat(
                list(self._configs), timeout=self.timeout
            )
            if self.membership.same_id:
                self._same_id(now, first=self._last_ok is None)
            for name, config in self._configs.items():
                await self._size(name, config)
        except QueueError as exc:
            self._unreachable(now, exc)
        else:
            self._last_ok = now
            self._outage.succeeded()
        self.apply_rates()

    async def _size(self, name: str, config: ProviderConfig) -> None:
        assert self._nursery is not None and self._manager is not None
        total = config.connections
        instances = self.membership.by_provider.get(name, ())
        target = connection_share(instances, self._cluster.instance, total)
        if self._targets.get(name) != target:
            self._targets[name] = target
            log.info(
                "%s: this instance keeps %d of %d connection(s) (%d instance(s) run it)",
                name,
                target,
                total,
                len(set(instances) | {self._cluster.instance}),
            )
        held = self.held.setdefault(name, set())
        releasing = self._releasing.setdefault(name, set())
        if held or releasing:
            kept = await self._cluster.renew(name, held | releasing, ttl=self.timeout)
            lost = (held | releasing) - kept
            if lost:
                log.warning(
                    "%s: connection slot(s) %s were taken by another instance after their "
                    "leases expired here",
                    name,
                    sorted(lost),
                )
                held -= lost
                releasing -= lost
        give_back = surplus(held, target, total)
        if give_back:
            held.difference_update(give_back)
            releasing.update(give_back)
            await self._nursery.start(self._give_back, name, give_back)
            return
        if len(held) < target:
            free = [i for i in range(total) if i not in held and i not in releasing]
            held.update(
                await self._cluster.acquire(name, free, target - len(held), ttl=self.timeout)
            )
        # Every round, also when unchanged: a pool a reload added starts at this size, and a
        # pool kept at none must be known as such (its submits fail at once).
        await self._nursery.start(self._manager.resize, name, len(held))

    async def _give_back(
        self, name: str, slots: list[int], *, task_status: trio.TaskStatus[None]
    ) -> None:
        """Close the connections of ``slots`` (the pool shrinks at once), then release them."""
        assert self._manager is not None
        await self._manager.resize(name, len(self.held[name]), task_status=task_status)
        try:
            await self._cluster.release(name, slots)
        except QueueError as exc:
            log.info("%s: slots %s not given back (they expire): %s", name, slots, exc)
        self._releasing.get(name, set()).difference_update(slots)

    def _same_id(self, now: float, *, first: bool) -> None:
        """Another process heartbeat under this ``instance_id``: both would take the same
        connection slots (more binds than the account allows) and read the same relayed
        receipts. At the first heartbeat it may be this instance's own previous run."""
        instance = self._cluster.instance
        if first:
            log.warning(
                "instance_id %s was in use less than %gs ago: by this instance before a "
                "restart, or by another process (each instance needs its own)",
                instance,
                self.timeout,
            )
        elif self._same_id_logged is None or now - self._same_id_logged >= SAME_ID_LOG_INTERVAL:
            log.error(
                "instance_id %s is in use by another running process too: give each instance "
                "its own ([gateway] instance_id), or they bind more than the accounts allow",
                instance,
            )
            self._same_id_logged = now

    def _unreachable(self, now: float, exc: QueueError) -> None:
        """A round failed. Past ``timeout - heartbeat`` without one that worked, the leases may
        have expired: close every connection (slots are taken again when Redis answers)."""
        assert self._nursery is not None and self._manager is not None
        since = self._last_ok
        if since is not None and now - since < self.timeout - self.heartbeat:
            log.warning("connection slots not renewed (trying again): %s", exc)
            return
        holding = [name for name, held in self.held.items() if held]
        if holding:
            log.error(
                "Redis unreachable for %.0fs: closing the connections of %s, whose slots may "
                "now be other instances' (%s)",
                now - since if since is not None else 0.0,
                ", ".join(holding),
                exc,
            )
        else:
            self._outage.failed(exc)
        for name in holding:
            self.held[name].clear()
            self._nursery.start_soon(self._manager.resize, name, 0)
